"""Ingested stores as viewers read them: pyramid levels, their scale and translation, region origins, the root's list.

Read back with ome-zarr-py's Reader and validated with ome-zarr-models, against levels computed
here by hand (block means with skimage, picked labels) and translations worked out from the
pixel size and the region's start.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr
from skimage.measure import block_reduce

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset

from ingest_helpers import write_catalog

SPACING = (0.5, 0.25)


def _reader_nodes(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = list(Reader(parse_url(str(path)))())
    image = next(n for n in nodes if not n.load(Label))
    labels = {n.zarr.basename(): n for n in nodes if n.load(Label)}
    return image, labels


@pytest.fixture
def field(tmp_path):
    """A 1100x600 uint16 image with 40 square objects, its labels, and a catalog (y 0.5, x 0.25 micrometer)."""
    rng = np.random.default_rng(0)
    image = rng.integers(100, 400, (1100, 600)).astype(np.uint16)
    labels = np.zeros((1100, 600), np.uint16)
    for k in range(1, 41):
        y, x = rng.integers(0, 1060, 1)[0], rng.integers(0, 560, 1)[0]
        labels[y : y + 30, x : x + 30] = k
        image[y : y + 30, x : x + 30] += 2000
    for sub, array in (("img", image), ("lab", labels)):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "f.tif", array)
    write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, spacing=list(SPACING),
                  split={"train": ["f"]})
    return tmp_path, image, labels


@pytest.mark.parametrize("slab_mib", [32.0, 0.05], ids=["in-memory", "streamed"])
def test_levels_are_block_means_and_picked_labels_with_their_scale_and_shift(field, slab_mib):
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    folder, image, labels = field
    store = folder / "data.zarr"
    ingest_dataset(load_catalog(folder / "catalog.yaml").dataset("d"), store, IngestParams(max_slab_mib=slab_mib),
                   progress=False)
    # 1100x600 -> 550x300 -> 275x150 (150 <= 256: no further level); 550 and 300 are even, so
    # each level is the rounded mean of 2x2 blocks of the one before
    level1 = np.rint(block_reduce(image.astype(np.float64), (2, 2), np.mean)).astype(np.uint16)
    level2 = np.rint(block_reduce(level1.astype(np.float64), (2, 2), np.mean)).astype(np.uint16)

    node, label_nodes = _reader_nodes(store / "f")
    assert [tuple(d.shape) for d in node.data] == [(1, 1100, 600), (1, 550, 300), (1, 275, 150)]
    for level, expected in ((1, level1), (2, level2)):
        np.testing.assert_array_equal(np.asarray(node.data[level])[0], expected)
    # a level-k pixel averages 2^k x 2^k pixels: its centre lies (2^k - 1) / 2 pixels in
    assert node.metadata["coordinateTransformations"] == [
        [{"type": "scale", "scale": [1.0, 0.5, 0.25]}],
        [{"type": "scale", "scale": [1.0, 1.0, 0.5]}, {"type": "translation", "translation": [0.0, 0.25, 0.125]}],
        [{"type": "scale", "scale": [1.0, 2.0, 1.0]}, {"type": "translation", "translation": [0.0, 0.75, 0.375]}],
    ]
    gt = label_nodes["gt"]
    for level, step in enumerate((1, 2, 4)):
        np.testing.assert_array_equal(np.asarray(gt.data[level]), labels[::step, ::step])
    assert gt.metadata["coordinateTransformations"] == [
        [{"type": "scale", "scale": [0.5, 0.25]}], [{"type": "scale", "scale": [1.0, 0.5]}],
        [{"type": "scale", "scale": [2.0, 1.0]}],
    ]
    assert node.metadata["channel_names"] == ["image"]
    assert node.metadata["contrast_limits"] == [[float(image.min()), float(image.max())]]

    group = zarr.open_group(str(store / "f"), mode="r")
    Image.from_zarr(group)  # raises on any NGFF 0.5 violation
    ImageLabel.from_zarr(group["labels/gt"])
    assert group["s1"].chunks == group["s0"].chunks[:1] + tuple(min(c, s) for c, s in zip(group["s0"].chunks[1:], (550, 300)))


def test_no_pyramid_writes_the_full_resolution_only(field):
    folder, image, _ = field
    store = folder / "flat.zarr"
    ingest_dataset(load_catalog(folder / "catalog.yaml").dataset("d"), store, IngestParams(pyramid=False), progress=False)
    group = zarr.open_group(str(store / "f"), mode="r")
    assert sorted(group.array_keys()) == ["s0"] and sorted(group["labels/gt"].array_keys()) == ["s0"]
    assert [d["path"] for d in group.attrs["ome"]["multiscales"][0]["datasets"]] == ["s0"]


def test_region_split_images_lie_where_they_are_cut_and_the_root_lists_every_image(tmp_path):
    from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
    from ome_zarr_models.v05.image import Image

    rng = np.random.default_rng(2)
    full = rng.integers(0, 1000, (120, 90)).astype(np.uint16)
    labels = (full > 500).astype(np.uint8)
    for sub, array in (("img", full), ("lab", labels)):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "big.tif", array)
    regions = {"train": [[0, 70], [0, 90]], "validation": [[70, 100], [0, 90]], "test": [[100, 120], [30, 90]]}
    write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, spacing=[2.0, 3.0],
                  split={"regions": regions})
    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("d"), store, progress=False)

    names = ["big-train", "big-validation", "big-test"]
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    assert root["OME"].attrs["ome"]["series"] == names
    xml = (store / "OME" / "METADATA.ome.xml").read_text()
    assert xml.count("<Image ") == 3 and 'ID="Image:big-test" Name="big-test"' in xml and 'SizeX="60" SizeY="20"' in xml
    BioFormats2Raw.from_zarr(root)  # the root's metadata is valid NGFF 0.5
    origins = {"big-train": (0.0, 0.0), "big-validation": (70 * 2.0, 0.0), "big-test": (100 * 2.0, 30 * 3.0)}
    for name in names:
        node, label_nodes = _reader_nodes(store / name)
        Image.from_zarr(root[name])
        y, x = origins[name]
        image_transforms = node.metadata["coordinateTransformations"][0]
        label_transforms = label_nodes["gt"].metadata["coordinateTransformations"][0]
        if name == "big-train":  # at the origin: no translation
            assert image_transforms == [{"type": "scale", "scale": [1.0, 2.0, 3.0]}]
        else:
            assert image_transforms[1] == {"type": "translation", "translation": [0.0, y, x]}
            assert label_transforms[1] == {"type": "translation", "translation": [y, x]}
        # the region's first pixel, placed by its translation, is the full image's pixel there
        row, col = int(y / 2.0), int(x / 3.0)
        assert np.asarray(node.data[0])[0, 0, 0] == full[row, col]
    record = json.loads((store / "zarr.json").read_text())["attributes"]["segpipe"]
    assert [info["origin"] for info in record["images"]] == [None, [140.0, 0.0], [200.0, 90.0]]
