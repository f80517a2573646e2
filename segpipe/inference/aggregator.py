"""Blending window outputs into a rolling slab of a frame (in the style of TorchIO's ``GridAggregator``).

The buffer spans a band of rows of the frame's first axis, ``[low, low + rows)``, and the whole
extent of the other axes, per test-time pass: a weighted sum of window outputs and the sum of
weights. Windows arrive ordered along the first axis; once no later window can touch the rows
below some row, :meth:`SlabAggregator.blended` divides those rows by their weights (piece by
piece along the second axis) and :meth:`SlabAggregator.advance` shifts the band. Each window is added exactly as MONAI adds it (``output * weight``, then ``+=``),
so the blended values match ``sliding_window_inference`` on the whole frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segpipe.inference.windows import Window


class SlabAggregator:
    """Weighted sums of overlapping windows over a band of rows.

    Args:
        frame_shape: Spatial shape of the frame.
        roi: Window size.
        channels: Output channels of the network.
        n_passes: Test-time passes blended separately.
        rows: Band height along the first axis (see :func:`segpipe.inference.windows.band_rows`).
        weights: Importance map, ``roi``-shaped, on ``device``.
        low: First row not yet handed out (non-zero when resuming).
        device: Where the buffers live (the network's device).
    """

    def __init__(
        self,
        *,
        frame_shape: Sequence[int],
        roi: Sequence[int],
        channels: int,
        n_passes: int,
        rows: int,
        weights: torch.Tensor,
        low: int = 0,
        device: torch.device | str = "cpu",
    ):
        self.shape = tuple(int(s) for s in frame_shape)
        self.roi = tuple(int(r) for r in roi)
        self.rows = int(rows)
        self.low = int(low)
        self.weights = weights
        band = (self.rows, *self.shape[1:])
        self.sums = [torch.zeros((channels, *band), dtype=torch.float32, device=device) for _ in range(n_passes)]
        self.counts = [torch.zeros((1, *band), dtype=torch.float32, device=device) for _ in range(n_passes)]

    @property
    def nbytes(self) -> int:
        """Memory held by the buffers."""
        return sum(t.numel() * t.element_size() for t in (*self.sums, *self.counts))

    def _placement(self, window: Window) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
        """Slices into the window and into the band where the two overlap, or ``None``."""
        source, target = [], []
        for axis, (start, size, length) in enumerate(zip(window.start, self.roi, self.shape)):
            lo, hi = max(start, 0), min(start + size, length)
            offset = 0
            if axis == 0:
                lo, offset = max(lo, self.low), self.low
                if hi > self.low + self.rows:
                    raise RuntimeError(f"window at {window.start} reaches past the blending band")
            if hi <= lo:
                return None
            source.append(slice(lo - start, hi - start))
            target.append(slice(lo - offset, hi - offset))
        return tuple(source), tuple(target)

    def weigh(self, outputs: torch.Tensor) -> torch.Tensor:
        """A batch of window outputs ``(n, channels, *roi)`` times the importance map (as MONAI does), in place."""
        return outputs.mul_(self.weights)

    def add(self, weighted: torch.Tensor, window: Window) -> None:
        """Add one weighted window output ``(channels, *roi)``, unflipped, float32."""
        where = self._placement(window)
        if where is None:
            return
        source, target = where
        self.counts[window.pass_index][(slice(None), *target)] += self.weights[source]
        self.sums[window.pass_index][(slice(None), *target)] += weighted[(slice(None), *source)]

    def blended(self, stop: int, tile: tuple[slice, ...] = ()) -> list[torch.Tensor]:
        """Rows ``[low, stop)`` (within ``tile`` of the other axes) of every pass: sums over weights."""
        n = stop - self.low
        if not 0 < n <= self.rows:
            raise ValueError(f"cannot hand out rows {self.low}..{stop} from a band of {self.rows} at {self.low}")
        box = (slice(None), slice(0, n), *tile)
        return [s[box] / c[box] for s, c in zip(self.sums, self.counts)]

    def advance(self, stop: int) -> None:
        """Drop rows below ``stop`` (handed out) and shift the band up."""
        n = stop - self.low
        keep = self.rows - n
        for buffer in (*self.sums, *self.counts):
            if keep:
                kept = buffer[:, n:]
                buffer[:, :keep] = kept if n >= keep else kept.clone()  # no overlap: copy in place
            buffer[:, keep:] = 0
        self.low = stop
