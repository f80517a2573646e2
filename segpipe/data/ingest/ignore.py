"""Sparse ground truth at ingest: the ignore value and the ignore masks become one ``labels/ignore`` map.

A catalog entry marks what its labels leave unannotated by a label value (``ignore_label``,
nnU-Net's ``ignore`` label) or by a mask per image (``ignore_masks``, nonzero = not
annotated), or both. The store keeps the annotation and the unannotated area apart: the
ground truth (``labels/gt``) holds every label value as the source has it, except the ignore
value, which becomes background there; ``labels/ignore`` is 1 on the pixels carrying the
ignore value and on the mask's pixels that no label covers (a mask never hides an annotated
object), 0 elsewhere.
"""

from __future__ import annotations

import numpy as np

from segpipe.data.readers import Source
from segpipe.errors import InputError


def split_ignored(
    labels: np.ndarray, mask: np.ndarray | None, ignore_label: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Separate a block of labels into the annotation and the unannotated pixels.

    Args:
        labels: Label values as read from the source.
        mask: The ignore mask's values on the same pixels (nonzero = not annotated), or ``None``.
        ignore_label: The label value meaning "not annotated", or ``None``.

    Returns:
        The labels with the ignore value replaced by 0, and the ignored pixels (``bool``;
        ``None`` when neither a mask nor an ignore value is given).
    """
    ignored = None
    if ignore_label is not None:
        ignored = labels == ignore_label
        labels = np.where(ignored, np.zeros((), labels.dtype), labels)
    if mask is not None:
        unlabelled = (mask != 0) & (labels == 0)
        ignored = unlabelled if ignored is None else ignored | unlabelled
    return labels, ignored


def check_ignore_source(mask: Source, image: Source, *, ndim: int) -> None:
    """An ignore mask must be one channel of numbers with its image's shape and frames.

    Raises:
        InputError: Naming the mask file and what does not fit.
    """
    if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
        raise InputError(f"{mask.path}: ignore mask dtype {mask.dtype} is not numeric")
    if mask.channels != 1:
        raise InputError(f"{mask.path}: an ignore mask has one channel, this file has {mask.channels}")
    image_shape, mask_shape = image.spatial[3 - ndim :], mask.spatial[3 - ndim :]
    if image_shape != mask_shape or mask.spatial[0] != image.spatial[0]:
        raise InputError(
            f"{mask.path}: ignore mask has spatial shape {mask_shape} but its image {image.path} has {image_shape}"
        )
    if mask.frames != image.frames:
        raise InputError(f"{mask.path}: ignore mask has {mask.frames} frames but its image {image.path} has {image.frames}")
