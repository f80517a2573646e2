import numpy as np
import pytest
import tifffile
import zarr

from segpipe.data.catalog import load_catalog
from segpipe.errors import InputError
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore


def test_ingest_round_trips_real_files_and_metadata(crop_catalog, tmp_path, data_dir):
    dataset = load_catalog(crop_catalog).dataset("crops")
    store = tmp_path / "data.zarr"
    result = ingest_dataset(dataset, store, progress=False)
    assert not result.skipped and result.n_images == 4
    images = ImageStore.open(store).images()
    assert [im.split for im in images] == ["train", "train", "validation", "test"]
    for im in images:
        source = tifffile.imread(crop_catalog.parent / "images" / f"{im.name}.tif")
        labels = tifffile.imread(crop_catalog.parent / "labels" / f"{im.name}.tif")
        np.testing.assert_array_equal(im.image[0], source)
        np.testing.assert_array_equal(im.labels[...], labels)
        assert im.image.dtype == source.dtype
    group = zarr.open_group(str(store / images[0].name), mode="r")
    ome = group.attrs["ome"]
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["c", "y", "x"]
    assert group["labels"].attrs["ome"]["labels"] == ["gt"]


def test_unchanged_source_is_skipped_and_changed_one_reingested(crop_catalog, tmp_path):
    dataset = load_catalog(crop_catalog).dataset("crops")
    store = tmp_path / "data.zarr"
    first = ingest_dataset(dataset, store, progress=False)
    assert ingest_dataset(dataset, store, progress=False).skipped
    image = crop_catalog.parent / "images" / "A9_p9d.tif"
    tifffile.imwrite(image, tifffile.imread(image) // 2)
    second = ingest_dataset(dataset, store, progress=False)
    assert not second.skipped and second.fingerprint != first.fingerprint


def test_region_split_crops_one_image(data_dir, tmp_path):
    catalog = load_catalog(data_dir.parent / "data_catalog.yaml")
    store = tmp_path / "dsb.zarr"
    ingest_dataset(catalog.dataset("dsb2018-nuclei"), store, progress=False)
    full = tifffile.imread(data_dir / "dsb2018-nuclei-2d" / "image.tif")
    test = ImageStore.open(store).images("test")[0]
    np.testing.assert_array_equal(test.image[0], full[368:512])


def test_bad_tiff_is_refused_and_nothing_is_left(crop_catalog, tmp_path):
    bad = crop_catalog.parent / "images" / "A9_p9d.tif"
    bad.write_bytes(b"this is not a TIFF")
    dataset = load_catalog(crop_catalog).dataset("crops")
    with pytest.raises(InputError, match=r"A9_p9d.tif: not a TIFF file"):
        ingest_dataset(dataset, tmp_path / "data.zarr", progress=False)
    assert list(tmp_path.glob("*data.zarr*")) == []


def test_shape_mismatch_names_both_files(crop_catalog, tmp_path):
    labels = crop_catalog.parent / "labels" / "A9_p9d.tif"
    tifffile.imwrite(labels, tifffile.imread(labels)[:100])
    dataset = load_catalog(crop_catalog).dataset("crops")
    with pytest.raises(InputError, match=r"A9_p9d.tif has spatial shape \(160, 160\) but its labels .* \(100, 160\)"):
        ingest_dataset(dataset, tmp_path / "data.zarr", progress=False)


def test_time_split_of_the_phase_contrast_movie(data_dir, tmp_path):
    """c2c12-phase: frames 8 and 9 are the test split, stored unchanged with their whole-cell masks."""
    catalog = load_catalog(data_dir.parent / "data_catalog.yaml")
    store = tmp_path / "c2c12.zarr"
    ingest_dataset(catalog.dataset("c2c12-phase"), store, progress=False)
    opened = ImageStore.open(store)
    assert [len(opened.images(split)) for split in ("train", "validation", "test")] == [6, 2, 2]
    for image in opened.images("test", labelled=True):
        np.testing.assert_array_equal(image.image[0], tifffile.imread(data_dir / "c2c12-phase" / "images" / f"{image.name}.tif"))
        assert len(np.unique(image.labels[...])) - 1 == 13  # cells in frames 8 and 9 (SOURCE.txt)
