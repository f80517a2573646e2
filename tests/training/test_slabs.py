"""Slabs of patches padded as the sliding window pads a thin image; the padding not annotated."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segpipe.training.slabs import RandThinSlabd, slab_indices, thin_extents


@pytest.mark.parametrize("size", [8, 13, 32])
def test_slab_indices_pad_as_torch_pads_the_slab(size):
    """The reference: the central slab padded by torch (half before, rounded down, as MONAI's
    sliding window pads), by reflection where the slab is longer than the padding, else by its edges."""
    values = torch.arange(size, dtype=torch.float32)
    for length in range(1, size + 1):
        before = (size - length) // 2
        slab = values[before:before + length].reshape(1, 1, length)
        mode = "reflect" if length > size - length else "replicate"
        expected = F.pad(slab, (before, size - length - before), mode=mode).flatten()
        np.testing.assert_array_equal(slab_indices(size, length), expected.numpy().astype(int), err_msg=f"{size=} {length=}")


def test_slab_indices_by_hand():
    assert slab_indices(8, 3).tolist() == [2, 2, 2, 3, 4, 4, 4, 4]  # edges repeated
    assert slab_indices(8, 5).tolist() == [2, 1, 2, 3, 4, 5, 4, 3]  # reflected


def _image(shape, spacing):
    return SimpleNamespace(image=np.zeros((1, *shape), np.float32), spacing=spacing)


def test_thin_extents_on_the_models_grid():
    images = [_image((31, 36, 57), (1.0, 1.0, 1.0)), _image((31, 12, 57), (1.0, 1.0, 1.0)), _image((31, 13, 57), (1.0, 1.0, 1.0))]
    assert thin_extents(images, (16, 32, 32), (1.0, 1.0, 1.0)) == {1: 12}
    assert thin_extents(images[:1], (16, 32, 32), (1.0, 1.0, 1.0)) == {}
    # 40 columns of 0.5 um are 20 on a 1 um grid: thinner than a 32-pixel patch
    assert thin_extents([_image((100, 40), (1.0, 0.5))], (32, 32), (1.0, 1.0)) == {1: 20}


@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_slab_keeps_the_centre_pads_the_image_and_ignores_the_padding(as_tensor):
    rng = np.random.default_rng(0)
    image = rng.random((1, 4, 16, 6)).astype(np.float32)
    label = rng.integers(0, 3, (1, 4, 16, 6))
    ignore = np.zeros((1, 4, 16, 6), np.float32)
    ignore[0, 0, 0, 0] = 1  # an unannotated pixel the ground truth had stays so
    wrap = torch.as_tensor if as_tensor else np.asarray
    sample = {"image": wrap(image), "label": wrap(label), "ignore": wrap(ignore)}
    slab = RandThinSlabd(keys=["image", "label", "ignore"], extents={1: 5}, prob=1.0)
    slab.set_random_state(1)
    out = {k: np.asarray(v) for k, v in slab(sample).items()}
    kept = 1 - out["ignore"][0, 1, :, 2]  # along the slab's axis (y)
    length = int(kept.sum())
    before = (16 - length) // 2
    assert 5 <= length <= 15 and kept[before:before + length].all()
    np.testing.assert_array_equal(out["image"], image[:, :, slab_indices(16, length), :])
    np.testing.assert_array_equal(out["label"], label)  # targets stay: their padding is ignored
    assert out["ignore"][0, 0, 0, 0] == 1
    lengths = set()
    for seed in range(40):
        slab.set_random_state(seed)
        lengths.add(int((1 - np.asarray(slab(sample)["ignore"])[0, 1, :, 2]).sum()))
    assert min(lengths) == 5 and max(lengths) == 15  # as thin as the thinnest image, up to a pixel short of the patch


def test_no_slab_without_thin_axes_or_by_chance():
    sample = {"image": np.ones((1, 8, 8), np.float32), "ignore": np.zeros((1, 8, 8), np.float32)}
    assert RandThinSlabd(keys=["image", "ignore"], extents={}, prob=1.0)(sample) is sample
    assert RandThinSlabd(keys=["image", "ignore"], extents={0: 3}, prob=0.0)(sample) is sample


def test_the_augmentation_cuts_a_share_of_patches_to_slabs():
    """Composed as training composes it: about a third of the patches come with padded rows ignored."""
    from segpipe.training.augment import augmentation
    from segpipe.training.loop import plain_tensors

    rng = np.random.default_rng(0)
    label = np.zeros((1, 48, 48), np.int64)
    label[0, 10:20, 10:20] = 1
    sample = {"image": rng.random((1, 48, 48)).astype(np.float32), "label": label, "ignore": np.zeros((1, 48, 48), np.float32)}
    transform = augmentation(ndim=2, patch_size=(32, 32), keys=["image", "label", "ignore"], thin={0: 12}, empty_fields=0)
    transform.set_random_state(0)
    with plain_tensors():
        patches = [transform(dict(sample))[0] for _ in range(150)]  # the crop gives a list of one
    ignored = [float(np.asarray(patch["ignore"]).any()) for patch in patches]
    assert all(tuple(patch["image"].shape) == (1, 32, 32) for patch in patches)
    assert 0.2 < np.mean(ignored) < 0.46
