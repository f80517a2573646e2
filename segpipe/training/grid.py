"""Training images on the model's pixel grid.

A model is trained at one pixel size (its card's ``spacing``, planned by
:func:`segpipe.training.plan.plan_spacing`); a training or validation image stored at another is
resampled to it, as prediction resamples new images (:mod:`segpipe.prediction.resampled`): the
normalized image linearly, labels and unannotated pixels to the nearest pixel, with the same
pixel-centre alignment (:func:`segpipe.inference.resample.resample`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segpipe.inference.resample import resample, resampled_shape, spacing_differs, to_spacing


def to_grid(
    image: np.ndarray, labels: np.ndarray, ignored: np.ndarray | None, *, spacing: Sequence[float], target: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``image`` (channel-first, float), ``labels`` and ``ignored`` (spatial) at pixel size ``target``.

    Returned unchanged when ``spacing`` is ``target`` (within
    :data:`~segpipe.inference.resample.SPACING_TOLERANCE`, as prediction decides).
    """
    if not spacing_differs(spacing, target):
        return image, labels, ignored
    shape = resampled_shape(labels.shape, spacing, target)
    return to_spacing(image, spacing, target), _nearest(labels, shape), None if ignored is None else _nearest(ignored, shape)


def _nearest(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty((1, *shape), values.dtype)
    resample(values[np.newaxis], out, order=0)
    return out[0]
