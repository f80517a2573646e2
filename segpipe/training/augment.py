"""Random patches and augmentation for training, composed from MONAI transforms.

Training samples are dictionaries of channel-first arrays (:mod:`segpipe.training.targets`);
the transforms here crop a patch from each and augment it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai import transforms as mt


def augmentation(
    *,
    ndim: int,
    patch_size: Sequence[int],
    keys: Sequence[str],
    foreground_ratio: float = 0.33,
    affine: bool = False,
    elastic: bool = False,
    crop: bool = True,
) -> mt.Compose:
    """Random patch plus augmentation, the nnU-Net way kept small.

    Patches are centred on foreground with probability ``foreground_ratio`` (oversampling);
    then optional random rotation and scaling (``affine``) and elastic deformation
    (``elastic``); random flips along every axis, 90-degree rotations in the (y, x) plane
    (square patches only), and mild intensity scaling, shifting and gamma on the image.
    The distance target is interpolated linearly, class labels by nearest neighbour.
    With ``crop=False`` the samples are already patches (read from zarr) and only augmented.
    """
    spatial = tuple(int(p) for p in patch_size)
    modes = {"image": "constant", "label": "constant", "dist": "constant"}
    positives = foreground_ratio / max(1e-6, 1 - foreground_ratio)
    steps: list = []
    if crop:
        steps += [
            mt.SpatialPadd(keys=keys, spatial_size=spatial, mode=[modes[k] for k in keys]),
            mt.RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=spatial, pos=positives, neg=1.0, num_samples=1
            ),
        ]
    interp = {"image": "bilinear", "label": "nearest", "dist": "bilinear"}
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
        mt.RandScaleIntensityd(keys="image", factors=0.2, prob=0.3),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.3),
        mt.RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
        mt.ToTensord(keys=keys, track_meta=False),
    ]
    return mt.Compose(steps)
