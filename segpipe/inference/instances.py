"""Instance labels of a stored prediction, slab by slab, with the result of the whole-image version.

:func:`segpipe.inference.postprocess.instance_labels` needs a frame in memory. Frames up to
``InstanceTiling.whole_limit`` voxels are labelled that way (exactly). Larger frames go in
four passes over slabs of rows along the first spatial axis, holding one slab plus a halo:

1. Connected parts of the foreground and of the seeds are labelled per slab (kept in scratch
   arrays) and joined across slab borders (a graph of touching labels, ``scipy.sparse.csgraph``).
   Joined labels are numbered by their first voxel in raster order, which is how
   ``scipy.ndimage.label`` numbers the whole frame, so seed and object numbers are global.
2. Each slab is flooded (seeded watershed) with a halo of ``halo`` rows on each side, using the
   global seed numbers; only the slab's own rows are kept. Object sizes are summed.
3. Objects under ``min_size`` (on the frame's edge: ``edge_min_size``) are dropped and the rest
   renumbered 1..N in seed order.
4. Each object's holes are filled, slab by slab with the halo around it (in the same sweep as 3).

The bound: a foreground component at most ``halo`` rows tall lies wholly inside the window of
every slab it touches, so it is split (and its holes filled) exactly as in the whole frame;
taller components (counted in :attr:`InstanceStats.tall_components`) are flooded within the
window only, and their pixels
near slab borders may go to a different neighbouring seed. Equal distance values at the border
of two seeds are resolved by the flooding order, which can, rarely, differ from the whole frame.

Slabs are cut along the first spatial axis, or, where its planes are too large for a slab of
``halo`` rows with its halos to fit ``whole_limit`` (a 100 x 1024 x 1024 volume), along the longest
axis (:func:`slab_axis`; :class:`SwappedAxes` reads and writes the frame with the two axes
swapped). Objects are then numbered in the order of their first pixel along that axis.

Objects grouped by the flow (``relief="flow"``) go slab by slab too, in one pass: each slab's
window (the slab and ``halo`` rows on either side) is labelled as a whole frame would be (every
pixel follows the flow within the window; paths are grouped where they end), and the slab keeps
the objects whose paths end, on average, in its own rows: the slab holding an object's centre
writes all of it. An object reaching no more than ``halo`` rows past its centre's slab, whose
paths stay in its window, comes out as in the whole frame (tested pixel for pixel); objects that
touch an inner edge of their window are counted in :attr:`InstanceStats.tall_components`. Sizes,
renumbering and holes then go as passes 3 and 4.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import zarr
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import watershed

from segpipe.inference.params import InstanceTiling
from segpipe.inference.postprocess import (
    InstanceParams,
    edge_labels,
    fill_holes,
    flow_steps,
    follow_flow,
    group_paths,
    instance_labels,
    output_maps,
    relief_map,
    seed_mask,
    smoothed_distance,
    too_small,
)

log = logging.getLogger(__name__)


@dataclass
class InstanceStats:
    """Objects found, slabs used, and components taller than the halo (not guaranteed exact)."""

    objects: int = 0
    slabs: int = 0
    tall_components: int = 0


def _foreground_distance(probabilities, frame, rows: slice, n_classes: int, params: InstanceParams) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and the relief to flood (the distance, or it lowered on boundaries)."""
    foreground, distance, boundary, _ = output_maps(np.asarray(probabilities[(slice(None), *frame, rows)]), n_classes)
    return foreground, relief_map(distance, boundary, params)


def _smoothed_rows(
    probabilities, frame, a: int, b: int, n_classes: int, params, *, context: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground, smoothed distance and seeds of rows ``[a, b)``.

    The rows are read with enough around them for the smoothing to be exact, plus
    ``context`` rows so that h-maxima of objects shorter than that are those of the whole frame.
    """
    length = probabilities.shape[1 + len(frame)]
    pad = (int(np.ceil(4 * params.smoothing)) if params.smoothing else 0) + context
    lo, hi = max(0, a - pad), min(length, b + pad)
    fg, dist = _foreground_distance(probabilities, frame, slice(lo, hi), n_classes, params)
    dist = smoothed_distance(dist, params)
    seeds = seed_mask(dist, fg > params.foreground_threshold, params)
    core = slice(a - lo, b - lo)
    return fg[core], dist[core], seeds[core]


def stream_instance_labels(
    probabilities: zarr.Array,
    out: zarr.Array,
    *,
    ndim: int,
    n_classes: int,
    params: InstanceParams,
    tiling: InstanceTiling | None = None,
    scratch: zarr.Group | None = None,
) -> InstanceStats:
    """Label objects in every frame of ``probabilities`` into ``out``.

    Args:
        probabilities: ``(n_classes + 1 [+ 1], *lead, *spatial)``: class probabilities, then the
            distance map (and the boundary map, for models that predict one).
        out: ``(*lead, *spatial)`` unsigned integer array for the objects.
        ndim: Spatial axes.
        n_classes: Class channels.
        params: Thresholds and minimum size (as for :func:`segpipe.inference.postprocess.instance_labels`).
        tiling: Slab size, halo and the size labelled whole.
        scratch: Group for the per-slab label arrays of large frames (deleted afterwards).
    """
    tiling = tiling or InstanceTiling()
    shape = tuple(out.shape[-ndim:])
    lead = tuple(out.shape[: out.ndim - ndim])
    stats = InstanceStats()
    for frame in np.ndindex(*lead):  # one empty index when there are no frame axes
        if math.prod(shape) <= tiling.whole_limit:
            foreground, distance, boundary, flow = output_maps(np.asarray(probabilities[(slice(None), *frame)]), n_classes)
            labels = instance_labels(foreground, distance, params, boundary=boundary, flow=flow)
            out[frame] = labels
            stats.objects += int(labels.max())
            stats.slabs += 1
            continue
        if scratch is None:
            raise ValueError("slab-wise instance labelling needs a scratch group")
        axis = slab_axis(shape, on_grid(tiling, params.grid, 0))
        frame_params = params
        if axis:
            swap = list(range(ndim))
            swap[0], swap[axis] = axis, 0
            views = SwappedAxes(probabilities, 1 + len(lead), 1 + len(lead) + axis), SwappedAxes(out, len(lead), len(lead) + axis)
            frame_params = params.model_copy(update={"grid": params.grid and tuple(params.grid[a] for a in swap)})
        else:
            swap, views = list(range(ndim)), (probabilities, out)
        view_shape = tuple(shape[a] for a in swap)
        slabs = on_grid(tiling, params.grid, axis)
        if params.relief == "flow":
            _flow_frame(*views, frame, view_shape, n_classes, frame_params, slabs, stats, swap)
        else:
            _slab_frame(*views, frame, view_shape, n_classes, frame_params, slabs, scratch, stats, swap)
    return stats


def on_grid(tiling: InstanceTiling, grid: tuple[float, ...] | None, axis: int) -> InstanceTiling:
    """``tiling`` with its halo counted on the model's grid: where the probabilities were resampled
    to a grid ``grid[axis]`` times finer along the axis the slabs are cut along
    (:attr:`~segpipe.inference.postprocess.InstanceParams.grid`), objects span as many more rows
    there, and so does the halo that holds them."""
    if not grid or grid[axis] <= 1:
        return tiling
    return tiling.model_copy(update={"halo": math.ceil(tiling.halo * grid[axis])})


def slab_axis(shape: tuple[int, ...], tiling: InstanceTiling) -> int:
    """The spatial axis a frame's slabs of rows are cut along: the first, unless the smallest slab
    there (``halo`` rows with a halo on either side) holds more than ``whole_limit`` pixels, as the
    large planes of a flat volume do; then the longest, whose rows are the smallest. A ``slab`` of
    the tiling's own is along the first axis."""
    if tiling.slab or 3 * tiling.halo * math.prod(shape[1:]) <= tiling.whole_limit:
        return 0
    return int(np.argmax(shape))


class SwappedAxes:
    """An array (zarr, numpy, or a view like them) indexed with two of its axes swapped, ``first`` and
    ``other``: slabs of rows along ``other`` are read and written as rows along ``first``. Keys are
    tuples of slices and integers (missing trailing ones: whole axes)."""

    def __init__(self, array, first: int, other: int):
        self.array = array
        self.axes = list(range(len(array.shape)))
        self.axes[first], self.axes[other] = other, first
        self.shape = tuple(array.shape[a] for a in self.axes)
        chunks = getattr(array, "chunks", None)  # numpy arrays have none
        self.chunks = None if chunks is None else tuple(chunks[a] for a in self.axes)
        self.ndim, self.dtype = len(self.shape), array.dtype

    def _key(self, key) -> tuple[tuple, np.ndarray]:
        """The array's key, and the order that puts what it reads in the view's axis order."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        under = tuple(key[a] for a in self.axes)
        kept = [a for a, k in zip(self.axes, under) if not isinstance(k, (int, np.integer))]
        return under, np.argsort(kept)

    def __getitem__(self, key) -> np.ndarray:
        under, order = self._key(key)
        return np.asarray(self.array[under]).transpose(order)

    def __setitem__(self, key, value) -> None:
        under, order = self._key(key)
        self.array[under] = np.asarray(value).transpose(np.argsort(order))


def _slabs(length: int, plane: int, tiling: InstanceTiling) -> list[tuple[int, int]]:
    size = tiling.slab or max(1, tiling.halo, tiling.whole_limit // max(plane, 1) - 2 * tiling.halo)
    return [(a, min(a + size, length)) for a in range(0, length, size)]


def _slab_frame(probabilities, out, frame, shape, n_classes, params, tiling, scratch, stats, swap) -> None:
    plane = math.prod(shape[1:])
    slabs = _slabs(shape[0], plane, tiling)
    chunks = tuple(out.chunks[-len(shape) :])
    parts = {
        name: scratch.create_array(name, shape=shape, dtype=np.uint32, chunks=chunks, overwrite=True)
        for name in ("components", "seeds")
    }
    try:
        tables = _label_slabs(probabilities, frame, slabs, n_classes, params, parts, tiling.halo)
        sizes = _flood_slabs(probabilities, out, frame, slabs, n_classes, tiling.halo, parts, tables, params)
        renumber = _renumbering(sizes, params, out, frame)
        _renumber_and_fill(out, frame, slabs, renumber, shape[0], tiling.halo, swap)
        tall = int(np.sum(tables["heights"] > tiling.halo))
        if tall:
            log.warning(
                "%d foreground components are taller than the %d-row halo; near slab borders their split "
                "may differ from labelling the whole frame",
                tall,
                tiling.halo,
            )
        stats.objects += int(renumber.max())
        stats.slabs += len(slabs)
        stats.tall_components += tall
    finally:
        for name in parts:
            del scratch[name]


def _flow_frame(probabilities, out, frame, shape, n_classes, params, tiling, stats, swap) -> None:
    """A large frame's objects grouped by the flow, slab by slab (the module's description).

    Each slab is labelled in a window of ``halo`` rows on either side (paths followed and grouped
    there, as :func:`~segpipe.inference.postprocess.flow_labels` does in a whole frame), and keeps
    the objects whose paths end, on average, in its own rows, with all their pixels in the window:
    every object is kept by one slab, the one holding its centre. A pixel two slabs claim goes to
    the first. Then sizes, edges, renumbering and holes as for the distance relief.
    """
    length, halo = shape[0], tiling.halo
    slabs = _slabs(length, math.prod(shape[1:]), tiling)
    sizes = np.zeros(1, np.int64)
    pending = np.zeros((0, *shape[1:]), np.uint32)  # claims below the last slab's rows, not yet written
    cut = 0
    for a, b in slabs:
        lo, hi = max(0, a - halo), min(length, b + halo)
        window, touching = _flow_window(probabilities, frame, lo, hi, a, b, length, n_classes, params, swap, first=sizes.size)
        sizes = np.concatenate([sizes, np.zeros(max(int(window.max()) + 1 - sizes.size, 0), np.int64)])
        above = np.asarray(out[(*frame, slice(lo, a))])  # rows earlier slabs wrote: theirs first
        _claim(above, window[: a - lo], sizes)
        out[(*frame, slice(lo, a))] = above
        rows = np.zeros((hi - a, *shape[1:]), np.uint32)
        rows[: len(pending)] = pending
        _claim(rows, window[a - lo :], sizes)
        out[(*frame, slice(a, b))] = rows[: b - a]
        pending = rows[b - a :]
        cut += touching
    renumber = _renumbering(sizes, params, out, frame)
    _renumber_and_fill(out, frame, slabs, renumber, length, halo, swap)
    if cut:
        log.warning(
            "%d objects reach a slab window's edge (the %d-row halo); their pixels beyond it may be cut off "
            "or go to a neighbour", cut, halo,
        )
    stats.objects += int(renumber.max())
    stats.slabs += len(slabs)
    stats.tall_components += cut


def _flow_window(probabilities, frame, lo, hi, a, b, length, n_classes, params, swap, *, first: int) -> tuple[np.ndarray, int]:
    """The objects of rows ``[lo, hi)`` whose paths end on average in rows ``[a, b)``, numbered from
    ``first`` (0 elsewhere), and how many of them touch an edge of the window that is not the frame's.
    ``swap``: the frame's axis each of the view's spatial axes is, so each axis keeps its flow component."""
    fg, _, _, flow = output_maps(np.asarray(probabilities[(slice(None), *frame, slice(lo, hi))]), n_classes)
    flow = flow[swap]
    mask = fg > params.foreground_threshold
    starts, ends = follow_flow(mask, flow, steps=flow_steps(params))
    labels = group_paths(mask.shape, starts, ends, sink_size=params.sink_size, grid=params.grid)
    owner = labels[starts]
    count = np.bincount(owner)
    rows = (lo + ends // math.prod(mask.shape[1:])).astype(np.float64)
    end_rows = np.rint(np.bincount(owner, weights=rows)).astype(np.int64)  # sums of integers below 2^53: exact, alike in every window
    kept = (end_rows >= a * count) & (end_rows < b * count) & (count > 0)
    kept[0] = False
    number = np.zeros(count.size, np.uint32)
    number[kept] = np.arange(first, first + int(kept.sum()), dtype=np.uint32)
    window = number[labels]
    edges = ([window[0]] if lo > 0 else []) + ([window[-1]] if hi < length else [])
    cut = np.unique(np.concatenate([e.ravel() for e in edges])) if edges else np.zeros(0, np.uint32)
    return window, int(np.count_nonzero(cut))


def _claim(rows: np.ndarray, window: np.ndarray, sizes: np.ndarray) -> None:
    """Give ``rows``' unclaimed pixels the objects of ``window`` (same shape), counting them in ``sizes``, in place."""
    free = (rows == 0) & (window > 0)
    rows[free] = window[free]
    sizes += np.bincount(window[free], minlength=sizes.size)


def _renumbering(sizes: np.ndarray, params: InstanceParams, out, frame) -> np.ndarray:
    """Pass 3's table: each label's final number, 1..N in label order, 0 for the background and for
    objects under their size (:func:`~segpipe.inference.postprocess.too_small`, the frame's edge read from ``out``)."""
    keep = ~too_small(sizes, params, lambda: edge_labels(out, frame))
    keep[0] = False
    renumber = np.zeros(sizes.size, dtype=np.uint32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return renumber


def _renumber_and_fill(out, frame, slabs, renumber: np.ndarray, length: int, halo: int, swap) -> None:
    """Passes 3 and 4 in one sweep: each slab is read with ``halo`` rows on either side, its
    not yet renumbered rows renumbered (rows above it were written final), each object's holes
    filled (:func:`~segpipe.inference.postprocess.fill_holes`, in the frame's own axis order: a
    volume's planes are its first axis's), and only the slab's own rows written."""
    for a, b in slabs:
        lo, hi = max(a - halo, 0), min(b + halo, length)
        window = np.asarray(out[(*frame, slice(lo, hi))])
        window[a - lo :] = renumber[window[a - lo :]]
        fill_holes(window.transpose(np.argsort(swap)))  # in place, through a view in the frame's axis order
        out[(*frame, slice(a, b))] = window[a - lo : b - lo]


def _label_slabs(probabilities, frame, slabs, n_classes, params, parts, halo: int) -> dict:
    """Pass 1: per-slab labels with offsets, the joins across slab borders, heights and seededness."""
    offsets = {"components": 0, "seeds": 0}
    edges: dict[str, list[np.ndarray]] = {"components": [], "seeds": []}
    previous: dict[str, np.ndarray] = {}
    first_rows, last_rows, seeded = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], []
    for a, b in slabs:
        context = halo if params.seed_method == "hmaxima" else 0
        fg, _, seed_rows = _smoothed_rows(probabilities, frame, a, b, n_classes, params, context=context)
        mask = fg > params.foreground_threshold
        current = {}
        for name, binary in (("components", mask), ("seeds", seed_rows)):
            local, count = ndimage.label(binary)
            labels = np.where(local > 0, local + offsets[name], 0).astype(np.uint32)
            if name == "components":
                boxes = ndimage.find_objects(local)
                first_rows.append(np.array([a + box[0].start for box in boxes], np.int64))
                last_rows.append(np.array([a + box[0].stop - 1 for box in boxes], np.int64))
            if name in previous:
                both = (previous[name] > 0) & (labels[0] > 0)
                pairs = np.stack([previous[name][both], labels[0][both]], axis=1)
                edges[name].append(np.unique(pairs, axis=0))
            parts[name][slice(a, b)] = labels
            previous[name] = labels[-1]
            current[name] = labels
            offsets[name] += count
        seeded.append(np.unique(current["components"][current["seeds"] > 0]))
        if max(offsets.values()) >= np.iinfo(np.uint32).max:
            raise ValueError("too many connected parts for 32-bit scratch labels")
    components = _join(offsets["components"], edges["components"])
    seeds = _join(offsets["seeds"], edges["seeds"])
    n_components, n_seeds = int(components.max()), int(seeds.max())
    top = np.full(n_components + 1, np.iinfo(np.int64).max)
    bottom = np.full(n_components + 1, -1)
    np.minimum.at(top, components, np.concatenate(first_rows))
    np.maximum.at(bottom, components, np.concatenate(last_rows))
    with_seed = np.unique(components[np.concatenate(seeded).astype(np.int64)])
    seedless = np.setdiff1d(np.arange(1, n_components + 1), with_seed)
    marker_of_component = np.zeros(n_components + 1, dtype=np.int64)
    marker_of_component[seedless] = n_seeds + np.arange(1, seedless.size + 1)
    return {
        "components": components,
        "seeds": seeds,
        "marker_of_component": marker_of_component,
        "n_markers": n_seeds + seedless.size,
        "heights": (bottom - top + 1)[1:],
    }


def _join(count: int, edges: Sequence[np.ndarray]) -> np.ndarray:
    """Global numbers of ``count`` per-slab labels joined by ``edges``, in order of first appearance."""
    lookup = np.zeros(count + 1, dtype=np.int64)
    if count == 0:
        return lookup
    pairs = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    pairs = pairs.astype(np.int64) - 1
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    n, group = connected_components(graph, directed=False)
    first = np.full(n, count, dtype=np.int64)
    np.minimum.at(first, group, np.arange(count))
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n)
    lookup[1:] = rank[group] + 1
    return lookup


def _flood_slabs(probabilities, out, frame, slabs, n_classes, halo, parts, tables, params) -> np.ndarray:
    """Pass 2: seeded watershed of each slab with its halo; returns the size of every marker."""
    length = out.shape[-len(parts["components"].shape)]
    sizes = np.zeros(tables["n_markers"] + 1, dtype=np.int64)
    for a, b in slabs:
        lo, hi = max(0, a - halo), min(length, b + halo)
        _, dist, _ = _smoothed_rows(probabilities, frame, lo, hi, n_classes, params)
        components = tables["components"][np.asarray(parts["components"][lo:hi])]
        seeds = tables["seeds"][np.asarray(parts["seeds"][lo:hi])]
        markers = np.where(seeds > 0, seeds, tables["marker_of_component"][components])
        labels = watershed(-dist, markers=markers, mask=components > 0)
        core = labels[a - lo : b - lo].astype(np.uint32)
        out[(*frame, slice(a, b))] = core
        sizes += np.bincount(core.ravel(), minlength=sizes.size)
    return sizes
