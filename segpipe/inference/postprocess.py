"""From network outputs to label maps: semantic classes and separated instances."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import watershed


class InstanceParams(BaseModel):
    """How probabilities become objects; tuned on the validation split after training.

    Attributes:
        relief: The map seeds are found on and flooded: ``distance``, the predicted distance to
            the object border; ``boundary``, that distance lowered where the network sees a
            boundary between objects (``distance * (1 - boundary)``), which keeps touching cells
            apart where their distance maps run into each other (models with a boundary output);
            ``flow``, no relief: every foreground pixel follows the predicted flow for
            ``FLOW_STEPS`` steps, and pixels whose paths end at the same sink form one object
            (Cellpose's grouping; models with a flow output).
        foreground_threshold: Foreground probability above which a pixel belongs to an object.
        seed_method: ``threshold``: seeds are the parts of the distance map above
            ``seed_threshold``; ``hmaxima``: seeds are its maxima at least ``seed_h`` above
            their surroundings (robust to objects of different sizes).
        seed_threshold: Normalized distance above which a pixel seeds an object (``threshold``).
        seed_h: Height of a seeding maximum (``hmaxima``).
        smoothing: Gaussian sigma, in pixels, applied to the distance map before seeding and
            flooding (0: none).
        sink_size: Fewest paths a sink gathers to seed an object (``flow``); a foreground
            part whose sinks all gather fewer is still an object.
        min_size: Objects smaller than this many pixels are dropped.
        edge_min_size: Objects touching the frame's edge (:func:`edge_labels`) are dropped under
            this size instead (``None``: ``min_size``): an object the edge cuts may be a sliver of
            a real one, so a size rule made for whole objects spares it.
        grid: Pixels of the grid labelled per pixel of the model's, per axis, where the
            probabilities were resampled from the model's grid to an image's
            (:meth:`segpipe.prediction.resampled.Grids.post_processing` sets it with the sizes
            above; never stored in a card): the flow's steps and the neighbourhoods its paths'
            ends are gathered in are that many times larger (``None``: the model's grid).
    """

    model_config = ConfigDict(extra="forbid")

    relief: Literal["distance", "boundary", "flow"] = "distance"
    foreground_threshold: float = Field(0.5, gt=0, lt=1)
    seed_method: Literal["threshold", "hmaxima"] = "threshold"
    seed_threshold: float = Field(0.5, gt=0, lt=1)
    seed_h: float = Field(0.1, gt=0, lt=1)
    smoothing: float = Field(0.0, ge=0)
    sink_size: int = Field(10, ge=1)
    min_size: int = Field(8, ge=0)
    edge_min_size: int | None = Field(None, ge=0)
    grid: tuple[PositiveFloat, ...] | None = Field(None, exclude=True)


def seed_pixels(distance: np.ndarray, params: InstanceParams) -> np.ndarray:
    """Pixels the seeding rule picks anywhere in the image; ``distance`` already smoothed as ``params`` says."""
    if params.seed_method == "hmaxima":
        return h_maxima(distance, params.seed_h).astype(bool)
    return distance > params.seed_threshold


def seed_mask(distance: np.ndarray, mask: np.ndarray, params: InstanceParams) -> np.ndarray:
    """Pixels that seed objects, inside ``mask``; ``distance`` already smoothed as ``params`` says."""
    return mask & seed_pixels(distance, params)


def relief_map(distance: np.ndarray, boundary: np.ndarray | None, params: InstanceParams) -> np.ndarray:
    """The map to seed and flood (before smoothing): the distance, or the distance where no boundary is seen.

    Raises:
        ValueError: ``params.relief`` is ``boundary`` and there is no boundary map.
    """
    distance = distance.astype(np.float32, copy=False)
    if params.relief in ("distance", "flow"):
        return distance
    if boundary is None:
        raise ValueError("relief 'boundary' needs a model with a boundary output")
    return distance * (1.0 - boundary.astype(np.float32, copy=False))


def smoothed_distance(distance: np.ndarray, params: InstanceParams) -> np.ndarray:
    """The distance map the watershed floods: Gaussian-smoothed when ``params.smoothing`` > 0."""
    distance = distance.astype(np.float32, copy=False)
    return ndimage.gaussian_filter(distance, params.smoothing) if params.smoothing else distance


def output_maps(outputs: np.ndarray, n_classes: int) -> tuple:
    """An instance model's outputs ``(n_classes + extra, *spatial)`` as ``(foreground, distance,
    boundary or None, flow or None)``.

    What the extra channels are follows from their number, the spatial axes known: the
    distance map, then a boundary map (one more), then the flow (one per axis).
    """
    ndim = outputs.ndim - 1
    extra = outputs.shape[0] - n_classes
    boundary = outputs[n_classes + 1] if extra in (2, 2 + ndim) else None
    flow = outputs[-ndim:] if extra in (1 + ndim, 2 + ndim) else None
    return 1.0 - outputs[0].astype(np.float32), outputs[n_classes], boundary, flow


def semantic_labels(probabilities: np.ndarray) -> np.ndarray:
    """Class map: the most probable class per pixel (``probabilities`` is ``(C, *spatial)``)."""
    return np.argmax(probabilities, axis=0).astype(np.uint8)


def instance_labels(
    foreground: np.ndarray,
    distance: np.ndarray,
    params: InstanceParams,
    boundary: np.ndarray | None = None,
    flow: np.ndarray | None = None,
    *,
    reuse: dict | None = None,
) -> np.ndarray:
    """Split the foreground into objects with a seeded watershed on the predicted distance map
    (or, for ``params.relief == "flow"``, by where the predicted flow takes each pixel: :func:`flow_labels`).

    Seeds are the connected parts of :func:`seed_mask` (distance above a threshold, or its
    h-maxima) inside the foreground; a foreground component holding no seed becomes an object
    of its own, so small objects are not lost. Each seed then floods its basin of
    ``-distance``, within the foreground. Objects under ``params.min_size`` pixels are dropped,
    then each object's holes filled (:func:`fill_holes`).

    Args:
        foreground: Foreground probability, ``spatial``.
        distance: Predicted normalized distance to the object border, ``spatial``.
        params: Thresholds and minimum size.
        boundary: Predicted boundary probability, ``spatial`` (for ``params.relief == "boundary"``).
        flow: Predicted flow, ``(ndim, *spatial)`` sigmoids (:func:`flow_labels`; for ``params.relief == "flow"``).
        reuse: A dict kept for one image while many ``params`` are tried on it (the tuning):
            the maps that depend on only some of the parameters (the smoothed relief, its
            h-maxima, where the flow takes each pixel) are made once and kept there.

    Returns:
        uint32 instance map, objects numbered 1..N, 0 for background.
    """
    mask = foreground > params.foreground_threshold
    if params.relief == "flow":
        if flow is None:
            raise ValueError("relief 'flow' needs a model with a flow output")
        paths = _paths(mask, flow, reuse, steps=flow_steps(params))
        return _finish(group_paths(mask.shape, *paths, sink_size=params.sink_size, grid=params.grid), params)
    distance = _kept(reuse, ("relief", params.relief, params.smoothing),
                     lambda: smoothed_distance(relief_map(distance, boundary, params), params))
    rule = (params.seed_method, params.seed_h if params.seed_method == "hmaxima" else params.seed_threshold)
    anywhere = _kept(reuse, ("seeds", params.relief, params.smoothing, *rule), lambda: seed_pixels(distance, params))
    seeds, n_seeds = ndimage.label(mask & anywhere)
    components, _ = ndimage.label(mask)
    seedless = np.setdiff1d(np.unique(components[mask]), np.unique(components[seeds > 0]))
    if seedless.size:
        extra = np.isin(components, seedless)
        seeds[extra] = n_seeds + np.searchsorted(seedless, components[extra]) + 1
    return _finish(watershed(-distance, markers=seeds, mask=mask), params)


def _kept(reuse: dict | None, key: tuple, make):
    """``make()``, kept in ``reuse`` under ``key`` (made every time without ``reuse``)."""
    if reuse is None:
        return make()
    if key not in reuse:
        reuse[key] = make()
    return reuse[key]


def _paths(mask: np.ndarray, flow: np.ndarray, reuse: dict | None, *, steps: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """:func:`follow_flow` of ``mask``; with ``reuse``, only the pixels no earlier mask held take
    their steps (a path does not depend on the mask it starts in)."""
    if reuse is None:
        return follow_flow(mask, flow, steps=steps)
    ends = reuse.setdefault("path ends", np.full(mask.size, -1, np.intp))
    new = mask.ravel() & (ends < 0)
    if new.any():
        ends[new] = follow_flow(new.reshape(mask.shape), flow, steps=steps)[1]
    return np.nonzero(mask), ends[mask.ravel()]


def _finish(labels: np.ndarray, params: InstanceParams) -> np.ndarray:
    """Objects under their size (:func:`too_small`) dropped, holes filled, numbered 1..N."""
    if params.min_size or params.edge_min_size:
        dropped = too_small(np.bincount(labels.ravel()), params, lambda: edge_labels(labels))
        labels[dropped[labels]] = 0
    return _relabel(fill_holes(labels))


def too_small(sizes: np.ndarray, params: InstanceParams, edge) -> np.ndarray:
    """Which labels (indices of ``sizes``; 0, the background, never) fall under ``params.min_size``,
    or, for those ``edge()`` names (:func:`edge_labels`, asked only when needed), under ``params.edge_min_size``."""
    small = sizes < max(params.min_size, 1)
    if params.edge_min_size is not None and params.edge_min_size != params.min_size:
        on_edge = edge()
        small[on_edge] = sizes[on_edge] < max(params.edge_min_size, 1)
    small[0] = False
    return small


def edge_labels(labels, frame: tuple = ()) -> np.ndarray:
    """The labels on the first or last plane of any spatial axis of ``labels[frame]`` (``labels`` a
    numpy or zarr array, read a face at a time; ``frame`` indexes its leading axes): objects the
    frame's edge cuts, whose rest, if any, lies outside it (a region split cuts true objects to
    slivers there)."""
    faces = []
    for axis, length in enumerate(labels.shape[len(frame) :]):
        for index in {0, length - 1} if length else ():
            faces.append(np.asarray(labels[(*frame, *(slice(None),) * axis, index)]).ravel())
    return np.unique(np.concatenate(faces)) if faces else np.zeros(0, labels.dtype)


#: Steps each pixel takes along the flow (Cellpose's default): paths up to 200 pixels long, so a
#: pixel reaches the centre of an object up to about 400 pixels across.
FLOW_STEPS = 200


def flow_steps(params: InstanceParams) -> int:
    """Steps each pixel takes along the flow: :data:`FLOW_STEPS` on the model's grid, as many
    more as the grid the probabilities were resampled to is finer (:attr:`InstanceParams.grid`)."""
    return round(FLOW_STEPS * max(params.grid or (1.0,)))


def flow_labels(mask: np.ndarray, flow: np.ndarray, *, sink_size: int, steps: int = FLOW_STEPS) -> np.ndarray:
    """Group the pixels of ``mask`` by where the flow takes them (:func:`follow_flow`, then :func:`group_paths`).

    Args:
        mask: ``spatial`` boolean foreground.
        flow: ``(ndim, *spatial)`` flow sigmoids.
        sink_size: Fewest path ends at a seeding maximum.
        steps: Steps each pixel takes.

    Returns:
        int32 labels, not yet filtered by size.
    """
    return group_paths(mask.shape, *follow_flow(mask, flow, steps=steps), sink_size=sink_size)


def follow_flow(mask: np.ndarray, flow: np.ndarray, *, steps: int = FLOW_STEPS) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Where ``steps`` steps along the flow take each pixel of ``mask``.

    Every pixel moves ``steps`` times by the flow at its current place (the nearest pixel's
    vector, ``2 * sigmoid - 1`` per axis, so about one pixel a step where the network is sure
    and less where it is not, as near a centre).

    Returns:
        The pixels' coordinates (``np.nonzero(mask)``) and the flat index of the pixel each path ends on.
    """
    shape = np.array(mask.shape)
    starts = np.nonzero(mask)
    vectors = (2.0 * flow.reshape(len(shape), -1).astype(np.float32) - 1.0)
    strides = np.array([int(np.prod(shape[a + 1 :])) for a in range(len(shape))])
    position = np.array(starts, np.float32)
    upper = (shape - 1).astype(np.float32)[:, None]
    for _ in range(steps):
        flat = (np.rint(position).astype(np.intp) * strides[:, None]).sum(axis=0)
        position += vectors[:, flat]
        np.clip(position, 0, upper, out=position)
    return starts, (np.rint(position).astype(np.intp) * strides[:, None]).sum(axis=0)


def group_paths(
    shape: tuple[int, ...], starts: tuple[np.ndarray, ...], ends: np.ndarray, *, sink_size: int,
    grid: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Label the pixels ``starts`` by the sink their path ``ends`` at (:func:`follow_flow`).

    Paths gather at the objects' centres: the ends are counted per pixel, smoothed (a Gaussian of
    1 pixel), and every local maximum over a 5-pixel neighbourhood whose 3-pixel neighbourhood
    gathers at least ``sink_size`` ends seeds an object; the area the ends cover is split between
    the seeds by a watershed on the counts (a covered part without a seed is an object of its
    own), and each pixel takes the label of the place its path ended. On a grid ``grid`` times
    finer than the model's per axis (:attr:`InstanceParams.grid`), those widths are ``grid``
    times larger: a sink spreads over as many more pixels.

    Returns:
        int32 labels of ``shape``, 0 where no path starts.
    """
    labels = np.zeros(shape, np.int32)
    if not ends.size:
        return labels
    grid = grid or (1.0,) * len(shape)
    near = tuple(_odd(3 * g) for g in grid)
    counts = np.bincount(ends, minlength=int(np.prod(shape))).reshape(shape).astype(np.float32)
    density = ndimage.gaussian_filter(counts, tuple(float(g) for g in grid))
    peaks = (density == ndimage.maximum_filter(density, size=tuple(_odd(5 * g) for g in grid))) & (counts > 0) & (
        ndimage.uniform_filter(counts, size=near) * float(np.prod(near)) >= sink_size
    )
    covered = ndimage.binary_dilation(counts > 0, iterations=1)
    seeds, n_seeds = ndimage.label(peaks)
    parts, _ = ndimage.label(covered)
    seedless = np.setdiff1d(np.unique(parts[covered]), np.unique(parts[seeds > 0]))
    if seedless.size:
        extra = np.isin(parts, seedless)
        seeds[extra] = n_seeds + np.searchsorted(seedless, parts[extra]) + 1
    basins = watershed(-density, markers=seeds, mask=covered)
    labels[starts] = basins.ravel()[ends]
    return labels


def _odd(width: float) -> int:
    """The odd number of pixels nearest ``width`` (at least 3: a neighbourhood has a centre and sides)."""
    return max(3, int(round(width)) // 2 * 2 + 1)


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Give each object the background pixels it encloses (a dark nucleolus, a dim spot), in place.

    In 3D each plane along the first axis is filled on its own, as Cellpose fills its masks: a
    hole open to the top or bottom of a thin stack is still a hole in its planes. Only
    background is filled: an object inside another stays.
    """
    starts, stops = enclosed_boxes(labels)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or not _holds_a_box(box, starts, stops):  # no enclosed background part fits inside it
            continue
        own = labels[box] == index
        filled = ndimage.binary_fill_holes(own) if own.ndim < 3 else np.stack([ndimage.binary_fill_holes(p) for p in own])
        labels[box][filled & (labels[box] == 0)] = index
    return labels


def enclosed_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes of the background parts that no path through background (4-connected, in
    each plane of a volume) joins to the edge: an object's hole is one of them, inside its box.

    Returns:
        The boxes' first and past-the-end indices, ``(n, ndim)`` each.
    """
    planes = labels[None] if labels.ndim == 2 else labels
    starts, stops = [], []
    for z, plane in enumerate(planes):
        parts, n = ndimage.label(plane == 0)
        edge = set(np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]])).tolist())
        for number, (ys, xs) in enumerate(ndimage.find_objects(parts) if n else [], start=1):
            if number not in edge:
                starts.append((z, ys.start, xs.start))
                stops.append((z + 1, ys.stop, xs.stop))
    first = 1 if labels.ndim == 2 else 0
    return (np.array(starts, np.intp).reshape(-1, 3)[:, first:], np.array(stops, np.intp).reshape(-1, 3)[:, first:])


def _holds_a_box(box: tuple[slice, ...], starts: np.ndarray, stops: np.ndarray) -> bool:
    """Whether one of the boxes ``starts``/``stops`` lies inside ``box``."""
    low = np.array([s.start for s in box])
    high = np.array([s.stop for s in box])
    return bool(np.any(np.all((starts >= low) & (stops <= high), axis=1)))


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Objects numbered 1..N in the order of their labels, 0 kept for background."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = True
    return (np.cumsum(present) - 1).astype(np.uint32)[labels]
