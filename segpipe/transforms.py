"""Intensity normalization, training targets and augmentation, composed from MONAI transforms.

Training samples are dictionaries of channel-first arrays:

- ``image``: float32, normalized intensities, ``(C, *spatial)``;
- ``label``: class map, ``(1, *spatial)`` (background 0, objects 1 for instance datasets);
- ``dist``: for instance datasets, each object's distance to its border, scaled to 1 at its
  centre, ``(1, *spatial)``; the network regresses it so touching objects can be split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai import transforms as mt
from scipy import ndimage
from skimage.segmentation import find_boundaries

SAMPLE_LIMIT = 2_000_000  # pixels drawn to estimate percentiles of large images


def percentile_normalize(image: np.ndarray, *, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale each channel so its ``low``..``high`` percentiles map to 0..1 (CSBDeep convention).

    Percentiles of large arrays are estimated from a regular subsample. Values outside the
    range are kept (not clipped), so bright objects stay distinguishable.

    Args:
        image: Channel-first array ``(C, *spatial)``.
        low: Lower percentile.
        high: Upper percentile.

    Returns:
        float32 array of the same shape.
    """
    out = np.empty(image.shape, dtype=np.float32)
    for c, channel in enumerate(image):
        lo, hi = intensity_percentiles(channel, (low, high))
        out[c] = (channel.astype(np.float32) - lo) / max(hi - lo, 1e-6)
    return out


def zscore_normalize(image: np.ndarray, *, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip each channel to its ``low``..``high`` percentiles, then subtract the mean and divide by the std.

    The nnU-Net scheme for MRI and other modalities without absolute units.
    """
    out = np.empty(image.shape, dtype=np.float32)
    for c, channel in enumerate(image):
        lo, hi = intensity_percentiles(channel, (low, high))
        clipped = np.clip(channel.astype(np.float32), lo, hi)
        out[c] = (clipped - clipped.mean()) / max(float(clipped.std()), 1e-6)
    return out


def window_normalize(image: np.ndarray, *, window: Sequence[float], mean: float, std: float) -> np.ndarray:
    """Clip to a fixed intensity window and z-score with dataset statistics (CT, absolute units)."""
    clipped = np.clip(image.astype(np.float32), window[0], window[1])
    return (clipped - mean) / max(std, 1e-6)


def normalize(image: np.ndarray, spec: dict) -> np.ndarray:
    """Normalize a channel-first image as the model card's ``normalization`` entry says.

    Args:
        image: ``(C, *spatial)`` array.
        spec: ``{"method": "percentile" | "zscore" | "ct", ...}`` with the method's parameters
            (``low``/``high`` percentiles; for ``ct`` the ``window``, ``mean`` and ``std``
            measured on the training foreground).
    """
    method = spec["method"]
    if method == "percentile":
        return percentile_normalize(image, low=spec["low"], high=spec["high"])
    if method == "zscore":
        return zscore_normalize(image, low=spec["low"], high=spec["high"])
    if method == "ct":
        return window_normalize(image, window=spec["window"], mean=spec["mean"], std=spec["std"])
    raise ValueError(f"unknown normalization method {method!r}")


def normalization_spec(method: str, fingerprint: dict) -> dict:
    """The normalization entry of a model card, with what the method needs from the fingerprint."""
    if method == "percentile":
        return {"method": method, "low": 1.0, "high": 99.8}
    if method == "zscore":
        return {"method": method, "low": 0.5, "high": 99.5}
    if method == "ct":
        stats = fingerprint["foreground_intensity"]
        return {"method": method, "window": [stats["p0_5"], stats["p99_5"]], "mean": stats["mean"], "std": stats["std"]}
    raise ValueError(f"unknown normalization method {method!r}")


def intensity_percentiles(channel: np.ndarray, percentiles: Sequence[float]) -> list[float]:
    """Percentiles of one channel, from a regular subsample when it is large."""
    flat = channel.reshape(-1)
    step = max(1, flat.size // SAMPLE_LIMIT)
    return [float(v) for v in np.percentile(flat[::step], percentiles)]


def distance_target(labels: np.ndarray, *, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Per-object distance to the object's border, normalized to 1 at each object's maximum.

    Touching objects are separated by their shared boundary, so the map dips to 0 between
    them: exactly what a watershed needs to split them again.

    Args:
        labels: Instance map, 0 for background.
        spacing: Physical pixel size, so distances are isotropic in anisotropic volumes.

    Returns:
        float32 array, 0 on background, in (0, 1] inside objects.
    """
    inner = (labels > 0) & ~find_boundaries(labels, mode="inner", background=0)
    dist = ndimage.distance_transform_edt(inner, sampling=spacing).astype(np.float32)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return dist
    peaks = np.asarray(ndimage.maximum(dist, labels=labels, index=ids), dtype=np.float32)
    lookup = np.zeros(int(ids.max()) + 1, dtype=np.float32)
    lookup[ids] = 1.0 / np.maximum(peaks, 1.0)
    return dist * lookup[labels]


def training_sample(image: np.ndarray, labels: np.ndarray, *, instances: bool, spacing=None) -> dict:
    """Build the training dictionary of one normalized image and its labels."""
    sample = {"image": image.astype(np.float32, copy=False)}
    if instances:
        sample["label"] = (labels > 0).astype(np.int64)[np.newaxis]
        sample["dist"] = distance_target(labels, spacing=spacing)[np.newaxis]
    else:
        sample["label"] = labels.astype(np.int64)[np.newaxis]
    return sample


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
