"""How large objects are: each object's extent in a label map, and the typical one.

A model trained on images rescaled so their objects have one typical size (as Cellpose rescales
cells to one diameter) predicts a new image at the scale that brings its objects to that size:
:mod:`segpipe.prediction.object_size` estimates it from a first prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def object_extents(labels: np.ndarray, spacing: Sequence[float]) -> list[float]:
    """Each object's largest physical extent: its bounding box's longest side, in spacing units."""
    boxes = ndimage.find_objects(labels)
    step = np.asarray(spacing, dtype=np.float64)
    return [float(np.max([(s.stop - s.start) for s in box] * step)) for box in boxes if box is not None]


def median_extent(labels: np.ndarray, spacing: Sequence[float]) -> float | None:
    """The median of :func:`object_extents`; ``None`` for a map without objects."""
    extents = object_extents(labels, spacing)
    return float(np.median(extents)) if extents else None
