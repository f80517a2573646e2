"""Prediction at the model's pixel size: the image resampled to the model's grid, the probabilities back.

A network sees objects at the scale it was trained at. When an image's pixel size differs from
the model card's ``spacing`` by more than
:data:`~segpipe.inference.resample.SPACING_TOLERANCE` on any axis (and
``PredictParams.resample`` is on), prediction works in a scratch group (``resampled/``)
inside the partial prediction group:

1. the image, normalized as the card says (statistics of the image at its own size), is
   resampled linearly to the model's grid: ``resampled/input`` (float32; :func:`model_grid`);
2. :func:`~segpipe.inference.stream.stream_predict` predicts it into ``resampled/probabilities``
   (float32, the model's grid), resuming from its own record in ``resampled``'s attributes;
3. (:func:`image_grid`) the probabilities are resampled linearly back to the image's grid into the group's ``s0``,
   and the class map ``labels/semantic/s0`` is computed from them as
   :class:`~segpipe.inference.zarr_sink.ZarrSink` does.

Each step is streamed slab by slab (:func:`segpipe.inference.resample.resample`). Steps 1 and 3
are recorded as done in ``resampled``'s attributes; a run killed inside one of them does that
step again. Instance post-processing then runs on the image's own grid, and the scratch group
is deleted when the prediction is finished. The prediction group records what was done in its
``resampling`` attribute (:meth:`Grids.record`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import zarr

from segpipe.data.readers.units import sizes_text
from segpipe.data.store import COMPRESSOR, StoredImage
from segpipe.errors import InputError
from segpipe.inference.normalize import Normalization
from segpipe.inference.postprocess import InstanceParams
from segpipe.inference.resample import resample, resampled_shape, spacing_differs
from segpipe.inference.zarr_sink import (
    PROGRESS_KEY,
    ZarrSink,
    class_map,
    prediction_chunks,
)
from segpipe.models.card import ModelCard

log = logging.getLogger(__name__)

#: The scratch group inside a partial prediction group.
SCRATCH = "resampled"
#: Attribute of the prediction group recording whether and how it was resampled.
RECORD_ATTR = "resampling"


@dataclass(frozen=True)
class Grids:
    """The image's grid and the model's, and whether the prediction goes through the model's.

    Attributes:
        resample: Whether the image is resampled to the model's grid.
        image_spacing: The image's pixel size, in the model's unit.
        model_spacing: The model card's pixel size.
        unit: The model card's unit.
        image_shape: The image's spatial shape.
        model_shape: Its spatial shape at the model's pixel size.
        differs: Whether the two pixel sizes differ by more than the resampling tolerance on some axis
            (:func:`~segpipe.inference.resample.spacing_differs`); never for a generalist, whose grid is
            every image's own.
        guessed: Whether the image's pixel size was not known (taken as 1 per pixel at ingest)
            and mattered (a model trained on objects of one size estimates their scale instead).
        scale: How many times larger than its own the image's pixels are taken (``image_spacing``
            includes it): a model trained on objects of one size, :mod:`segpipe.prediction.object_size`.
        unused_spacing: The pixel size the image's file gives where it is not used: the model's own
            was a guess (``card.spacing_guessed``), so the image is taken at 1 per pixel as its
            training images were; ``None`` otherwise.

    Post-processing runs on the image's own grid, so its pixel counts and widths, tuned on the
    model's grid, are converted (:meth:`post_processing`).
    """

    resample: bool
    image_spacing: tuple[float, ...]
    model_spacing: tuple[float, ...]
    unit: str
    image_shape: tuple[int, ...]
    model_shape: tuple[int, ...]
    differs: bool
    guessed: bool
    scale: float = 1.0
    unused_spacing: tuple[float, ...] | None = None

    def post_processing(self, params: InstanceParams) -> InstanceParams:
        """``params`` (tuned at the model's pixel size) for objects on the image's grid: the
        smallest object keeps its physical size and the smoothing its physical width; on a finer
        grid, a sink's paths and the flow's neighbourhoods grow with it."""
        if not self.resample:
            return params
        ratios = np.asarray(self.model_spacing, float) / np.asarray(self.image_spacing, float)
        pixels = float(np.prod(ratios))  # image pixels per model pixel
        # the flow's paths end spread over more pixels on a finer grid; on a coarser one the model
        # grid's neighbourhoods stay (smaller ones split objects: measured in benchmarks/RESULTS.md)
        finer = np.maximum(ratios, 1.0)
        return params.model_copy(
            update={
                "min_size": int(round(params.min_size * pixels)),
                "edge_min_size": None if params.edge_min_size is None else int(round(params.edge_min_size * pixels)),
                "smoothing": params.smoothing * float(np.exp(np.mean(np.log(ratios)))),
                "sink_size": max(1, int(round(params.sink_size * float(np.prod(finer))))),
                "grid": tuple(float(r) for r in finer),
            }
        )

    def record(self) -> dict:
        """JSON-able record, kept in the prediction group's attributes (and, when resampled, in its stamp)."""
        record = {
            "resampled": self.resample,
            "image_spacing": list(self.image_spacing),
            "model_spacing": list(self.model_spacing),
            "unit": self.unit,
            "image_shape": list(self.image_shape),
            "spacing_guessed": self.guessed,
        }
        if self.scale != 1.0:  # a model of one object size (segpipe.prediction.object_size)
            record["size_scale"] = self.scale
        if self.resample:
            record.update(model_shape=list(self.model_shape), order=1)
        return record


#: The most times an image's pixel count may grow on the model's grid past ``MAX_GROWN_PIXELS``:
#: more is taken for a wrong pixel size or unit (a scan's millimetres read as micrometres) rather
#: than predicted for hours. Models with an ``object_size`` find each image's scale themselves.
MAX_GROWTH = 100
MAX_GROWN_PIXELS = 1 << 26
#: Past ``MAX_GROWTH`` times fewer pixels, an image with an axis that shrinks more than
#: ``MAX_AXIS_SHRINK`` times to under ``MIN_SHRUNK_EDGE`` pixels on the model's grid is refused
#: (nanometres read for micrometres: nothing could be found in it); a thin or anisotropic stack is not.
MIN_SHRUNK_EDGE = 16
#: From this many times more pixels on the model's grid, the resampling is said in a warning.
LOUD_GROWTH = 16
MAX_AXIS_SHRINK = 10


def plan_grids(image: StoredImage, card: ModelCard, *, resample: bool, scale: float = 1.0) -> Grids:
    """Where ``image`` is predicted: at its own pixel size, or resampled to the model's.

    A generalist (``card.generalist``) learned objects of many sizes in pixels, not at a pixel
    size: it predicts every image on the image's own grid. A model whose training images gave no
    pixel size (``card.spacing_guessed``) takes every image as they were taken, at 1 per pixel,
    whatever its file says: resampled only where the model planned a coarser grid than that. ``scale`` takes the image's pixels
    as that many times larger (the estimate of :mod:`segpipe.prediction.object_size` for a model
    trained on objects of one size).
    """
    ndim = card.spatial_dims
    own = image.spacing_in(card.unit, default_unit="micrometer")[-ndim:]
    unused = None
    if card.spacing_guessed:  # trained on images taken at 1 per pixel (no physical size): every image is taken so
        if not image.spacing_guessed and spacing_differs(tuple(own), (1.0,) * ndim):
            unused = tuple(float(s) for s in own)
        own = (1.0,) * ndim
    spacing = tuple(s * scale for s in own)
    model = tuple(float(s) for s in card.spacing)
    shape = tuple(int(s) for s in image.image.shape[-ndim:])
    differs = spacing_differs(spacing, model) and not card.generalist  # a generalist's grid is every image's own
    model_shape = resampled_shape(shape, spacing, model) if differs else shape
    grown = math.prod(model_shape) / math.prod(shape)
    if resample and differs and not card.object_size and grown > MAX_GROWTH and math.prod(model_shape) > MAX_GROWN_PIXELS:
        raise InputError(
            f"{image.name}: its pixel size, {sizes_text(spacing)} {card.unit}, is {max(s / m for s, m in zip(spacing, model)):.4g} "
            f"times the model's ({sizes_text(model)} {card.unit}): on the model's grid it would grow from {_shape(shape)} to "
            f"{_shape(model_shape)} pixels; check its pixel size and unit (segment: --spacing and --unit; the catalog: "
            "spacing: and unit:), or predict it at its own pixels with --no-resample"
        )
    factors = [m / s for s, m in zip(spacing, model)]  # times fewer pixels along each axis
    collapsed = any(f > MAX_AXIS_SHRINK and n < MIN_SHRUNK_EDGE for f, n in zip(factors, model_shape))
    if resample and differs and not card.object_size and math.prod(factors) > MAX_GROWTH and collapsed:
        raise InputError(
            f"{image.name}: its pixel size, {sizes_text(spacing)} {card.unit}, is 1/{max(factors):.4g} "
            f"of the model's ({sizes_text(model)} {card.unit}): on the model's grid it would shrink from {_shape(shape)} to "
            f"{_shape(model_shape)} pixels; check its pixel size and unit (segment: --spacing and --unit; the catalog: "
            "spacing: and unit:), or predict it at its own pixels with --no-resample"
        )
    return Grids(
        resample=bool(resample and differs),
        image_spacing=spacing,
        model_spacing=model,
        unit=card.unit,
        image_shape=shape,
        model_shape=model_shape,
        differs=differs,
        guessed=image.spacing_guessed and differs and not card.object_size and not card.spacing_guessed,
        scale=scale,
        unused_spacing=unused,
    )


def explain(name: str, grids: Grids) -> None:
    """Log where the network sees the image: one warning when the image's pixel size was guessed."""
    model = f"{sizes_text(grids.model_spacing)} {grids.unit}"
    own = f"{sizes_text(grids.image_spacing)} {grids.unit}"
    if grids.unused_spacing is not None:
        log.info("%s: its file's pixel size, %s %s, is not used: the model's own is not known (its training images gave "
                 "none), so the image is taken at 1 per pixel, as they were", name, sizes_text(grids.unused_spacing), grids.unit)
    if not grids.differs:
        return
    if grids.guessed:
        what = (
            f"resampling it from that guess to the model's grid ({_shape(grids.image_shape)} -> {_shape(grids.model_shape)})"
            if grids.resample
            else "the network sees it at its own pixel size (resampling is off)"
        )
        axes = ", ".join("zyx"[3 - len(grids.image_shape) :])
        log.warning(
            "%s: its pixel size is not known (ingest assumed 1 per pixel: %s) and the model was trained at %s; %s. "
            "Set spacing: [%s] (and unit:) in its catalog entry, or --spacing for segpipe segment, to the real pixel size",
            name, own, model, what, axes,
        )
    elif grids.resample:
        grown = math.prod(grids.model_shape) / math.prod(grids.image_shape)
        loud = grown >= LOUD_GROWTH
        log.log(
            logging.WARNING if loud else logging.INFO,
            "%s: pixel size %s, the model was trained at %s: predicting on the model's grid (%s -> %s%s) and resampling back",
            name, own, model, _shape(grids.image_shape), _shape(grids.model_shape),
            f", {grown:.0f} times the pixels: if that pixel size or unit is wrong, this is slow and finds objects at the "
            "wrong size" if loud else "",
        )
    else:
        log.info(
            "%s: resampling is off: the network sees the image at its own pixel size (%s; the model was trained at %s)",
            name, own, model,
        )


def model_grid(
    image: StoredImage, group: zarr.Group, grids: Grids, normalization: Normalization, *, card: ModelCard, overlap: float
) -> tuple[zarr.Array, ZarrSink]:
    """Steps 1 and 2: the image normalized and resampled to the model's grid, and the sink of its prediction.

    Args:
        image: The stored image.
        group: The partial prediction group (the scratch group goes inside it).
        grids: The plan (:func:`plan_grids`), with ``resample`` set.
        normalization: The card's normalization for this image (applied before resampling).
        card: The model's card.
        overlap: The sliding windows' overlap (chunks of the scratch arrays follow the window step).

    Returns:
        The scratch input ``(C, *lead, *model grid)`` (float32, normalized) and a sink writing
        ``resampled/probabilities`` and keeping its progress in the scratch group's attributes.
    """
    ndim = card.spatial_dims
    source = image.image
    lead = tuple(int(s) for s in source.shape[1 : source.ndim - ndim])
    scratch = group.require_group(SCRATCH)

    def create(name: str, channels: int) -> zarr.Array:
        shape = (channels, *lead, *grids.model_shape)
        chunks = prediction_chunks(shape, ndim=ndim, channels=True, roi0=int(card.patch_size[0]), overlap=overlap)
        return scratch.create_array(name, shape=shape, dtype=np.float32, chunks=chunks, compressors=COMPRESSOR, overwrite=True)

    if not scratch.attrs.get("input_done"):
        if "probabilities" in scratch:
            del scratch["probabilities"]
        scratch.attrs[PROGRESS_KEY] = {"frames": 0, "rows": 0}
        stats = resample(NormalizedView(source, normalization), create("input", source.shape[0]), ndim=ndim, order=1)
        log.info(
            "%s: resampled %s -> %s (the model's grid) in %.1f s",
            image.name, _shape(grids.image_shape), _shape(grids.model_shape), stats.seconds,
        )
        scratch.attrs["input_done"] = True
    if "probabilities" not in scratch:
        create("probabilities", card.out_channels)
    sink = ZarrSink(scratch, ndim=ndim, n_classes=card.n_classes, probabilities=scratch["probabilities"], semantic=None)
    return scratch["input"], sink


def image_grid(group: zarr.Group, probabilities, semantic: zarr.Array, *, card: ModelCard, name: str) -> None:
    """Step 3: the probabilities resampled back to the image's grid (``probabilities``), and the class map of them.

    Args:
        group: The partial prediction group holding the scratch group.
        probabilities: ``(channels, *lead, *spatial)`` view of the group's ``s0`` (image grid).
        semantic: The group's class map (image grid).
        card: The model's card.
        name: The image's name, for the log.
    """
    scratch = group[SCRATCH]
    if scratch.attrs.get("output_done"):
        return
    target = ProbabilityTarget(probabilities, semantic, card.n_classes)
    stats = resample(scratch["probabilities"], target, ndim=card.spatial_dims, order=1)
    log.info("%s: probabilities resampled back to %s in %.1f s", name, _shape(target.shape[-card.spatial_dims :]), stats.seconds)
    scratch.attrs["output_done"] = True


def drop_scratch(group: zarr.Group) -> None:
    """Delete the scratch group of a resampled prediction, if there is one."""
    if SCRATCH in group:
        del group[SCRATCH]


class NormalizedView:
    """A channel-first array read through a :class:`~segpipe.inference.normalize.Normalization` (float32)."""

    def __init__(self, array, normalization: Normalization):
        self.array, self.normalization = array, normalization
        self.shape, self.ndim, self.dtype = tuple(array.shape), array.ndim, np.dtype(np.float32)
        self.chunks = getattr(array, "chunks", None)

    def __getitem__(self, key) -> np.ndarray:
        return self.normalization.apply(np.asarray(self.array[key]))


class ProbabilityTarget:
    """Where resampled probabilities go: the group's ``s0`` (cast as stored) and the class map of them.

    Keys are ``(slice(None), *frame, rows)``, as :func:`~segpipe.inference.resample.resample` writes.
    """

    def __init__(self, probabilities, semantic, n_classes: int):
        self.probabilities, self.semantic, self.n_classes = probabilities, semantic, n_classes
        self.shape, self.dtype = tuple(probabilities.shape), np.dtype(np.float32)
        self.chunks = tuple(probabilities.chunks)

    def __setitem__(self, key, values: np.ndarray) -> None:
        self.probabilities[key] = values.astype(self.probabilities.dtype)
        self.semantic[tuple(key[1:])] = class_map(values[: self.n_classes])


def _shape(values) -> str:
    return "x".join(str(v) for v in values)
