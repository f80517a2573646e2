"""Where a stream's finished rows go, and what a stream did.

:func:`segpipe.inference.stream.stream_predict` writes to a :class:`Sink`: :class:`ArraySink`
keeps the output in memory, :class:`~segpipe.inference.zarr_sink.ZarrSink` writes it to a
prediction group. Neither needs torch, so the results travel to processes that have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Sink(Protocol):
    """Where finished rows go, and the record of what is done."""

    def write(self, frame: tuple[int, ...], box: tuple[slice, ...], values: np.ndarray) -> None:
        """Store a finished piece of ``frame``: ``box`` slices its first spatial axes; values are float32 ``(C, ...)``."""

    def done(self) -> tuple[int, int]:
        """``(frames, rows)``: frames complete, and rows complete in the next frame."""

    def mark(self, frames: int, rows: int) -> None:
        """Record progress; called after the corresponding writes returned."""


@dataclass
class StreamStats:
    """What a run did: windows and batches run, rows written, peak band memory, seconds, the frames
    predicted and those written as background for holding only noise."""

    windows: int = 0
    batches: int = 0
    rows_written: int = 0
    band_bytes: int = 0
    seconds: float = 0.0
    frames: list[int] = field(default_factory=list)
    noise_frames: list[int] = field(default_factory=list)


class ArraySink:
    """Keeps the output in memory (float32), for tests and small images."""

    in_memory = True

    def __init__(self, channels: int, lead: Sequence[int], shape: Sequence[int]):
        self.values = np.full((channels, *lead, *shape), np.nan, dtype=np.float32)
        self.progress = (0, 0)

    def write(self, frame, box, values) -> None:
        self.values[(slice(None), *frame, *box)] = values

    def done(self) -> tuple[int, int]:
        return self.progress

    def mark(self, frames: int, rows: int) -> None:
        self.progress = (frames, rows)
