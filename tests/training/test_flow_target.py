"""The flow target: heat diffused from each object's centre, its slope as unit vectors, through augmentation and the loss."""

import numpy as np
import pytest
import torch
from skimage.draw import disk

from segpipe.training.augment import augmentation
from segpipe.training.losses import SegmentationLoss
from segpipe.training.targets import centre_heat, flow_from_heat, training_sample


def _towards(flow: np.ndarray, labels: np.ndarray, centre) -> np.ndarray:
    """Cosine between each object pixel's flow and the direction to ``centre``, for pixels 3 or more away."""
    coords = np.argwhere(labels > 0)
    to_centre = np.asarray(centre)[None] - coords
    length = np.linalg.norm(to_centre, axis=1)
    far = length >= 3
    vectors = flow[(slice(None), *coords[far].T)].T
    return (vectors * to_centre[far]).sum(axis=1) / length[far]


def test_heat_of_a_three_pixel_object_is_the_diffusion_by_hand():
    labels = np.zeros((3, 5), np.uint8)
    labels[1, 1:4] = 7  # pixels a, b, c; b is the median pixel, the source
    a = b = c = 0.0
    for _ in range(2 * 3):  # twice the object's extent
        b += 1.0
        a, b, c = (a + b) / 2, (a + b + c) / 3, (b + c) / 2  # each pixel: mean over itself and its object neighbours
    expected = np.log1p([a, b, c])
    expected /= expected.max()
    np.testing.assert_allclose(centre_heat(labels)[1, 1:4], expected, rtol=1e-6)
    assert centre_heat(labels)[labels == 0].max() == 0


def test_heat_stays_in_its_object_and_peaks_at_one_at_each_centre():
    labels = np.zeros((40, 70), np.uint16)
    labels[disk((20, 20), 12)] = 1
    rr, cc = disk((20, 42), 12)
    labels[rr, cc] = np.where(labels[rr, cc] == 0, 2, labels[rr, cc])  # touching the first
    heat = centre_heat(labels)
    assert heat[20, 20] == pytest.approx(1.0) and heat[20, 42] == pytest.approx(1.0)
    assert heat[labels == 0].max() == 0
    # heat spreads within an object only: the border pixels of each touching disk are its coolest
    assert heat[20, 31] < 0.2 and heat[20, 30] < 0.2


def test_a_volume_diffused_object_by_object_gives_the_heat_of_one_pass():
    """A large volume's objects are diffused in groups, each within its own box, to bound memory
    (the one-pass work arrays took about 1 kB per inside voxel: 5 GB for a 100 x 512 x 512 volume
    a fifth nuclei); touching objects in different groups, and a small object diffused apart from
    the largest, whose extent sets the steps, get the heat they get together."""
    rng = np.random.default_rng(3)
    labels = np.zeros((12, 40, 50), np.uint16)
    z, y, x = np.ogrid[:12, :40, :50]
    for i in range(14):
        c, r = rng.uniform((2, 5, 5), (10, 35, 45)), rng.uniform(3, 9)
        labels[(((z - c[0]) / 0.6) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r) & (labels == 0)] = i + 1
    assert len(np.unique(labels)) > 10
    together = centre_heat(labels, group_pixels=labels.size)
    apart = centre_heat(labels, group_pixels=1)
    np.testing.assert_array_equal(apart, together)
    assert together[labels > 0].min() > 0 and together[labels == 0].max() == 0


def test_flows_point_to_the_centre_of_each_object_even_round_a_bend():
    labels = np.zeros((40, 40), np.uint8)
    labels[5:35, 5:12] = 1  # an L: a distance map's ridge runs along both arms
    labels[28:35, 5:35] = 1
    flow = flow_from_heat(centre_heat(labels), labels > 0)
    assert np.allclose(np.linalg.norm(flow[:, labels > 0], axis=0), 1.0, atol=1e-5)
    assert not flow[:, labels == 0].any()
    from segpipe.inference.postprocess import flow_labels

    ends = flow_labels(labels > 0, (flow + 1) / 2, sink_size=4)
    assert np.unique(ends[labels > 0]).tolist() == [1]  # every path ends at the one sink


def test_flows_made_after_augmentation_point_to_where_the_object_moved():
    labels = np.zeros((48, 48), np.uint16)
    labels[disk((14, 30), 9)] = 1  # off centre: a flip or a turn moves it
    sample = training_sample(np.random.default_rng(0).random((1, 48, 48), np.float32), labels, instances=True, flow=True)
    assert sample["heat"].shape == (1, 48, 48)
    transform = augmentation(ndim=2, patch_size=(48, 48), keys=["image", "label", "dist", "heat"], empty_fields=0)
    turned = 0
    for seed in range(6):
        transform.set_random_state(seed)
        out = transform(dict(sample))[0]  # the crop step gives a list of one sample
        assert "heat" not in out and out["flow"].shape == (2, 48, 48)
        moved = out["label"][0].numpy() > 0
        centre = np.argwhere(moved).mean(axis=0)
        turned += not np.allclose(centre, (14, 30), atol=1)
        assert _towards(out["flow"].numpy(), moved, centre).min() > 0.8
    assert turned >= 3  # the object did move in most draws


def test_the_flow_loss_is_the_binary_cross_entropy_against_half_the_vectors_plus_a_half():
    rng = np.random.default_rng(0)
    batch = {
        "label": torch.as_tensor(rng.integers(0, 2, (2, 1, 8, 12))),
        "dist": torch.as_tensor(rng.random((2, 1, 8, 12)), dtype=torch.float32),
        "flow": torch.as_tensor(rng.uniform(-1, 1, (2, 2, 8, 12)), dtype=torch.float32),
    }
    logits = torch.as_tensor(rng.normal(size=(2, 5, 8, 12)), dtype=torch.float32)
    plain = SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=0.0, distance_loss="bce")
    with_flow = SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=0.0, distance_loss="bce", flow_weight=0.5)
    p, t = torch.sigmoid(logits[:, 3:5]), (batch["flow"] + 1) / 2
    by_hand = (-(t * torch.log(p) + (1 - t) * torch.log(1 - p))).sum(dim=1).mean()
    without = {k: v for k, v in batch.items() if k != "flow"}
    torch.testing.assert_close(with_flow(logits, batch, torch.device("cpu")) - plain(logits, without, torch.device("cpu")), 0.5 * by_hand)
