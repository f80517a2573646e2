"""The stages over a dataset's run folder, as thin functions; the flows and the CLI call these.

Each stage opens the objects it works on (a catalog dataset, an :class:`ImageStore`, a
:class:`Model`, a :class:`PredictionStore`) and hands them, with the stage's parameter
object, to the room that does the work. Per-image functions (``predict_one``, ``score_one``)
let the Prefect flows fan images out; the whole-split ones serve the CLI.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from segpipe.data.catalog import Catalog
from segpipe.data.ingest import IngestParams, IngestResult, ingest_dataset
from segpipe.data.store import ImageStore, array_digest
from segpipe.errors import ModelError, SegpipeError, StoreError, naming
from segpipe.interrupts import keeps_nothing
from segpipe.models.model import Model
from segpipe.pipeline.models import assumed_spacing, entry_model, model_for, resolve_model
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.fit import check_fits, warn_unknown_pixel_size
from segpipe.prediction.noise_frames import recorded
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import (
    ImageResult,
    Predictor,
    export_ctc_sequences,
    predict_split,
    predict_stored,
    sequence_inputs,
)
from segpipe.prediction.store import PredictionStore
from segpipe.report import Report, read_history, read_runs, write_index, write_report
from segpipe.report.orientation import view_of, view_step
from segpipe.report.runs import append_run, new_run, run_entry, same_run
from segpipe.report.write import headline_text, rank_images
from segpipe.scoring import ScoreAccumulator
from segpipe.scoring.dataset import dataset_accumulator, dataset_metrics, score_image
from segpipe.training.loop import TrainResult, train_model
from segpipe.training.params import RANDOM, TrainParams
from segpipe.training.start import kind_problem
from segpipe.temporary import replacing

log = logging.getLogger(__name__)


def ingest(catalog: Catalog, dataset: str, run: RunFolder, params: IngestParams | None = None) -> IngestResult:
    """Validate the catalog entry and ingest it into the run's store (skipped when unchanged).

    An entry whose ``model:`` is applied takes that model's pixel size for a file that gives none,
    as ``segment`` does (:func:`~segpipe.pipeline.models.assumed_spacing`); one that trains, 1 per pixel.
    """
    resolved = catalog.dataset(dataset)
    model = entry_model(catalog, dataset, output=run.root.parent, untrained_ok=True)
    if model is not None and resolved.entry.spacing is None:
        resolved = dataclasses.replace(resolved, assumed_spacing=assumed_spacing(model.card))
    with keeps_nothing(f"the ingest of {dataset}"):  # its store is written whole: a stopped ingest starts over
        return ingest_dataset(resolved, run.store, params)


def train(run: RunFolder, params: TrainParams, *, catalog: Catalog | None = None, progress: bool = True) -> TrainResult:
    """Train the run's model on its store (``params`` already merged with the catalog's).

    ``params.init`` (fine-tuning) names a model folder, or a dataset of ``catalog`` whose model to start from.
    """
    init = start_model(run, params, catalog=catalog)
    with naming(run.model_dir):
        return train_model(ImageStore.open(run.store), run.model_dir, params, init=init, progress=progress)


def start_model(run: RunFolder, params: TrainParams, *, catalog: Catalog | None = None) -> Model | None:
    """The model ``params.init`` names (``None``: planned, or random weights).

    Raises:
        ModelNotFound: Nothing of that name (a caller checks this before the ingest it would otherwise wait for).
        ModelError: The catalog's entry for the run's dataset shows that the start cannot train it
            (another dimensionality, other classes).
    """
    if params.init in (None, RANDOM):
        return None
    base = catalog.root if catalog is not None else None
    start = resolve_model(params.init, output=run.root.parent, catalog=catalog, base=base)
    if catalog is not None and run.dataset in catalog:
        entry = catalog.entry(run.dataset)
        problem = kind_problem(start.card, ndim=entry.ndim, instances=entry.instances, classes=list(entry.classes))
        if problem:
            raise ModelError(f"training: init {start.folder}: {problem}")
    return start


def predict(
    run: RunFolder, params: PredictParams, *, split: str = "test", model: str | Path | None = None, progress: bool = True
) -> list[ImageResult]:
    """Predict a split of the run's store with a model (the run's own by default)."""
    chosen, store = model_for(run, model), ImageStore.open(run.store)
    names = store.names(split)
    if not names:  # before the prediction store is made
        raise StoreError(f"{run.store}: the {split} split is empty")
    check_fits(chosen.card, store)  # before anything is written
    warn_unknown_pixel_size(chosen.card, store, names)
    predictor = Predictor.load(chosen, params)
    with naming(run.predictions):
        predictions = _predictions_for(run, chosen)
        return predict_split(store, predictor, predictions, split=split, exports=run.exports, progress=progress)


def _predictions_for(run: RunFolder, model: Model) -> PredictionStore:
    """The run's prediction store for ``model``. Another model's predictions there are replaced, and
    the label files exported from them removed with them: they would lie beside the new ones."""
    before = PredictionStore.model_id_at(run.predictions)
    predictions = PredictionStore.for_model(run.predictions, model)
    if before is not None and before != model.id and run.exports.is_dir():
        log.info("%s: removing the label files exported from the other model's predictions", run.exports)
        shutil.rmtree(run.exports)
    return predictions


# One image at a time: the per-image tasks of the Prefect flows fan these out.


def prepare_predictions(run: RunFolder, *, split: str = "test", model: str | Path | None = None) -> list[str]:
    """Open the prediction store for the model (replacing another model's) before a fan-out.

    Returns:
        The names of the split's images, in catalog order.
    """
    store = ImageStore.open(run.store)
    names = store.names(split)
    if not names:
        raise StoreError(f"{run.store}: the {split} split is empty")
    chosen = model_for(run, model)
    check_fits(chosen.card, store)
    warn_unknown_pixel_size(chosen.card, store, names)
    with naming(run.predictions):
        _predictions_for(run, chosen)
    return names


def predictor_for(run: RunFolder, params: PredictParams, model: str | Path | None = None) -> Predictor:
    """The loaded model, kept per process: per-image tasks on one worker load the weights once."""
    return cached_predictor(model_for(run, model).folder, params)


def cached_predictor(folder: str | Path, params: PredictParams) -> Predictor:
    """The model in ``folder`` loaded with ``params``, kept per process (two at most)."""
    chosen = Model.open(folder)
    return _cached_predictor(str(chosen.folder), chosen.weights.stat().st_mtime_ns, chosen.id, params.model_dump_json(exclude_unset=True))


@functools.lru_cache(maxsize=2)
def _cached_predictor(folder: str, mtime_ns: int, model_id: str, params_json: str) -> Predictor:
    return Predictor.load(Model.open(folder), PredictParams.model_validate_json(params_json))


def predict_one(run: RunFolder, name: str, params: PredictParams, *, model: str | Path | None = None) -> str:
    """Predict one image of the run (kept when its stamp is current); returns the stamp.

    Call :func:`prepare_predictions` once first: this never replaces the prediction store, so
    images may be predicted concurrently, in threads or processes.
    """
    predictor = predictor_for(run, params, model)
    with naming(run.predictions):
        predictions = PredictionStore.open_for_writing(run.predictions, predictor.model)
        store = ImageStore.open(run.store)
        shared = sequence_inputs(store, predictor).get(name)
        return predict_stored(store.image(name), predictor, predictions, exports=run.exports, progress=True, shared=shared).stamp


def export_sequences(run: RunFolder, names: list[str], params: PredictParams, *, model: str | Path | None = None) -> list[Path]:
    """Cell Tracking Challenge folders of the predicted images ``names`` under ``run.exports/ctc``
    when ``params`` asks for them (a sequence's frames are written together, so this follows
    :func:`predict_one` of every image); returns the folders written."""
    chosen = model_for(run, model)
    ndim = chosen.card.spatial_dims
    if "ctc" not in params.export_formats(ndim) or not names:
        return []
    store = ImageStore.open(run.store)
    with naming(run.exports / "ctc"):
        predictions = PredictionStore.open(run.predictions)
        return export_ctc_sequences(predictions, [store.image(name) for name in names], run.exports / "ctc", ndim=ndim)


def prediction_stamp(run: RunFolder, name: str, params: PredictParams, *, model: str | Path | None = None) -> str:
    """The stamp a current prediction of ``name`` has (the flows' cache key)."""
    predictor, store = predictor_for(run, params, model), ImageStore.open(run.store)
    shared = sequence_inputs(store, predictor).get(name)
    return predictor.stamp(store.image(name), inputs_from=shared.digest if shared is not None else None)


def score_one(run: RunFolder, name: str) -> ScoreAccumulator:
    """Score one predicted image; returns a one-image accumulator for :func:`pool_scores`.

    Raises:
        StoreError: The prediction was made from another version of the image (ingested again since).
    """
    store = ImageStore.open(run.store)
    store.require_labels("score against")
    accumulator = dataset_accumulator(store.record)  # the model and the classical baseline
    image = store.image(name)
    predictions = PredictionStore.open(run.predictions)
    prediction = predictions.read(name)
    made_from = predictions.image_digest(name)
    if made_from is not None and made_from != array_digest(image.image):
        raise StoreError(
            f"{run.predictions}: the prediction of {name!r} was made from another version of its image (the dataset was "
            f"ingested again since): run segpipe predict {run.dataset} first"
        )
    score_image(
        accumulator, name, image=np.asarray(image.image), gt=np.asarray(image.labels),
        pred_instances=prediction.instances, pred_semantic=prediction.semantic, spacing=image.spacing,
        ignore=image.ignored(),
    )
    return accumulator


def score(run: RunFolder, *, split: str = "test") -> dict:
    """Score the run's predictions of a split; writes ``metrics.json`` (the test split; ``metrics-SPLIT.json`` for another).

    Raises:
        StoreError: The dataset has no ground truth, or none in ``split``: nothing to score.
    """
    store = ImageStore.open(run.store)
    store.require_labels("score against")
    names = store.names(split, labelled=True)
    if not names:
        raise StoreError(f"{run.store}: dataset {run.dataset!r} has no labelled images in its {split} split to score")
    return pool_scores(run, [score_one(run, name) for name in names], split=split)


def pool_scores(
    run: RunFolder, parts: list[ScoreAccumulator], *, split: str = "test", failed: dict[str, str] | None = None
) -> dict:
    """Pool per-image scores into the run's ``metrics.json`` (written atomically).

    Args:
        run: The run folder.
        parts: One-image accumulators from :func:`score_one`, in image order.
        split: The split scored.
        failed: Images that could not be predicted or scored, with the error; listed under
            ``failed`` and left out of every score.
    """
    store = ImageStore.open(run.store)
    pooled = dataset_accumulator(store.record)
    for part in parts:
        pooled.merge(part)
    metrics = dataset_metrics(pooled, dataset=run.dataset, split=split)
    metrics["failed"] = [{"name": name, "error": error} for name, error in (failed or {}).items()]
    metrics["noise_only"] = recorded(PredictionStore.open(run.predictions), [row["name"] for row in metrics.get("per_image", [])])
    model = _predicting_model(run)
    metrics["run"] = new_run(
        metrics, card=model.card if model else None, model_file=model.weights if model else None, predictions=run.predictions
    )
    metrics["run"]["data_fingerprint"] = store.record.get("fingerprint")  # the files scored on: a change of them is said
    with naming(run.root / "runs.jsonl"):
        earlier = (read_runs(run.root) or [None])[-1]
        entry = run_entry(metrics, metrics["run"])
        repeated = same_run(entry, earlier)
        if repeated:  # the same model's same predictions scored again: the same run, not a new line in the history
            metrics["run"].update(run_id=earlier["run_id"], timestamp=earlier["timestamp"])
    where = run.metrics_for(split)
    with replacing(where) as tmp, naming(where):
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    if not repeated:
        with naming(run.root / "runs.jsonl"):
            append_run(run.root, entry)  # the dataset's run history
    log.info("%s: %s", run.dataset, headline_text(metrics))
    return metrics


def report(run: RunFolder, *, split: str = "test") -> Report:
    """Write ``report.md`` and ``report.html`` with overlays and the training curve from the run's files;
    for a split without ground truth, the segmentation report (:func:`report_segmentation`).

    Raises:
        StoreError: The split is empty, or has ground truth but was not scored yet.
    """
    store = ImageStore.open(run.store)
    if not store.names(split):
        raise StoreError(f"{run.store}: the {split} split is empty; nothing was predicted to report on")
    if not store.names(split, labelled=True):  # nothing to score: what was segmented, as the flow reports it
        return report_segmentation(run, split=split)
    scores = run.metrics_for(split)
    if not scores.is_file():
        option = "" if split == "test" else f" --split {split}"
        raise StoreError(f"{scores}: no scores of the {split} split yet; run segpipe score {run.dataset}{option} first")
    metrics = json.loads(scores.read_text())
    model = _predicting_model(run) or Model.open(run.model_dir)
    history_file = model.folder / "history.csv"
    history = read_history(history_file) if history_file.is_file() else []
    predictions = PredictionStore.open(run.predictions)
    shown = {name for name, _, _ in rank_images(metrics)}  # the best and worst images (scored ones only)
    views, spacing, anatomical = [], None, {}
    for image in store.images(split, labelled=True):
        if image.name not in shown:
            continue
        pred = predictions.labels(image.name)  # the instance map where there is one, else the class map
        step = view_step(tuple(image.labels.shape))  # a large image is drawn from every n-th pixel, not read whole
        every = (slice(None, None, step),) * image.labels.ndim
        ignore = None if image.ignore is None else np.asarray(image.ignore[every]) > 0
        volumes = [np.asarray(image.image[(slice(None), *every)]), np.asarray(image.labels[every]), np.asarray(pred[every])]
        volumes, turned = view_of(image.info, tuple(s * step for s in image.spacing), volumes + ([] if ignore is None else [ignore]))
        views.append((image.name, *volumes))  # every channel; a NIfTI volume as Slicer draws it; the ignored pixels
        spacing = tuple(s * step for s in image.spacing)
        if turned is not None:
            anatomical[image.name] = turned
    folder = run.report_dir(split)
    with naming(folder):
        folder.mkdir(parents=True, exist_ok=True)
        written = write_report(
            folder, dataset=run.dataset, record=store.record, metrics=metrics, card=model.card, history=history,
            views=views, runs=read_runs(run.root), spacing=spacing, anatomical=anatomical,
        )  # images that failed are listed in the report from metrics["failed"]
        write_index(run.root.parent)
    return written


def report_segmentation(run: RunFolder, *, split: str = "test") -> Report:
    """The report of a run without ground truth: objects per image, sizes, outliers, overlays."""
    from segpipe.pipeline.segment import image_sizes, measure_run, noise_only_images, sample_view
    from segpipe.report.segmentation import choose_sample, read_tables, write_segmentation_report

    store, predictions = ImageStore.open(run.store), PredictionStore.open(run.predictions)
    card = predictions.model().card
    measure_run(run.root, store, predictions, card, split=split)
    counts, objects = read_tables(run.root)
    sizes = image_sizes([store], store.unit, {str(row["image"]) for row in counts if row.get("status") != "failed"})
    views, turned = [], {}
    for name in choose_sample(counts, sizes=sizes.extent if card.instances else None):
        image = store.image(name)
        view, view_spacing = sample_view(image, predictions.labels(name), ndim=store.ndim, spacing=sizes.spacing.get(name, image.spacing))
        views.append(view)
        if view_spacing is not None:
            turned[name] = view_spacing
    with naming(run.root):
        written = write_segmentation_report(
            run.root, title=f"{run.dataset}: segmented with {card.name}", card=card, counts=counts, objects=objects,
            views=views, unit=store.unit, ndim=store.ndim, spacing_by_image=sizes.spacing, guessed_spacing=sizes.guessed,
            size_by_image=sizes.extent, anatomical=turned, noise_only=noise_only_images(counts, dict.fromkeys(store.names(split), store)),
        )
        write_index(run.root.parent)
    return written


def _predicting_model(run: RunFolder) -> Model | None:
    """The model the run's predictions were made with, when it is still there."""
    try:
        return PredictionStore.open(run.predictions).model()
    except SegpipeError:
        return None
