"""A folder of 2D slice files seen as one 3D stack, in natural sort order."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from segpipe.errors import InputError
from segpipe.data.readers.source import Metadata, Source, Window


def natural_key(path: Path | str) -> list:
    """Sort key that orders ``z2`` before ``z10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", Path(path).name)
    return [int(p) if p.isdigit() else p.lower() for p in parts]


class SliceStack(Source):
    """Slices ``files`` (2D each, same shape and dtype) stacked along ``Z``.

    Slices are opened one at a time when read, so memory holds only the planes asked for.
    """

    def __init__(self, folder: Path, files: Sequence[Path], *, opener: Callable[[Path], Source]):
        if not files:
            raise InputError(f"{folder}: no slice files in the folder")
        self.path = folder
        self._files = list(files)
        self._opener = opener
        with opener(self._files[0]) as first:
            self._check(first, None)
            t, c, _, y, x = first.shape
            self.shape = (1, c, len(self._files), y, x)
            self.dtype = first.dtype
            spacing = (None, *first.meta.spacing[1:])
            self.meta = Metadata(spacing=spacing, unit=first.meta.unit, axes=f"slices({len(self._files)})")  # type: ignore[arg-type]

    def _check(self, plane: Source, expected: tuple | None) -> None:
        if plane.frames != 1 or plane.spatial[0] != 1:
            raise InputError(f"{plane.path}: a slice of the stack {self.path} must be 2D, it has shape {plane.shape}")
        if expected is not None and (plane.shape, plane.dtype) != expected:
            raise InputError(
                f"{plane.path}: slice has shape {plane.shape[1:]} {plane.dtype}, "
                f"the stack's first slice {self._files[0].name} has {expected[0][1:]} {expected[1]}"
            )

    def read(self, t: int, window: Window) -> np.ndarray:
        planes = []
        for path in self._files[window[0]]:
            with self._opener(path) as plane:
                self._check(plane, (self.shape[:2] + (1,) + self.shape[3:], self.dtype))
                planes.append(plane.read(0, (slice(None), window[1], window[2])))
        return np.concatenate(planes, axis=1)
