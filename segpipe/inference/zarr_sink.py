"""A :class:`~segpipe.inference.stream.Sink` writing a prediction group: probabilities and class map.

Finished rows go to ``s0`` (probabilities, stored as float16 by default) and
``labels/semantic/s0`` (the most probable class); progress is recorded in the group's
attributes after the rows are written. zarr writes each chunk file atomically, so a run killed
mid-write leaves every chunk either old or new, and the rows it had not recorded are written
again, identically, on resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from segpipe.inference.windows import scan_interval

PROGRESS_KEY = "progress"


def prediction_chunks(
    shape: Sequence[int], *, ndim: int, channels: bool, roi0: int, overlap: float, edge: int | None = None
) -> tuple[int, ...]:
    """Chunks for a prediction array ``([channels,] *frames, *spatial)``.

    All channels share a chunk; each frame has its own; the first spatial axis is chunked by
    the window step (at least 8), so the rows handed out after each row of windows fill whole
    chunks (no read-modify-write); the other spatial axes are cut at ``edge`` (256: a chunk row
    of the step's height is thin, and fewer, larger chunks write faster).
    """
    edge = edge or 256
    spatial = tuple(int(s) for s in shape[-ndim:])
    leading = tuple(int(s) for s in shape[: len(shape) - ndim])
    step = scan_interval(max(spatial[0], roi0), roi0, overlap)
    first = min(step * -(-8 // step), spatial[0])
    head = (leading[0], *(1 for _ in leading[1:])) if channels else tuple(1 for _ in leading)
    return (*head, first, *(min(edge, s) for s in spatial[1:]))


class ZarrSink:
    """Writes finished rows into a prediction group and records progress in its attributes.

    Args:
        group: The prediction group (progress lives in its attributes).
        ndim: Spatial axes.
        n_classes: Class channels (the rest, if any, is the distance map).
        probabilities: ``(channels, *lead, *spatial)`` array, or ``None`` to keep none.
        semantic: ``(*lead, *spatial)`` uint8 array for the class map, or ``None``.
    """

    def __init__(
        self,
        group: zarr.Group,
        *,
        ndim: int,
        n_classes: int,
        probabilities: zarr.Array | None,
        semantic: zarr.Array | None,
    ):
        self.group, self.ndim, self.n_classes = group, ndim, n_classes
        self.probabilities, self.semantic = probabilities, semantic

    @property
    def align(self) -> tuple[int, ...]:
        """Pieces handed to :meth:`write` are cut along the spatial axes after the first at chunk multiples."""
        arrays = [a for a in (self.semantic, self.probabilities) if a is not None]
        if not arrays:
            return (1,) * (self.ndim - 1)
        return tuple(int(c) for c in arrays[0].chunks[len(arrays[0].chunks) - self.ndim + 1 :])

    def write(self, frame: tuple[int, ...], box: tuple[slice, ...], values: np.ndarray) -> None:
        if self.probabilities is not None:
            self.probabilities[(slice(None), *frame, *box)] = _cast(values, self.probabilities.dtype)
        if self.semantic is not None:
            self.semantic[(*frame, *box)] = class_map(values[: self.n_classes])

    def done(self) -> tuple[int, int]:
        record = self.group.attrs.get(PROGRESS_KEY) or {"frames": 0, "rows": 0}
        return int(record["frames"]), int(record["rows"])

    def mark(self, frames: int, rows: int) -> None:
        self.group.attrs[PROGRESS_KEY] = {"frames": int(frames), "rows": int(rows)}


def _cast(values: np.ndarray, dtype) -> np.ndarray:
    """``values.astype(dtype)``; float16 through torch, several times faster than numpy's conversion."""
    if np.dtype(dtype) == np.float16:
        return float16(values)
    return values.astype(dtype)


def float16(values: np.ndarray) -> np.ndarray:
    """``values.astype(np.float16)`` through torch, several times faster than numpy's conversion."""
    import torch  # loaded already where a network runs; a files-only process never converts

    return torch.from_numpy(np.ascontiguousarray(values)).half().numpy()


def class_map(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class per voxel, first class on ties: :func:`segpipe.inference.postprocess.semantic_labels`,
    computed by running comparisons (several times faster than ``argmax`` over the leading axis)."""
    if probabilities.shape[0] == 2:
        return np.greater(probabilities[1], probabilities[0]).view(np.uint8)
    best = probabilities[0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    better = np.empty(best.shape, dtype=bool)
    for c in range(1, probabilities.shape[0]):
        np.greater(probabilities[c], best, out=better)
        np.copyto(labels, c, where=better)
        np.maximum(best, probabilities[c], out=best)
    return labels


class ChannelsFirst:
    """A ``(*frames, C, *spatial)`` array indexed as ``(C, *frames, *spatial)``.

    NGFF wants a time axis before channels, while the stream works channel first; prediction
    groups of time-lapses store ``(t, c, ...)`` and hand this view to the sink and to instance
    labelling. Keys must give the channel, then every frame axis, then spatial slices.
    """

    def __init__(self, array, frames: int):
        self.array, self.frames = array, frames
        shape = tuple(array.shape)
        self.shape = (shape[frames], *shape[:frames], *shape[frames + 1 :])
        self.dtype = array.dtype
        chunks = tuple(array.chunks)
        self.chunks = (chunks[frames], *chunks[:frames], *chunks[frames + 1 :])
        self.ndim = len(shape)

    def _key(self, key: tuple) -> tuple:
        key = tuple(key)
        return (*key[1 : 1 + self.frames], key[0], *key[1 + self.frames :])

    def __getitem__(self, key):
        return self.array[self._key(key)]

    def __setitem__(self, key, value) -> None:
        self.array[self._key(key)] = value
