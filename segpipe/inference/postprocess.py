"""From network outputs to label maps: semantic classes and separated instances."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import watershed


class InstanceParams(BaseModel):
    """How probabilities become objects; tuned on the validation split after training.

    Attributes:
        relief: The map seeds are found on and flooded: ``distance``, the predicted distance to
            the object border; ``boundary``, that distance lowered where the network sees a
            boundary between objects (``distance * (1 - boundary)``), which keeps touching cells
            apart where their distance maps run into each other (models with a boundary output).
        foreground_threshold: Foreground probability above which a pixel belongs to an object.
        seed_method: ``threshold``: seeds are the parts of the distance map above
            ``seed_threshold``; ``hmaxima``: seeds are its maxima at least ``seed_h`` above
            their surroundings (robust to objects of different sizes).
        seed_threshold: Normalized distance above which a pixel seeds an object (``threshold``).
        seed_h: Height of a seeding maximum (``hmaxima``).
        smoothing: Gaussian sigma, in pixels, applied to the distance map before seeding and
            flooding (0: none).
        min_size: Objects smaller than this many pixels are dropped.
    """

    model_config = ConfigDict(extra="forbid")

    relief: Literal["distance", "boundary"] = "distance"
    foreground_threshold: float = Field(0.5, gt=0, lt=1)
    seed_method: Literal["threshold", "hmaxima"] = "threshold"
    seed_threshold: float = Field(0.5, gt=0, lt=1)
    seed_h: float = Field(0.1, gt=0, lt=1)
    smoothing: float = Field(0.0, ge=0)
    min_size: int = Field(8, ge=0)


def seed_mask(distance: np.ndarray, mask: np.ndarray, params: InstanceParams) -> np.ndarray:
    """Pixels that seed objects, inside ``mask``; ``distance`` already smoothed as ``params`` says."""
    if params.seed_method == "hmaxima":
        return mask & h_maxima(distance, params.seed_h).astype(bool)
    return mask & (distance > params.seed_threshold)


def relief_map(distance: np.ndarray, boundary: np.ndarray | None, params: InstanceParams) -> np.ndarray:
    """The map to seed and flood (before smoothing): the distance, or the distance where no boundary is seen.

    Raises:
        ValueError: ``params.relief`` is ``boundary`` and there is no boundary map.
    """
    distance = distance.astype(np.float32, copy=False)
    if params.relief == "distance":
        return distance
    if boundary is None:
        raise ValueError("relief 'boundary' needs a model with a boundary output")
    return distance * (1.0 - boundary.astype(np.float32, copy=False))


def smoothed_distance(distance: np.ndarray, params: InstanceParams) -> np.ndarray:
    """The distance map the watershed floods: Gaussian-smoothed when ``params.smoothing`` > 0."""
    distance = distance.astype(np.float32, copy=False)
    return ndimage.gaussian_filter(distance, params.smoothing) if params.smoothing else distance


def semantic_labels(probabilities: np.ndarray) -> np.ndarray:
    """Class map: the most probable class per pixel (``probabilities`` is ``(C, *spatial)``)."""
    return np.argmax(probabilities, axis=0).astype(np.uint8)


def instance_labels(
    foreground: np.ndarray, distance: np.ndarray, params: InstanceParams, boundary: np.ndarray | None = None
) -> np.ndarray:
    """Split the foreground into objects with a seeded watershed on the predicted distance map.

    Seeds are the connected parts of :func:`seed_mask` (distance above a threshold, or its
    h-maxima) inside the foreground; a foreground component holding no seed becomes an object
    of its own, so small objects are not lost. Each seed then floods its basin of
    ``-distance``, within the foreground. Objects under ``params.min_size`` pixels are dropped,
    then each object's holes filled (:func:`fill_holes`).

    Args:
        foreground: Foreground probability, ``spatial``.
        distance: Predicted normalized distance to the object border, ``spatial``.
        params: Thresholds and minimum size.
        boundary: Predicted boundary probability, ``spatial`` (for ``params.relief == "boundary"``).

    Returns:
        uint32 instance map, objects numbered 1..N, 0 for background.
    """
    mask = foreground > params.foreground_threshold
    distance = smoothed_distance(relief_map(distance, boundary, params), params)
    seeds, n_seeds = ndimage.label(seed_mask(distance, mask, params))
    components, _ = ndimage.label(mask)
    seedless = np.setdiff1d(np.unique(components[mask]), np.unique(components[seeds > 0]))
    if seedless.size:
        extra = np.isin(components, seedless)
        seeds[extra] = n_seeds + np.searchsorted(seedless, components[extra]) + 1
    labels = watershed(-distance, markers=seeds, mask=mask)
    if params.min_size:
        too_small = np.bincount(labels.ravel()) < params.min_size
        too_small[0] = False
        labels[too_small[labels]] = 0
    return _relabel(fill_holes(labels))


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Give each object the background pixels it encloses (a dark nucleolus, a dim spot), in place.

    In 3D each plane along the first axis is filled on its own, as Cellpose fills its masks: a
    hole open to the top or bottom of a thin stack is still a hole in its planes. Only
    background is filled: an object inside another stays.
    """
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == index
        filled = ndimage.binary_fill_holes(own) if own.ndim < 3 else np.stack([ndimage.binary_fill_holes(p) for p in own])
        labels[box][filled & (labels[box] == 0)] = index
    return labels


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids, inverse = np.unique(labels, return_inverse=True)
    offset = 0 if ids[0] == 0 else 1
    return (inverse.reshape(labels.shape) + offset).astype(np.uint32)
