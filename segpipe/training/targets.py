"""What the network learns from: training samples and their distance-map target.

Training samples are dictionaries of channel-first arrays:

- ``image``: float32, normalized intensities, ``(C, *spatial)``;
- ``label``: class map, ``(1, *spatial)`` (background 0, objects 1 for instance datasets);
- ``dist``: for instance datasets, each object's distance to its border, scaled to 1 at its
  centre, ``(1, *spatial)``; the network regresses it so touching objects can be split;
- ``boundary``: for instance models with a boundary output, where objects touch, ``(1, *spatial)``;
- ``ignore``: for datasets whose ground truth leaves areas unannotated, 1.0 on those pixels,
  ``(1, *spatial)``; the loss leaves them out (:mod:`segpipe.training.losses`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries


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


def boundary_target(labels: np.ndarray) -> np.ndarray:
    """Where two objects touch: pixels next to a pixel of another object, and their neighbours
    inside objects (a band two or three pixels wide), as 1.0; elsewhere 0.

    Whole cells pressed against each other with dim cytoplasm are where a distance map alone
    runs from one cell into the next; this band is what a boundary output learns to see.
    """
    labels = np.asarray(labels)
    objects = labels > 0
    if not objects.any():
        return np.zeros(labels.shape, np.float32)
    top = int(labels.max()) + 1
    larger = ndimage.maximum_filter(labels, size=3)
    smaller = ndimage.minimum_filter(np.where(objects, labels, top), size=3)
    touching = objects & (((larger != labels) & (larger > 0)) | ((smaller != labels) & (smaller < top)))
    return (ndimage.binary_dilation(touching) & objects).astype(np.float32)


def training_sample(
    image: np.ndarray, labels: np.ndarray, *, instances: bool, spacing=None, boundary: bool = False,
    ignore: np.ndarray | None = None,
) -> dict:
    """Build the training dictionary of one normalized image and its labels (``boundary``: with
    the touching-boundary target of instance labels; ``ignore``: the unannotated pixels)."""
    sample = {"image": image.astype(np.float32, copy=False)}
    if ignore is not None:
        sample["ignore"] = np.asarray(ignore, np.float32)[np.newaxis]
    if instances:
        sample["label"] = (labels > 0).astype(np.int64)[np.newaxis]
        sample["dist"] = distance_target(labels, spacing=spacing)[np.newaxis]
        if boundary:
            sample["boundary"] = boundary_target(labels)[np.newaxis]
    else:
        sample["label"] = labels.astype(np.int64)[np.newaxis]
    return sample
