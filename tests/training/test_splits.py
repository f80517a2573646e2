"""The in-memory splits training checks itself on: training images for tuning, cropped to a pixel budget."""

import numpy as np
import pytest

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.inference.normalize import NormalizationSpec, normalize
from segpipe.training.splits import tuning_training_set

SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)


@pytest.fixture
def store(crop_catalog, tmp_path):
    path = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), path, progress=False)
    return ImageStore.open(path)


def test_tuning_takes_training_images_up_to_its_pixel_budget(store):
    train = store.images("train", labelled=True)
    both = tuning_training_set(store, SPEC, pixels=2 * 160 * 160)
    assert [im.name for im, _, _, _ in both] == [im.name for im in train]
    one = tuning_training_set(store, SPEC, pixels=2 * 160 * 160 - 1)
    assert [im.name for im, _, _, _ in one] == [train[0].name]
    np.testing.assert_array_equal(one[0][2], np.asarray(train[0].labels))
    np.testing.assert_allclose(one[0][1], normalize(np.asarray(train[0].image), SPEC))


def test_a_training_image_over_the_budget_gives_its_centre(store):
    (im, image, labels, ignored), = tuning_training_set(store, SPEC, pixels=80 * 80)
    assert image.shape == (1, 80, 80) and labels.shape == (80, 80) and ignored is None
    np.testing.assert_array_equal(labels, np.asarray(im.labels)[40:120, 40:120])
    np.testing.assert_allclose(image, normalize(np.asarray(im.image)[:, 40:120, 40:120], SPEC))


def test_a_cropped_training_image_keeps_its_unannotated_pixels(tmp_path):
    import tifffile

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    labels = np.zeros((48, 48), np.uint16)
    labels[14:24, 14:24] = 1
    labels[26:34, 26:34] = 9  # 9: not annotated
    tifffile.imwrite(tmp_path / "img" / "a.tif", np.random.default_rng(0).integers(0, 999, (48, 48)).astype(np.uint16))
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    ignore_label: 9\n    split: {train: [a]}\n"
    )
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("d"), tmp_path / "d.zarr", progress=False)
    (_, image, crop, ignored), = tuning_training_set(ImageStore.open(tmp_path / "d.zarr"), SPEC, pixels=24 * 24)
    assert image.shape == (1, 24, 24)
    np.testing.assert_array_equal(ignored, labels[12:36, 12:36] == 9)
    np.testing.assert_array_equal(crop > 0, labels[12:36, 12:36] == 1)
