import numpy as np
import pytest

from segpipe.inference.normalize import percentile_normalize
from segpipe.training.augment import BACKGROUND_PIXELS, FOREGROUND_PIXELS, augmentation, with_crop_centres
from segpipe.training.targets import distance_target, training_sample


def test_percentile_normalize_maps_percentiles_to_unit_range():
    image = np.arange(1000, dtype=np.uint16).reshape(1, 10, 100)
    out = percentile_normalize(image, low=1, high=99)
    assert out.dtype == np.float32
    assert np.percentile(out, 1) == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(out, 99) == pytest.approx(1.0, abs=1e-6)


def test_distance_target_peaks_at_one_and_splits_touching_objects():
    labels = np.zeros((11, 22), dtype=np.uint16)
    labels[1:10, 1:11] = 1
    labels[1:10, 11:21] = 7  # touches object 1 along a column
    dist = distance_target(labels)
    assert dist[labels == 0].max() == 0
    for obj in (1, 7):
        assert dist[labels == obj].max() == pytest.approx(1.0)
    # the shared border is a valley: zero on both sides of the contact
    assert dist[5, 10] == 0 and dist[5, 11] == 0
    # the centre of object 1 (row 5, col 5) is 4 px from its border: 4/4 after normalisation
    assert dist[5, 5] == pytest.approx(1.0)
    assert dist[5, 2] == pytest.approx(1 / 4)


def test_distance_target_respects_anisotropic_spacing():
    labels = np.zeros((9, 9, 9), dtype=np.uint8)
    labels[1:8, 1:8, 1:8] = 1
    iso = distance_target(labels)
    aniso = distance_target(labels, spacing=(4.0, 1.0, 1.0))
    # with coarse z, the voxel one step in z from the centre is relatively further from the peak
    assert aniso[3, 4, 4] > iso[3, 4, 4] or aniso[4, 4, 3] < iso[4, 4, 3]


def test_augmentation_returns_patches_of_the_planned_size():
    rng = np.random.default_rng(0)
    labels = np.zeros((50, 70), dtype=np.uint16)
    labels[10:20, 10:20] = 1
    sample = training_sample(rng.random((1, 50, 70), dtype=np.float32), labels, instances=True)
    transform = augmentation(ndim=2, patch_size=(64, 64), keys=["image", "label", "dist"])
    transform.set_random_state(0)
    out = transform(sample)[0]
    assert tuple(out["image"].shape) == (1, 64, 64)
    assert tuple(out["dist"].shape) == (1, 64, 64)
    assert set(np.unique(out["label"].numpy())) <= {0, 1}


@pytest.mark.parametrize("ndim", [2, 3])
def test_affine_and_elastic_keep_labels_integral(ndim):
    shape = (24,) * ndim
    labels = np.zeros(shape, dtype=np.uint16)
    labels[(slice(6, 18),) * ndim] = 3
    sample = training_sample(np.random.default_rng(1).random((1, *shape), dtype=np.float32), labels, instances=True)
    transform = augmentation(ndim=ndim, patch_size=(16,) * ndim, keys=["image", "label", "dist"], affine=True, elastic=True)
    for seed in range(5):
        transform.set_random_state(seed)
        out = transform(sample)[0]
        assert set(np.unique(out["label"].numpy())) <= {0, 1}
        assert float(out["dist"].max()) <= 1.0 + 1e-5


def test_normalization_methods():
    from segpipe.inference.normalize import normalize
    from segpipe.training.plan import normalization_spec

    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, size=(1, 64, 64)).astype(np.float32)
    z = normalize(image, normalization_spec("zscore", {}))
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3
    stats = {"foreground_intensity": {"p0_5": 80.0, "p99_5": 120.0, "mean": 100.0, "std": 10.0}}
    ct = normalize(image, normalization_spec("ct", stats))
    assert float(ct.min()) >= -2.0 - 1e-6 and float(ct.max()) <= 2.0 + 1e-6
    np.testing.assert_allclose(ct, (np.clip(image, 80, 120) - 100) / 10, rtol=1e-6)


def test_each_augmentation_step_appears_once():
    transform = augmentation(ndim=2, patch_size=(32, 32), keys=["image", "label"], affine=True, elastic=True)
    names = [type(t).__name__ for t in transform.transforms]
    assert names.count("RandAffined") == 1 and names.count("Rand2DElasticd") == 1
    assert names[:2] == ["SpatialPadd", "RandCropByPosNegLabeld"]


def test_an_empty_field_has_noise_and_no_objects():
    from segpipe.training.augment import RandEmptyFieldd

    rng = np.random.default_rng(0)
    sample = {"image": rng.random((1, 32, 32)).astype(np.float32), "label": np.ones((1, 32, 32), np.int64),
              "dist": np.full((1, 32, 32), 0.5, np.float32)}
    always = RandEmptyFieldd(keys=["image", "label", "dist"], prob=1.0)
    always.set_random_state(3)
    out = always(sample)
    assert not out["label"].any() and not out["dist"].any()
    assert -0.4 < float(out["image"].min()) and float(out["image"].max()) < 1.4  # a stretched field: a little past 0..1
    assert float(out["image"].std()) > 0.02
    never = RandEmptyFieldd(keys=["image", "label", "dist"], prob=0.0)
    assert never(sample) is sample
    transform = augmentation(ndim=2, patch_size=(32, 32), keys=["image", "label", "dist"])
    assert [type(t).__name__ for t in transform.transforms][-1] == "RandEmptyFieldd"


def test_the_range_floor_keeps_an_empty_field_dark():
    """Noise of an empty field is not stretched to 0..1 when the floor is the training images' range."""
    from segpipe.inference.normalize import NormalizationSpec, normalize, stream_normalization

    rng = np.random.default_rng(1)
    empty = (100 + 3 * rng.standard_normal((1, 64, 64))).astype(np.float32)  # background 100, noise 3
    plain = normalize(empty, NormalizationSpec(method="percentile", low=1.0, high=99.8))
    floored_spec = NormalizationSpec(method="percentile", low=1.0, high=99.8, min_range=(200.0,))  # cells ~ 200 above
    floored = normalize(empty, floored_spec)
    assert float(plain.max()) > 0.95 and float(floored.max()) < 0.15
    np.testing.assert_array_equal(stream_normalization(empty, floored_spec).apply(empty), floored)
    bright = empty.copy()
    bright[0, 20:40, 20:40] += 400  # an image with a bright object is scaled by its own range
    np.testing.assert_array_equal(normalize(bright, floored_spec), normalize(bright, NormalizationSpec(method="percentile", low=1.0, high=99.8)))


def test_the_boundary_target_marks_where_objects_touch():
    from segpipe.training.targets import boundary_target

    labels = np.zeros((10, 12), np.uint16)
    labels[2:8, 1:6] = 1
    labels[2:8, 6:11] = 2  # touching 1 along columns 5 | 6
    labels[0, 0] = 0
    edge = boundary_target(labels)
    assert set(np.unique(edge)) == {0.0, 1.0}
    columns = np.flatnonzero(edge.any(axis=0))
    assert columns.tolist() == [4, 5, 6, 7]  # the touching pair of columns and one more on each side
    assert not edge[labels == 0].any() and not edge[:, :4].any()
    alone = np.zeros((10, 12), np.uint16)
    alone[2:8, 2:8] = 1
    assert not boundary_target(alone).any()  # an object next to background only has no such boundary


@pytest.mark.parametrize("sparse", [False, True])
def test_crop_centres_found_once_give_the_same_patches(sparse):
    rng = np.random.default_rng(3)
    labels = np.zeros((90, 120), dtype=np.uint16)
    labels[10:30, 20:45], labels[60:85, 70:100] = 1, 2
    ignore = None
    if sparse:  # the right third unannotated: no background centre there
        ignore = np.zeros(labels.shape, bool)
        ignore[:, 80:] = labels[:, 80:] == 0
    sample = training_sample(rng.random((1, 90, 120), dtype=np.float32), labels, instances=True, ignore=ignore)
    keys = ["image", "label", "dist"] + (["ignore"] if sparse else [])
    found = with_crop_centres(sample, (32, 32))
    # Hand count: foreground is the two rectangles; background the rest, less the unannotated part.
    assert len(found[FOREGROUND_PIXELS]) == 20 * 25 + 25 * 30
    assert len(found[BACKGROUND_PIXELS]) == (90 * 120 - 20 * 25 - 25 * 30) - (int(ignore.sum()) if sparse else 0)
    for seed in range(5):
        patches = []
        for given in (sample, found):
            transform = augmentation(ndim=2, patch_size=(32, 32), keys=keys, foreground_ratio=0.5)
            transform.set_random_state(seed)
            patches.append(transform(dict(given))[0])
        for key in keys:
            np.testing.assert_array_equal(np.asarray(patches[0][key]), np.asarray(patches[1][key]))
        assert FOREGROUND_PIXELS not in patches[1] and BACKGROUND_PIXELS not in patches[1]


def test_an_image_smaller_than_a_patch_keeps_no_crop_centres():
    sample = training_sample(np.zeros((1, 20, 90), np.float32), np.ones((20, 90), np.uint16), instances=True)
    assert with_crop_centres(sample, (32, 32)) is sample
