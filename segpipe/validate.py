"""Content checks shared by every reader: what an image or label array must satisfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.errors import InputError


def check_image(array: np.ndarray, path: Path) -> None:
    """Refuse images the pipeline cannot learn from or would silently corrupt.

    Raises:
        InputError: Non-numeric dtype, NaN or Inf values, or an empty (size 0) array.
    """
    if array.size == 0:
        raise InputError(f"{path}: image has no pixels (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{path}: image dtype {array.dtype} is not numeric")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"{path}: image holds {int(bad.sum())} NaN or Inf values (first at index {first})")


def check_labels(labels: np.ndarray, path: Path, *, n_classes: int | None = None) -> np.ndarray:
    """Check a label map and return it as an unsigned integer array.

    Args:
        labels: The label array.
        path: File it came from, for messages.
        n_classes: For semantic maps, the number of classes; values must be below it.

    Raises:
        InputError: Non-integer values, negative labels, or class ids out of range.
    """
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise InputError(f"{path}: label map holds non-integer values (dtype {labels.dtype})")
    elif not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"{path}: label map dtype {labels.dtype} is not an integer type")
    low, high = (labels.min(), labels.max()) if labels.size else (0, 0)
    if low < 0:
        raise InputError(f"{path}: label map holds negative labels (minimum {low})")
    if n_classes is not None and high >= n_classes:
        raise InputError(f"{path}: label value {int(high)} but the catalog declares {n_classes} classes")
    return labels.astype(_label_dtype(int(high)), copy=False)


def check_pair(image: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path, *, ndim: int) -> None:
    """Image and labels must cover the same pixels, and labelled images must have signal.

    Raises:
        InputError: Spatial shapes differ, or the labels mark objects on a constant image.
    """
    if image.shape[-ndim:] != labels.shape:
        raise InputError(
            f"{image_path} has spatial shape {image.shape[-ndim:]} but its labels {label_path} have shape {labels.shape}"
        )
    if labels.any() and image.min() == image.max():
        raise InputError(f"{image_path}: image is constant ({image.min()}) but {label_path} labels objects in it")


def _label_dtype(high: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)
