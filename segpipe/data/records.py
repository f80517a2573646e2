"""One image of a catalog dataset, resolved to its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "validation", "test"]


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset, resolved to files, with its split.

    Attributes:
        name: Unique name inside the dataset (the file stem, plus the split for regions).
        image: Absolute path of the image file.
        labels: Absolute path of the label file, or ``None`` for an image without ground truth
            (to be segmented, not trained on or scored).
        split: ``train``, ``validation`` or ``test``.
        region: ``(start, stop)`` per spatial axis when the image is a region of a larger file.
        plane: For a 2D record cut from a 3D image file (CTC per-slice ground truth): the ``z``.
        ignore: Absolute path of the image's ignore mask (nonzero: not annotated), or ``None``.
        frame: The time point of a sequence stored one file per frame (a CTC sequence's ``t005``).
    """

    name: str
    image: Path
    labels: Path | None
    split: Split
    region: tuple[tuple[int, int], ...] | None = None
    plane: int | None = None
    ignore: Path | None = None
    frame: int | None = None
