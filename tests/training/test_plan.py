"""Self-configuration: the fingerprint of a real store and the defaults planned from it."""

import numpy as np
import pytest
import tifffile

from segpipe.data.catalog import load_catalog
from segpipe.training.params import TrainParams
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.errors import InputError
from segpipe.training.plan import EPOCHS, fingerprint_store, plan_patch_size, plan_training


@pytest.mark.parametrize(
    ("shape", "spacing", "expected"),
    [
        ((400, 450), (1.0, 1.0), (128, 128)),  # large enough: the target edge
        ((100, 450), (1.0, 1.0), (96, 128)),  # smaller than the target: rounded down to a multiple of 16
        ((64, 200, 200), (1.0, 1.0, 1.0), (64, 64, 64)),
        ((60, 200, 200), (4.0, 1.0, 1.0), (16, 64, 64)),  # 4x coarser z: a quarter of the voxels
        ((31, 36, 57), (1.0, 1.0, 1.0), (16, 32, 48)),  # never larger than the image
        ((8, 10), (1.0, 1.0), (16, 16)),  # at least 16 (padded)
    ],
)
def test_patch_size_fits_the_images_and_the_spacing(shape, spacing, expected):
    assert plan_patch_size(list(shape), list(spacing)) == expected


def test_fingerprint_of_a_store_matches_its_images(crop_catalog, tmp_path):
    dataset = load_catalog(crop_catalog).dataset("crops")
    ingest_dataset(dataset, tmp_path / "data.zarr", progress=False)
    fingerprint = fingerprint_store(ImageStore.open(tmp_path / "data.zarr"))

    train = dataset.split("train")
    images = [tifffile.imread(r.image) for r in train]
    labels = [tifffile.imread(r.labels) for r in train]
    assert fingerprint["n_train"] == len(train) and fingerprint["channels"] == 1
    assert fingerprint["median_shape"] == [int(v) for v in np.median([im.shape for im in images], axis=0)]
    assert fingerprint["objects_per_image"] == pytest.approx(np.mean([len(np.unique(lab)) - 1 for lab in labels]))
    assert fingerprint["intensity_p1"] == pytest.approx(np.median([np.percentile(im, 1.0) for im in images]), rel=0.05)


def test_planning_fills_only_what_the_config_leaves_open():
    fingerprint = {"median_shape": [100, 450], "median_spacing": [1.0, 1.0]}
    planned = plan_training(fingerprint, TrainParams(patch_size=None, batch_size=None, features=None))
    assert planned.patch_size == (96, 128) and planned.batch_size == 8 and planned.features[0] == 16
    assert planned.epochs == EPOCHS[2] and planned.max_minutes is None  # a fixed schedule, no clock
    kept = plan_training(fingerprint, TrainParams(patch_size=(64, 64), batch_size=3, epochs=7))
    assert kept.patch_size == (64, 64) and kept.batch_size == 3 and kept.epochs == 7
    with pytest.raises(InputError, match="has 3 axes, the data has 2"):
        plan_training(fingerprint, TrainParams(patch_size=(32, 32, 32)))
