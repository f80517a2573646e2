"""Exports reopen in their own libraries with the right geometry: TIFF, NIfTI (source affine), CTC folders."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import yaml
import zarr
from ctc_metrics.scripts.evaluate import evaluate_sequence

from segpipe.data.catalog import load_catalog
from segpipe.errors import InputError
from segpipe.prediction.export import FrameStack, export_ctc, export_nifti, export_tiff, source_affine
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.temporary import parse

ROOT = Path(__file__).resolve().parents[2]


def as_zarr(tmp_path: Path, array: np.ndarray, chunks) -> zarr.Array:
    stored = zarr.create_array(str(tmp_path / f"a{array.ndim}.zarr"), shape=array.shape, dtype=array.dtype, chunks=chunks)
    stored[...] = array
    return stored


def assert_same_world_points(exported: nib.Nifti1Image, source: nib.Nifti1Image, offset_xyz, data: np.ndarray):
    """Exported voxel (i, j, k) is the source voxel at the same world point, holding the same label."""
    source_data = np.asarray(source.dataobj)
    rng = np.random.default_rng(0)
    for ijk in rng.integers(0, exported.shape, size=(25, 3)):
        world = exported.affine @ np.append(ijk, 1)
        back = np.linalg.solve(source.affine, world)[:3]
        np.testing.assert_allclose(back, ijk + np.asarray(offset_xyz), atol=1e-6)
        assert data[tuple(ijk)] == source_data[tuple(ijk + np.asarray(offset_xyz))]


def test_nifti_from_a_rotated_source_with_a_region_split(tmp_path):
    rng = np.random.default_rng(1)
    labels_xyz = rng.integers(0, 5, (20, 14, 9)).astype(np.uint16)
    image_xyz = rng.integers(0, 900, (20, 14, 9)).astype(np.int16)
    theta = np.deg2rad(25)
    affine = np.array([
        [0.7 * np.cos(theta), -1.1 * np.sin(theta), 0.0, -40.0],
        [0.7 * np.sin(theta), 1.1 * np.cos(theta), 0.0, 15.5],
        [0.0, 0.0, 2.5, -9.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    for sub, data in (("img", image_xyz), ("lab", labels_xyz)):
        (tmp_path / sub).mkdir()
        nib.save(nib.Nifti1Image(data, affine), str(tmp_path / sub / "v.nii.gz"))
    regions = {"train": [[0, 9], [0, 14], [0, 12]], "test": [[2, 9], [3, 14], [12, 20]]}  # (z, y, x)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"d": {
        "images": "img/*.nii.gz", "labels": "lab/*.nii.gz", "ndim": 3, "classes": ["bg", "a"],
        "split": {"regions": regions},
    }}}))
    ingest_dataset(load_catalog(catalog).dataset("d"), tmp_path / "data.zarr", progress=False)
    test = ImageStore.open(tmp_path / "data.zarr").images("test")[0]

    path = export_nifti(test.labels, tmp_path / "out" / "test.nii.gz", affine=source_affine(test.info, ndim=3), ndim=3)
    exported = nib.load(str(path))
    assert exported.shape == (8, 11, 7) and exported.get_data_dtype() == test.labels.dtype
    data = np.asarray(exported.dataobj)
    np.testing.assert_array_equal(data, np.transpose(test.labels[...], (2, 1, 0)))
    assert_same_world_points(exported, nib.load(str(tmp_path / "lab" / "v.nii.gz")), (12, 3, 2), data)
    np.testing.assert_allclose(exported.header.get_zooms(), (0.7, 1.1, 2.5))


def test_nifti_of_the_bundled_mni_test_region(tmp_path):
    dataset = load_catalog(ROOT / "data_catalog.yaml").dataset("mni152-tissue")
    ingest_dataset(dataset, tmp_path / "mni.zarr", progress=False)
    test = ImageStore.open(tmp_path / "mni.zarr").images("test")[0]
    path = export_nifti(test.labels, tmp_path / "mni_test.nii", affine=source_affine(test.info, ndim=3), ndim=3)
    exported = nib.load(str(path))
    source = nib.load(str(ROOT / "data" / "mni152" / "tissue_2mm.nii.gz"))
    offset = [start for start, _ in reversed(test.info["region"])]
    assert_same_world_points(exported, source, offset, np.asarray(exported.dataobj))


def test_nifti_2d_and_with_a_time_axis_use_the_spacing(tmp_path):
    labels = np.random.default_rng(2).integers(0, 9, (3, 30, 20)).astype(np.uint8)  # (t, y, x)
    info = {"spacing": [0.5, 0.25], "region": [[10, 40], [5, 25]], "affine": None}
    affine = source_affine(info, ndim=2)
    np.testing.assert_allclose(affine @ [0, 0, 0, 1], [5 * 0.25, 10 * 0.5, 0, 1])
    flat = nib.load(str(export_nifti(labels[0], tmp_path / "one.nii.gz", affine=affine, ndim=2)))
    assert flat.shape == (20, 30)
    np.testing.assert_array_equal(np.asarray(flat.dataobj), labels[0].T)
    timed = nib.load(str(export_nifti(as_zarr(tmp_path, labels, (1, 8, 8)), tmp_path / "t.nii", affine=affine, ndim=2)))
    assert timed.shape == (20, 30, 1, 3)
    np.testing.assert_array_equal(np.asarray(timed.dataobj)[:, :, 0, 2], labels[2].T)
    np.testing.assert_allclose(timed.header.get_zooms()[:2], (0.25, 0.5))


@pytest.mark.parametrize(
    "shape,axes", [((37, 29), "YX"), ((6, 37, 29), "ZYX"), ((3, 37, 29), "TYX"), ((2, 5, 37, 29), "TZYX")]
)
def test_tiff_round_trip_from_zarr(tmp_path, shape, axes):
    labels = np.random.default_rng(3).integers(0, 70000, shape).astype(np.uint32)
    path = export_tiff(as_zarr(tmp_path, labels, (1,) * (len(shape) - 2) + (16, 16)), tmp_path / "l.tif", axes=axes)
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), labels)
        assert tif.series[0].axes == axes
    assert not [p for p in tmp_path.iterdir() if parse(p)]


def frames_with_objects(n: int, shape, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        labels = np.zeros(shape, np.uint32)
        for index in range(1, 6):
            corner = [rng.integers(0, max(1, s - 3)) for s in shape]
            labels[tuple(slice(c, c + 3) for c in corner)] = 1000 + 7 * index  # sparse, large ids
        frames.append(labels)
    return frames


@pytest.mark.parametrize("shape", [(40, 50), (6, 30, 20), (3, 30, 20)])
def test_ctc_folder_passes_the_challenge_evaluation(tmp_path, shape):
    frames = frames_with_objects(3, shape, seed=len(shape))
    res = export_ctc([(t, as_zarr(tmp_path / str(t), f, (16,) * len(shape))) for t, f in enumerate(frames)], tmp_path / "seq")
    assert sorted(p.name for p in res.iterdir()) == ["mask000.tif", "mask001.tif", "mask002.tif", "res_track.txt"]
    masks = [tifffile.imread(res / f"mask{t:03d}.tif") for t in range(3)]
    assert all(m.dtype == np.uint16 and m.shape == shape for m in masks)
    ids = [set(np.unique(m[m > 0]).tolist()) for m in masks]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])  # unique over the sequence
    for frame, mask in zip(frames, masks):
        assert len(np.unique(mask)) == len(np.unique(frame)) and np.array_equal(mask > 0, frame > 0)

    gt = tmp_path / "seq" / "01_GT"
    for sub in ("SEG", "TRA"):
        (gt / sub).mkdir(parents=True)
    for t, mask in enumerate(masks):
        tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", mask, photometric="minisblack")
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", mask, photometric="minisblack")
    (gt / "TRA" / "man_track.txt").write_text((res / "res_track.txt").read_text())
    scores = evaluate_sequence(str(res), str(gt), metrics=["SEG", "DET"], threads=1)
    assert scores["SEG"] == pytest.approx(1.0) and scores["DET"] == pytest.approx(1.0)


def test_ctc_frame_numbers_widen_past_999_and_uint16_is_enforced(tmp_path):
    small = np.zeros((8, 8), np.uint32)
    small[1:3, 1:3] = 4
    res = export_ctc([(1000, small), (0, small)], tmp_path / "long")
    assert sorted(p.name for p in res.glob("*.tif")) == ["mask0000.tif", "mask1000.tif"]
    crowded = np.arange(1, 70001, dtype=np.uint32).reshape(280, 250)
    with pytest.raises(InputError, match="more than 65535 objects"):
        export_ctc([(0, crowded)], tmp_path / "crowded")


@pytest.mark.parametrize(("high", "dtype"), [(65535, np.uint16), (65536, np.float32)])
def test_tiff_is_an_imagej_hyperstack_with_calibration(tmp_path, high, dtype):
    """Fiji reads the pixel size, z step and unit; masks are 16-bit while they fit (ImageJ shows no uint32)."""
    labels = np.zeros((4, 20, 30), np.uint32)
    labels[1, 5:9, 5:9] = high
    labels[2, 10:12, 10:20] = 7
    path = export_tiff(labels, tmp_path / "stack.tif", axes="ZYX", spacing=(2.0, 0.25, 0.5), unit="micrometer")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        meta = tif.imagej_metadata
        assert meta["unit"] == "um" and meta["spacing"] == 2.0 and meta["slices"] == 4
        page = tif.pages[0]
        assert page.tags["XResolution"].value == (2, 1) and page.tags["YResolution"].value == (4, 1)  # 1 / pixel size
        data = tif.asarray()
    assert data.dtype == dtype
    np.testing.assert_array_equal(data, labels)


def test_a_time_series_keeps_its_frame_interval(tmp_path):
    """Labels of a time series lost the time between frames (the source's finterval or TimeIncrement)."""
    labels = np.zeros((3, 20, 30), np.uint16)
    labels[:, 5:9, 5:9] = 1
    path = export_tiff(labels, tmp_path / "movie.tif", axes="TYX", spacing=(0.5, 0.5), unit="micrometer", time_step=30.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["finterval"] == 30.0 and tif.imagej_metadata["frames"] == 3


def test_nifti_keeps_its_unit(tmp_path):
    import nibabel as nib

    labels = np.zeros((3, 4, 5), np.uint16)
    path = export_nifti(labels, tmp_path / "l.nii.gz", affine=np.diag([2.0, 2.0, 2.0, 1.0]), ndim=3, unit="millimeter")
    assert nib.load(str(path)).header.get_xyzt_units()[0] == "mm"


def test_a_frame_stack_reads_as_the_stacked_frames():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 9, (2, 5, 6), dtype=np.uint16), rng.integers(0, 9, (2, 5, 6), dtype=np.uint32)]
    stack, reference = FrameStack(frames), np.stack(frames)
    assert stack.shape == reference.shape and stack.ndim == 4 and stack.dtype == np.uint32
    np.testing.assert_array_equal(stack[1], reference[1])
    np.testing.assert_array_equal(stack[(0, slice(1, 2))], reference[0, 1:2])
    np.testing.assert_array_equal(stack[(slice(0, 2),)], reference)
    with pytest.raises(ValueError, match="one shape"):
        FrameStack([frames[0], frames[0][:, :4]])


def test_nifti_keeps_the_sources_own_qform(tmp_path):
    """An oblique sform (template space) beside a qform of its own (scanner): the export wrote the sform twice."""
    volume = np.zeros((6, 5, 4), np.uint8)  # (x, y, z)
    volume[1:3, 1:3, 1:3] = 1
    sform = np.array([[0.9, 0.1, 0.0, -5.0], [-0.1, 0.9, 0.0, 3.0], [0.0, 0.0, 2.0, 1.0], [0, 0, 0, 1.0]])
    qform = np.diag([0.9, 0.9, 2.0, 1.0])
    qform[:3, 3] = [-5.0, 3.0, 1.0]
    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
        source = nib.Nifti1Image(volume, sform)
        source.header.set_sform(sform, code="template")
        source.header.set_qform(qform, code="scanner")
        nib.save(source, str(tmp_path / sub / "v.nii.gz"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"d": {
        "images": "img/*.nii.gz", "labels": "lab/*.nii.gz", "ndim": 3, "classes": ["bg", "a"], "split": {"train": ["v"]}}}}))
    ingest_dataset(load_catalog(catalog).dataset("d"), tmp_path / "data.zarr", progress=False)
    image = ImageStore.open(tmp_path / "data.zarr").images("train")[0]
    path = export_nifti(image.labels, tmp_path / "out.nii.gz", affine=source_affine(image.info, ndim=3), ndim=3,
                        world=image.info["world"], qform=image.info["qform"], qform_space=image.info["qform_space"])
    header = nib.load(str(path)).header
    written_sform, sform_code = header.get_sform(coded=True)
    written_qform, qform_code = header.get_qform(coded=True)
    np.testing.assert_allclose(written_sform, sform, atol=1e-5)
    np.testing.assert_allclose(written_qform, qform, atol=1e-5)
    assert (int(sform_code), int(qform_code)) == (5, 1)  # template, scanner


def test_a_region_of_a_file_without_sform_or_qform_is_exported_placed():
    """Labels of a whole uncoded NIfTI keep its codes of 0 (viewers place both by pixdim); a region of one
    needs a coded affine to lie where it was cut from (with codes of 0 it would be drawn at the corner)."""
    from segpipe.prediction.export import labels_space

    stand_in = np.eye(4).tolist()
    assert labels_space({"world": None, "affine": stand_in, "region": None}) == "unknown"
    assert labels_space({"world": None, "affine": stand_in, "region": [[0, 1], [10, 40], [0, 64]]}) is None  # aligned
    assert labels_space({"world": "mni", "affine": stand_in, "region": [[0, 1], [10, 40], [0, 64]]}) == "mni"
    assert labels_space({"world": None, "affine": None}) is None  # a TIFF's labels written as NIfTI: aligned


def test_the_unit_of_an_ingested_nifti_affine_is_its_files_own(tmp_path):
    """Labels and maps written on a NIfTI's grid name the unit of its affine: the file's (unknown where
    its header says so; they claimed the unit its sizes were read in), the store's for a store made
    before world_unit was recorded."""
    import nibabel as nib

    from segpipe.data.catalog import load_catalog
    from segpipe.prediction.export import affine_unit

    (tmp_path / "img").mkdir()
    for name, unit in (("unknown", 0), ("mm", "mm")):
        scan = nib.Nifti1Image(np.arange(96, dtype=np.float32).reshape(4, 6, 4), np.diag([0.5, 0.5, 2.0, 1.0]))
        scan.header.set_xyzt_units(unit)
        nib.save(scan, tmp_path / "img" / f"{name}.nii.gz")
    (tmp_path / "catalog.yaml").write_text("datasets:\n  scans:\n    images: img/*.nii.gz\n    ndim: 3\n")
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("scans"), tmp_path / "data.zarr", progress=False)
    infos = {image.name: image.info for image in ImageStore.open(tmp_path / "data.zarr").images()}
    assert affine_unit(infos["unknown"]) is None and infos["unknown"]["unit"] is not None
    assert affine_unit(infos["mm"]) == "millimeter"
    before = {k: v for k, v in infos["unknown"].items() if k != "world_unit"}  # a store made before the key
    assert affine_unit(before) == infos["unknown"]["unit"]
