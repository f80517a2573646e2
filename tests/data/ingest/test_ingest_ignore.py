"""Sparse ground truth at ingest: an ignore value and ignore masks become the store's labels/ignore map."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams
from segpipe.errors import CatalogError, InputError

from ingest_helpers import write_catalog

SHAPE = (40, 60)


def write_sparse(folder):
    """Three images: ``a`` marks its unannotated area by the value 65535, ``b`` by a mask, ``c`` is annotated throughout."""
    rng = np.random.default_rng(0)
    for sub in ("img", "lab", "ign"):
        (folder / sub).mkdir()
    labels = {name: np.zeros(SHAPE, np.uint16) for name in "abc"}
    for array in labels.values():
        array[5:15, 5:15], array[20:30, 30:45] = 1, 2
    labels["a"][30:40, 0:20] = 65535
    mask = np.zeros(SHAPE, np.uint8)
    mask[0:25, 25:60] = 255  # also over object 2: a mask never hides an annotated object
    for name in "abc":
        tifffile.imwrite(folder / "img" / f"{name}.tif", rng.integers(0, 4000, SHAPE).astype(np.uint16))
        tifffile.imwrite(folder / "lab" / f"{name}.tif", labels[name])
    tifffile.imwrite(folder / "ign" / "b_ignore.tif", mask)
    entry = dict(
        images="img/*.tif", labels="lab/*.tif", ignore_label=65535, ignore_masks="ign/*.tif", ignore_suffix="_ignore",
        split={"train": ["a", "b"], "test": ["c"]},
    )
    return labels, mask, entry


@pytest.mark.parametrize("max_slab_mib", [32.0, 0.001], ids=["whole", "streamed"])
def test_ignore_value_and_masks_become_the_ignore_map(tmp_path, ingest, max_slab_mib):
    labels, mask, entry = write_sparse(tmp_path)
    stored = ingest(tmp_path, options=IngestParams(max_slab_mib=max_slab_mib), **entry)
    a, b, c = stored["a"], stored["b"], stored["c"]
    # the ignore value is background in the ground truth, whose other values are kept as they are
    np.testing.assert_array_equal(a.labels[...], np.where(labels["a"] == 65535, 0, labels["a"]))
    assert a.labels.dtype == np.uint8  # the largest label is 2 once the ignore value is out
    np.testing.assert_array_equal(a.ignored(), labels["a"] == 65535)
    np.testing.assert_array_equal(b.labels[...], labels["b"])
    np.testing.assert_array_equal(b.ignored(), (mask > 0) & (labels["b"] == 0))
    assert a.info["ignored_pixels"] == 200 and b.info["ignored_pixels"] == 25 * 35 - 5 * 15
    assert b.info["ignore_source"].endswith("b_ignore.tif") and a.info["ignore_source"] is None
    assert c.ignore is None and c.ignored() is None and c.info["ignored_pixels"] == 0
    assert "ignore" not in zarr.open_group(str(ingest.store / "c"), mode="r")["labels"]


def test_the_store_with_an_ignore_map_is_valid_ome_zarr(tmp_path, ingest):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    labels, _, entry = write_sparse(tmp_path)
    ingest(tmp_path, **entry)
    group = zarr.open_group(str(ingest.store / "a"), mode="r")
    Image.from_zarr(group)  # raises on any NGFF 0.5 violation
    assert ImageLabel.from_zarr(group["labels/ignore"]).attributes.ome.version == "0.5"
    assert group["labels"].attrs["ome"]["labels"] == ["gt", "ignore"]
    nodes = [n for n in Reader(parse_url(str(ingest.store / "a")))() if n.load(Label)]
    assert sorted(np.asarray(n.data[0]).max() for n in nodes) == [1, 2]


@pytest.mark.parametrize("max_slab_mib", [32.0, 0.001], ids=["whole", "streamed"])
def test_the_ignore_map_has_the_ground_truths_levels_picked_and_stays_uint8(tmp_path, ingest, max_slab_mib):
    from ome_zarr_models.v05.image_label import ImageLabel

    labels, _, entry = write_sparse(tmp_path)
    # 40x60 -> 20x30 -> 10x15 (10 <= 16: no further level)
    ingest(tmp_path, options=IngestParams(max_slab_mib=max_slab_mib, pyramid_min_size=16), **entry)
    group = zarr.open_group(str(ingest.store / "a"), mode="r")
    assert group["labels"].attrs["ome"]["labels"] == ["gt", "ignore"]
    ignored = (labels["a"] == 65535).astype(np.uint8)
    for level, step in enumerate((1, 2, 4)):
        array = group[f"labels/ignore/s{level}"]
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array[...], ignored[::step, ::step])
    gt, ignore = (group[f"labels/{name}"].attrs["ome"]["multiscales"][0]["datasets"] for name in ("gt", "ignore"))
    assert ignore == gt and [d["path"] for d in ignore] == ["s0", "s1", "s2"]
    ImageLabel.from_zarr(group["labels/ignore"])  # raises on any NGFF 0.5 violation
    properties = group["labels/ignore"].attrs["ome"]["image-label"]["properties"]
    assert [(p["label-value"], p["class"]) for p in properties] == [(0, "annotated"), (1, "not annotated")]
    assert sorted(group["labels/ignore"].array_keys()) == sorted(group["labels/gt"].array_keys())


def test_an_ignore_mask_of_the_wrong_shape_is_one_error_naming_it(tmp_path, ingest, leftovers):
    _, _, entry = write_sparse(tmp_path)
    tifffile.imwrite(tmp_path / "ign" / "b_ignore.tif", np.zeros((40, 61), np.uint8))
    with pytest.raises(InputError) as err:
        ingest(tmp_path, **entry)
    assert str(err.value) == (
        f"{tmp_path / 'ign' / 'b_ignore.tif'}: ignore mask has spatial shape (40, 61) but its image "
        f"{tmp_path / 'img' / 'b.tif'} has (40, 60)"
    )
    assert leftovers() == []


@pytest.mark.parametrize("how", ["mask", "value"])
def test_marks_that_leave_no_background_annotated_are_one_error_naming_them(tmp_path, ingest, leftovers, how):
    """A mask over the whole image was ingested: training saw no background and the report scored the
    image as if its background were known."""
    labels, _, entry = write_sparse(tmp_path)
    if how == "mask":
        tifffile.imwrite(tmp_path / "ign" / "b_ignore.tif", np.ones(SHAPE, np.uint8))
        named = f"ignore mask {tmp_path / 'ign' / 'b_ignore.tif'}: marks every pixel of b outside its objects"
    else:
        tifffile.imwrite(tmp_path / "lab" / "a.tif", np.where(labels["a"] == 0, 65535, labels["a"]).astype(np.uint16))
        named = f"ignore_label in {tmp_path / 'lab' / 'a.tif'}: marks every pixel of a outside its objects"
    with pytest.raises(InputError) as err:
        ingest(tmp_path, **entry)
    assert str(err.value).startswith(named + " as not annotated, so nothing there is known background"), str(err.value)
    assert leftovers() == []


def test_the_catalog_refuses_ignore_marks_that_fit_nothing(tmp_path):
    _, _, entry = write_sparse(tmp_path)
    tifffile.imwrite(tmp_path / "ign" / "z_ignore.tif", np.zeros(SHAPE, np.uint8))
    with pytest.raises(CatalogError, match=r"ignore mask .*z_ignore.tif names no image"):
        load_catalog(write_catalog(tmp_path, **entry)).dataset("d")
    with pytest.raises(CatalogError, match=r"ignore_label: 1 is the class 'object'; use a value that is no class \(>= 2"):
        load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", instances=False, ignore_label=1,
                                   split={"train": ["a", "b", "c"]})).check()
    with pytest.raises(CatalogError, match="the dataset has no labels"):
        load_catalog(write_catalog(tmp_path, images="img/*.tif", ignore_label=255)).check()


def test_class_maps_take_an_ignore_value_beyond_their_classes(tmp_path, ingest):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    classes = np.array([[0, 1, 255], [2, 255, 0]], np.uint8).repeat(10, 0).repeat(10, 1)
    tifffile.imwrite(tmp_path / "img" / "s.tif", np.arange(classes.size, dtype=np.uint16).reshape(classes.shape))
    tifffile.imwrite(tmp_path / "lab" / "s.tif", classes)
    stored = ingest(tmp_path, images="img/*.tif", labels="lab/*.tif", instances=False, ignore_label=255,
                    classes=["background", "a", "b"], split={"train": ["s"]})["s"]
    np.testing.assert_array_equal(stored.labels[...], np.where(classes == 255, 0, classes))
    np.testing.assert_array_equal(stored.ignored(), classes == 255)


def test_ctc_ignore_masks_sit_beside_the_ground_truth_named_like_it(tmp_path, ingest):
    for folder in ("01", "01_GT/SEG", "01_GT/IGNORE"):
        (tmp_path / folder).mkdir(parents=True)
    frame = np.random.default_rng(1).integers(0, 255, SHAPE).astype(np.uint8)
    gt = np.zeros(SHAPE, np.uint16)
    gt[5:15, 5:15] = 7
    mask = np.zeros(SHAPE, np.uint8)
    mask[20:, :] = 1
    for t in range(2):
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", frame + t)
        tifffile.imwrite(tmp_path / "01_GT/SEG" / f"man_seg{t:03d}.tif", gt)
    tifffile.imwrite(tmp_path / "01_GT/IGNORE" / "man_seg001.tif", mask)
    entry = dict(format="ctc", images="01", ignore_masks="{seq}_GT/IGNORE", split={"train": ["01"]})
    stored = ingest(tmp_path, **entry)
    assert stored["01-t000"].ignore is None
    np.testing.assert_array_equal(stored["01-t001"].ignored(), mask > 0)
    np.testing.assert_array_equal(stored["01-t001"].labels[...], gt)

    tifffile.imwrite(tmp_path / "01_GT/IGNORE" / "man_seg002.tif", mask)
    with pytest.raises(CatalogError, match=r"ignore mask .*man_seg002.tif is named like no annotation"):
        load_catalog(write_catalog(tmp_path, **entry)).dataset("d")
    (tmp_path / "01_GT/IGNORE" / "man_seg002.tif").unlink()
    # a template naming no folder beside any sequence, or without {seq}: a typo, not "annotated throughout"
    with pytest.raises(CatalogError, match=r"ignore_masks: '\{seq\}_GT/IGNOREX' names no folder beside any sequence"):
        load_catalog(write_catalog(tmp_path, **{**entry, "ignore_masks": "{seq}_GT/IGNOREX"})).dataset("d")
    with pytest.raises(CatalogError, match=r"ignore_masks: for ctc, one folder template with \{seq\}"):
        load_catalog(write_catalog(tmp_path, **{**entry, "ignore_masks": "ctc/ignore/*.tif"})).check()
