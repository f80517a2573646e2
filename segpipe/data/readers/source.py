"""Lazy image sources: shape and metadata up front, pixels read slab by slab.

A :class:`Source` presents any file (or set of files) as a ``(T, C, Z, Y, X)`` array and reads
only the part asked for, so ingest can stream a stack larger than memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segpipe.data.readers.axes import CANONICAL

Window = tuple[slice, slice, slice]  # z, y, x


@dataclass(frozen=True)
class Metadata:
    """What a file says about its pixels.

    Attributes:
        spacing: Physical size along ``(z, y, x)``; an entry is ``None`` when the file is silent.
        unit: Unit of the spacing, as an NGFF (UDUNITS) name, or ``None``.
        affine: 4x4 voxel-to-world matrix of a NIfTI file, in the file's own ``(i, j, k)`` order.
        channel_names: Each channel's name where the file names them (OME ``Channel Name``).
        time_step: Seconds between two time points, where the file says (OME ``TimeIncrement``,
            ImageJ ``finterval``).
        world: The space that affine maps to, as NIfTI names it (``scanner``, ``aligned``,
            ``talairach``, ``mni``, ``template``); ``None`` when the file does not say.
        axes: The file axes as interpreted: one canonical letter (or ``-``) per file axis.
        qform: A NIfTI file's qform, where its code is set (kept beside the sform it may differ from).
        qform_space: The space that qform maps to, as NIfTI names it.
    """

    spacing: tuple[float | None, float | None, float | None] = (None, None, None)
    unit: str | None = None
    affine: np.ndarray | None = None
    axes: str = ""
    world: str | None = None
    time_step: float | None = None
    channel_names: tuple[str | None, ...] | None = None
    qform: np.ndarray | None = None
    qform_space: str | None = None


class Source(ABC):
    """A readable ``(T, C, Z, Y, X)`` image; use as a context manager to release the file."""

    path: Path
    shape: tuple[int, int, int, int, int]
    dtype: np.dtype
    meta: Metadata

    @abstractmethod
    def read(self, t: int, window: Window) -> np.ndarray:
        """Pixels of frame ``t`` inside ``window`` as a ``(C, z, y, x)`` array."""

    def close(self) -> None:
        """Release open files (nothing by default)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def frames(self) -> int:
        return self.shape[0]

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def spatial(self) -> tuple[int, int, int]:
        return self.shape[2:]  # type: ignore[return-value]

    def read_all(self) -> np.ndarray:
        """The whole array, ``(T, C, Z, Y, X)``: for small files and tests."""
        full = (slice(None),) * 3
        return np.stack([self.read(t, full) for t in range(self.frames)])


def to_canonical(block: np.ndarray, kept: str) -> np.ndarray:
    """Reorder a block whose axes are ``kept`` (a subset of ``CZYX``) to ``(C, Z, Y, X)``."""
    order = [a for a in CANONICAL[1:] if a in kept]
    block = np.transpose(block, [kept.index(a) for a in order])
    for position, axis in enumerate(CANONICAL[1:]):
        if axis not in kept:
            block = np.expand_dims(block, position)
    return block


def file_index(mapped: str, t: int, window: Window) -> tuple[tuple, str]:
    """Index into the file's array for frame ``t`` and ``window``, and the axes it keeps."""
    wanted = {"T": t, "C": slice(None), "Z": window[0], "Y": window[1], "X": window[2]}
    index, kept = [], ""
    for letter in mapped:
        if letter == "-":
            index.append(0)
        elif letter == "T":
            index.append(t)
        else:
            index.append(wanted[letter])
            kept += letter
    return tuple(index), kept


class SelectedSource(Source):
    """One plane (``Z = z``) of another source, seen as a single-plane image."""

    def __init__(self, inner: Source, *, z: int):
        if not 0 <= z < inner.spatial[0]:
            from segpipe.errors import InputError

            raise InputError(f"{inner.path}: plane {z} requested, the file has {inner.spatial[0]} planes")
        self.inner, self.z = inner, z
        self.path, self.dtype = inner.path, inner.dtype
        t, c, _, y, x = inner.shape
        self.shape = (t, c, 1, y, x)
        self.meta = inner.meta

    def read(self, t: int, window: Window) -> np.ndarray:
        return self.inner.read(t, (slice(self.z, self.z + 1), window[1], window[2]))

    def close(self) -> None:
        self.inner.close()


class LastReadCache(Source):
    """Another source that keeps its last block, so a check pass and a write pass over the
    same single slab (a small label map) read the file once; holds one block at most."""

    def __init__(self, inner: Source):
        self.inner = inner
        self.path, self.shape, self.dtype, self.meta = inner.path, inner.shape, inner.dtype, inner.meta
        self._key: tuple | None = None
        self._block: np.ndarray | None = None

    def read(self, t: int, window: Window) -> np.ndarray:
        key = (t, tuple((s.start, s.stop) for s in window))
        if key != self._key:
            self._key, self._block = None, None
            self._block = self.inner.read(t, window)
            self._key = key
        return self._block  # type: ignore[return-value]

    def close(self) -> None:
        self._block = None
        self.inner.close()


#: Pixel types few tools compute on, read as the next type that holds every value exactly:
#: half floats (scipy's filters refuse them) and 1-bit images (no arithmetic on bool).
WIDER = {np.dtype(np.float16): np.dtype(np.float32), np.dtype(bool): np.dtype(np.uint8)}


class WidenedSource(Source):
    """Another source whose pixels are read as :data:`WIDER` says (the values unchanged)."""

    def __init__(self, inner: Source):
        self.inner = inner
        self.path, self.shape, self.meta = inner.path, inner.shape, inner.meta
        self.dtype = WIDER[np.dtype(inner.dtype)]

    def read(self, t: int, window: Window) -> np.ndarray:
        return self.inner.read(t, window).astype(self.dtype)

    def close(self) -> None:
        self.inner.close()
