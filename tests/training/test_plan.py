"""Self-configuration: the fingerprint of a real store and the defaults planned from it."""

import numpy as np
import pytest
import tifffile

from segpipe.data.catalog import load_catalog
from segpipe.training.loop import network_options
from segpipe.training.params import TrainParams
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.errors import InputError
from segpipe.training.plan import (
    EPOCHS,
    ITERATIONS,
    fingerprint_store,
    normalization_spec,
    plan_object_size,
    patch_edge,
    plan_patch_size,
    plan_pools,
    plan_spacing,
    plan_training,
)


@pytest.mark.parametrize(
    ("shape", "spacing", "edge", "expected"),
    [
        ((400, 450), (1.0, 1.0), None, (128, 128)),  # large enough: the 2D target edge
        ((100, 450), (1.0, 1.0), None, (96, 128)),  # smaller than the target: rounded down to a multiple of 16
        ((64, 200, 200), (1.0, 1.0, 1.0), None, (32, 32, 32)),  # the 3D target edge
        ((64, 200, 200), (1.0, 1.0, 1.0), 40.0, (48, 48, 48)),  # a larger edge, rounded up to a multiple of 16
        ((60, 200, 200), (4.0, 1.0, 1.0), 64.0, (16, 64, 64)),  # 4x coarser z: a quarter of the voxels
        ((60, 200, 200), (4.0, 1.0, 1.0), None, (16, 32, 32)),  # z wants 8: at least 16
        ((31, 36, 57), (1.0, 1.0, 1.0), 64.0, (16, 32, 48)),  # never larger than the image
        ((20, 10), (1.0, 1.0), None, (16, 8)),  # at least 16, or the largest power of two an axis under 16 holds
        ((5, 200, 231), (1.0, 0.448, 0.448), 64.0, (4, 64, 64)),  # a stack of 5 slices: 4 of them, no padding
        ((1, 90, 90), (2.0, 1.0, 1.0), 64.0, (1, 64, 64)),  # one slice
    ],
)
def test_patch_size_fits_the_images_and_the_spacing(shape, spacing, edge, expected):
    assert plan_patch_size(list(shape), list(spacing), edge=edge) == expected


@pytest.mark.parametrize(
    ("patch", "spacing", "expected"),
    [
        ((16, 64, 64), (1.0, 0.5, 0.5), None),  # multiples of 16, at most 2x anisotropic: the plain U-Net
        ((16, 64, 64), (1.0, 0.448, 0.448), ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))),  # 2.2x: z waits one level
        # 4 slices, 2.2x coarser: z waits one level (then 1.0 against 0.896), is pooled twice, then stops
        ((4, 64, 64), (1.0, 0.448, 0.448), ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))),
        ((4, 64, 64), (0.5, 0.5, 0.5), ((2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))),  # isotropic: as early as it can
        ((8, 32, 32), (5.0, 1.0, 1.0), ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))),  # far coarser: once within 2x
        ((16, 48, 48), (3.0, 0.5, 0.5), ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))),  # z 6x coarser: 16 slices, 2 pools
        ((16, 32, 32), (2.0, 1.0, 1.0), None),  # exactly 2x coarser: pooled with the others
        ((1, 64, 64), (2.0, 1.0, 1.0), ((1, 2, 2),) * 4),  # one slice: a 2D network in 3D
        ((24, 128), (1.0, 1.0), ((2, 2), (2, 2), (2, 2), (1, 2))),  # 24 halves three times
    ],
)
def test_each_axis_is_pooled_as_its_edge_and_its_pixel_size_allow(patch, spacing, expected):
    assert plan_pools(patch, spacing) == expected


@pytest.mark.parametrize(
    ("ndim", "spacing", "extent", "expected"),
    [
        (3, [2.0, 1.0, 1.0], None, 32.0),  # class maps: the 3D target
        (3, [2.0, 1.0, 1.0], 18.0, 32.0),  # 1.75 x 18 = 31.5 is under the target
        (3, [2.0, 1.0, 1.0], 24.0, 42.0),  # 1.75 times the extent, in voxels of the finest axis
        (3, [2.0, 0.5, 0.5], 24.0, 64.0),  # 84 voxels of 0.5: capped
        (2, [1.0, 1.0], 100.0, 128.0),  # 2D keeps its target
    ],
)
def test_patch_edge_holds_an_object_with_a_margin_in_3d(ndim, spacing, extent, expected):
    assert patch_edge(ndim, spacing, extent) == pytest.approx(expected)


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
    spacing = np.array(fingerprint["median_spacing"])  # every crop has the same pixel size
    extents, owner = [], []  # each object's extent, and the image it is in
    for k, lab in enumerate(labels):
        for i in np.unique(lab)[1:]:
            extents.append(np.max((np.ptp(np.nonzero(lab == i), axis=1) + 1) * spacing))
            owner.append(k)
    assert fingerprint["object_extent"] == pytest.approx(np.median(extents))
    assert fingerprint["zero_share"] == pytest.approx(np.median([np.mean(im == 0) for im in images]))
    per_image = [np.median([e for e, lab_ in zip(extents, owner) if lab_ == k]) for k in range(len(labels))]
    assert fingerprint["image_extents"] == pytest.approx(per_image)
    assert fingerprint["train_volume"] == pytest.approx(sum(im.size for im in images) * np.prod(spacing))


def test_planning_fills_only_what_the_config_leaves_open():
    fingerprint = {"median_shape": [100, 450], "median_spacing": [1.0, 1.0], "object_extent": 20.0}
    planned = plan_training(fingerprint, TrainParams(patch_size=None, batch_size=None, features=None))
    assert planned.patch_size == (96, 128) and planned.batch_size == 8 and planned.features == (16, 32, 64, 128, 256, 16)
    assert planned.epochs == EPOCHS[2] == 40 and planned.iterations_per_epoch == ITERATIONS[2] == 25
    assert planned.max_minutes is None  # a fixed schedule, no clock
    kept = plan_training(fingerprint, TrainParams(patch_size=(64, 64), batch_size=3, epochs=7, iterations_per_epoch=9))
    assert kept.patch_size == (64, 64) and kept.batch_size == 3 and kept.epochs == 7 and kept.iterations_per_epoch == 9
    with pytest.raises(InputError, match="has 3 axes, the data has 2"):
        plan_training(fingerprint, TrainParams(patch_size=(32, 32, 32)))


def test_an_epoch_takes_more_batches_where_the_training_pixels_outnumber_its_patches():
    flat = {"median_shape": [512, 512], "median_spacing": [0.5, 0.5], "object_extent": 20.0}
    patches = 8 * 128 * 128  # pixels of one planned batch

    def batches(pixels, **params):  # the plan for training images of that many 0.5 x 0.5 um pixels
        return plan_training({**flat, "train_volume": pixels * 0.25}, TrainParams(**params)).iterations_per_epoch

    assert batches(5 * patches) == ITERATIONS[2] == 25  # 1.5 x 5 batches' pixels: 8 batches, at least 25
    assert batches(20 * patches) == 30  # 1.5 x 20
    assert batches(40 * patches) == 60  # 1.5 x 40
    assert batches(100 * patches) == 75  # at most three times the 25
    assert batches(20 * patches, spacing=(1.0, 1.0)) == 25  # a quarter as many pixels at twice the pixel size
    assert batches(10 * patches, batch_size=4) == 30 and batches(100 * patches, iterations_per_epoch=7) == 7
    assert plan_training(flat, TrainParams()).iterations_per_epoch == 25  # a fingerprint without the volume
    volume = {"median_shape": [94, 116, 58], "median_spacing": [2.0, 2.0, 2.0], "object_extent": None}
    assert plan_training({**volume, "train_volume": 8.0 * 10**6}, TrainParams()).iterations_per_epoch == 200  # 1 M voxels
    assert plan_training({**volume, "train_volume": 8.0 * 10**9}, TrainParams()).iterations_per_epoch == 400


def test_images_are_rescaled_to_one_object_size_where_their_typical_sizes_spread_twice():
    flat = {"median_shape": [512, 512], "median_spacing": [1.0, 1.0], "object_extent": 30.0}
    # the seven styles' 21 training images: typical cells 17 to 73 pixels across
    styles = [34, 41.5, 38, 38, 43.5, 47, 73, 62, 66, 56.5, 48.5, 50, 26, 26, 28, 17, 19, 20, 40, 65, 29]
    assert plan_object_size({**flat, "image_extents": styles}, TrainParams()) == 40.0  # their median
    c2c12 = [12.0, 14.0, 17.0, 21.5, 18.0, 14.0]  # its six training frames: 10th-90th percentile 13 to 19.75
    assert plan_object_size({**flat, "image_extents": c2c12}, TrainParams()) == 0
    assert plan_object_size({**flat, "image_extents": [20, 24, 45]}, TrainParams()) == 0  # 20.8 to 40.8: 1.96 times
    assert plan_object_size({**flat, "image_extents": [20, 24, 50]}, TrainParams()) == 24.0  # 20.8 to 44.8: 2.15 times
    assert plan_object_size({**flat, "image_extents": [20]}, TrainParams()) == 0  # one image: nothing to even out
    assert plan_object_size(flat, TrainParams()) == 0  # semantic classes: no extents
    assert plan_object_size({**flat, "image_extents": styles}, TrainParams(object_size=0)) == 0  # set: kept
    assert plan_object_size(flat, TrainParams(object_size=12.5)) == 12.5


def test_the_distance_loss_is_cross_entropy_in_2d_and_squared_error_in_3d_unless_set():
    flat = {"median_shape": [100, 450], "median_spacing": [1.0, 1.0], "object_extent": 20.0}
    volume = {"median_shape": [40, 62, 112], "median_spacing": [2.0, 1.0, 1.0], "object_extent": 24.0}
    assert plan_training(flat, TrainParams()).distance_loss == "bce"
    assert plan_training(volume, TrainParams()).distance_loss == "mse"
    assert plan_training(volume, TrainParams(distance_loss="bce")).distance_loss == "bce"


def test_the_flow_is_learnt_in_2d_and_3d_unless_set():
    flat = {"median_shape": [100, 450], "median_spacing": [1.0, 1.0], "object_extent": 20.0}
    volume = {"median_shape": [40, 62, 112], "median_spacing": [2.0, 1.0, 1.0], "object_extent": 24.0}
    assert plan_training(flat, TrainParams()).flow_weight == 8.0
    assert plan_training(volume, TrainParams()).flow_weight == 8.0
    assert plan_training(volume, TrainParams(flow_weight=0)).flow_weight == 0
    assert plan_training(volume, TrainParams(flow_weight=0.5)).flow_weight == 0.5
    assert plan_training(flat, TrainParams(flow_weight=0)).flow_weight == 0


def test_the_unet_normalizes_each_sample_unless_told_to_normalize_over_the_batch():
    flat = {"median_shape": [100, 450], "median_spacing": [1.0, 1.0], "object_extent": 20.0}
    planned = plan_training(flat, TrainParams())
    assert planned.norm == "instance" and "norm" not in network_options(planned)  # as every card before the option
    assert network_options(plan_training(flat, TrainParams(norm="batch")))["norm"] == "batch"
    assert "norm" not in network_options(plan_training(flat, TrainParams(network="fcn", norm="batch")))  # the FCN's own


def test_3d_plan_is_narrower_with_longer_epochs_and_patches_sized_to_the_objects():
    nuclei = {"median_shape": [40, 62, 112], "median_spacing": [2.0, 1.0, 1.0], "object_extent": 24.0}
    planned = plan_training(nuclei, TrainParams())
    assert planned.patch_size == (32, 48, 48)  # edge 42: z 21 -> 32, y and x 42 -> 48
    assert planned.features == (8, 16, 32, 64, 128, 8) and planned.batch_size == 2
    assert planned.iterations_per_epoch == 200 and planned.epochs == EPOCHS[3] == 10
    smaller = plan_training({**nuclei, "object_extent": 16.0}, TrainParams())
    assert smaller.patch_size == (16, 32, 32)  # edge 32: z 16 -> 16
    tissue = {"median_shape": [94, 116, 58], "median_spacing": [2.0, 2.0, 2.0], "object_extent": None}
    assert plan_training(tissue, TrainParams()).patch_size == (32, 32, 32)
    assert plan_training(tissue, TrainParams(network="fcn")).features == (16, 32, 64, 128, 256)


def test_objects_too_large_for_a_patch_are_trained_on_a_coarser_grid_of_the_finest_axes():
    # CHO nuclei (Cell Tracking Challenge): 5 slices of 1 um, pixels of 0.202 um, nuclei 16.4 um across
    cho = {"median_shape": [5, 443, 512], "median_spacing": [1.0, 0.202, 0.202], "object_extent": 16.4}
    coarser = 0.448  # 1.75 * 16.4 / 64: the nucleus and its surroundings span the largest 3D patch edge, 64
    assert plan_spacing(3, cho["median_spacing"], cho["object_extent"]) == (1.0, coarser, coarser)
    planned = plan_training(cho, TrainParams())
    assert planned.spacing == (1.0, coarser, coarser)
    assert planned.patch_size == (4, 64, 64)  # on the 5 x 198 x 229 grid: 4 of the 5 slices
    # 2D: cells of 100 pixels need 175, more than 128
    assert plan_spacing(2, [0.5, 0.5], 50.0) == (0.684, 0.684)  # 0.5 * 175 / 128, to three digits
    # objects that fit, semantic classes and a spacing given in the config keep their pixel size
    assert plan_spacing(2, [0.5, 0.5], 30.0) == (0.5, 0.5)
    assert plan_spacing(3, [2.0, 2.0, 2.0], None) == (2.0, 2.0, 2.0)
    assert plan_training(cho, TrainParams(spacing=(1.0, 0.202, 0.202))).spacing == (1.0, 0.202, 0.202)
    with pytest.raises(InputError, match="spacing \\[1.0, 1.0\\] has 2 axes, the data has 3"):
        plan_training(cho, TrainParams(spacing=(1.0, 1.0)))


def test_percentiles_are_planned_outside_the_fill_with_a_quarter_of_the_typical_range_as_floor():
    spec = normalization_spec("percentile", {"intensity_range": [800.0, 40.0]})
    assert spec.skip_fill and (spec.low, spec.high) == (1.0, 99.8) and spec.min_range == (200.0, 10.0)


def test_zscore_leaves_out_a_background_of_zeros_when_it_is_a_quarter_of_the_voxels():
    assert normalization_spec("zscore", {"zero_share": 0.77}).nonzero  # the MNI152 training region
    assert not normalization_spec("zscore", {"zero_share": 0.2}).nonzero
    assert not normalization_spec("zscore", {}).nonzero


def test_the_floor_is_for_images_of_the_training_images_number_type():
    """A floor in 16-bit units flattened floats from 0 to 1 to nothing (a walk-through's 16 objects
    for 28, IoU 0.003): it is kept for the pixel type it was measured on; mixed types keep it for all."""
    fingerprint = {"intensity_range": [800.0], "dtypes": ["uint16"]}
    assert normalization_spec("percentile", fingerprint).floor_for == "uint16"
    assert normalization_spec("percentile", fingerprint | {"dtypes": ["uint16", "uint8"]}).floor_for == "uint8"
    assert normalization_spec("percentile", fingerprint | {"dtypes": ["float32"]}).floor_for == "float"
    assert normalization_spec("percentile", fingerprint | {"dtypes": ["float32", "uint16"]}).floor_for is None
