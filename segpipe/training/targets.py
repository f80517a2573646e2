"""What the network learns from: training samples and their distance-map target.

Training samples are dictionaries of channel-first arrays:

- ``image``: float32, normalized intensities, ``(C, *spatial)``;
- ``label``: class map, ``(1, *spatial)`` (background 0, objects 1 for instance datasets);
- ``dist``: for instance datasets, each object's distance to its border, scaled to 1 at its
  centre, ``(1, *spatial)``; the network regresses it so touching objects can be split;
- ``boundary``: for instance models with a boundary output, where objects touch, ``(1, *spatial)``;
- ``heat``: for instance models with a flow output, each object's heat from its centre
  (:func:`centre_heat`), ``(1, *spatial)``; augmentation moves it as an image, then
  :class:`~segpipe.training.augment.FlowFromHeatd` turns it into ``flow``, the unit vectors
  pointing up its slope, ``(ndim, *spatial)``, so flips and turns need no vector arithmetic;
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


#: Inside pixels (voxels) diffused at once by :func:`centre_heat`: its work arrays take about 1 kB
#: per inside pixel, so a large volume's objects are taken in groups of about this many (about 130 MB).
HEAT_GROUP_PIXELS = 1 << 17


def centre_heat(labels: np.ndarray, *, group_pixels: int = HEAT_GROUP_PIXELS) -> np.ndarray:
    """Heat diffused inside each object from a source at its centre, as Cellpose makes its flows.

    The source is the object's pixel nearest the median of its coordinates; heat spreads to
    the pixels of the same object only (8- or 26-neighbours), for twice the largest object's
    extent in steps. The result is ``log(1 + heat)`` scaled to 1 at each object's centre: it
    falls from the centre to the border along the object's shape, so its slope points every
    pixel of a curved or elongated object to one place, where a distance map has a ridge.

    Objects are diffused in groups of about ``group_pixels`` inside pixels, each group within the
    box around it (ordered along the first axis, so a group's box is a slab), which bounds the
    memory a large volume takes; heat never crosses objects, so the result is the same.

    Returns:
        float32 array, 0 on background, in (0, 1] inside objects.
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float32)
    boxes = ndimage.find_objects(labels)
    ids = np.array([i + 1 for i, box in enumerate(boxes) if box is not None])
    if ids.size == 0:
        return out
    steps = 2 * max(box.stop - box.start for i in ids for box in boxes[i - 1])
    sizes = np.bincount(labels.ravel(), minlength=int(ids.max()) + 1)[ids]
    order = np.argsort([boxes[i - 1][0].start for i in ids], kind="stable")
    group: list[int] = []
    held = 0
    for k in order:
        group.append(int(ids[k]))
        held += int(sizes[k])
        if held >= group_pixels or k == order[-1]:
            _heat_group(labels, np.array(sorted(group)), boxes, steps, out)
            group, held = [], 0
    return out


def _heat_group(labels: np.ndarray, group: np.ndarray, boxes: list, steps: int, out: np.ndarray) -> None:
    """:func:`centre_heat` of the objects ``group``, within the box around them, written into ``out``."""
    window = tuple(slice(min(boxes[i - 1][a].start for i in group), max(boxes[i - 1][a].stop for i in group))
                   for a in range(labels.ndim))
    crop = labels[window]
    crop = np.where(np.isin(crop, group), crop, 0)
    padded = np.pad(crop, 1).ravel()
    shape = tuple(s + 2 for s in crop.shape)
    inside = np.flatnonzero(padded > 0)
    strides = np.array([int(np.prod(shape[a + 1 :])) for a in range(crop.ndim)])
    offsets = np.array([np.dot(np.array(o) - 1, strides) for o in np.ndindex(*(3,) * crop.ndim)])
    neighbours = inside[:, None] + offsets[None, :]
    same = padded[neighbours] == padded[inside][:, None]
    slot = np.full(padded.size, inside.size, np.int64)  # slot inside.size holds 0 heat
    slot[inside] = np.arange(inside.size)
    links = np.where(same, slot[neighbours], inside.size)
    del neighbours
    count = same.sum(axis=1).astype(np.float64)
    del same
    sources = slot[np.ravel_multi_index(tuple((_centres(crop, group) + 1).T), shape)]
    heat = np.zeros(inside.size + 1)
    for _ in range(steps):
        heat[sources] += 1.0
        heat[:-1] = heat[links].sum(axis=1) / count
    values = np.log1p(heat[:-1])
    peaks = np.zeros(int(group.max()) + 1)
    np.maximum.at(peaks, padded[inside], values)
    result = np.zeros(padded.size, np.float32)
    result[inside] = values / np.maximum(peaks[padded[inside]], 1e-12)
    result = result.reshape(shape)[(slice(1, -1),) * crop.ndim]
    out[window] = np.where(crop > 0, result, out[window])


def _centres(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each object's pixel nearest the median of its coordinates, ``(len(ids), ndim)``."""
    coords = np.argwhere(labels > 0)
    owner = labels[tuple(coords.T)]
    order = np.argsort(owner, kind="stable")
    coords, owner = coords[order], owner[order]
    bounds = zip(np.searchsorted(owner, ids), np.searchsorted(owner, ids, side="right"))
    centres = []
    for a, b in bounds:
        own = coords[a:b]
        centres.append(own[np.argmin(((own - np.median(own, axis=0)) ** 2).sum(axis=1))])
    return np.array(centres)


def flow_from_heat(heat: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Unit vectors up the slope of ``heat`` (central differences), on ``foreground`` pixels; 0 elsewhere.

    Args:
        heat: ``spatial`` float array (:func:`centre_heat`, possibly resampled or flipped).
        foreground: ``spatial`` boolean array.

    Returns:
        float32 ``(ndim, *spatial)``.
    """
    heat = np.asarray(heat, np.float64)
    slopes = np.stack(np.gradient(heat)) if min(heat.shape) > 1 else np.zeros((heat.ndim, *heat.shape))
    norm = np.sqrt((slopes**2).sum(axis=0))
    keep = np.asarray(foreground, bool) & (norm > 1e-12)
    flow = np.zeros(slopes.shape, np.float32)
    flow[:, keep] = slopes[:, keep] / norm[keep]
    return flow


def training_sample(
    image: np.ndarray, labels: np.ndarray, *, instances: bool, spacing=None, boundary: bool = False,
    flow: bool = False, ignore: np.ndarray | None = None,
) -> dict:
    """Build the training dictionary of one normalized image and its labels (``boundary``: with
    the touching-boundary target of instance labels; ``flow``: with the heat the flow target is
    made from; ``ignore``: the unannotated pixels)."""
    sample = {"image": image.astype(np.float32, copy=False)}
    if ignore is not None:
        sample["ignore"] = np.asarray(ignore, np.float32)[np.newaxis]
    if instances:
        sample["label"] = (labels > 0).astype(np.int64)[np.newaxis]
        sample["dist"] = distance_target(labels, spacing=spacing)[np.newaxis]
        if boundary:
            sample["boundary"] = boundary_target(labels)[np.newaxis]
        if flow:
            sample["heat"] = centre_heat(labels)[np.newaxis]
    else:
        sample["label"] = labels.astype(np.int64)[np.newaxis]
    return sample
