"""Sparse ground truth in training: the loss, the patches and the validation scores leave unannotated pixels out."""

import numpy as np
import pytest
import tifffile
import torch
from monai.losses import DiceCELoss
from skimage.draw import disk

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.inference.normalize import NormalizationSpec
from segpipe.training.augment import augmentation
from segpipe.training.losses import SegmentationLoss
from segpipe.training.params import TrainParams
from segpipe.training.patches import ZarrPatchDataset
from segpipe.training.tuning import validation_scores

CPU = torch.device("cpu")


def batch_and_logits(seed=0):
    rng = np.random.default_rng(seed)
    label = torch.as_tensor(rng.integers(0, 2, (2, 1, 8, 12)))
    batch = {
        "label": label,
        "dist": torch.as_tensor(rng.random((2, 1, 8, 12)), dtype=torch.float32),
        "boundary": torch.as_tensor(rng.integers(0, 2, (2, 1, 8, 12)), dtype=torch.float32),
    }
    logits = torch.as_tensor(rng.normal(size=(2, 4, 8, 12)), dtype=torch.float32).requires_grad_()
    return batch, logits


def _squared_error(p, t):
    return ((p - t) ** 2).mean()


@pytest.mark.parametrize("distance_loss", ["bce", "mse"])
def test_without_ignored_pixels_the_loss_is_monais_dice_ce_and_the_plain_means(distance_loss):
    by_hand = {"bce": _soft_bce, "mse": _squared_error}[distance_loss]
    batch, logits = batch_and_logits()
    loss = SegmentationLoss(n_classes=2, distance_weight=0.5, boundary_weight=0.25, distance_loss=distance_loss)
    expected = (
        DiceCELoss(to_onehot_y=True, softmax=True)(logits[:, :2], batch["label"])
        + 0.5 * by_hand(torch.sigmoid(logits[:, 2:3]), batch["dist"])
        + 0.25 * torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 3:4], batch["boundary"])
    )
    torch.testing.assert_close(loss(logits, batch, CPU), expected)
    nothing_ignored = {**batch, "ignore": torch.zeros(2, 1, 8, 12)}
    torch.testing.assert_close(loss(logits, nothing_ignored, CPU), expected)


def _soft_bce(p, t):
    """Binary cross-entropy of probabilities ``p`` against soft targets ``t``, by its formula."""
    return (-(t * torch.log(p) + (1 - t) * torch.log(1 - p))).mean()


def test_the_distance_map_keeps_learning_where_its_sigmoid_saturates():
    """The distance term's gradient on a logit is (sigmoid - target) / pixels, as binary
    cross-entropy's is: a centre predicted as border (logit -6, target 1) still pulls with
    almost full strength, where a squared error through the sigmoid pulled with 0.5%."""
    label = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    target = torch.tensor([1.0, 0.0, 0.5, 0.25]).reshape(1, 1, 2, 2)
    distance = torch.tensor([-6.0, 6.0, 0.0, 1.0]).reshape(1, 1, 2, 2)
    logits = torch.cat([torch.zeros(1, 2, 2, 2), distance], 1).requires_grad_()
    SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=0.0, distance_loss="bce")(logits, {"label": label, "dist": target}, CPU).backward()
    expected = (torch.sigmoid(distance) - target) / 4
    torch.testing.assert_close(logits.grad[:, 2:3], expected)
    assert logits.grad[0, 2, 0, 0] < -0.24  # -0.2494: the saturated centre


def test_the_loss_on_a_partly_ignored_batch_is_the_loss_of_its_annotated_part():
    """Ignoring the right half of every image gives the loss of the left halves alone (one image per batch)."""
    batch, logits = batch_and_logits(1)
    batch, logits = {k: v[:1] for k, v in batch.items()}, logits[:1]
    ignore = torch.zeros(1, 1, 8, 12)
    ignore[..., 6:] = 1
    loss = SegmentationLoss(n_classes=2, distance_weight=0.5, boundary_weight=0.25, distance_loss="bce")
    left = {k: v[..., :6] for k, v in batch.items()}
    torch.testing.assert_close(loss(logits, {**batch, "ignore": ignore}, CPU), loss(logits[..., :6], left, CPU))


def test_ignored_pixels_get_no_gradient():
    batch, logits = batch_and_logits(2)
    ignore = torch.zeros(2, 1, 8, 12)
    ignore[:, :, 2:5, 3:9] = 1
    SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=1.0, distance_loss="bce")(logits, {**batch, "ignore": ignore}, CPU).backward()
    grad = logits.grad.abs().sum(1)
    assert float(grad[ignore[:, 0] > 0].max()) == 0.0
    assert float(grad[ignore[:, 0] == 0].min()) > 0.0


def test_background_patches_are_centred_on_annotated_pixels():
    """Only a 4x4 square is annotated background: every background patch holds some of it."""
    label = np.zeros((1, 64, 64), np.int64)
    label[0, 5:7, 5:7] = 1
    ignore = np.ones((1, 64, 64), np.float32)
    ignore[0, 40:44, 40:44] = ignore[0, 5:7, 5:7] = 0
    sample = {"image": np.zeros((1, 64, 64), np.float32), "label": label, "ignore": ignore}
    transform = augmentation(ndim=2, patch_size=(16, 16), keys=["image", "label", "ignore"], foreground_ratio=0.0,
                             empty_fields=0.0)
    for seed in range(20):
        transform.set_random_state(seed)
        patch = transform(dict(sample))
        patch = patch[0] if isinstance(patch, list) else patch
        assert "annotated" not in patch and tuple(patch["ignore"].shape) == (1, 16, 16)
        assert float(patch["ignore"].min()) == 0.0


def test_patches_read_from_the_store_carry_their_unannotated_pixels(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 48), np.uint16)
    labels[5:15, 5:15] = 1
    labels[30:40, 30:40] = 9  # 9: not annotated
    tifffile.imwrite(tmp_path / "img" / "a.tif", rng.integers(0, 999, (48, 48)).astype(np.uint16))
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    ignore_label: 9\n    split: {train: [a]}\n"
    )
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("d"), tmp_path / "d.zarr", progress=False)
    image = ImageStore.open(tmp_path / "d.zarr").image("a")
    patches = ZarrPatchDataset([image], patch_size=(32, 32), spec=NormalizationSpec(method="percentile", low=1.0, high=99.8), instances=True, length=1,
                               foreground_ratio=0.5, sparse=True)
    sample = patches.read(image, np.array([30, 30]), patches.normalizations[0])
    np.testing.assert_array_equal(sample["ignore"][0], labels[14:46, 14:46] == 9)
    np.testing.assert_array_equal(sample["label"][0], labels[14:46, 14:46] == 1)


def test_validation_scores_count_no_object_found_in_unannotated_pixels():
    gt = np.zeros((40, 40), np.int32)
    gt[disk((10, 10), 5)] = 1
    found = gt > 0
    found[disk((30, 30), 5)] = True  # a cell nobody annotated, found
    ignore = np.zeros(gt.shape, bool)
    ignore[disk((30, 30), 8)] = True
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(found)
    probs = np.stack([1.0 - found, found.astype(float), distance / distance.max()])
    from segpipe.inference.postprocess import InstanceParams

    params = InstanceParams(min_size=4)
    counted = validation_scores([(probs, gt)], params, 2)
    ignored = validation_scores([(probs, gt, ignore)], params, 2)
    assert counted.det == pytest.approx(1 - 1 / 10) and ignored.det == 1.0
    assert counted.seg == ignored.seg > 0.9


def test_the_loss_of_a_config_is_what_its_plan_says_and_an_unplanned_one_is_refused():
    """``for_config`` takes the weights and the distance loss from the planned config: the 3D
    plan's squared error, not cross-entropy; a config whose distance loss is open raises."""
    batch, logits = batch_and_logits()
    config = TrainParams(distance_weight=0.5, boundary_weight=0.25, distance_loss="mse", flow_weight=0)
    by_config = SegmentationLoss.for_config(config, n_classes=2)(logits, batch, CPU)
    by_hand = SegmentationLoss(n_classes=2, distance_weight=0.5, boundary_weight=0.25, distance_loss="mse")(logits, batch, CPU)
    torch.testing.assert_close(by_config, by_hand)
    bce = SegmentationLoss(n_classes=2, distance_weight=0.5, boundary_weight=0.25, distance_loss="bce")(logits, batch, CPU)
    assert abs(float((by_config - bce).detach())) > 1e-3
    with pytest.raises(ValueError, match="not planned"):
        SegmentationLoss.for_config(TrainParams(), n_classes=2)
    with pytest.raises(ValueError, match="not planned"):
        SegmentationLoss.for_config(TrainParams(distance_loss="mse"), n_classes=2)  # the flow's weight left open
