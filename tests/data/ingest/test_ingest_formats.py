"""Each input format ingests to the expected arrays, spacing, unit and names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr

from segpipe.data.catalog import load_catalog
from segpipe.errors import CatalogError
from segpipe.prediction.export import export_nifti, source_affine

from ingest_helpers import write_catalog

ROOT = Path(__file__).resolve().parents[3]
UNSET_SERIES_PRINT = "9f700b6d49a3b78094828af4f8981a709e58c5f02d20f81adf3d76cac8afff7a"


def _blobs(shape, seed, dtype=np.uint16, high=1000):
    """An image with signal (random values), and labels with a few boxes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(10, high, shape).astype(dtype)
    labels = np.zeros(shape, np.uint8)
    labels[..., 2:6, 3:8] = 1
    labels[..., 8:12, 10:14] = 2
    return image, labels


def _dirs(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)


def test_multipage_tiff_is_a_3d_stack(tmp_path, ingest):
    image, labels = _blobs((5, 20, 30), 0)
    _dirs(tmp_path, "img", "lab")
    tifffile.imwrite(tmp_path / "img" / "a.tif", image)
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=3, split={"train": ["a"]})["a"]
    assert stored.image.shape == (1, 5, 20, 30) and stored.image.dtype == np.uint16
    np.testing.assert_array_equal(stored.image[0], image)
    np.testing.assert_array_equal(stored.labels[...], labels)
    assert stored.spacing == (1.0, 1.0, 1.0) and stored.info["source_axes"] == "ZYX"


def test_a_catalog_entry_names_the_series_of_a_file_of_several_positions(tmp_path, ingest):
    """``series: 1`` reads the second position of each OME-TIFF, with its own pixel size; the
    labels are plain one-series files. Changing ``series`` changes the store's fingerprint, so the
    next run ingests again (the fingerprint of an entry without it is as before the field)."""
    from segpipe.data.ingest.fingerprint import fingerprint_of

    _dirs(tmp_path, "img", "lab")
    first, _ = _blobs((20, 30), 2)
    second, labels = _blobs((20, 30), 3)
    with tifffile.TiffWriter(tmp_path / "img" / "p.tif", ome=True) as tif:
        tif.write(first, metadata={"axes": "YX", "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5})
        tif.write(second, metadata={"axes": "YX", "PhysicalSizeY": 0.25, "PhysicalSizeX": 0.25})
    tifffile.imwrite(tmp_path / "lab" / "p.tif", labels)
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", series=1, split={"train": ["p"]})["p"]
    np.testing.assert_array_equal(stored.image[0], second)
    np.testing.assert_array_equal(stored.labels[...], labels)
    assert stored.spacing == (0.25, 0.25)
    unset = load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", split={"train": ["p"]})).dataset("d")
    prints = [fingerprint_of(replace(unset, entry=unset.entry.model_copy(update={"series": k})), {}) for k in (None, 0, 1)]
    assert len(set(prints)) == 3
    assert prints[0] == UNSET_SERIES_PRINT  # computed by segpipe before the field existed (57c3a1e)


def test_label_and_ignore_files_of_several_positions_are_read_at_the_series_named(tmp_path, ingest):
    """Labels written per position beside the images (one OME-TIFF of labels, one of ignore masks)
    follow ``series:``: the second position's labels, not the first's, though both have the same shape."""
    _dirs(tmp_path, "img", "lab", "ign")
    (first, first_labels), (second, second_labels) = _blobs((20, 30), 4), _blobs((20, 30), 5)
    first_labels, second_labels = first_labels[::-1].copy(), second_labels  # same shape, other objects
    ignore = np.zeros((20, 30), np.uint8)
    ignore[15:, :] = 1
    for folder, arrays in (("img", (first, second)), ("lab", (first_labels, second_labels)),
                           ("ign", (np.zeros_like(ignore), ignore))):
        with tifffile.TiffWriter(tmp_path / folder / "p.tif", ome=True) as tif:
            for array in arrays:
                tif.write(array, metadata={"axes": "YX"})
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ignore_masks="ign/*.tif", series=1,
                    split={"train": ["p"]})["p"]
    np.testing.assert_array_equal(stored.image[0], second)
    np.testing.assert_array_equal(stored.labels[...], second_labels)
    np.testing.assert_array_equal(stored.ignored(), ignore > 0)


def test_a_store_whose_labels_were_read_at_their_first_series_is_made_again(tmp_path):
    """Stores made with ``series:`` before label files followed it hold the first series' labels: their
    fingerprint (the entry and the files' digests, hashed as then) no longer matches, so the next
    ingest makes them again."""
    import hashlib

    from segpipe.data.ingest.fingerprint import FORMAT_VERSION, fingerprint_of

    def before(dataset) -> str:
        digest = hashlib.sha256(f"segpipe-store-{FORMAT_VERSION}".encode())
        digest.update(dataset.entry.model_dump_json(exclude={"training", "schedule", "model"}).encode())
        return digest.hexdigest()

    _dirs(tmp_path, "img")
    tifffile.imwrite(tmp_path / "img" / "p.tif", _blobs((20, 30), 6)[0])
    dataset = load_catalog(write_catalog(tmp_path, images="img/*.tif", series=1)).dataset("d")
    assert fingerprint_of(dataset, {}) != before(dataset)  # an entry without it: UNSET_SERIES_PRINT, pinned above


def test_2d_time_series_gives_one_image_per_frame(tmp_path, ingest):
    movie, labels = _blobs((4, 16, 18), 1)
    _dirs(tmp_path, "img", "lab")
    tifffile.imwrite(tmp_path / "img" / "m.tif", movie, photometric="minisblack")  # axes unknown: the catalog says
    tifffile.imwrite(tmp_path / "lab" / "m.tif", labels, imagej=True, metadata={"axes": "TYX"})
    stored = ingest(
        tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, axes="TYX", split={"train": ["m"]}
    )
    assert sorted(stored) == ["m-t000", "m-t001", "m-t002", "m-t003"]
    for t in range(4):
        frame = stored[f"m-t{t:03d}"]
        np.testing.assert_array_equal(frame.image[0], movie[t])
        np.testing.assert_array_equal(frame.labels[...], labels[t])
        assert frame.info["frame"] == t and frame.split == "train"


def test_imagej_hyperstack_axes_spacing_and_channels(tmp_path, ingest):
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 4000, (3, 4, 2, 8, 9)).astype(np.uint16)  # T Z C Y X
    labels = np.zeros((3, 4, 8, 9), np.uint8)
    labels[:, 1:3, 2:5, 2:6] = 1
    _dirs(tmp_path, "img", "lab")
    meta = {"spacing": 2.0, "unit": "micron"}
    # resolution is pixels per unit along (x, y): x 0.5 um, y 0.25 um
    tifffile.imwrite(tmp_path / "img" / "h.tif", stack, imagej=True, resolution=(2.0, 4.0),
                     metadata={"axes": "TZCYX", **meta})
    tifffile.imwrite(tmp_path / "lab" / "h.tif", labels, imagej=True, resolution=(2.0, 4.0),
                     metadata={"axes": "TZYX", **meta})
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=3, split={"train": ["h"]})
    assert sorted(stored) == ["h-t000", "h-t001", "h-t002"]
    first = stored["h-t001"]
    assert first.image.shape == (2, 4, 8, 9)
    np.testing.assert_array_equal(first.image[...], np.moveaxis(stack[1], 1, 0))
    np.testing.assert_array_equal(first.labels[...], labels[1])
    assert first.spacing == (2.0, 0.25, 0.5)
    assert first.info["unit"] == "micrometer"
    ome = zarr.open_group(str(ingest.store / "h-t001"), mode="r").attrs["ome"]
    scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 2.0, 0.25, 0.5]
    assert [a.get("unit") for a in ome["multiscales"][0]["axes"]] == [None, "micrometer", "micrometer", "micrometer"]


def test_an_imagej_file_calibrated_in_pixels_has_no_pixel_size(tmp_path, ingest):
    """ImageJ writes unit 'pixel' for an uncalibrated image: its resolution tags are no physical size."""
    image, labels = _blobs((12, 14), 4)
    _dirs(tmp_path, "img", "lab")
    for folder, array in (("img", image), ("lab", labels)):
        tifffile.imwrite(tmp_path / folder / "p.tif", array, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "pixel"})
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, split={"train": ["p"]})["p"]
    assert stored.spacing == (1.0, 1.0) and stored.info["spacing_source"] == "default"


def test_an_imagej_file_calibrated_at_one_unit_per_pixel_has_that_pixel_size(tmp_path, ingest):
    """Fiji at 1 um per pixel writes resolution 1/1 with unit 'micron': it was read as no pixel size
    (the warning said so), the same as a file without calibration."""
    image, labels = _blobs((12, 14), 4)
    _dirs(tmp_path, "img", "lab")
    for folder, array in (("img", image), ("lab", labels)):
        tifffile.imwrite(tmp_path / folder / "one.tif", array, imagej=True, resolution=(1.0, 1.0), metadata={"unit": "um"})
        tifffile.imwrite(tmp_path / folder / "none.tif", array, imagej=True)  # resolution 1/1 and no unit: uncalibrated
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, split={"train": ["one", "none"]})
    assert (stored["one"].spacing, stored["one"].info["spacing_source"]) == ((1.0, 1.0), "file")
    assert stored["one"].info["unit"] == "micrometer"
    assert stored["none"].info["spacing_source"] == "default"


def test_a_unit_without_a_spacing_fills_in_a_files_missing_unit_and_never_relabels_its_own(tmp_path, ingest):
    """unit: nm alone: an OME-TIFF in micrometres stays in micrometres; an ImageJ file with a
    resolution and no unit is read in nanometres."""
    image, labels = _blobs((12, 14), 5)
    _dirs(tmp_path, "img", "lab")
    size = {"PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3}
    tifffile.imwrite(tmp_path / "img" / "ome.tif", image, ome=True, metadata={"axes": "YX", **size})
    tifffile.imwrite(tmp_path / "img" / "ij.tif", image, imagej=True, resolution=(2.0, 2.0))
    for name in ("ome", "ij"):
        tifffile.imwrite(tmp_path / "lab" / f"{name}.tif", labels)
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, unit="nm", split={"train": ["ome", "ij"]})
    assert (stored["ome"].spacing, stored["ome"].info["unit"]) == ((0.3, 0.3), "micrometer")
    assert (stored["ij"].spacing, stored["ij"].info["unit"]) == ((0.5, 0.5), "nanometer")


def test_a_unit_without_a_spacing_leaves_a_file_without_a_pixel_size_at_the_default(tmp_path, ingest):
    """unit: nm alone on a plain TIFF: the guess stays 1 micrometer per pixel (taking 1 nm made
    segpipe segment --unit nm shrink a 200 x 200 image to one pixel for a micrometer model)."""
    image, labels = _blobs((12, 14), 5)
    _dirs(tmp_path, "img", "lab")
    tifffile.imwrite(tmp_path / "img" / "plain.tif", image)
    tifffile.imwrite(tmp_path / "lab" / "plain.tif", labels)
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, unit="nm", split={"train": ["plain"]})
    assert (stored["plain"].spacing, stored["plain"].info["unit"]) == ((1.0, 1.0), "micrometer")
    assert stored["plain"].info["spacing_source"] == "default"


def test_ome_tiff_channels_chosen_and_reordered(tmp_path, ingest):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (3, 12, 14)).astype(np.uint8)  # C Y X
    labels = np.zeros((12, 14), np.uint16)
    labels[3:7, 4:9] = 300
    _dirs(tmp_path, "img", "lab")
    tifffile.imwrite(tmp_path / "img" / "o.tif", image, ome=True, metadata={
        "axes": "CYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeYUnit": "nm"})
    tifffile.imwrite(tmp_path / "lab" / "o.tif", labels)
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, channels=[2, 0],
                    split={"train": ["o"]})["o"]
    np.testing.assert_array_equal(stored.image[...], image[[2, 0]])
    assert stored.spacing == (0.4, 0.3) and stored.info["unit"] == "nanometer"
    assert stored.labels.dtype == np.uint16 and stored.labels[5, 5] == 300


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def test_nifti_3d_keeps_affine_and_exports_back_exactly(tmp_path, ingest):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 500, (10, 12, 7)).astype(np.int16)  # x y z
    labels = np.zeros((10, 12, 7), np.uint8)
    labels[2:5, 3:9, 1:4] = 1
    theta = np.deg2rad(20)
    affine = np.array([[0.8 * np.cos(theta), -0.9 * np.sin(theta), 0, -30.0],
                       [0.8 * np.sin(theta), 0.9 * np.cos(theta), 0, 12.5],
                       [0, 0, 2.5, -7.0],
                       [0, 0, 0, 1]])
    _dirs(tmp_path, "img", "lab")
    _nifti(tmp_path / "img" / "v.nii.gz", data, affine)
    _nifti(tmp_path / "lab" / "v.nii.gz", labels, affine)
    stored = ingest(tmp_path, images="img/*.nii.gz", labels="lab/*.nii.gz", ndim=3, split={"train": ["v"]})["v"]
    np.testing.assert_array_equal(stored.image[0], np.transpose(data, (2, 1, 0)))
    np.testing.assert_allclose(stored.spacing, (2.5, 0.9, 0.8))
    assert stored.info["unit"] == "millimeter"
    np.testing.assert_allclose(stored.info["affine"], affine)

    out = export_nifti(stored.labels[...], tmp_path / "pred.nii.gz", affine=source_affine(stored.info, ndim=3), ndim=3)
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj), labels)


def test_nifti_4d_channels(tmp_path, ingest):
    rng = np.random.default_rng(5)
    data = rng.random((6, 5, 4, 2)).astype(np.float32)  # x y z modality
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    _dirs(tmp_path, "img", "lab")
    _nifti(tmp_path / "img" / "m.nii", data, np.eye(4))
    _nifti(tmp_path / "lab" / "m.nii", labels, np.eye(4))
    stored = ingest(tmp_path, images="img/*.nii", labels="lab/*.nii", ndim=3, split={"train": ["m"]})["m"]
    assert stored.image.shape == (2, 4, 5, 6) and stored.image.dtype == np.float32
    np.testing.assert_array_equal(stored.image[...], np.transpose(data, (3, 2, 1, 0)))


def test_real_nifti_region_affine_moves_with_the_crop(tmp_path, ingest):
    """The bundled MNI152 entry: a test region exported with its stored affine lands on the source voxels."""
    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.store import ImageStore

    dataset = load_catalog(ROOT / "data_catalog.yaml").dataset("mni152-tissue")
    ingest_dataset(dataset, tmp_path / "mni.zarr", progress=False)
    test = ImageStore.open(tmp_path / "mni.zarr").images("test")[0]
    source = nib.load(str(ROOT / "data" / "mni152" / "tissue_2mm.nii.gz"))
    out = export_nifti(test.labels[...], tmp_path / "test.nii.gz", affine=source_affine(test.info, ndim=3), ndim=3)
    back = nib.load(str(out))
    x0 = test.info["region"][2][0]
    assert x0 == 72
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(source.dataobj)[x0:])
    voxel = np.array([3, 40, 50, 1])
    np.testing.assert_allclose(back.affine @ voxel, source.affine @ (voxel + [x0, 0, 0, 0]))


def _ctc_2d(root: Path, seq: str, n: int, gt: list[int], seed: int) -> dict:
    _dirs(root, seq, f"{seq}_GT/SEG")
    frames = {}
    for t in range(n):
        image, labels = _blobs((20, 24), seed + t, np.uint8, 250)
        tifffile.imwrite(root / seq / f"t{t:03d}.tif", image)
        frames[t] = (image, labels)
        if t in gt:
            tifffile.imwrite(root / f"{seq}_GT" / "SEG" / f"man_seg{t:03d}.tif", labels.astype(np.uint16))
    return frames


def test_ctc_sequences_ingest_every_frame_and_the_annotations_they_have(tmp_path, ingest):
    ds = tmp_path / "Fluo-N2DH-TEST"
    one = _ctc_2d(ds, "01", 5, [1, 3], 10)
    two = _ctc_2d(ds, "02", 3, [0], 20)
    stored = ingest(tmp_path, format="ctc", images="Fluo-N2DH-TEST/0[12]", ndim=2,
                    split={"train": ["01"], "test": ["02"]})
    assert sorted(stored) == [f"01-t00{t}" for t in range(5)] + [f"02-t00{t}" for t in range(3)]
    assert sorted(name for name, image in stored.items() if image.labels is not None) == ["01-t001", "01-t003", "02-t000"]
    assert stored["02-t000"].split == "test" and stored["01-t003"].split == "train" and stored["02-t002"].split == "test"
    np.testing.assert_array_equal(stored["01-t002"].image[0], one[2][0])
    np.testing.assert_array_equal(stored["01-t003"].image[0], one[3][0])
    np.testing.assert_array_equal(stored["01-t003"].labels[...], one[3][1])
    np.testing.assert_array_equal(stored["02-t000"].image[0], two[0][0])


def test_ctc_3d_per_plane_ground_truth(tmp_path, ingest):
    ds = tmp_path / "Fluo-N3DH-TEST"
    _dirs(ds, "01", "01_GT/SEG")
    volumes = [_blobs((6, 20, 24), 30 + t)[0] for t in range(2)]
    for t, volume in enumerate(volumes):
        tifffile.imwrite(ds / "01" / f"t{t:03d}.tif", volume, photometric="minisblack")
    plane = np.zeros((20, 24), np.uint16)
    plane[4:9, 5:11] = 7
    tifffile.imwrite(ds / "01_GT" / "SEG" / "man_seg_001_004.tif", plane)
    entry = {"format": "ctc", "images": "Fluo-N3DH-TEST/01", "split": {"train": ["01"]}}
    stored = ingest(tmp_path, ndim=2, **entry)
    assert list(stored) == ["01-t001-z004"]
    np.testing.assert_array_equal(stored["01-t001-z004"].image[0], volumes[1][4])
    np.testing.assert_array_equal(stored["01-t001-z004"].labels[...], plane)
    with pytest.raises(CatalogError, match=r"man_seg_001_004.tif annotates one plane of a 3D frame.*ndim: 2"):
        load_catalog(write_catalog(tmp_path, ndim=3, **entry)).dataset("d")


def test_ctc_3d_whole_frame_and_per_plane_ground_truth_each_setting_uses_its_kind(tmp_path, ingest, caplog):
    """A CTC 3D sequence annotated both ways (whole frame 0, one plane of frame 1, with an ignore
    mask each) ingests under either ndim: the 3D dataset trains on the whole frame and predicts
    frame 1, the 2D one takes the plane; each says what it left out."""
    ds = tmp_path / "Fluo-N3DH-TEST"
    _dirs(ds, "01", "01_GT/SEG", "01_GT/IGNORE")
    volumes = [_blobs((6, 20, 24), 30 + t)[0] for t in range(2)]
    for t, volume in enumerate(volumes):
        tifffile.imwrite(ds / "01" / f"t{t:03d}.tif", volume, photometric="minisblack")
    whole = _blobs((6, 20, 24), 0)[1].astype(np.uint16)
    tifffile.imwrite(ds / "01_GT" / "SEG" / "man_seg000.tif", whole, photometric="minisblack")
    plane = np.zeros((20, 24), np.uint16)
    plane[4:9, 5:11] = 7
    tifffile.imwrite(ds / "01_GT" / "SEG" / "man_seg_001_004.tif", plane)
    tifffile.imwrite(ds / "01_GT" / "IGNORE" / "man_seg_001_004.tif", (plane == 0).astype(np.uint8))
    tifffile.imwrite(ds / "01_GT" / "IGNORE" / "man_seg000.tif", np.zeros((6, 20, 24), np.uint8), photometric="minisblack")
    entry = {"format": "ctc", "images": "Fluo-N3DH-TEST/01", "split": {"train": ["01"]}, "ignore_masks": "{seq}_GT/IGNORE"}

    stored = ingest(tmp_path, ndim=3, **entry)
    assert sorted(stored) == ["01-t000", "01-t001"]
    np.testing.assert_array_equal(stored["01-t000"].labels[...], whole)
    assert stored["01-t001"].labels is None
    assert "ndim: 3 uses the whole-frame ones (1) and leaves out the per-plane ones (1; ndim: 2 uses those)" in caplog.text

    caplog.clear()
    records = load_catalog(write_catalog(tmp_path, ndim=2, **entry)).dataset("d").records
    assert [(r.name, r.labels.name, r.plane, r.ignore.name) for r in records] == [
        ("01-t001-z004", "man_seg_001_004.tif", 4, "man_seg_001_004.tif")]
    assert "ndim: 2 uses the per-plane ones (1) and leaves out the whole-frame ones (1; ndim: 3 uses those)" in caplog.text


def test_folder_of_slices_in_natural_order(tmp_path, ingest):
    volume, labels = _blobs((3, 16, 16), 40)
    _dirs(tmp_path, "stacks/vol", "lab")
    # lexical order would be z1, z10, z2; natural order is z1, z2, z10
    for z, name in enumerate(["z1", "z2", "z10"]):
        tifffile.imwrite(tmp_path / "stacks" / "vol" / f"{name}.tif", volume[z])
    (tmp_path / "stacks" / "vol" / "notes.txt").write_text("not a slice")
    tifffile.imwrite(tmp_path / "lab" / "vol.tif", labels, photometric="minisblack")
    stored = ingest(tmp_path, images="stacks/*", labels="lab/*.tif", ndim=3, slice_glob="z*.tif",
                    split={"train": ["vol"]})["vol"]
    np.testing.assert_array_equal(stored.image[0], volume)
    np.testing.assert_array_equal(stored.labels[...], labels)


def test_png_pairs_grey_8bit_and_rgb_16bit_channels(tmp_path, ingest):
    rng = np.random.default_rng(6)
    _dirs(tmp_path, "png")
    grey = rng.integers(0, 255, (10, 12)).astype(np.uint8)
    rgb16 = rng.integers(0, 65535, (10, 12, 3)).astype(np.uint16)
    masks = np.zeros((10, 12), np.uint16)
    masks[2:5, 2:6] = 1
    masks[6:9, 7:11] = 1000
    (tmp_path / "png" / "001_img.png").write_bytes(imagecodecs.png_encode(np.stack([grey] * 3, -1)))
    (tmp_path / "png" / "002_img.png").write_bytes(imagecodecs.png_encode(rgb16))
    for name in ("001", "002"):
        (tmp_path / "png" / f"{name}_masks.png").write_bytes(imagecodecs.png_encode(masks))
    stored = ingest(tmp_path, images="png/*_img.png", labels="png/*_masks.png", images_suffix="_img",
                    labels_suffix="_masks", channels=["green", "red"], ndim=2, split={"train": ["001", "002"]})
    assert sorted(stored) == ["001", "002"]
    np.testing.assert_array_equal(stored["002"].image[...], np.stack([rgb16[..., 1], rgb16[..., 0]]))
    assert stored["002"].image.dtype == np.uint16 and stored["001"].image.dtype == np.uint8
    np.testing.assert_array_equal(stored["001"].image[0], grey)
    np.testing.assert_array_equal(stored["001"].labels[...], masks)


def test_png_grey_16bit(tmp_path, ingest):
    _dirs(tmp_path, "img", "lab")
    image = (np.arange(99, dtype=np.uint16).reshape(9, 11) * 600)
    labels = (image > 30000).astype(np.uint8)
    (tmp_path / "img" / "a.png").write_bytes(imagecodecs.png_encode(image))
    (tmp_path / "lab" / "a.png").write_bytes(imagecodecs.png_encode(labels))
    stored = ingest(tmp_path, images="img/*.png", labels="lab/*.png", split={"train": ["a"]})["a"]
    np.testing.assert_array_equal(stored.image[0], image)
    assert stored.image.dtype == np.uint16


def test_bundled_datasets_ingest_as_before(tmp_path):
    """bbbc007, dsb2018-nuclei and synthetic-nuclei-3d: names, splits, pixels, dtypes, spacing, chunks."""
    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.store import ImageStore

    catalog = load_catalog(ROOT / "data_catalog.yaml")
    for name in ("bbbc007", "dsb2018-nuclei", "synthetic-nuclei-3d"):
        dataset = catalog.dataset(name)
        store = tmp_path / f"{name}.zarr"
        ingest_dataset(dataset, store, progress=False)
        stored = ImageStore.open(store).images()
        assert [(im.name, im.split) for im in stored] == [(r.name, r.split) for r in dataset.records]
        for im, record in zip(stored, dataset.records):
            window = tuple(slice(a, b) for a, b in record.region) if record.region else ...
            image = tifffile.imread(record.image)[window]
            labels = tifffile.imread(record.labels)[window]
            np.testing.assert_array_equal(im.image[0], image)
            np.testing.assert_array_equal(im.labels[...], labels)
            assert im.image.dtype == image.dtype and im.labels.dtype == np.uint8  # fewer than 256 objects
            assert im.spacing == (1.0,) * dataset.entry.ndim and im.info["unit"] == "micrometer"
            edge = 256 if dataset.entry.ndim == 2 else 64
            assert im.image.chunks == (1, *(min(edge, s) for s in image.shape))


def test_the_files_channel_names_reach_the_stores_viewers(tmp_path):
    """An OME-TIFF's channels DNA and GFP were shown as "channel 0" and "channel 1" in the store."""
    from segpipe.data.ingest import ingest_dataset

    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
    stack = np.zeros((2, 24, 20), np.uint16)
    stack[0, 4:10, 4:10], stack[1, 10:20, 8:16] = 900, 300
    tifffile.imwrite(tmp_path / "img" / "a.ome.tif", stack, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "GFP"]}})
    tifffile.imwrite(tmp_path / "lab" / "a.tif", (stack[0] > 0).astype(np.uint8))
    entry = {"images": "img/*.ome.tif", "labels": "lab/*.tif", "channels": [1, 0], "split": {"train": ["a"]}}
    ingest_dataset(load_catalog(write_catalog(tmp_path, **entry)).dataset("d"), tmp_path / "data.zarr", progress=False)
    group = zarr.open_group(str(tmp_path / "data.zarr" / "a"), mode="r")
    assert [c["label"] for c in group.attrs["ome"]["omero"]["channels"]] == ["GFP", "DNA"]
