"""Content checks shared by every reader: what an image or label array must satisfy.

The ``*_block`` functions check one slab of a streamed image, so a stack larger than memory
gets the same checks as a small one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.errors import InputError


def check_image_dtype(dtype: np.dtype, path: Path) -> None:
    """Images must be integer or floating point (not bool, complex or structured).

    Raises:
        InputError: Any other dtype.
    """
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputError(f"{path}: image dtype {dtype} is not numeric (integer or float)")


def check_image_block(block: np.ndarray, path: Path, *, offset: tuple[int, ...] | None = None) -> None:
    """Refuse NaN and Inf in a (part of an) image, ``(channel, [z,] y, x)``; ``offset`` places the block in the file.

    Raises:
        InputError: The block holds NaN or Inf, with the count and the first index.
    """
    if np.issubdtype(block.dtype, np.floating):
        bad = ~np.isfinite(block)
        if bad.any():
            first = np.argwhere(bad)[0]
            if offset is not None:
                first = first + np.asarray(offset)
            names = ["channel", *"zyx"[4 - block.ndim :]] if 2 <= block.ndim <= 4 else [f"axis {k}" for k in range(block.ndim)]
            where = ", ".join(f"{name} {int(i)}" for name, i in zip(names, first))
            raise InputError(f"{path}: image holds {int(bad.sum())} NaN or Inf values (the first at {where})")


def check_labels(labels: np.ndarray, path: Path, *, n_classes: int | None = None) -> np.ndarray:
    """Check a label map and return it as an unsigned integer array.

    Args:
        labels: The label array.
        path: File it came from, for messages.
        n_classes: For semantic maps, the number of classes; values must be below it.

    Raises:
        InputError: Non-integer values, negative labels, or class ids out of range.
    """
    high = check_label_block(labels, path, n_classes=n_classes)
    return labels.astype(label_dtype(high), copy=False)


def check_label_block(labels: np.ndarray, path: Path, *, n_classes: int | None = None) -> int:
    """Check a label map (or one slab of it); returns its largest label.

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
    return int(high)


def label_dtype(high: int) -> np.dtype:
    """The smallest unsigned integer type holding labels up to ``high``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def check_objects(infos: list[dict]) -> None:
    """Refuse ground truth that cannot train or choose a model: every label map empty, or a
    validation split whose label maps are all empty (validation scores a model by the objects it
    finds; with none, no checkpoint could ever be kept). Empty maps beside others are fine.

    Args:
        infos: The ingested images' infos (``split``, ``labels_source``, ``has_objects``; images
            without ground truth have ``has_objects`` ``None``).

    Raises:
        InputError: Naming the label files.
    """
    labelled = [info for info in infos if info.get("has_objects") is not None]
    if not labelled or any(info["has_objects"] for info in labelled):
        validation = [info for info in labelled if info["split"] == "validation"]
        if validation and not any(info["has_objects"] for info in validation):
            raise InputError(
                f"the validation split has no object: its label maps are empty ({_files(validation)}); validation "
                "could never score a model. Put an image with objects into the validation split, or leave the "
                "validation split out (training then keeps the last checkpoint)"
            )
        return
    raise InputError(
        f"every label map is empty ({_files(labelled)}): nothing to train on or score against; "
        "check the catalog's labels: (are these the ground-truth files?)"
    )


def check_channels(infos: list[dict]) -> None:
    """Refuse a dataset whose images have different numbers of channels: one network reads them all.

    Args:
        infos: The ingested images' infos (``source``, ``shape``: channels first).

    Raises:
        InputError: Naming a file of the rarer channel count (the larger on a tie) and one of the other.
    """
    by_count: dict[int, list[dict]] = {}
    for info in infos:
        by_count.setdefault(int(info["shape"][0]), []).append(info)
    if len(by_count) < 2:
        return
    rare, common = sorted(by_count.items(), key=lambda item: (len(item[1]), -item[0]))[:2]
    raise InputError(
        f"{rare[1][0]['source']}: {rare[0]} channel(s), where {common[1][0]['source']} has {common[0]}: a model reads "
        "every image of a dataset the same way; choose the same channels of each with channels: in the catalog entry "
        "(channels: [0] reads a grey image saved in colour as one channel)"
    )


def _files(infos: list[dict], shown: int = 3) -> str:
    files = list(dict.fromkeys(str(info["labels_source"]) for info in infos))
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return f"{len(files)} file{'s' if len(files) > 1 else ''}: {', '.join(files[:shown])}{more}"
