"""The store: readable by ome-zarr-py, valid NGFF 0.5, chunked and compressed, idempotent, atomic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import zarr

from segpipe.data.catalog import load_catalog
from segpipe.errors import StoreError
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.store import ImageStore, open_store, read_record

from ingest_helpers import assert_same_stores, write_random_pairs


def test_store_opens_with_ome_zarr_reader_and_validates_as_ngff_05(crop_catalog, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    name = ImageStore.open(store).images()[0].name
    source = tifffile.imread(crop_catalog.parent / "images" / f"{name}.tif")
    labels = tifffile.imread(crop_catalog.parent / "labels" / f"{name}.tif")

    nodes = list(Reader(parse_url(str(store / name)))())
    image_node = next(n for n in nodes if n.load(Multiscales) and not n.load(Label))
    label_node = next(n for n in nodes if n.load(Label))
    np.testing.assert_array_equal(np.asarray(image_node.data[0])[0], source)
    np.testing.assert_array_equal(np.asarray(label_node.data[0]), labels)
    assert [a["name"] for a in image_node.metadata["axes"]] == ["c", "y", "x"]

    group = zarr.open_group(str(store / name), mode="r")
    model = Image.from_zarr(group)  # raises on any NGFF 0.5 violation
    assert model.attributes.ome.version == "0.5"
    assert ImageLabel.from_zarr(group["labels/gt"]).attributes.ome.version == "0.5"


def test_chunks_and_compressor(tmp_path, ingest):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    image = np.random.default_rng(0).integers(0, 999, (70, 300, 130)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img" / "v.tif", image)
    tifffile.imwrite(tmp_path / "lab" / "v.tif", (image > 500).astype(np.uint8))
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=3, split={"train": ["v"]})["v"]
    assert stored.image.chunks == (1, 64, 64, 64) and stored.labels.chunks == (64, 64, 64)
    codec = stored.image.metadata.codecs[-1]
    assert type(codec).__name__ == "BloscCodec" and codec.cname.value == "lz4"
    # a tight slab budget gives thinner, wider chunks: 8 planes of 300x130 uint16 fit in 0.6 MiB
    dataset = load_catalog(tmp_path / "catalog.yaml").dataset("d")
    ingest_dataset(dataset, tmp_path / "thin.zarr", progress=False, params=IngestParams(max_slab_mib=0.6))
    thin = ImageStore.open(tmp_path / "thin.zarr").images()[0]
    assert thin.image.chunks == (1, 8, 128, 128)
    np.testing.assert_array_equal(thin.image[0], image)


def test_touched_but_unchanged_sources_are_skipped_and_training_keys_do_not_matter(crop_catalog, tmp_path):
    dataset = load_catalog(crop_catalog).dataset("crops")
    store = tmp_path / "data.zarr"
    first = ingest_dataset(dataset, store, progress=False)
    image = crop_catalog.parent / "images" / "A9_p9d.tif"
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))  # new time, same bytes
    text = crop_catalog.read_text().replace("batch_size: 2", "batch_size: 3")
    crop_catalog.write_text(text)
    again = ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    assert again.skipped and again.fingerprint == first.fingerprint
    tifffile.imwrite(image, tifffile.imread(image)[::-1].copy())
    changed = ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    assert not changed.skipped and changed.fingerprint != first.fingerprint


def test_parallel_ingest_equals_serial(crop_catalog, tmp_path):
    dataset = load_catalog(crop_catalog).dataset("crops")
    ingest_dataset(dataset, tmp_path / "one.zarr", progress=False, params=IngestParams(workers=1))
    ingest_dataset(dataset, tmp_path / "four.zarr", progress=False, params=IngestParams(workers=4))
    assert_same_stores(tmp_path / "one.zarr", tmp_path / "four.zarr")


SLOW_INGEST = """
import sys
from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset
dataset = load_catalog(sys.argv[1]).dataset("d")
ingest_dataset(dataset, sys.argv[2], progress=False, params=IngestParams(workers=1))
"""


def test_ingest_killed_mid_write_leaves_no_complete_store_and_reruns(tmp_path):
    names = [f"i{k:02d}" for k in range(60)]
    catalog = write_random_pairs(tmp_path, names, size=128)
    store = tmp_path / "out" / "data.zarr"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_INGEST, str(catalog), str(store)])
    deadline = time.monotonic() + 120
    killed_with = 0
    while time.monotonic() < deadline and proc.poll() is None:
        partials = list(store.parent.glob(".data.zarr.partial-*")) if store.parent.exists() else []
        if partials and len(list(partials[0].glob("i*/s0/zarr.json"))) >= 3:
            killed_with = len(list(partials[0].glob("i*/s0/zarr.json")))
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "ingest finished before it could be killed"
    assert 3 <= killed_with < len(names)
    assert not store.exists()
    assert read_record(store) is None
    with pytest.raises(StoreError, match="no zarr store here"):
        open_store(store)
    leftover = list(store.parent.glob(".data.zarr.partial-*"))
    assert len(leftover) == 1  # what the killed run was writing; never taken for a store

    result = ingest_dataset(load_catalog(catalog).dataset("d"), store, progress=False)
    assert result.n_images == len(names) and not result.skipped
    assert sorted(p.name for p in store.parent.iterdir()) == ["data.zarr"]  # the leftover is gone
    assert len(ImageStore.open(store).images()) == len(names)


def test_interrupted_replacement_keeps_the_previous_store(crop_catalog, tmp_path):
    """A run killed between setting the old store aside and moving the new one in: the old one comes back."""
    from segpipe.data.ingest.atomic import clean_stale

    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = store.with_name(f".data.zarr.old-{int(dead.stdout)}-0123abcd")
    store.rename(aside)
    assert clean_stale(store) == [aside]
    assert len(ImageStore.open(store).images()) == 4


def test_a_file_where_the_store_goes_is_refused_and_left_alone(crop_catalog, tmp_path):
    """The store was written and the file set aside as a hidden .old- file, then the ingest said
    "a path component is a file, not a folder"; the next ingest said "up to date"."""
    store = tmp_path / "out" / "data.zarr"
    store.parent.mkdir()
    store.write_text("mine")
    with pytest.raises(StoreError, match=r"data.zarr: a file, where the store \(a folder\) goes; move it away"):
        ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    assert [p.name for p in store.parent.iterdir()] == ["data.zarr"] and store.read_text() == "mine"


@pytest.mark.parametrize("where", ["local", "memory"])
def test_small_image_group_written_in_one_go_reads_back(tmp_path, where):
    from segpipe.data.store import write_small_image_group

    store = str(tmp_path / "s.zarr") if where == "local" else zarr.storage.MemoryStore()
    parent = zarr.open_group(store, mode="w").create_group("nested")
    image = np.arange(2 * 40 * 30, dtype=np.uint16).reshape(2, 40, 30)
    labels = (image[0] % 7).astype(np.uint8)
    write_small_image_group(parent, "im", image, labels, ndim=2, spacing=(0.5, 0.25), unit="micrometer",
                            chunks=(2, 32, 32))
    group = zarr.open_group(store, mode="r")["nested/im"]
    np.testing.assert_array_equal(group["s0"][...], image)
    np.testing.assert_array_equal(group["labels/gt/s0"][...], labels)
    assert group["s0"].chunks == (2, 32, 32) and group["labels/gt/s0"].chunks == (32, 32)
    scale = group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 0.5, 0.25]
    assert group["labels"].attrs["ome"]["labels"] == ["gt"]


@pytest.mark.parametrize("where", ["local", "memory"])
@pytest.mark.parametrize("nested", [False, True])
def test_small_image_group_leaves_the_groups_above_it_alone(tmp_path, where, nested):
    """The nodes above the new group (its parent, the root) keep their attributes and their metadata
    files are not written again: worker processes open the root while others write their images,
    and a root ``zarr.json`` rewritten in place reads as empty to them."""
    from segpipe.data.store import write_small_image_group

    store = str(tmp_path / "s.zarr") if where == "local" else zarr.storage.MemoryStore()
    root = zarr.open_group(store, mode="w", attributes={"kept": "root"})
    parent = root.create_group("nested", attributes={"kept": "nested"}) if nested else root
    above = tmp_path / "s.zarr" / ("nested" if nested else "") / "zarr.json"
    before = above.stat().st_mtime_ns if where == "local" else None
    image = np.arange(2 * 40 * 30, dtype=np.uint16).reshape(2, 40, 30)
    write_small_image_group(parent, "im", image, (image[0] % 7).astype(np.uint8), ndim=2, spacing=(1.0, 1.0),
                            unit="micrometer", chunks=(2, 32, 32))
    reopened = zarr.open_group(store, mode="r")
    assert reopened.attrs["kept"] == "root"
    if nested:
        assert reopened["nested"].attrs["kept"] == "nested"
    if where == "local":
        assert above.stat().st_mtime_ns == before
    np.testing.assert_array_equal(reopened["nested/im/s0" if nested else "im/s0"][...], image)


def _ingest_unlabelled(tmp_path, caplog, extra: str = "") -> str:
    """One TIFF without a pixel size in an entry without labels (and ``extra``), ingested; the warnings logged."""
    import logging

    import numpy as np
    import tifffile

    from segpipe.data.catalog import load_catalog

    (tmp_path / "img").mkdir()
    tifffile.imwrite(tmp_path / "img" / "a.tif", np.arange(48, dtype=np.uint16).reshape(6, 8))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  new:\n    images: img/*.tif\n" + extra)
    with caplog.at_level(logging.WARNING, logger="segpipe.data.ingest.run"):
        ingest_dataset(load_catalog(catalog).dataset("new"), tmp_path / "data.zarr", progress=False)
    return caplog.text


def test_images_without_labels_are_stored_without_ground_truth(tmp_path, caplog):
    import numpy as np

    said = _ingest_unlabelled(tmp_path, caplog)
    assert "1 image(s) have no pixel size in their file (first: " in said and "a.tif" in said
    assert "set spacing: [y, x]" in said and "unit:" not in said.split("taking")[1].split(". If")[0]
    store = ImageStore.open(tmp_path / "data.zarr")
    (image,) = store.images()
    assert not store.labelled and image.labels is None and image.split == "test"
    assert image.info["spacing_source"] == "default" and store.names("test", labelled=True) == []
    np.testing.assert_array_equal(image.image[0], np.arange(48).reshape(6, 8))


def test_a_unit_given_without_a_pixel_size_to_files_without_one_is_said_unused(tmp_path, caplog):
    """``unit: nm`` alone on files without a pixel size was dropped without a word (the store says micrometer)."""
    said = _ingest_unlabelled(tmp_path, caplog, "    unit: nm\n")
    assert ("; taking 1 micrometer per pixel (unit: nanometer names the unit of a pixel size, and none is given: it is "
            "not used). If that is wrong") in said


def test_a_catalog_spacing_other_than_the_files_own_is_said(tmp_path, caplog):
    """spacing: [0.5, 0.5] (um) over an OME-TIFF that says 0.2 nm per pixel, and over one that says
    0.0005 mm (the same size in another unit): one warning naming the first, which keeps the
    catalog's size; the file that agrees is not counted. (Areas followed the catalog without a word.)"""
    import logging

    import numpy as np
    import tifffile

    from segpipe.data.catalog import load_catalog

    (tmp_path / "img").mkdir()
    image = np.arange(48, dtype=np.uint16).reshape(6, 8)
    tifffile.imwrite(tmp_path / "img" / "a.tif", image, ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
                               "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm"})
    tifffile.imwrite(tmp_path / "img" / "b.tif", image, ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.0005, "PhysicalSizeY": 0.0005,
                               "PhysicalSizeXUnit": "mm", "PhysicalSizeYUnit": "mm"})
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  new:\n    images: img/*.tif\n    spacing: [0.5, 0.5]\n    unit: um\n")
    with caplog.at_level(logging.WARNING, logger="segpipe.data.ingest.run"):
        ingest_dataset(load_catalog(catalog).dataset("new"), tmp_path / "data.zarr", progress=False)
    said = [r.getMessage() for r in caplog.records if "another pixel size" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert said[0].startswith("new: 1 image(s) give another pixel size in their file than spacing: in the catalog (first: ")
    assert "a.tif, its file 0.2 x 0.2 nanometer, the catalog 0.5 x 0.5 micrometer); the catalog's is used" in said[0]
    images = {image.name: image for image in ImageStore.open(tmp_path / "data.zarr").images()}
    assert images["a"].spacing == images["b"].spacing == (0.5, 0.5)
    assert images["a"].info["file_spacing"] == "0.2 x 0.2 nanometer" and images["b"].info["file_spacing"] is None
