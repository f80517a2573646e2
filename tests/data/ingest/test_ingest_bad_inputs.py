"""Every refused input: one clear message naming the file and the problem, and nothing left behind."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from segpipe.data.catalog import load_catalog
from segpipe.errors import CatalogError, InputError
from segpipe.data.ingest import IngestParams, ingest_dataset

from ingest_helpers import write_catalog


@pytest.fixture
def pair(tmp_path):
    """Two good image/label TIFF pairs ``a`` and ``b``; tests damage one of them."""
    rng = np.random.default_rng(0)
    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
    for name in ("a", "b"):
        image = rng.integers(0, 200, (24, 20)).astype(np.uint8)
        labels = np.zeros((24, 20), np.uint8)
        labels[4:10, 5:12] = 1
        tifffile.imwrite(tmp_path / "img" / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / "lab" / f"{name}.tif", labels)
    return tmp_path


def _refused(folder: Path, leftovers, match: str, *, error=InputError, **entry) -> None:
    entry = {"images": "img/*.tif", "labels": "lab/*.tif", "split": {"train": ["a", "b"]}} | entry
    with pytest.raises(error, match=match):
        dataset = load_catalog(write_catalog(folder, **entry)).dataset("d")
        ingest_dataset(dataset, folder / "out" / "data.zarr", progress=False)
    assert leftovers() == []


def test_truncated_tiff(pair, leftovers):
    path = pair / "img" / "b.tif"
    path.write_bytes(path.read_bytes()[:300])  # header and IFD survive, pixel data is cut
    _refused(pair, leftovers, r"img/b.tif: (not a readable TIFF|TIFF data cannot be read)")


def test_corrupt_tiff_header(pair, leftovers):
    path = pair / "img" / "b.tif"
    data = bytearray(path.read_bytes())
    data[4:8] = (2**31).to_bytes(4, "little")  # first IFD offset points far past the end
    path.write_bytes(bytes(data))
    _refused(pair, leftovers, r"img/b.tif: not a readable TIFF")


def test_empty_file(pair, leftovers):
    (pair / "lab" / "b.tif").write_bytes(b"")
    _refused(pair, leftovers, r"lab/b.tif: file is empty \(0 bytes\)")


def test_tif_that_is_not_a_tiff(pair, leftovers):
    (pair / "img" / "a.tif").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _refused(pair, leftovers, r"img/a.tif: not a TIFF file \(no TIFF signature")


@pytest.mark.parametrize("damage", ["magic", "truncated", "negative"])
def test_nifti_with_broken_header(tmp_path, leftovers, damage):
    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
    data = np.arange(120, dtype=np.uint8).reshape(4, 5, 6)
    for sub in ("img", "lab"):
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / sub / "a.nii"))
    raw = bytearray((tmp_path / "img" / "a.nii").read_bytes())
    expected = r"img/a.nii: not a readable NIfTI file"
    if damage == "magic":
        raw[344:348] = b"xxxx"  # the header's magic must be 'n+1'
    elif damage == "negative":
        raw[44:46] = (-5).to_bytes(2, "little", signed=True)  # dim[2]: a size of -5
        expected = r"img/a.nii: not a readable NIfTI file \(damaged header: dimension 2 is -5\)"
    else:
        raw = raw[:200]  # a header is 348 bytes
    (tmp_path / "img" / "a.nii").write_bytes(bytes(raw))
    _refused(tmp_path, leftovers, expected, images="img/*.nii", labels="lab/*.nii", ndim=3, split={"train": ["a"]})


def test_nifti_labels_stored_in_another_orientation(tmp_path, leftovers):
    """Labels a tool reoriented (x flipped, the affine moved with it) were ingested mirrored."""
    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
    data = np.zeros((6, 5, 4), np.uint8)  # (x, y, z)
    data[:2, 1:3, 1:3] = 1
    image = np.diag([0.8, 0.8, 1.5, 1.0])
    flipped = image.copy()
    flipped[0, 0], flipped[0, 3] = -0.8, 0.8 * 5
    nib.save(nib.Nifti1Image(data * 9, image), str(tmp_path / "img" / "a.nii"))
    nib.save(nib.Nifti1Image(data[::-1], flipped), str(tmp_path / "lab" / "a.nii"))
    entry = {"images": "img/*.nii", "labels": "lab/*.nii", "ndim": 3, "split": {"train": ["a"]}}
    _refused(tmp_path, leftovers, r"lab/a.nii: placed in the world otherwise than its image .*img/a.nii \(its voxels are "
             r"stored in the orientation LAS, the image's in RAS\); save the labels on the image's grid", **entry)
    unplaced = nib.Nifti1Image(data, None)  # no sform or qform, the voxel sizes alone: read on the image's grid
    unplaced.header.set_zooms((0.8, 0.8, 1.5))
    nib.save(unplaced, str(tmp_path / "lab" / "a.nii"))
    ingest_dataset(load_catalog(write_catalog(tmp_path, **entry)).dataset("d"), tmp_path / "ok" / "data.zarr", progress=False)


def test_labels_read_with_planes_where_the_image_has_frames(pair, leftovers):
    """The message showed two equal shapes: "(24, 20) but its labels have shape (24, 20)"."""
    tifffile.imwrite(pair / "img" / "a.tif", np.zeros((3, 24, 20), np.uint8), imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(pair / "lab" / "a.tif", np.zeros((3, 24, 20), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    _refused(pair, leftovers, r"img/a.tif has 3 frame\(s\) of 1 plane\(s\), its labels .*lab/a.tif 1 frame\(s\) of 3 "
             r"plane\(s\): set label_axes \(e.g. TYX or ZYX\)", split={"train": ["a"]}, images="img/a.tif", labels="lab/a.tif")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_image_with_nan_or_inf(pair, leftovers, bad):
    image = np.random.default_rng(1).random((24, 20)).astype(np.float32)
    image[7, 3] = bad
    tifffile.imwrite(pair / "img" / "b.tif", image)
    _refused(pair, leftovers, r"img/b.tif: image holds 1 NaN or Inf values \(the first at channel 0, y 7, x 3\)")


def test_a_nan_in_a_nifti_volume_is_placed_by_axis_names(tmp_path):
    """The index came in segpipe's own (channel, z, y, x) order, unnamed: a NaN at the file's voxel
    x 10, y 20, z 3 read as (0, 3, 20, 10), which a NIfTI user reads as x 0, y 3, z 20."""
    from segpipe.data.readers import open_source
    from segpipe.data.validate import check_image_block

    volume = np.zeros((16, 24, 6), np.float32)  # (x, y, z)
    volume[10, 20, 3] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "scan.nii.gz")
    with open_source(tmp_path / "scan.nii.gz") as source:
        block = source.read(0, (slice(None),) * 3)
    with pytest.raises(InputError, match=r"scan.nii.gz: image holds 1 NaN or Inf values \(the first at channel 0, z 3, y 20, x 10\)$"):
        check_image_block(block, tmp_path / "scan.nii.gz")


def test_non_integer_labels(pair, leftovers):
    labels = np.zeros((24, 20), np.float32)
    labels[3, 3] = 1.5
    tifffile.imwrite(pair / "lab" / "a.tif", labels)
    _refused(pair, leftovers, r"lab/a.tif: label map holds non-integer values \(dtype float32\)")


def test_negative_labels(pair, leftovers):
    labels = np.zeros((24, 20), np.int16)
    labels[3, 3] = -2
    tifffile.imwrite(pair / "lab" / "a.tif", labels)
    _refused(pair, leftovers, r"lab/a.tif: label map holds negative labels \(minimum -2\)")


def test_class_id_beyond_declared_classes(pair, leftovers):
    labels = np.zeros((24, 20), np.uint8)
    labels[3, 3] = 3
    tifffile.imwrite(pair / "lab" / "a.tif", labels)
    _refused(pair, leftovers, r"lab/a.tif: label value 3 but the catalog declares 2 classes", instances=False)


def test_shape_mismatch(pair, leftovers):
    tifffile.imwrite(pair / "lab" / "b.tif", np.zeros((24, 19), np.uint8))
    _refused(pair, leftovers, r"img/b.tif has spatial shape \(24, 20\) but its labels .*lab/b.tif have shape \(24, 19\)")


def test_spacing_mismatch(pair, leftovers):
    image = tifffile.imread(pair / "img" / "a.tif")
    labels = tifffile.imread(pair / "lab" / "a.tif")
    tifffile.imwrite(pair / "img" / "a.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    tifffile.imwrite(pair / "lab" / "a.tif", labels, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "um"})
    _refused(pair, leftovers, r"img/a.tif has spacing \(0.5, 0.5\) but its labels .*lab/a.tif have \(0.25, 0.25\)")


def test_labels_on_an_empty_image(pair, leftovers):
    tifffile.imwrite(pair / "img" / "b.tif", np.full((24, 20), 7, np.uint8))
    _refused(pair, leftovers, r"img/b.tif: image is constant \(7\) but .*lab/b.tif labels objects in it")


def test_duplicate_content_in_the_splits(pair, leftovers):
    (pair / "img" / "b.tif").write_bytes((pair / "img" / "a.tif").read_bytes())
    _refused(pair, leftovers, r"img/b.tif \(test\) has the same content as .*img/a.tif \(train\)",
             split={"train": ["a"], "test": ["b"]})


def test_same_file_listed_twice(pair, leftovers):
    _refused(pair, leftovers, r"files listed twice: .*img/a.tif", error=CatalogError,
             images=["img/*.tif", "img/a.tif"])


def test_dotdot_escape_refused_unless_allowed(pair, leftovers, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    tifffile.imwrite(outside / "c.tif", np.arange(480, dtype=np.uint16).reshape(24, 20))
    tifffile.imwrite(pair / "lab" / "c.tif", np.ones((24, 20), np.uint8))
    rel = os.path.relpath(outside, pair)
    entry = {"images": ["img/*.tif", f"{rel}/c.tif"], "split": {"train": ["a", "b", "c"]}}
    _refused(pair, leftovers, r"resolves to .*outside the catalog root.*allow_outside_root", error=CatalogError,
             **entry)
    dataset = load_catalog(write_catalog(pair, labels="lab/*.tif", allow_outside_root=True, **entry)).dataset("d")
    assert ingest_dataset(dataset, pair / "out" / "data.zarr", progress=False).n_images == 3


def test_symlink_escape_inside_a_slice_folder(tmp_path, leftovers, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (tmp_path / "stack").mkdir()
    (tmp_path / "lab").mkdir()
    for z in range(2):
        tifffile.imwrite(tmp_path / "stack" / f"z{z}.tif", np.full((8, 8), z + 1, np.uint8))
    tifffile.imwrite(outside / "z2.tif", np.ones((8, 8), np.uint8))
    (tmp_path / "stack" / "z2.tif").symlink_to(outside / "z2.tif")
    tifffile.imwrite(tmp_path / "lab" / "stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    _refused(tmp_path, leftovers, r"stack/z2.tif resolves to .*outside the catalog root", error=CatalogError,
             images="stack", ndim=3, split={"train": ["stack"]})


def test_ambiguous_axes_ask_for_the_axes_key(pair, leftovers):
    tifffile.imwrite(pair / "img" / "a.tif", np.ones((5, 24, 20), np.uint8), photometric="minisblack")
    _refused(pair, leftovers, r"img/a.tif: cannot tell what axis 0 \('Q', size 5\).*set axes:")


def test_planes_in_a_2d_dataset(pair, leftovers):
    for name in ("a", "b"):
        tifffile.imwrite(pair / "img" / f"{name}.tif", np.ones((5, 24, 20), np.uint8), photometric="minisblack")
    _refused(pair, leftovers, r"img/[ab].tif: the file has 5 planes \(Z\) but the catalog says ndim: 2", axes="ZYX")


def test_one_plane_images_in_a_3d_dataset_are_warned_of_once(pair, caplog):
    """2D files under ndim: 3 are ingested as volumes of one plane, without a word; now one warning."""
    dataset = load_catalog(write_catalog(pair, images="img/*.tif", labels="lab/*.tif", ndim=3, split={"train": ["a", "b"]})).dataset("d")
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        ingest_dataset(dataset, pair / "out" / "data.zarr", progress=False)
    warned = [r.getMessage() for r in caplog.records if "one plane" in r.getMessage()]
    assert warned == ["d: every image has one plane (Z) but the catalog says ndim: 3, so a 3D network would see one plane; "
                      "set ndim: 2 for 2D images, or axes: (e.g. ZYX) if their planes were read as time points or channels"]


def test_cli_exits_2_with_one_line(pair, monkeypatch, capsys):
    from segpipe.cli import main

    (pair / "img" / "a.tif").write_bytes(b"")
    catalog = write_catalog(pair, images="img/*.tif", labels="lab/*.tif", split={"train": ["a", "b"]})
    argv = ["segpipe", "ingest", "d", "--catalog", str(catalog), "--output", str(pair / "runs")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "ingest d:" not in line]  # progress bar
    assert len(err) == 1 and err[0].startswith("error: ") and err[0].endswith("img/a.tif: file is empty (0 bytes)")
    assert not (pair / "runs" / "d" / "data.zarr").exists()


@pytest.mark.parametrize("max_slab_mib", [32.0, 0.0005], ids=["whole", "streamed"])
def test_same_pixels_saved_again_in_another_split(pair, leftovers, max_slab_mib):
    """Other bytes (compression, tags), the same decoded pixels: a test image that is trained on."""
    image = tifffile.imread(pair / "img" / "a.tif")
    tifffile.imwrite(pair / "img" / "b.tif", image, compression="zlib", description="saved again")
    assert (pair / "img" / "b.tif").read_bytes() != (pair / "img" / "a.tif").read_bytes()
    entry = {"images": "img/*.tif", "labels": "lab/*.tif", "split": {"train": ["a"], "test": ["b"]}}
    with pytest.raises(InputError) as info:
        dataset = load_catalog(write_catalog(pair, **entry)).dataset("d")
        ingest_dataset(dataset, pair / "out" / "data.zarr", IngestParams(max_slab_mib=max_slab_mib), progress=False)
    message = str(info.value)
    assert "img/b.tif (test)" in message and "img/a.tif (train)" in message and "same pixels" in message, message
    assert leftovers() == []


def test_same_pixels_in_one_split_and_constant_images_are_accepted(pair):
    """Pixels repeated within a split leak nothing; nor do two blank fields in two splits."""
    image = tifffile.imread(pair / "img" / "a.tif")
    tifffile.imwrite(pair / "img" / "b.tif", image, compression="zlib")
    for name in ("c", "d"):
        tifffile.imwrite(pair / "img" / f"{name}.tif", np.zeros((24, 20), np.uint8), description=name)
        tifffile.imwrite(pair / "lab" / f"{name}.tif", np.zeros((24, 20), np.uint8))
    entry = {"images": "img/*.tif", "labels": "lab/*.tif", "split": {"train": ["a", "b", "c"], "test": ["d"]}}
    dataset = load_catalog(write_catalog(pair, **entry)).dataset("d")
    assert ingest_dataset(dataset, pair / "out" / "data.zarr", progress=False).n_images == 4


def test_pixel_digest_is_the_same_whole_or_slab_by_slab():
    from segpipe.data.ingest.record import PixelDigest

    block = np.random.default_rng(2).integers(0, 9, (3, 10, 7, 5)).astype(np.uint16)  # (C, z, y, x)
    whole, slabs = PixelDigest(block.dtype, block.shape), PixelDigest(block.dtype, block.shape)
    whole.update(block)
    for start in range(0, 10, 4):
        slabs.update(block[:, start : start + 4])
    assert whole.hexdigest() == slabs.hexdigest()
    other = PixelDigest(np.dtype(np.int16), block.shape)
    other.update(block.astype(np.int16))
    assert other.hexdigest() != whole.hexdigest()


def test_a_validation_split_without_any_object(pair, leftovers):
    """Validation scores a model by the objects it finds: with none, no model could ever be kept."""
    tifffile.imwrite(pair / "lab" / "b.tif", np.zeros((24, 20), np.uint8))
    _refused(pair, leftovers, r"the validation split has no object: its label maps are empty \(.*lab/b.tif\)",
             split={"train": ["a"], "validation": ["b"]})


def test_images_with_different_numbers_of_channels(pair, leftovers):
    """A grey image saved in colour among grey ones was ingested as 3 channels beside 1; training
    then failed at its first validation with torch's traceback ("expected input ... to have 1 channels")."""
    grey = tifffile.imread(pair / "img" / "b.tif")
    tifffile.imwrite(pair / "img" / "b.tif", np.stack([grey] * 3, axis=-1), photometric="rgb")
    _refused(pair, leftovers, r"img/b.tif: 3 channel\(s\), where .*img/a.tif has 1: .*channels: \[0\] reads a grey image")
    dataset = load_catalog(write_catalog(pair, images="img/*.tif", labels="lab/*.tif", split={"train": ["a", "b"]},
                                         channels=[0])).dataset("d")
    assert ingest_dataset(dataset, pair / "out" / "data.zarr", progress=False).n_images == 2


@pytest.mark.parametrize("instances", [True, False])
def test_every_label_map_empty(pair, leftovers, instances):
    for name in ("a", "b"):
        tifffile.imwrite(pair / "lab" / f"{name}.tif", np.zeros((24, 20), np.uint8))
    _refused(pair, leftovers, r"every label map is empty \(2 files: .*lab/a.tif, .*lab/b.tif\)", instances=instances)


def test_empty_label_maps_beside_others_are_accepted(pair, tmp_path):
    """An empty field in train (or in test) is a fine example of background."""
    tifffile.imwrite(pair / "lab" / "b.tif", np.zeros((24, 20), np.uint8))
    dataset = load_catalog(write_catalog(pair, images="img/*.tif", labels="lab/*.tif",
                                         split={"train": ["b"], "validation": ["a"]})).dataset("d")
    assert ingest_dataset(dataset, tmp_path / "out" / "data.zarr", progress=False).n_images == 2


def test_a_full_disk_stops_every_write_before_the_clean_up(tmp_path, leftovers, monkeypatch):
    """zarr writes a slab's chunks concurrently: when one fails (ENOSPC) the others must end before the
    temporary store is removed, or they put it back (a partial store left until the next run)."""
    import errno
    import time

    import zarr.storage._local as local

    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(3)
    tifffile.imwrite(tmp_path / "img" / "a.tif", rng.integers(0, 200, (64, 2048)).astype(np.uint8))
    labels = np.zeros((64, 2048), np.uint8)
    labels[10:20, 10:20] = 1
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    real_put, failed = local._put, []

    def put(path, value, exclusive=False):
        if "/s0/c/" in str(path):
            if not failed:
                failed.append(path)
                raise OSError(errno.ENOSPC, "No space left on device")
            time.sleep(0.2)
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)
    dataset = load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif",
                                         split={"train": ["a"]})).dataset("d")
    with pytest.raises(OSError, match="No space left"):
        ingest_dataset(dataset, tmp_path / "out" / "data.zarr", IngestParams(max_slab_mib=0.01, processes=1),
                       progress=False)
    assert failed
    time.sleep(0.5)  # writes still in flight would land now
    assert leftovers() == []


def test_a_three_page_label_stack_read_as_samples_says_how_to_read_it_as_planes(pair, leftovers):
    """tifffile (today) stores a (3, 24, 20) array written plainly as one page of 3 samples: the refusal gave no hint."""
    tifffile.imwrite(pair / "lab" / "a.tif", np.zeros((3, 24, 20), np.uint8), photometric="rgb", planarconfig="separate")
    _refused(pair, leftovers, r"lab/a.tif: a label map has one channel, this file has 3 \(read as CYX; if they are planes or "
             r"time points, set label_axes: ZYX or TYX", split={"train": ["a"]}, images="img/a.tif", labels="lab/a.tif")
