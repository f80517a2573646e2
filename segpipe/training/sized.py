"""A dataset store seen with each labelled image rescaled so its objects have one typical size.

Training, validation and the post-processing's tuning read images through ``store.images``; an
:class:`SizedStore` gives them each labelled image with the pixel size at which its objects'
median extent (:func:`segpipe.inference.object_size.median_extent`) is the model's
``object_size``, so every part of training resamples it there (:mod:`segpipe.training.grid`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from segpipe.data.store import ImageStore, StoredImage
from segpipe.inference.object_size import median_extent


class SizedStore:
    """``store`` with its labelled images at the pixel size that makes their objects ``object_size`` across."""

    def __init__(self, store: ImageStore, object_size: float):
        self.store = store
        self.object_size = float(object_size)
        self._factors: dict[str, float] = {}

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def images(self, split: str | None = None, *, labelled: bool | None = None) -> list[StoredImage]:
        return [self.sized(im) for im in self.store.images(split, labelled=labelled)]

    def sized(self, image: StoredImage) -> StoredImage:
        """``image`` with its pixel size scaled by ``object_size`` over its objects' median extent
        (unchanged without labels or objects)."""
        if image.labels is None:
            return image
        if image.name not in self._factors:
            extent = median_extent(np.asarray(image.labels), image.spacing)
            self._factors[image.name] = self.object_size / extent if extent else 1.0
        factor = self._factors[image.name]
        return dataclasses.replace(image, spacing=tuple(float(s) * factor for s in image.spacing))
