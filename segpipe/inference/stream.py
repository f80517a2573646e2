"""Zarr-to-zarr sliding-window prediction with bounded memory, resumable.

The source is a channel-first array ``(C, *lead, *spatial)`` (zarr or numpy); leading axes
between channels and space (time, or slices of a stack fed to a 2D network) are independent
frames. Each frame is predicted on MONAI's window grid (:mod:`segpipe.inference.windows`):
a reading thread cuts and normalizes the next batches of windows from a band of rows
read once from the source; the network runs them (autocast on CUDA); the outputs are
blended into a band of rows (:class:`~segpipe.inference.aggregator.SlabAggregator`); rows no
later window can touch are handed to a writing thread, which activates them (softmax), writes
them to the sink and then records them as done. Memory is bounded by the band (a window's height, times
the frame's other axes, times channels and test-time passes), not by the image; finished rows
are activated and written in tiles of about ``PIECE_VOXELS`` voxels, and glibc's freed pages
are returned to the system after each band of ``TRIM_BAND_BYTES`` or more
(:mod:`segpipe.inference.allocator`).

A run that stops (killed, out of time) resumes from the sink's record: the batches from the
first one touching the first row not done are run again, in the same composition, and only
rows not done are written, so the result is identical to an uninterrupted run.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map

from segpipe.errors import InputError
from segpipe.inference.aggregator import SlabAggregator
from segpipe.inference.allocator import release_free_memory
from segpipe.inference.background import Worker, prefetch
from segpipe.inference.blank import Blank
from segpipe.inference.memory import padding_mode
from segpipe.inference.noise import QuietRows
from segpipe.inference.precision import autocast
from segpipe.inference.sink import Sink, StreamStats
from segpipe.inference.normalize import Normalization
from segpipe.inference.params import InferenceParams
from segpipe.inference.windows import (
    Window,
    batch_windows,
    band_rows,
    first_batch_touching,
    frame_windows,
    tta_passes,
    unflip,
)

log = logging.getLogger(__name__)

Activation = Callable[[torch.Tensor], torch.Tensor]


class _Rows:
    """Reads a frame's rows once, in increasing order, keeping only the band windows still need."""

    def __init__(self, source, frame: tuple[int, ...], length: int, chunk: int):
        self.source, self.frame, self.length, self.chunk = source, frame, length, max(1, chunk)
        self.low, self.data = 0, None

    def get(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)``; ``lo`` never decreases between calls."""
        end = min(self.length, math.ceil(hi / self.chunk) * self.chunk)
        have = self.low + (self.data.shape[1] if self.data is not None else 0)
        if self.data is None or lo < self.low or lo > have:
            self.data, self.low = self._read(lo, end), lo
        elif hi > have:
            self.data = np.concatenate([self.data[:, lo - self.low :], self._read(have, end)], axis=1)
            self.low = lo
        return self.data[:, lo - self.low : hi - self.low]

    def _read(self, lo: int, hi: int) -> np.ndarray:
        return np.asarray(self.source[(slice(None), *self.frame, slice(lo, hi))])


def _window_input(
    rows: _Rows, window: Window, roi: Sequence[int], shape: Sequence[int], normalization, pad_mode: str, out: torch.Tensor
) -> None:
    """Cut one window from the rows, normalize it into ``out`` ``(C, *roi)``, pad and flip as its pass says."""
    boxes = [(max(s, 0), min(s + r, n)) for s, r, n in zip(window.start, roi, shape)]
    raw = rows.get(*boxes[0])
    raw = raw[(slice(None), slice(None), *(slice(lo, hi) for lo, hi in boxes[1:]))]
    pads = [(lo - s, s + r - hi) for (lo, hi), s, r in zip(boxes, window.start, roi)]
    padded = any(p for pair in pads for p in pair)
    if not padded and not window.flips:
        target = out.numpy()
        if normalization is not None:
            normalization.apply(raw, out=target)
        else:
            target[...] = raw
        return
    block = normalization.apply(raw) if normalization is not None else np.asarray(raw, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(block))
    if padded:
        flat = [p for pair in reversed(pads) for p in pair]
        tensor = F.pad(tensor[None], flat, mode=pad_mode)[0]
    if window.flips:
        tensor = torch.flip(tensor, [axis + 1 for axis in window.flips])
    out.copy_(tensor)


@torch.no_grad()
def stream_predict(
    model: torch.nn.Module,
    source,
    sink: Sink,
    *,
    roi_size: Sequence[int],
    out_channels: int,
    params: InferenceParams | None = None,
    normalization: Normalization | None = None,
    activation: Activation | None = None,
    device: torch.device | str = "cpu",
    read_chunk: int | None = None,
    on_rows: Callable[[tuple[int, ...], int], None] | None = None,
    flow_channels: Sequence[int] = (),
    blank: Blank | None = None,
) -> StreamStats:
    """Predict every frame of ``source`` into ``sink``, resuming from the sink's record.

    Args:
        model: Network in eval mode, on ``device``.
        source: ``(C, *lead, *spatial)`` zarr or numpy array; ``len(roi_size)`` spatial axes.
        sink: Receives finished rows and keeps the progress record.
        roi_size: Window size.
        out_channels: Channels the network outputs.
        params: Overlap, batch size, blending, test-time flips, autocast, prefetch depth.
        normalization: Applied to each window as read (``None``: the source is already float input).
        activation: Applied per test-time pass to blended ``(1, C, ...)`` outputs before the passes
            are averaged (``None``: blended network outputs, as ``sliding_window_inference`` returns).
        device: Where the network and the blending buffers live.
        read_chunk: Rows read at a time are rounded up to a multiple of this (the source's chunk).
        on_rows: Called as ``on_rows(frame, row)`` once rows below ``row`` are written and recorded.
        flow_channels: The flow's channel per spatial axis, whose sign a flipped pass undoes.
        blank: Where the source is blank, the activated outputs are set to background, and a frame
            of nothing but noise is background whole, the network not run on it; with
            ``params.noise_only``, so are the quiet parts of other frames (:mod:`segpipe.inference.blank`,
            :class:`segpipe.inference.noise.QuietRows`; with an ``activation`` only).

    Returns:
        What the run did.
    """
    params = params or InferenceParams()
    device = torch.device(device)
    roi = tuple(int(r) for r in roi_size)
    ndim = len(roi)
    if source.ndim < ndim + 1:
        raise InputError(f"input of shape {tuple(source.shape)} has fewer than {ndim} spatial axes plus channels")
    shape = tuple(int(s) for s in source.shape[-ndim:])
    lead = tuple(int(s) for s in source.shape[1 : source.ndim - ndim])
    chunk = read_chunk or (getattr(source, "chunks", None) or (0,) * source.ndim)[source.ndim - ndim] or roi[0]
    weights = compute_importance_map(roi, mode=params.mode, sigma_scale=params.sigma_scale, device=device)
    passes = tta_passes(ndim, flip_tta=params.flip_tta)
    batches = batch_windows(frame_windows(shape, roi, params.overlap, passes), params.batch_size)
    pad_mode = padding_mode(shape, roi)
    frames_done, rows_done = sink.done()
    quiet = QuietRows(source, ndim, threshold=params.noise_only) if blank is not None and params.noise_only > 0 else None
    stats = StreamStats()
    started = time.perf_counter()
    # an array in memory into memory: nothing to overlap, and on few cores a second Python thread
    # only takes the cores the network's threads wait for (twice as slow on 2 cores)
    in_memory = isinstance(source, np.ndarray) and getattr(sink, "in_memory", False)
    writer = Worker(depth=0 if in_memory else 2)
    try:
        for number, frame in enumerate(np.ndindex(*lead)):  # one empty index when there are no frame axes
            if number < frames_done:
                continue
            low = rows_done if number == frames_done else 0
            first = first_batch_touching(batches, low, roi[0])
            if first >= len(batches) or low >= shape[0]:
                writer.submit(_marker(sink, number + 1, 0, frame, shape[0], on_rows))
                continue
            if blank is not None and activation is not None and blank.frame_only_noise(source, frame, ndim, params.noise_only):
                _background(writer, sink, frame, low, shape, chunk, blank)
                writer.submit(_marker(sink, number + 1, 0, frame, shape[0], on_rows))
                stats.noise_frames.append(number)
                continue
            aggregator = SlabAggregator(
                frame_shape=shape,
                roi=roi,
                channels=out_channels,
                n_passes=len(passes),
                rows=band_rows((w for b in batches[first:] for w in b), low, roi[0], shape[0]),
                weights=weights,
                low=low,
                device=device,
            )
            stats.band_bytes = max(stats.band_bytes, aggregator.nbytes)
            stats.frames.append(number)
            rows = _Rows(source, frame, shape[0], chunk)

            def cut(batch, rows=rows):
                inputs = torch.empty((len(batch), source.shape[0], *roi), dtype=torch.float32)
                for window, target in zip(batch, inputs):
                    _window_input(rows, window, roi, shape, normalization, pad_mode, target)
                return batch, (inputs.pin_memory() if device.type == "cuda" else inputs)

            def flush(stop: int, number=number, frame=frame) -> None:
                start = aggregator.low
                for tile in _pieces(stop - start, shape, getattr(sink, "align", None) or (1,) * (ndim - 1)):
                    blended = aggregator.blended(stop, tile)  # new tensors: the band may move on
                    box = (slice(start, stop), *tile)
                    writer.submit(_writer(sink, frame, box, blended, activation, blank=blank, source=source, quiet=quiet))
                aggregator.advance(stop)
                if aggregator.nbytes >= TRIM_BAND_BYTES:
                    release_free_memory()
                last = stop >= shape[0]
                writer.submit(_marker(sink, number + 1 if last else number, 0 if last else stop, frame, stop, on_rows))
                stats.rows_written += stop - start

            for batch, inputs in prefetch(map(cut, batches[first:]), depth=0 if in_memory else params.prefetch):
                with autocast(device, params.amp):
                    outputs = model(inputs.to(device, non_blocking=True))
                weighted = aggregator.weigh(outputs.float())
                for output, window in zip(weighted, batch):
                    if window.start[0] > aggregator.low:  # no window still to come reaches the rows below
                        flush(min(window.start[0], shape[0]))
                    output = unflip(output, window.flips, channel_axis=0, flow_channels=flow_channels)
                    aggregator.add(output, window)
                stats.windows += len(batch)
                stats.batches += 1
            flush(shape[0])
    finally:
        try:
            writer.close()
        finally:
            stats.seconds = time.perf_counter() - started
    return stats


PIECE_VOXELS = 1 << 21  # rows are activated and written in tiles of about this many voxels
TRIM_BAND_BYTES = 64 << 20  # below this band size, what glibc keeps is small and trimming costs more


def _pieces(rows: int, shape: Sequence[int], align: Sequence[int]) -> list[tuple[slice, ...]]:
    """Tiles of the axes after the first that cut ``rows`` rows into pieces of about ``PIECE_VOXELS``.

    Tile edges are multiples of ``align`` (the output's chunks), so every chunk is written once.
    """
    extents = [int(n) for n in shape[1:]]
    tile = list(extents)
    for axis in range(len(tile)):
        if rows * math.prod(tile) <= PIECE_VOXELS:
            break
        others = rows * math.prod(tile[:axis] + tile[axis + 1 :])
        width = (PIECE_VOXELS // max(others, 1)) // align[axis] * align[axis]
        tile[axis] = max(int(align[axis]), min(tile[axis], width))
    ranges = [[slice(a, min(a + t, n)) for a in range(0, n, t)] for n, t in zip(extents, tile)]
    return list(itertools.product(*ranges))


def _combine(blended: list[torch.Tensor], activation: Activation | None) -> np.ndarray:
    """Average the passes after activating each, as :func:`segpipe.inference.predict_image` does.

    In place where that gives the same numbers (``total += p``, ``total /= n``); one pass is not
    divided by 1.
    """
    total = None
    for values in blended:
        values = activation(values[None])[0] if activation is not None else values
        if total is None:
            total = values
        else:
            total += values
    if len(blended) > 1:
        total.div_(len(blended))
    return total.float().cpu().numpy()


def _writer(
    sink: Sink, frame, box: tuple[slice, ...], blended: list[torch.Tensor], activation, *, blank: Blank | None, source,
    quiet: QuietRows | None = None,
) -> Callable[[], None]:
    """The writing thread's job: activate and average the passes, set blank pixels to background,
    then store (off the network's thread)."""

    def write() -> None:
        values = _combine(blended, activation)
        if blank is not None and activation is not None:
            blank.apply(values, source, frame, box, quiet=quiet)
        sink.write(frame, box, values)

    return write


def _background(writer: Worker, sink: Sink, frame, low: int, shape: Sequence[int], chunk: int, blank: Blank) -> None:
    """Write background over the rows from ``low`` of ``frame``, in the tiles :func:`_pieces` cuts."""
    align = getattr(sink, "align", None) or (1,) * (len(shape) - 1)
    for start in range(low, shape[0], chunk):
        stop = min(start + chunk, shape[0])
        for tile in _pieces(stop - start, shape, align):
            box = (slice(start, stop), *tile)
            writer.submit(lambda box=box: sink.write(frame, box, blank.filled(tuple(b.stop - b.start for b in box))))


def _marker(sink: Sink, frames: int, rows: int, frame, row: int, on_rows) -> Callable[[], None]:
    def mark() -> None:
        sink.mark(frames, rows)
        if on_rows is not None:
            on_rows(frame, row)

    return mark
