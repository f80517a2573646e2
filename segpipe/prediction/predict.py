"""Apply a model to the images of a store, zarr to zarr, and export label files.

Each image is predicted by :func:`segpipe.inference.stream.stream_predict` into a group of the
prediction store (:class:`~segpipe.prediction.store.PredictionStore`) under a temporary name
(``.<image>.partial``), slab by slab, recording finished rows in the group's attributes; an
interrupted prediction resumes there (same model and settings) and the group is renamed into
place when complete. An image whose complete prediction has the current stamp (model, settings,
image bytes; for a resampled one also its pixel size) is skipped; any change makes it again.
An image whose pixel size differs from the model's is predicted on the model's grid and its
probabilities resampled back (:mod:`segpipe.prediction.resampled`), unless ``resample`` is off.
A small single-frame image (``PredictParams.in_memory``) is read at once, predicted
and labelled in memory and written once: the same windows and the same numbers (the labels are
made from the float16 probabilities the store keeps), without a chunk written while the network runs.
Exports, beside the store::

    <image>_semantic.tif, <image>_instances.tif       TIFF (default for 2D)
    <image>_semantic.nii.gz, ...                      NIfTI, with the source's affine
    ctc/<sequence>_RES/maskTTT.tif                    Cell Tracking Challenge folders (per split)

One :func:`predict_stored` call per image lets a flow fan images out.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import re
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import zarr

from segpipe.data.store import IMAGE_LEVEL, ImageStore, StoredImage, array_digest
from segpipe.errors import StoreError
from segpipe.inference import InferenceParams, Normalization, activate, stream_normalization, stream_predict
from segpipe.inference.blank import RADIUS, Blank, floors
from segpipe.inference.noise import frame_noise_only
from segpipe.inference.normalize import NormalizationSpec, background_not_zero, floor_holds
from segpipe.inference.sink import ArraySink
from segpipe.inference.zarr_sink import ChannelsFirst, ZarrSink, class_map, float16
from segpipe.models.card import ModelCard
from segpipe.models.device import resolve_device
from segpipe.models.model import Model
from segpipe.prediction.export import export_ctc
from segpipe.prediction.generalist_inputs import InputSlots, Slots, choose_inputs, input_normalization
from segpipe.prediction.complete import LARGE, Current, ImageResult, Predicted, partial_group
from segpipe.prediction.noise_frames import of_results, warn_noise_only
from segpipe.prediction.object_size import estimate_scale
from segpipe.prediction.params import PredictParams
from segpipe.prediction.resampled import RECORD_ATTR, explain, model_grid, plan_grids
from segpipe.prediction.store import PredictionStore
from segpipe.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictor:
    """A model loaded on its device, with the settings to apply it with.

    Attributes:
        model: The model folder and card.
        network: Its network, in eval mode.
        params: The prediction parameters.
        inference: The effective sliding-window settings (the card's, with ``params``' overrides).
    """

    model: Model
    network: torch.nn.Module
    params: PredictParams
    inference: InferenceParams

    @classmethod
    def load(cls, model: Model, params: PredictParams | None = None) -> Predictor:
        params = params or PredictParams()
        network = model.load(resolve_device(params.device))
        return cls(model, network, params, params.inference_for(model.card.inference))

    @property
    def card(self) -> ModelCard:
        return self.model.card

    @property
    def chooses_inputs(self) -> bool:
        """Whether each image's channels are fed to a generalist's inputs as :func:`input_slots` chooses."""
        return self.card.generalist and self.params.input_order == "choose"

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def open_store(self, path: str | Path) -> PredictionStore:
        """The prediction store at ``path`` for this model."""
        return PredictionStore.for_model(path, self.model)

    def stamp(self, image: StoredImage, *, inputs_from: str | None = None, image_digest: str | None = None) -> str:
        """What a prediction of ``image`` is made from: the model, the settings, the image's bytes.

        A resampled prediction also depends on the image's pixel size (which the bytes do not hold);
        a generalist's on the digest ``inputs_from`` of the image its inputs were chosen on, when
        that is another (:class:`SharedInputs`); a region cut from a larger image on its surroundings
        (:attr:`StoredImage.context`), which it is predicted inside. ``image_digest``: the image's
        :func:`array_digest` where the caller has it already.
        """
        source = {
            "model": self.model.id,
            "inference": self.inference.model_dump(mode="json"),
            "instances": self.params.instances.model_dump(mode="json"),
            "probabilities": self.params.probabilities,
            "resample": self.params.resample,
            "image": image_digest or array_digest(image.image),
            **({"context": array_digest(image.context)} if image.context is not None else {}),
            "blank": RADIUS,  # blank pixels set to background (segpipe.inference.blank)
        }
        if self.card.instances:
            source["class_map"] = "objects"  # the class map is the objects' foreground (complete.objects_class_map)
        if self.card.generalist:
            source["input_order"] = self.params.input_order
            if inputs_from is not None:
                source["inputs_from"] = inputs_from
        grids = plan_grids(image, self.card, resample=self.params.resample)
        if grids.resample:
            source["grids"] = grids.record()
        return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()


def predict_split(
    store: ImageStore,
    predictor: Predictor,
    predictions: PredictionStore,
    *,
    split: str | None = "test",
    exports: Path | None = None,
    progress: bool = True,
) -> list[ImageResult]:
    """Predict every image of ``split`` (``None``: all) into ``predictions``; export into ``exports``."""
    images = store.images(split)
    if not images:
        raise StoreError(f"{store.path}: the {split} split is empty")
    results = []
    shared = sequence_inputs(store, predictor)
    with Progress(len(images), desc=f"predict {split or 'all'}", unit="image", enabled=progress) as bar:
        for image in images:
            results.append(predict_stored(
                image, predictor, predictions, exports=exports, progress=progress, shared=shared.get(image.name)
            ))
            bar.update(1)
    warn_noise_only(of_results(results), predictor.inference.noise_only)
    if exports is not None and "ctc" in predictor.params.export_formats(predictor.card.spatial_dims):
        export_ctc_sequences(predictions, images, exports / "ctc", ndim=predictor.card.spatial_dims)
    return results


def predict_stored(
    image: StoredImage,
    predictor: Predictor,
    predictions: PredictionStore,
    *,
    exports: Path | None = None,
    on_rows=None,
    progress: bool = False,
    attach: bool = True,
    shared: SharedInputs | None = None,
) -> ImageResult:
    """Predict one image into ``predictions`` (resuming a partial run) unless it is current; then export.

    Args:
        image: The stored image (read lazily, window by window).
        predictor: The model and settings.
        predictions: The model's prediction store.
        exports: Folder for TIFF and NIfTI exports (``None``: none).
        on_rows: Called as ``on_rows(frame, row)`` after rows are written and recorded (rows of the
            model's grid when the image is resampled to it).
        progress: Show the rows done of a large image (:data:`LARGE` voxels or more).
        attach: Copy the label maps under the image in its dataset store too
            (:func:`segpipe.prediction.layers.attach_to_source`), so the dataset store shows them.
        shared: A generalist's inputs chosen once for the frames of its sequence (:func:`sequence_inputs`).
    """
    made = run_network(image, predictor, predictions, on_rows=on_rows, progress=progress, shared=shared)
    return made.complete(exports=exports, attach=attach)


def run_network(
    image: StoredImage,
    predictor: Predictor,
    predictions: PredictionStore,
    *,
    on_rows=None,
    progress: bool = False,
    shared: SharedInputs | None = None,
) -> Current | Predicted:
    """The network's part of :func:`predict_stored` (same arguments): the image to complete, or
    :class:`Current` where its prediction is current. ``shared``: the generalist's inputs of every
    frame of one input, chosen once (else chosen for this image: :func:`input_slots`)."""
    card, params = predictor.card, predictor.params
    digest = array_digest(image.image)
    stamp = predictor.stamp(image, inputs_from=shared.digest if shared is not None else None, image_digest=digest)
    root = predictions.root
    if predictions.stamp(image.name) == stamp:
        log.info("%s: already predicted with these settings, skipping", image.name)
        return Current(image, card, params, predictions, stamp)
    network, spec = _inputs(image, predictor, shared.slots if shared is not None else None)
    if spec.min_range and not floor_holds(spec, image.image.dtype):
        log.info("%s: %s pixels where the model's training images had %s ones: scaled by its own intensity range, "
                 "without the training images' least range", image.name, image.image.dtype, spec.floor_for)
    scale = 1.0
    if card.object_size and params.resample:  # a model trained on objects of one size: at the scale that gives it that
        scale = estimate_scale(image, predictor, plan_grids(image, card, resample=True).image_spacing)
        log.info("%s: objects predicted at %.3g times its pixel size (the model's object size %g %s)",
                 image.name, scale, card.object_size, card.unit)
    grids = plan_grids(image, card, resample=params.resample, scale=scale)
    explain(image.name, grids)
    ndim, n_classes = card.spatial_dims, card.n_classes
    frames = image.image.ndim - 1 - ndim
    voxels = math.prod(image.image.shape[1:])  # from the shape: indexing a zarr array would read the channel
    in_memory = not grids.resample and not frames and voxels * card.out_channels <= params.in_memory
    in_memory = in_memory and voxels <= params.instances.whole_limit  # objects labelled whole, in memory too
    around = image.context is not None and in_memory and math.prod(image.context.shape[1:]) * card.out_channels <= params.in_memory
    if in_memory:  # nothing to resume: the group is made and written at once by Predicted.complete
        group, source = None, np.asarray(image.image)
        normalization = stream_normalization(source, spec)  # the region's own, as in training
        if around:  # a region of a larger image: predicted inside its surroundings, so its edges see the image
            source = np.asarray(image.context)
    else:
        group = partial_group(root, image, card, stamp, overlap=predictor.inference.overlap, image_digest=digest)
        group.attrs[RECORD_ATTR] = grids.record()
        normalization = _normalization(group, image, spec)
    share = background_not_zero(source if in_memory else image.image, spec)
    if share is not None:
        log.warning("%s: %.1f%% of the image is 0, where the model's training images had a background of 0 that its "
                    "normalization leaves out; this image's background is measured with the rest, so it is scaled "
                    "otherwise than in training: bring a background at another value (an offset) to 0 first",
                    image.name, 100 * share)
    if grids.resample:  # on the model's grid, then back (segpipe.prediction.resampled)
        source, sink = model_grid(image, group, grids, normalization, card=card, overlap=predictor.inference.overlap)
        source_normalization = None
    elif in_memory:
        source_normalization = normalization
        sink = ArraySink(card.out_channels, (), source.shape[1:])
    else:
        probabilities = ChannelsFirst(group[IMAGE_LEVEL], frames) if frames else group[IMAGE_LEVEL]
        source, source_normalization = image.image, normalization
        sink = ZarrSink(group, ndim=ndim, n_classes=n_classes, probabilities=probabilities, semantic=group["labels/semantic/s0"])
    # blank pixels (segpipe.inference.blank) are found in the source as the network reads it: normalized already where resampled
    blank = Blank.for_outputs(
        floors(normalization, normalized=source_normalization is None),
        out_channels=card.out_channels, n_classes=n_classes, flow_channels=card.flow_channels,
    )
    seen = dataclasses.replace(image, image=source)
    with RowProgress(seen, ndim, enabled=progress and source.size >= LARGE, done=sink.done(), then=on_rows) as rows:
        stream = stream_predict(
            network,
            source,
            sink,
            roi_size=card.patch_size,
            out_channels=card.out_channels,
            params=predictor.inference,
            normalization=source_normalization,
            activation=partial(activate, n_classes=n_classes),
            flow_channels=card.flow_channels,
            device=predictor.device,
            on_rows=rows,
            blank=blank,
        )
    log.info("%s: %d windows in %.1f s", image.name, stream.windows, stream.seconds)
    if stream.noise_frames:  # said once for a run by warn_noise_only
        log.info(noise_only_message(image.name, len(stream.noise_frames), math.prod(image.image.shape[1 : 1 + frames]),
                                    predictor.inference.noise_only))
    if not in_memory:
        return Predicted(image, card, params, predictions, group, stamp, digest, grids, normalization, stream, None)
    values = sink.values[(slice(None), *image.in_context)] if around else sink.values  # converted here, where torch is
    # loaded: completing needs no torch, and half the bytes travel
    semantic = class_map(values[:n_classes])
    return Predicted(image, card, params, predictions, group, stamp, digest, grids, normalization, stream, float16(values), semantic)


def noise_only_message(name: str, noise: int, frames: int, threshold: float) -> str:
    """The warning for ``noise`` of an image's ``frames`` frames that held only noise (:mod:`segpipe.inference.noise`)."""
    rule = f"nothing in it stands {threshold:g} noise deviations out of its noise, in any channel; --noise-only 0 predicts it"
    if frames == 1:
        return f"{name}: the image holds only noise ({rule}): predicted as background, no objects"
    return f"{name}: {noise} of its {frames} frames or planes hold only noise ({rule}): predicted as background"


def input_slots(image: StoredImage, predictor: Predictor) -> Slots:
    """The inputs of the predictor's network ``image``'s channels feed: a generalist's chosen
    (:mod:`segpipe.prediction.generalist_inputs`), else channel j on input j."""
    card = predictor.card
    if predictor.chooses_inputs:
        choice = choose_inputs(image.image, card)
        log.info(choice.describe(image.name))
        return choice.slots
    return tuple(range(image.image.shape[0]))


#: The frames of a series looked at for one holding more than noise (:class:`SharedInputs`).
LOOKAHEAD = 8


class SharedInputs:
    """A generalist's inputs for every frame of one input (a time series, a sequence): chosen once, on
    its first frame that holds more than noise among the first :data:`LOOKAHEAD` (a series that
    starts before the cells are in view would otherwise choose on noise, and feed every frame as the
    noise chose), and only when some frame is predicted (not when all are current). ``frames``: the
    series' frames in order, opened as they are looked at."""

    def __init__(self, frames: Sequence[StoredImage], predictor: Predictor):
        self.frames, self.predictor = frames, predictor

    @functools.cached_property
    def chosen_on(self) -> StoredImage:
        """The first frame that holds more than noise (the first frame where none of those looked at
        does, or where the noise test is off)."""
        threshold = self.predictor.inference.noise_only
        ndim = self.predictor.card.spatial_dims
        if threshold > 0:
            for frame in itertools.islice(self.frames, LOOKAHEAD):
                within = (0,) * (frame.image.ndim - 1 - ndim)
                if not frame_noise_only(frame.image, within, ndim, threshold=threshold):
                    return frame
        return self.frames[0]

    @functools.cached_property
    def digest(self) -> str:
        """The content of the frame chosen on, which the choice depends on (part of every frame's stamp)."""
        return array_digest(self.chosen_on.image)

    @functools.cached_property
    def slots(self) -> Slots:
        return input_slots(self.chosen_on, self.predictor)


def sequence_inputs(store: ImageStore, predictor: Predictor) -> dict[str, SharedInputs]:
    """For a generalist choosing its inputs: every frame of a sequence of several frames in ``store``
    (images named ``SEQ-tNNN``, whatever their splits) by name, to the inputs chosen once for the
    sequence (:class:`SharedInputs`), as ``segpipe segment`` does for the frames of one input; empty otherwise."""
    if not predictor.chooses_inputs:
        return {}
    frames: dict[str, list[tuple[int, str]]] = {}
    for name in store.names():
        if match := FRAME_NAME.match(name):
            frames.setdefault(match["sequence"], []).append((int(match["frame"]), name))
    shared = {}
    for members in frames.values():
        if len(members) > 1:
            inputs = SharedInputs(_Frames(store, [name for _, name in sorted(members)]), predictor)
            shared.update({name: inputs for _, name in members})
    return shared


class _Frames(Sequence):
    """The frames ``names`` of ``store``, each opened when it is looked at (a catalog run asks for a
    sequence's shared inputs once per frame)."""

    def __init__(self, store: ImageStore, names: list[str]):
        self.store, self.names = store, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, k):
        return self.store.image(self.names[k])


def _inputs(image: StoredImage, predictor: Predictor, slots: Slots | None) -> tuple[torch.nn.Module, NormalizationSpec]:
    """The predictor's network fed ``image``'s channels on the inputs ``slots`` (None: :func:`input_slots`;
    inputs no channel feeds are blank), and the normalization of those channels."""
    card = predictor.card
    slots = input_slots(image, predictor) if slots is None else slots
    if slots == tuple(range(card.in_channels)):
        return predictor.network, card.normalization
    network = InputSlots(predictor.network, slots=slots, inputs=card.in_channels)
    return network, input_normalization(card.normalization, slots)


class RowProgress:
    """The rows of an image predicted so far, over all its frames, as :class:`Progress`.

    Called by the stream's writer thread as ``(frame, row)``; passes the call on to ``then``.
    ``done``: the frames and rows a resumed prediction finished before (:meth:`Sink.done`), which
    the bar starts from and leaves out of its rate.
    """

    def __init__(self, image: StoredImage, ndim: int, *, enabled: bool, done: tuple[int, int] = (0, 0), then=None):
        shape = image.image.shape[1:]
        self.lead, self.height, self.then = tuple(shape[: len(shape) - ndim]), shape[len(shape) - ndim], then
        total = int(np.prod(self.lead, dtype=np.int64)) * self.height
        before = done[0] * self.height + done[1]
        self.bar = Progress(total, desc=f"predict {image.name}", unit="row", done=before, enabled=enabled)

    def __call__(self, frame: tuple[int, ...], row: int) -> None:
        index = int(np.ravel_multi_index(frame, self.lead)) if self.lead else 0
        self.bar.update(index * self.height + row - self.bar.done)
        if self.then is not None:
            self.then(frame, row)

    def __enter__(self) -> RowProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


FRAME_NAME = re.compile(r"^(?P<sequence>.+)-t(?P<frame>\d+)$")


def sequence_frame(name: str) -> tuple[str, int]:
    """``("01", 3)`` for ``01-t003`` (a frame of a sequence), else ``(name, 0)``."""
    match = FRAME_NAME.match(name)
    return (match["sequence"], int(match["frame"])) if match else (name, 0)


def export_ctc_sequences(predictions: PredictionStore, images: list[StoredImage], folder: Path, *, ndim: int) -> list[Path]:
    """Cell Tracking Challenge result folders ``folder/<sequence>_RES`` from predicted images.

    Images named ``SEQ-tNNN`` (the frames of a CTC sequence folder, or of a multi-frame file) form
    the sequence ``SEQ``, written as ``folder/SEQ_RES/maskNNN.tif`` with the frames' own numbers, as
    the CTC tools expect; an image with a frame axis of its own is a sequence by itself; any
    other image is ``folder/NAME_RES/mask000.tif``. Instance labels are exported where there are
    any, else the class map.
    """
    sequences: dict[str, list[tuple[int, object]]] = {}
    for image in images:
        labels = predictions.labels(image.name)
        if labels.ndim > ndim:
            sequences[image.name] = [(t, labels[t]) for t in range(labels.shape[0])]
            continue
        sequence, frame = sequence_frame(image.name)
        sequences.setdefault(sequence, []).append((frame, labels))
    return [export_ctc(frames, folder, sequence=name) for name, frames in sequences.items()]


def _normalization(group: zarr.Group, image: StoredImage, spec: NormalizationSpec) -> Normalization:
    """The card's normalization ``spec`` for this image (recorded in the group, so a resumed run uses the same)."""
    if "normalization" in group.attrs:
        return Normalization.from_record(group.attrs["normalization"])
    normalization = stream_normalization(image.image, spec)
    group.attrs["normalization"] = normalization.to_record()
    return normalization



