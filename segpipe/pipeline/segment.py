"""Segment the images a user brings with a trained model: ``segpipe segment --model MODEL INPUT...``.

Each input (a file, an OME-Zarr image, a CTC sequence) is ingested into its own OME-Zarr,
predicted with the model (resampled to the model's pixel size when it differs), and given:

- the labels under its image in that OME-Zarr (``images/NAME.ome.zarr/IMAGE/labels/segmentation``);
- label files named after it: ``labels/NAME_labels.tif`` for TIFF and PNG inputs,
  ``labels/NAME_labels.nii.gz`` (with the source's affine) for NIfTI, ``labels/NAME_RES/maskTTT.tif``
  for a CTC sequence (every frame, numbered as the CTC tools expect);
- its objects' measurements (``measurements/NAME.csv``).

The run's ``measurements.csv`` (every object of every input) and ``counts.csv`` (objects per
image) are assembled from those. Inputs whose content, model and settings are unchanged are
kept as they are; an unreadable input is listed as failed and the others are segmented.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import zarr

from segpipe.data.catalog import COLOURS
from segpipe.data.inputs import Input, find_inputs, settled_inputs
from segpipe import __version__
from segpipe.data.readers import AxesSpec, open_source
from segpipe.data.readers.units import pixel_size_problem, sizes_text
from segpipe.data.store import ImageStore, StoredImage
from segpipe.errors import InputError, ModelError, NoInputs, SegpipeError, naming
from segpipe.models.card import ModelCard
from segpipe.models.device import available_cpus, use_cpu_threads
from segpipe.models.model import Model
from segpipe.pipeline.failures import dated, earlier_failures
from segpipe.pipeline.files_process import files_processes, files_worker
from segpipe.pipeline.segment_files import (
    InputResult,
    SegmentFolder,
    SegmentParams,
    count_objects,
    failed_input,
    finish_input,
    guarded,
    prepare_input,
    write_csv,
    write_measurements,
)
from segpipe.prediction.fit import channels_taken, takes_channels
from segpipe.prediction.generalist_inputs import flat_channels
from segpipe.prediction.params import PredictParams
from segpipe.prediction.complete import ImageResult
from segpipe.prediction.noise_frames import recorded, warn_noise_only
from segpipe.prediction.predict import Current, Predicted, Predictor, SharedInputs, run_network
from segpipe.prediction.store import PredictionStore
from segpipe.progress import Progress
from segpipe.temporary import replacing

log = logging.getLogger(__name__)


def channel_numbers(chosen: list[int | str], names: tuple[str | None, ...] | None, *, where: str) -> tuple[int, ...]:
    """``--channels`` as numbers: each name is the file's channel of that name (OME ``Channel Name``).

    Raises:
        ModelError: A name the file gives no channel (the input cannot be read as the model needs).
    """
    out = []
    for channel in chosen:
        if isinstance(channel, int):
            out.append(channel)
        elif names and channel in names:
            out.append(names.index(channel))
        else:
            has = f"its channels are named {', '.join(str(n) for n in names)}" if names else "the file names no channels"
            raise ModelError(f"{where}: --channels {channel}: no channel of that name ({has}); or give numbers, counted from 0")
    return tuple(out)


def check_input(item: Input, card: ModelCard, params: SegmentParams) -> Input | None:
    """Refuse an input the model cannot segment (dimensions, channels), before anything is written.

    A generalist takes fewer channels than it has inputs (the others are blank). A single 2D
    frame (not a sequence) with more channels than the model takes is read without what carries
    nothing (:func:`kept_channels`): a grey image saved in colour (red, green and blue alike) reads
    its first channel; a composite with channels that carry nothing (a blank blue, an opaque
    alpha; for a generalist also a scale bar alone) reads the others, in order, when the model
    takes that many.

    Returns:
        The input as it will be read, or ``None`` when it cannot be read at all: it is not
        refused here (it fails on its own later).
    """
    spec = AxesSpec(override=params.axes, fill="Z" if card.spatial_dims == 3 else "")
    kept = None
    try:
        path = item.path if item.kind != "ctc" else _first_frame(item.path)  # a sequence missing a frame fails alone
        with open_source(path, spec=spec, series=item.series) as source:
            planes, channels, times = source.spatial[0], source.channels, source.frames
            named, file_axes = source.meta.channel_names, source.meta.axes
            if (params.channels is None and item.kind != "ctc" and source.frames == 1 and planes == 1
                    and card.spatial_dims == 2 and not takes_channels(card, channels)
                    and math.prod(source.shape) * source.dtype.itemsize <= GREY_BYTES):
                kept = kept_channels(source, card)
    except (InputError, OSError):  # it fails on its own, listed with the others
        return None
    if kept is not None and takes_channels(card, len(kept.channels)):
        log.info("%s: %s: reading channel(s) %s of %d", item.where, kept.why, list(kept.channels), channels)
        item, channels = dataclasses.replace(item, channels=kept.channels), len(kept.channels)
    if params.channels is not None:
        channels = len(params.channels)
        if any(isinstance(c, str) and c not in COLOURS for c in params.channels):
            item = dataclasses.replace(item, channels=channel_numbers(params.channels, named, where=item.where))
    what = f"{item.where}: model {card.name!r}"
    if card.spatial_dims == 2 and planes > 1 and times > 1:  # its T is taken: the planes cannot be named T too
        raise ModelError(f"{what} segments 2D images; this is a time series of {times} 3D stacks of {planes} planes: use a "
                         "3D model, or write each time point to a file of its own and segment each plane with --axes "
                         "naming the planes T (e.g. TCYX for a ZCYX stack)")
    if card.spatial_dims == 2 and planes > 1:
        example = (f"--axes {file_axes.replace('Z', 'T')}, this file's axes {file_axes} in its own order"
                   if file_axes and set(file_axes) <= set("TCZYX") and "Z" in file_axes else "e.g. TYX for a ZYX stack")
        raise ModelError(f"{what} segments 2D images; this is a 3D stack of {planes} planes: use a 3D model, or segment "
                         f"each plane on its own with --axes naming the planes T ({example})")
    if card.spatial_dims == 3 and planes == 1:
        raise ModelError(f"{what} segments 3D volumes; this is a single 2D plane (use a 2D model)")
    if not takes_channels(card, channels):
        names = f" ({', '.join(card.channel_names)})" if card.channel_names else ""
        if params.channels is not None:
            chosen = ",".join(map(str, params.channels))
            raise ModelError(f"{what} takes {channels_taken(card)} channel(s){names}, --channels {chosen} selects {channels}")
        frames = ("; or, if they are time points, give --axes XYZT (NIfTI's 4th axis is read as channels, as the "
                  "Medical Segmentation Decathlon stores modalities)") if item.kind == "nifti" and params.axes is None else ""
        raise ModelError(
            f"{what} takes {channels_taken(card)} channel(s){names}, this image has {channels}; choose them with --channels{frames}"
        )
    return item


#: Largest single 2D image (all channels) looked at for channels that carry nothing.
GREY_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Kept:
    """The channels of an image worth reading, and why the others are left out."""

    channels: tuple[int, ...]
    why: str


def kept_channels(source, card: ModelCard) -> Kept | None:
    """The channels of ``source`` (one 2D frame, read whole: at most ``GREY_BYTES`` and a float
    copy of a channel at a time) that carry something, or ``None`` when all do or it is not numeric.

    A grey image saved in colour (3 or 4 channels, red, green and blue equal, the alpha of 4 one
    value everywhere) keeps its first channel. Otherwise a generalist keeps the channels that are
    not flat by its own rule (:func:`~segpipe.prediction.generalist_inputs.flat_channels`: equal
    low and high percentiles, so a scale bar in an empty blue is flat and a few nuclei on a zero
    background are not); any other model keeps those not one value everywhere (a blank blue, an
    opaque alpha)."""
    channels = source.channels
    frame = source.read(0, (slice(None),) * 3)
    if frame.dtype.kind not in "iuf":  # refused later, on its own
        return None
    frame = frame.reshape(channels, *frame.shape[-2:])
    if channels in (3, 4) and all(np.array_equal(frame[0], frame[k]) for k in (1, 2)):
        if channels == 3 or _one_value(frame[3]):
            return Kept((0,), f"a grey image saved in {channels} colour channels, all alike")
    if card.generalist:
        flat, what = flat_channels(frame, card.normalization), "flat (one value but for a few pixels)"
    else:
        flat, what = tuple(c for c in range(channels) if _one_value(frame[c])), "one value everywhere"
    if not flat:
        return None
    return Kept(tuple(c for c in range(channels) if c not in flat), f"channel(s) {list(flat)} {what}")


def _one_value(channel: np.ndarray) -> bool:
    """Whether every pixel of ``channel`` holds the same value (a blank channel, an opaque alpha)."""
    return bool(np.all(channel == channel.flat[0]))


def spacing_for_model(params: SegmentParams, card: ModelCard) -> SegmentParams:
    """``params`` with a ``--spacing`` of one value given to every spatial axis of the model; one of
    another length than the model's axes, or no pixel size in its unit (``--unit``, else the model's:
    :func:`~segpipe.data.readers.units.pixel_size_problem`), is refused."""
    ndim = card.spatial_dims
    if params.spacing is not None and (problem := pixel_size_problem(params.spacing, params.unit or card.unit)):
        raise InputError(f"--spacing: {problem}")
    if params.spacing is None or len(params.spacing) == ndim:
        return params
    if len(params.spacing) == 1:
        return params.model_copy(update={"spacing": params.spacing * ndim})
    raise InputError(
        f"--spacing: {len(params.spacing)} values for a model of {ndim}D images; give {ndim} ({' '.join('ZYX'[3 - ndim:])}) or one for every axis"
    )


def fitting_inputs(items: list[Input], card: ModelCard, params: SegmentParams) -> tuple[list[Input], list[InputResult]]:
    """The inputs the model may segment, and a failed result for each one it cannot (:func:`check_input`).

    Raises:
        ModelError: The model fits none of the inputs that can be read (then nothing is written).
    """
    fit, unfit, checked = [], [], False
    for item in items:
        try:
            read = check_input(item, card, params)
            checked |= read is not None
            fit.append(read or item)
        except ModelError as err:
            unfit.append((item, err))
    if unfit and not checked:
        more = f" (and the {len(unfit) - 1} other input(s))" if len(unfit) > 1 else ""
        raise ModelError(f"{unfit[0][1]}{more}")
    return fit, [failed_input(item, err, alone=len(items) == 1) for item, err in unfit]


@dataclasses.dataclass(frozen=True)
class SegmentInputs:
    """A run's inputs: those the model takes, a failed result for each it does not, and the order
    they were named in (by :attr:`Input.where`), named against ``given`` (``names.json`` as read)."""

    items: list[Input]
    unfit: list[InputResult]
    order: dict[str, int]
    given: dict[str, str]

    settled: float = 0.0

    @classmethod
    def gather(cls, patterns: list[str], folder: SegmentFolder, given: dict[str, str], card: ModelCard,
               params: SegmentParams, *, settled: float = 0.0) -> SegmentInputs:
        """Named for ``folder``: ``given``, its names as read, and what each name's input was made
        from (a moved input keeps its name). ``settled``: leave out inputs whose files changed in the
        last that many seconds (still being copied in: they are taken by a later run). The output's
        own folders (:meth:`SegmentFolder.own_folders`) are never inputs.

        Raises:
            NoInputs: Nothing to segment was found (or everything found is still changing).
            InputError: An input is named wrongly. ModelError: the model fits none of the inputs.
        """
        found = find_inputs(patterns, given=given, skip=folder.own_folders(), recorded=folder.sources_of)
        if settled > 0:
            found, waiting = settled_inputs(found, seconds=settled)
            if waiting:
                log.info("%d input(s) changed in the last %g s, left for the next run (still being copied in?): %s",
                         len(waiting), settled, ", ".join(item.where for item in waiting[:5]))
            if not found:
                raise NoInputs(f"{' '.join(patterns)}: every input found changed in the last {settled:g} s")
        items, unfit = fitting_inputs(found, card, params)
        return cls(items, unfit, {item.where: k for k, item in enumerate(found)}, given, settled)

    def named_now(self, patterns: list[str], folder: SegmentFolder, card: ModelCard, params: SegmentParams) -> SegmentInputs:
        """These inputs, named again if a run that ended as this one started gave names since they
        were read (two runs could otherwise give one name to two files); called under the folder's lock."""
        now = folder.given_names()
        return self if now == self.given else SegmentInputs.gather(patterns, folder, now, card, params, settled=self.settled)


def segment(
    patterns: list[str],
    predictor: Predictor,
    folder: SegmentFolder,
    params: SegmentParams | None = None,
    *,
    progress: bool = True,
) -> list[InputResult]:
    """Segment every input ``patterns`` name; writes the run's tables and ``segment.json``.

    The inputs flow through three steps (:func:`prepare_input`, :func:`predict_input`,
    :func:`finish_input`); while the network predicts one input, a second process
    (:mod:`segpipe.pipeline.files_process`; a thread for a single input) ingests the next and
    makes, writes, exports and measures the labels of the one before; beside a GPU, several
    (:func:`~segpipe.pipeline.files_process.files_processes`). On the CPU, with more than one
    input, the network gets every core but one, which the files' process keeps: on 2 cores one
    network thread beside the files does more than two network threads that wait for each other
    between small operations (``benchmarks/RESULTS.md``). The processes are spawned, so a script
    that calls this with several inputs needs the usual ``if __name__ == "__main__":`` guard.

    Raises:
        InputError: No input found; or every input failed (the first one's error: no tables or
            report are written, and a folder this run made is removed if nothing was ingested).
        ModelError: The model fits none of the inputs (nothing is written then); an input it
            does not fit (dimensions, channels) among others is listed as failed.
    """
    params = spacing_for_model(params or SegmentParams(), predictor.card)
    ordered = params.ordered(predictor.params)
    if ordered is not predictor.params:  # the user's order: no choosing
        predictor = dataclasses.replace(predictor, params=ordered)
    inputs = SegmentInputs.gather(patterns, folder, folder.given_names(), predictor.card, params)
    threads = torch.get_num_threads()
    created = not folder.root.exists()
    # a read-only place, a file there, or another run writing there, fails now
    with naming(folder.root), folder.writing():
        inputs = inputs.named_now(patterns, folder, predictor.card, params)
        warn_other_model(folder, predictor.model)
        return _segment_held(inputs, predictor, folder, params, progress=progress, created=created, threads=threads)


def _segment_held(inputs: SegmentInputs, predictor: Predictor, folder: SegmentFolder, params: SegmentParams, *,
                  progress: bool, created: bool, threads: int) -> list[InputResult]:
    """:func:`segment`'s work while it holds the folder."""
    items, unfit, order = inputs.items, inputs.unfit, inputs.order
    total = len(items) + len(unfit)
    # the inputs the model does not take are done before the first: counted, not in the rate
    with Progress(total, desc="segment", unit="input", done=len(unfit), enabled=progress) as bar:
        if unfit:
            bar.update(0, failed=len(unfit))
        try:
            processes = files_processes(len(items), device=predictor.device.type, cpus=available_cpus())
            if predictor.device.type == "cpu" and processes:
                use_cpu_threads(reserved=processes)
            results = _pipelined(items, predictor, folder, params, processes=processes, bar=bar, progress=progress,
                                 failed=len(unfit), alone=total == 1)
            results = sorted(results + unfit, key=lambda result: order[result.path])
        finally:
            torch.set_num_threads(threads)
        if results and all(r.error is not None for r in results):
            every_input_failed(results, folder, created=created)
        folder.keep_names(items, results)
        results = dated(results, earlier_failures(folder.summary))
        warn_guessed_spacing(results, predictor.card)
        warn_file_spacing_set_aside(results, params)
        warn_noise(results, predictor.inference.noise_only)
        write_tables(folder, results)
        write_summary(folder, predictor.model, predictor.params, results)
        report_segmentation(folder, predictor.card)
    return results


def every_input_failed(results: list[InputResult], folder: SegmentFolder, *, created: bool) -> None:
    """Nothing was segmented: no tables or report (an earlier run's stay as they were), the inputs'
    prediction stores removed where they hold no prediction yet, the folder removed when this run
    made it and nothing was ingested into it (an ingested input is kept for the next run), and the
    first input's error raised for the command line.

    Raises:
        InputError: Always.
    """
    for result in results:  # the prediction stores opened for them, still without a prediction
        store = folder.predictions(result.name)
        if (store / "zarr.json").is_file() and not zarr.open_group(str(store), mode="r").nmembers():
            shutil.rmtree(store, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.all_predictions.rmdir()  # when empty
    if created and not any(p.is_file() and p.name != ".segment.lock" for p in folder.root.rglob("*")):
        shutil.rmtree(folder.root, ignore_errors=True)
    first = results[0]
    reason = first.error.split(": ", 1)[-1] if first.error else "failed"
    more = f" (and the {len(results) - 1} other input(s), which failed too)" if len(results) > 1 else ""
    raise InputError(f"{first.path}: {reason}{more}")


def warn_other_model(folder: SegmentFolder, model: Model) -> None:
    """One warning when ``folder`` was last segmented with another model (its ``segment.json``): the
    inputs of this run get this model's labels, the others there keep the other model's."""
    try:
        before = json.loads(folder.summary.read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: nothing to compare
        return
    if isinstance(before, dict) and before.get("id") not in (None, model.id):
        log.warning(
            "%s was segmented with another model before (%s, %s): this run's inputs get the labels of %s, while any "
            "other input segmented there keeps the other model's; give --output a new folder to keep one model's "
            "labels together", folder.root, before.get("name"), before.get("folder"), model.card.name,
        )


def warn_noise(results: list[InputResult], threshold: float) -> None:
    """One warning for the inputs whose images held only noise in this run (:func:`segpipe.prediction.noise_frames.warn_noise_only`)."""
    warn_noise_only({name: n for r in results if r.error is None and not r.skipped for name, n in r.noise_only.items()}, threshold)


def warn_guessed_spacing(results: list[InputResult], card: ModelCard) -> None:
    """One warning for every input whose pixel size nobody gave (a run of 1,000 such files gets one
    line), and one when the model's own pixel size was a guess while inputs give theirs."""
    known = [r for r in results if r.error is None and not r.guessed_spacing]
    if card.spacing_guessed and known and not card.generalist and not card.object_size:
        log.warning(
            "%s: the pixel size the model was trained at is not known (its training images' files gave none; %s %s per "
            "pixel was taken), so %d input(s) with a pixel size (first: %s) were taken at 1 per pixel, as its "
            "training images were, not at their own: objects are found at about the size in pixels the training images showed them. To resample "
            "by physical size, tell the model its training images' pixel size (segpipe models pixel-size MODEL SIZE), or train it "
            "with that pixel size (spacing: in their catalog entry)",
            card.name, sizes_text(card.spacing), card.unit, len(known), known[0].path,
        )
    guessed = [r for r in results if r.guessed_spacing]
    if not guessed:
        return
    if card.object_size or card.generalist or card.spacing_guessed:  # the network does not need it; only the measurements do
        how = ("the model finds each image's object scale itself" if card.object_size
               else "the generalist predicts every image at its own pixels" if card.generalist
               else "the model's own pixel size is not known, so every image is taken at 1 per pixel, as its training images were")
        taken = f"1 {guessed[0].guessed_spacing} per pixel"
        why = f" for the measurements (areas, centroids). If that is wrong, give it with --spacing and --unit; {how}"
    else:  # pipeline.models.assumed_spacing: the model's
        taken = f"the model's, {sizes_text(card.spacing)} {card.unit} per pixel"
        why = (", so the network sees them at their own pixels and the measurements are in that size. If the "
               f"images are at another pixel size, give it with --spacing ({' '.join('ZYX'[3 - card.spatial_dims :])}) "
               "and --unit: each image is then resampled to the model's")
    log.warning(
        "%d of %d input(s) have no pixel size in their file (first: %s); taking %s%s",
        len(guessed), len(results), guessed[0].path, taken, why,
    )


def warn_file_spacing_set_aside(results: list[InputResult], params: SegmentParams) -> None:
    """One warning for the inputs whose file gives another pixel size than ``--spacing``."""
    read = [r for r in results if r.error is None]
    other = [r for r in read if r.file_spacing]
    if other:
        log.warning(
            "%d of %d input(s) give another pixel size in their file than --spacing %s (first: %s, its file %s); "
            "--spacing is used, for the scale the network sees and for areas and volumes (world-* columns follow the "
            "file's own placement). If the files are right, leave --spacing out",
            len(other), len(read), sizes_text(params.spacing or ()), other[0].path, other[0].file_spacing,
        )


def _pipelined(
    items: list[Input],
    predictor: Predictor,
    folder: SegmentFolder,
    params: SegmentParams,
    *,
    processes: int,
    bar: Progress,
    progress: bool,
    failed: int = 0,
    alone: bool = False,
) -> list[InputResult]:
    """Every input through its three steps: the network's here, the files' in the files' workers
    (``processes``; 0: a thread), as many inputs ahead as there are workers, and behind. ``failed``:
    inputs that failed before (the progress bar counts them); ``alone``: the run's only input."""
    model, card = predictor.model, predictor.card
    results: list[InputResult | Future] = []
    ahead = max(1, processes)
    with files_worker(processes=processes, preload=("segpipe.pipeline.segment_files",)) as files:

        def prepare(item: Input) -> Future:
            return files.submit(guarded, item, folder, prepare_input, item, model, folder, params, alone=alone)

        prepared = deque(prepare(item) for item in items[:ahead])
        try:
            for number, item in enumerate(items):
                ready = prepared.popleft().result()
                if number + ahead < len(items):
                    prepared.append(prepare(items[number + ahead]))
                if isinstance(ready, InputResult):
                    results.append(ready)
                else:
                    store, predictions = ready
                    made = guarded(item, folder, predict_input, store, predictions, predictor, progress=progress, alone=alone)
                    if isinstance(made, InputResult):
                        results.append(made)
                    else:
                        results.append(files.submit(guarded, item, folder, finish_input, item, store, predictions, made, card, folder,
                                                    alone=alone))
                for earlier in results:  # an output error in the files' worker ends the run now
                    if isinstance(earlier, Future) and earlier.done():
                        earlier.result()
                bar.update(1, failed=failed + sum(isinstance(r, InputResult) and r.error is not None for r in results))
            return [r.result() if isinstance(r, Future) else r for r in results]
        finally:  # a run that ends early still finishes the inputs the network has done (leaving the workers waits)
            for future in prepared:
                future.cancel()


def segment_input(
    item: Input, predictor: Predictor, folder: SegmentFolder, params: SegmentParams, *, progress: bool = False
) -> InputResult:
    """Ingest, predict, attach labels, export and measure one input (kept where current)."""
    store, predictions = prepare_input(item, predictor.model, folder, params)
    made = predict_input(store, predictions, predictor, progress=progress)
    return finish_input(item, store, predictions, made, predictor.card, folder)


def predict_input(
    store: ImageStore, predictions: PredictionStore, predictor: Predictor, *, progress: bool = False
) -> list[Current | Predicted]:
    """Run the network on every image of an ingested input (images kept where current); their labels are made in :func:`finish_input`.

    The frames of a time series or sequence feed a generalist's inputs as chosen once for them (:class:`SharedInputs`),
    and each frame's labels are made and written (in a thread, while the network runs on the next)
    as soon as it is predicted: a run stopped in a long series keeps the frames done (it kept none
    of those predicted in memory, and a rerun began again at the first).
    """
    images = store.images()
    if len(images) == 1:
        return [run_network(images[0], predictor, predictions, progress=progress)]
    shared = SharedInputs(images, predictor) if predictor.chooses_inputs else None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segpipe-frames") as labeller:
        made: list = []
        for image in images:
            result = run_network(image, predictor, predictions, progress=progress, shared=shared)
            made.append(labeller.submit(_written, result) if isinstance(result, Predicted) else result)
            if len(made) > 2 and isinstance(made[-3], Future):  # at most two frames' outputs held; a failure stops the series now
                made[-3] = made[-3].result()
        return [m.result() if isinstance(m, Future) else m for m in made]


@dataclasses.dataclass(frozen=True)
class Written(Current):
    """A frame whose labels this run made and wrote (:func:`predict_input`): completed as a current
    one, but new, so the input's files and measurements are written again (a current one is not)."""

    result: ImageResult | None = None

    def complete(self, *, exports: Path | None = None, attach: bool = True) -> ImageResult:
        super().complete(exports=exports, attach=attach)
        return self.result


def _written(predicted: Predicted) -> Written:
    """``predicted`` with its labels made and its group finished in the prediction store."""
    result = predicted.complete(attach=False)
    return Written(predicted.image, predicted.card, predicted.params, predicted.predictions, predicted.stamp, result)


#: The columns of ``counts.csv``: ``noise_only_frames`` counts the frames of the image that held only
#: noise, so were not predicted (background; :mod:`segpipe.inference.noise`); ``failing_since``, when a
#: failed input first failed as it fails now (UTC; :mod:`segpipe.pipeline.failures`).
COUNTS_COLUMNS = ["input", "image", "objects", "noise_only_frames", "status", "error", "failing_since"]


def write_tables(folder: SegmentFolder, results: list[InputResult]) -> None:
    """The run's ``measurements.csv`` (every object) and ``counts.csv`` (objects per image)."""
    rows: list[dict] = []
    counts: list[dict] = []
    for result in results:
        if result.error is not None:
            counts.append({"input": result.path, "image": "", "objects": "", "noise_only_frames": "", "status": "failed",
                           "error": result.error, "failing_since": result.failing_since or ""})
            continue
        path = folder.measurements(result.name)
        with open(path, newline="") as handle:
            rows += [{"input": result.path, **row} for row in csv.DictReader(handle)]
        counts += [
            {"input": result.path, "image": image, "objects": result.objects.get(image, 0),
             "noise_only_frames": result.noise_frames.get(image, 0), "status": result.status, "error": "", "failing_since": ""}
            for image in result.images
        ]
    folder.root.mkdir(parents=True, exist_ok=True)
    write_csv(folder.table, rows, empty_fields=["input", "image", "label"])
    write_csv(folder.counts, counts, empty_fields=COUNTS_COLUMNS)


def write_summary(folder: SegmentFolder, model: Model, params: PredictParams, results: list[InputResult]) -> Path:
    """``segment.json``: the segpipe version and time (UTC) that wrote it, the model, the settings and
    what happened to every input."""
    summary = {
        "segpipe_version": __version__,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": model.card.name, "folder": str(Path(model.folder).resolve()), "id": model.id},
        "inference": params.inference_for(model.card.inference).model_dump(mode="json"),
        "resample": params.resample,
        "inputs": [asdict(r) for r in results],
        "failed": [r.path for r in results if r.error is not None],
    }
    with replacing(folder.summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return folder.summary


def _first_frame(folder: Path) -> Path:
    from segpipe.data.ctc import sequence_frames

    frames = sequence_frames(folder)
    return next(iter(frames.values()))


def report_segmentation(folder: SegmentFolder, card: ModelCard, *, title: str | None = None) -> Path:
    """``report.md`` and ``report.html`` of a run's tables, with overlays of a sample of its images."""
    from segpipe.report.segmentation import choose_sample, read_tables, write_segmentation_report

    counts, objects = read_tables(folder.root)
    stores = {}  # image name -> the input's store holding it
    for path in sorted((folder.root / "images").glob("*.ome.zarr")):
        try:
            store = ImageStore.open(path)
        except SegpipeError:  # an input's store left unfinished by a failure: not in the tables either
            continue
        stores.update(dict.fromkeys(store.names(), store))
    segmented = {str(row["image"]) for row in counts if row.get("status") != "failed"}
    sizes = image_sizes(set(stores.values()), card.unit, segmented)  # in the unit of measurements.csv
    noise = noise_only_images(counts, stores)
    views, turned = [], {}
    for name in choose_sample(counts, sizes=sizes.extent if card.instances else None):
        if name not in stores:
            continue
        store = stores[name]
        labels = _predictions_of(folder, store).labels(name)
        image = store.image(name)
        view, view_spacing = sample_view(image, labels, ndim=store.ndim, spacing=sizes.spacing.get(name, image.spacing))
        views.append(view)  # the per-image table names its input
        if view_spacing is not None:
            turned[name] = view_spacing
    report = write_segmentation_report(
        folder.root, title=title or f"Segmentation with {card.name}", card=card, counts=counts, objects=objects,
        views=views, unit=card.unit, ndim=card.spatial_dims, spacing_by_image=sizes.spacing, guessed_spacing=sizes.guessed,
        size_by_image=sizes.extent, anatomical=turned, noise_only=noise,
    )
    return report.path


def noise_only_images(counts: list[dict], stores: dict[str, ImageStore]) -> set[str]:
    """The images of ``counts`` (``counts.csv`` rows, :func:`~segpipe.report.segmentation.read_tables`) all of
    whose frames held only noise; ``stores`` holds each image (a name not there is not counted)."""
    return {
        name for row in counts if (name := str(row["image"])) in stores and row.get("status") != "failed"
        and (row.get("noise_only_frames") or 0) == _frames(stores[name].image(name), stores[name].ndim)
    }


def _predictions_of(folder: SegmentFolder, store: ImageStore) -> PredictionStore:
    """The predictions of ``store``'s input."""
    return PredictionStore.open(folder.predictions(Path(store.path).name.removesuffix(".ome.zarr")))


def _frames(image, ndim: int) -> int:
    """How many frames an image of ``ndim`` spatial axes has (1 without frame axes)."""
    return int(np.prod(image.image.shape[1 : image.image.ndim - ndim] or (1,)))


@dataclasses.dataclass(frozen=True)
class ImageSizes:
    """What the segmentation report needs of each image's size: its pixel size in the tables' unit,
    whether its file gave none (a pixel size was taken: the model's, or 1 per pixel), and its area
    (volume) in that unit over every frame (its objects are counted over them), to compare counts by
    size: a field imaged at half the pixel size holds four times the pixels, not the cells. Where
    some image's pixel size was taken, every image's extent is its pixel count instead."""

    spacing: dict[str, tuple[float, ...]]
    guessed: set[str]
    extent: dict[str, float]


def image_sizes(stores, unit: str, names) -> ImageSizes:
    """:class:`ImageSizes` of each image of ``stores`` named in ``names``, in ``unit``."""
    sizes = ImageSizes({}, set(), {})
    pixels: dict[str, float] = {}
    for store in stores:
        for image in store.images():
            if image.name in names:
                sizes.spacing[image.name] = image.spacing_in(unit, default_unit=store.unit)
                pixels[image.name] = float(np.prod(image.image.shape[1:]))  # (C, [T,] [Z,] Y, X)
                sizes.extent[image.name] = pixels[image.name] * float(np.prod(sizes.spacing[image.name]))
                if image.spacing_guessed:
                    sizes.guessed.add(image.name)
    if sizes.guessed:  # a size taken, not given, measures nothing: every image compared by its pixels
        sizes.extent.update(pixels)
    return sizes


def sample_view(image: StoredImage, labels, *, ndim: int, spacing: tuple[float, ...]) -> tuple[tuple, tuple[float, ...] | None]:
    """``(name, pixels, labels)`` of an image's first frame as the report draws it (a NIfTI volume
    turned as Slicer draws it, :func:`~segpipe.report.orientation.view_of`), and the turned view's
    pixel size (``None``: drawn as stored)."""
    from segpipe.report.orientation import view_of, view_step

    frames = labels.ndim - ndim
    step = view_step(labels.shape[frames:])
    every = (slice(None, None, step),) * ndim
    volumes = [np.asarray(image.image[(slice(None), *([0] * frames), *every)]), np.asarray(labels[(*(0,) * frames, *every)])]
    (pixels, plane), turned = view_of(image.info, tuple(s * step for s in spacing), volumes)
    return (image.name, pixels, plane), turned




def measure_run(run_root: Path, store: ImageStore, predictions: PredictionStore, card: ModelCard, *, split: str) -> list[dict]:
    """A catalog run without ground truth: its split's measurements and counts, as ``segment`` writes them."""
    folder = SegmentFolder(run_root)
    table = run_root / "measurements" / "all.csv"
    counts = count_objects(write_measurements(table, store.images(split), predictions, card, unit=store.unit), store.names(split))
    with open(table, newline="") as handle:
        objects = [{"input": store.name, **row} for row in csv.DictReader(handle)]
    noise = recorded(predictions, list(counts))
    counts_rows = [{"input": store.name, "image": n, "objects": c, "noise_only_frames": noise.get(n, 0), "status": "segmented", "error": ""}
                   for n, c in counts.items()]
    write_csv(folder.table, objects, empty_fields=["input", "image", "label"])
    write_csv(folder.counts, counts_rows, empty_fields=COUNTS_COLUMNS)
    return counts_rows
