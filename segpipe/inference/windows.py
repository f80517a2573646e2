"""The grid of sliding windows over one frame, laid out exactly as MONAI's ``sliding_window_inference``.

MONAI pads an axis shorter than the window symmetrically (``diff // 2`` before), steps windows by
``int(roi * (1 - overlap))`` and clamps the last window to the end. A test-time flip of an axis
runs that grid on the flipped image; here every window is expressed in the coordinates of the
unflipped frame, so all passes share one output buffer layout and one pass over the input.
A window's ``start`` is negative, or its end past the frame, only along padded axes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One window of one pass.

    Attributes:
        start: First voxel, in frame coordinates.
        flips: Spatial axes (0-based) flipped in this window's pass.
        pass_index: Which test-time pass the window belongs to.
    """

    start: tuple[int, ...]
    flips: tuple[int, ...]
    pass_index: int


def centre_box(
    shape: Sequence[int],
    *,
    windows: int,
    roi: Sequence[int],
    spacing: Sequence[float],
    model_spacing: Sequence[float],
    within: Sequence[slice] | None = None,
) -> tuple[slice, ...]:
    """The centre of a frame of ``shape`` (pixels of ``spacing``), or of its part ``within``, that
    holds ``windows`` windows of ``roi`` pixels of ``model_spacing`` a side once resampled to it (the
    whole axis, or part, where it is shorter)."""
    parts = list(within) if within is not None else [slice(0, n) for n in shape]
    edges = [min(p.stop - p.start, math.ceil(windows * r * m / s)) for p, r, m, s in zip(parts, roi, model_spacing, spacing)]
    return tuple(slice(p.start + (p.stop - p.start - e) // 2, p.start + (p.stop - p.start - e) // 2 + e) for p, e in zip(parts, edges))


def scan_interval(size: int, roi: int, overlap: float) -> int:
    """MONAI's step between windows along an axis of (padded) length ``size``."""
    if roi == size:
        return roi
    return max(int(roi * (1 - overlap)), 1)


def axis_starts(size: int, roi: int, overlap: float, *, flipped: bool = False) -> list[int]:
    """Window starts along one axis, in unflipped, unpadded frame coordinates.

    Args:
        size: Frame length along the axis.
        roi: Window length.
        overlap: Fraction of overlap.
        flipped: The pass runs on the image flipped along this axis.
    """
    from monai.data.utils import dense_patch_slices  # here: MONAI loads torch, which chunk planning does not need

    padded = max(size, roi)
    before = (padded - size) // 2
    step = scan_interval(padded, roi, overlap)
    starts = [int(s[0].start) for s in dense_patch_slices((padded,), (roi,), (step,))]
    if flipped:
        return [size + before - u - roi for u in starts]
    return [u - before for u in starts]


def tta_passes(ndim: int, *, flip_tta: bool) -> list[tuple[int, ...]]:
    """The passes of :func:`segpipe.inference.predict_image`: none, then each spatial axis flipped."""
    return [()] + ([(axis,) for axis in range(ndim)] if flip_tta else [])


def unflip(output, flips: Sequence[int], *, channel_axis: int, flow_channels: Sequence[int] = ()):
    """Undo a pass's flips of the spatial axes of a network output (a tensor, logits, weighted or not).

    The spatial axes follow ``channel_axis``. A flow channel (``flow_channels[axis]``: the
    channel of the flow along ``axis``) also changes sign where its axis was flipped: a
    vector pointing down a flipped image points up the image. The output is a new tensor.
    """
    if not flips:
        return output
    output = output.flip([channel_axis + 1 + axis for axis in flips])
    for axis in flips if flow_channels else ():
        output.select(channel_axis, flow_channels[axis]).neg_()
    return output


def frame_windows(
    shape: Sequence[int], roi: Sequence[int], overlap: float, passes: Sequence[tuple[int, ...]]
) -> list[Window]:
    """Every window of every pass, ordered by start along the first axis (stable: pass, then MONAI order)."""
    windows = []
    for index, flips in enumerate(passes):
        per_axis = [axis_starts(n, r, overlap, flipped=a in flips) for a, (n, r) in enumerate(zip(shape, roi))]
        windows += [Window(tuple(start), tuple(flips), index) for start in itertools.product(*per_axis)]
    return sorted(windows, key=lambda w: w.start[0])


def batch_windows(windows: Sequence[Window], size: int) -> list[list[Window]]:
    """Consecutive batches of ``size`` windows (the last may be shorter), as MONAI forms them."""
    return [list(windows[i : i + size]) for i in range(0, len(windows), size)]


def first_batch_touching(batches: Sequence[Sequence[Window]], row: int, roi0: int) -> int:
    """The first batch holding a window that reaches past ``row`` on the first axis."""
    for index, batch in enumerate(batches):
        if batch[-1].start[0] + roi0 > row:
            return index
    return len(batches)


def band_rows(windows: Iterable[Window], done: int, roi0: int, length: int) -> int:
    """Rows the blending band needs for ``windows`` added in order.

    Before each window is added, the rows below its start are handed out (no later window
    reaches them); ``[0, done)`` is already done. The result is the window height, or the
    frame's length when the frame is shorter.
    """
    rows, low = 1, done
    for window in windows:
        low = max(low, min(max(window.start[0], 0), length))
        rows = max(rows, min(window.start[0] + roi0, length) - low)
    return rows
