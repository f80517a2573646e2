"""Random patches and augmentation for training, composed from MONAI transforms.

Training samples are dictionaries of channel-first arrays (:mod:`segpipe.training.targets`);
the transforms here crop a patch from each and augment it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai import transforms as mt
from monai.transforms.utils import map_binary_to_indices
from scipy import ndimage

from segpipe.training.targets import flow_from_heat


#: Keys of a sample's foreground and background pixels (flat indices) where patches may be centred,
#: found once by :func:`with_crop_centres`; the crop pops them.
FOREGROUND_PIXELS, BACKGROUND_PIXELS = "foreground_pixels", "background_pixels"
#: A background pixel may centre a patch where its ``annotated`` value (:func:`_annotated`) is above this.
ANNOTATED_ABOVE = 0.5


def with_crop_centres(sample: dict, patch_size: Sequence[int]) -> dict:
    """``sample`` with the pixels its random crop may centre a patch on, found once: the foreground,
    and the background that is annotated. Without them the crop searches the whole image for
    every patch, the larger part of a patch's cost on a large image. Unchanged where the image is
    smaller than a patch along an axis: the crop pads it first, which moves its pixels."""
    label = sample["label"]
    if any(n < p for n, p in zip(label.shape[1:], patch_size)):
        return sample
    annotated = _annotated(sample["ignore"]) if "ignore" in sample else None
    foreground, background = map_binary_to_indices(label, annotated, ANNOTATED_ABOVE)
    small = np.int32 if label[0].size < 2**31 else np.int64  # half the memory of the default int64
    return {**sample, FOREGROUND_PIXELS: foreground.astype(small), BACKGROUND_PIXELS: background.astype(small)}


def augmentation(
    *,
    ndim: int,
    patch_size: Sequence[int],
    keys: Sequence[str],
    foreground_ratio: float = 0.33,
    affine: bool = False,
    elastic: bool = False,
    crop: bool = True,
    empty_fields: float = 0.1,
) -> mt.Compose:
    """Random patch plus augmentation, the nnU-Net way kept small.

    Patches are centred on foreground with probability ``foreground_ratio`` (oversampling),
    elsewhere on background that is annotated (never on pixels an ``ignore`` key marks);
    then optional random rotation and scaling (``affine``) and elastic deformation
    (``elastic``); random flips along every axis, 90-degree rotations in the (y, x) plane
    (square patches only); intensity scaling, shifting, gamma, blur and noise on the image, for
    other microscopes and stains; and, with probability ``empty_fields``, a field with nothing in
    it (:class:`RandEmptyFieldd`).
    The distance target and the heat are interpolated linearly, class labels by nearest
    neighbour; a ``heat`` key becomes the ``flow`` target after every spatial step (:class:`FlowFromHeatd`).
    With ``crop=False`` the samples are already patches (read from zarr) and only augmented.
    """
    spatial = tuple(int(p) for p in patch_size)
    modes = dict.fromkeys(("image", "label", "dist", "boundary", "heat", "ignore"), "constant")
    positives = foreground_ratio / max(1e-6, 1 - foreground_ratio)
    steps: list = []
    sparse = "ignore" in keys
    if crop:
        steps += [mt.SpatialPadd(keys=keys, spatial_size=spatial, mode=[modes[k] for k in keys])]
        if sparse:  # background centres only where the ground truth is annotated
            steps.append(mt.Lambdad(keys="ignore", func=_annotated, overwrite="annotated"))
        steps.append(
            mt.RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=spatial, pos=positives, neg=1.0, num_samples=1,
                image_key="annotated" if sparse else None, image_threshold=ANNOTATED_ABOVE,
                fg_indices_key=FOREGROUND_PIXELS, bg_indices_key=BACKGROUND_PIXELS,
            )
        )
        if sparse:
            steps.append(mt.DeleteItemsd(keys="annotated"))
    interp = {
        "image": "bilinear", "label": "nearest", "dist": "bilinear", "boundary": "nearest", "heat": "bilinear",
        "ignore": "nearest",
    }
    mode = [interp[k] for k in keys]
    if affine:
        angle = (np.pi / 12, 0.0, 0.0) if ndim == 3 else np.pi / 12
        steps.append(
            mt.RandAffined(keys=keys, prob=0.2, rotate_range=angle, scale_range=0.15, mode=mode, padding_mode="zeros")
        )
    if elastic:
        if ndim == 2:
            deform = mt.Rand2DElasticd(keys=keys, prob=0.2, spacing=(20, 20), magnitude_range=(1, 2), mode=mode)
        else:
            deform = mt.Rand3DElasticd(keys=keys, prob=0.2, sigma_range=(5, 7), magnitude_range=(50, 100), mode=mode)
        steps.append(deform)
    steps += [mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(ndim)]
    if spatial[-1] == spatial[-2]:  # a 90-degree turn of a non-square patch would change its shape
        steps.append(mt.RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(ndim - 2, ndim - 1)))
    steps += [
        mt.RandScaleIntensityd(keys="image", factors=0.3, prob=0.3),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.3),
        mt.RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
        mt.RandGaussianSmoothd(keys="image", sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5), sigma_z=(0.5, 1.5), prob=0.15),
        mt.RandGaussianNoised(keys="image", std=0.05, prob=0.15),
        mt.ToTensord(keys=keys, track_meta=False),
    ]
    if "heat" in keys:
        steps.append(FlowFromHeatd())
    if empty_fields:
        steps.append(RandEmptyFieldd(keys=keys, prob=empty_fields))
    return mt.Compose(steps)


def _annotated(ignore):
    """1 where a sample's ground truth is annotated (a function, not a lambda: loader processes pickle it)."""
    return 1 - ignore


class FlowFromHeatd(mt.Transform):
    """Replace a sample's ``heat`` by ``flow``, the unit vectors up its slope on the objects
    (:func:`segpipe.training.targets.flow_from_heat`): made after the patch is flipped, turned
    and deformed, the vectors point where the moved objects' centres are."""

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        heat = out.pop("heat")
        foreground = np.asarray(out["label"][0]) > 0
        out["flow"] = torch.from_numpy(flow_from_heat(np.asarray(heat[0]), foreground))
        return out


class RandEmptyFieldd(mt.RandomizableTransform, mt.MapTransform):
    """Replace a patch, with probability ``prob``, by a field with nothing in it: smooth noise.

    What an empty, noisy field looks like once its percentiles are stretched: noise over the
    whole range (scaled by 0.2-1, as the normalization's floor leaves it), smoothed a little so
    it has texture; every label and distance is background, and all of it annotated. Without such patches a network that
    only saw fields with objects in them finds objects in noise.
    """

    def __init__(self, keys: Sequence[str], *, prob: float = 0.1):
        mt.MapTransform.__init__(self, keys)
        mt.RandomizableTransform.__init__(self, prob)

    def __call__(self, data: dict) -> dict:
        self.randomize(None)
        if not self._do_transform:
            return data
        out = dict(data)
        image = out["image"]
        noise = self.R.standard_normal(tuple(image.shape)).astype(np.float32)
        sigma = [0.0] + [float(self.R.uniform(0.0, 1.5))] * (noise.ndim - 1)
        noise = ndimage.gaussian_filter(noise, sigma)
        low, high = np.percentile(noise, (1.0, 99.8))
        field = (noise - low) / max(high - low, 1e-6) * float(self.R.uniform(0.2, 1.0))
        out["image"] = torch.as_tensor(field, dtype=image.dtype) if isinstance(image, torch.Tensor) else field
        for key in [*self.keys, "flow"]:
            if key != "image" and key in out:
                out[key] = out[key] * 0
        return out
