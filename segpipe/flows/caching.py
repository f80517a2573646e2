"""Cache keys of the flows' tasks, and whether the files a cached result describes are still there.

A key names the task and everything its result depends on, by content: a cached ingest is
valid for the same source bytes and catalog entry, a cached training for the same ingested
data and parameters, a cached prediction for the same model, settings and image bytes (its
stamp), a cached score for the same prediction and ground-truth bytes and scoring code.
Training depends on the train and validation images only, so new ground truth for a test
image re-scores that image without retraining; it also depends on the code that trains,
plans, validates and starts it (and the shipped starting weights), so an upgraded segpipe
trains again instead of reusing a model the old code made. Keys are global across tasks in
Prefect, hence the task name and the run folder in each.

Ingest, training and prediction write files; their cached result is only worth reusing while
those files are what the key says (nobody deleted the run folder or trained another model
into it). The ``*_current`` functions check that; the flows refresh the cache where they
return False (:func:`refreshed`).

Results are stored where Prefect stores results (``PREFECT_LOCAL_STORAGE_PATH``, by default
``$PREFECT_HOME/storage``): processes sharing a cache must share that folder.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from prefect import Task

from segpipe.errors import SegpipeError
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams


def keyed(task_name: str, *parts: Any) -> str:
    """A cache key: the task name and the JSON of ``parts``, hashed."""
    text = json.dumps([task_name, *parts], sort_keys=True, default=str)
    return f"segpipe-{task_name}-{hashlib.sha256(text.encode()).hexdigest()}"


def run_dir(run: RunFolder) -> str:
    """The run folder, absolute: two output folders never share cache entries."""
    return str(run.root.resolve())


@cache
def code_digest(package: str) -> str:
    """SHA-256 of a package's files (sources and the data it ships, such as starting weights;
    not ``__pycache__``): new code invalidates the cached results it made."""
    import importlib

    folder = Path(importlib.import_module(package).__file__).parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# --- ingest -------------------------------------------------------------------------------


def source_fingerprint(catalog: str | Path, dataset: str, run: RunFolder) -> str:
    """Digest of the catalog entry and every source file's content; a file the run's store
    recorded with the same size and times is not read again (a repeated run costs a ``stat`` per
    unchanged file, as ingest does)."""
    from segpipe.data.ingest import dataset_fingerprint
    from segpipe.data.store import read_record
    from segpipe.pipeline.catalog import open_catalog

    known = (read_record(run.store) or {}).get("sources")
    return dataset_fingerprint(open_catalog(catalog).dataset(dataset), known)


def ingest_key(catalog: str, dataset: str, run: RunFolder) -> str:
    return keyed("ingest", run_dir(run), source_fingerprint(catalog, dataset, run))


def ingest_current(catalog: str, dataset: str, run: RunFolder) -> bool:
    """The store holds exactly the sources as they are now."""
    from segpipe.data.store import read_record

    try:
        fingerprint = source_fingerprint(catalog, dataset, run)
    except SegpipeError:
        return False
    record = read_record(run.store)
    return bool(record) and record.get("fingerprint") == fingerprint


# --- train --------------------------------------------------------------------------------

TRAINED_ON = "trained_on.json"


def train_inputs(run: RunFolder) -> str:
    """Digest of what training reads: the train and validation images and labels, and the classes.

    Test images are not in it: new ground truth for a test image re-scores, it does not retrain.
    """
    from segpipe.data.store import ImageStore, array_digest

    store = ImageStore.open(run.store)
    parts = [store.classes, store.instances, store.ndim]
    for split in ("train", "validation"):
        for image in store.images(split, labelled=True):
            labels = array_digest(image.labels) if image.labels is not None else None
            parts.append([split, image.name, list(image.spacing), array_digest(image.image), labels])
    return keyed("train-inputs", parts)


#: The packages a trained model depends on besides its data and parameters: the loop and plan,
#: the networks and the shipped starts, and the prediction that validation and tuning run.
TRAINING_CODE = ("segpipe.training", "segpipe.models", "segpipe.inference")


def train_key(run: RunFolder, params: TrainParams) -> str:
    code = [code_digest(package) for package in TRAINING_CODE]
    return keyed("train", run_dir(run), train_inputs(run), code, params.model_dump(mode="json"))


def record_trained_on(run: RunFolder, inputs: str) -> None:
    """Note next to the model which training inputs it was trained on (read by :func:`train_current`)."""
    (run.model_dir / TRAINED_ON).write_text(json.dumps({"inputs": inputs}) + "\n")


def train_current(run: RunFolder, params: TrainParams) -> bool:
    """The run's model was trained on the current training inputs with every setting ``params`` fixes."""
    from segpipe.models.model import Model

    try:
        card = Model.open(run.model_dir).card
        noted = json.loads((run.model_dir / TRAINED_ON).read_text())
        if noted.get("inputs") != train_inputs(run):
            return False
    except (SegpipeError, OSError, ValueError):
        return False
    trained = card.training.config
    wanted = params.model_dump(mode="json", exclude_none=True)
    return all(trained.get(field) == value for field, value in wanted.items())


# --- one image ----------------------------------------------------------------------------


def predict_key(run: RunFolder, name: str, params: PredictParams, model: str | None = None) -> str:
    from segpipe.pipeline import stages

    return keyed("predict-image", run_dir(run), name, stages.prediction_stamp(run, name, params, model=model))


def predict_current(run: RunFolder, name: str, params: PredictParams, model: str | None = None) -> bool:
    """A complete prediction of ``name`` was made from the current model, settings and image."""
    from segpipe.pipeline import stages
    from segpipe.prediction.store import PredictionStore

    try:
        stamp = stages.prediction_stamp(run, name, params, model=model)
        return PredictionStore.open(run.predictions).stamp(name) == stamp
    except SegpipeError:
        return False


def score_key(run: RunFolder, name: str) -> str:
    """Prediction and ground-truth bytes, the dataset's classes and the scoring code."""
    import zarr

    from segpipe.data.store import ImageStore, array_digest

    store = ImageStore.open(run.store)
    prediction = zarr.open_group(str(run.predictions / name), mode="r")
    labels = {key: array_digest(prediction[f"labels/{key}/s0"]) for key in ("semantic", "instances") if key in prediction["labels"]}
    return keyed(
        "score-image",
        run_dir(run),
        name,
        labels,
        array_digest(store.image(name).labels),
        [store.classes, store.instances],
        code_digest("segpipe.scoring"),
    )


# --- Prefect glue -------------------------------------------------------------------------


def key_fn(function):
    """A Prefect ``cache_key_fn`` calling ``function`` with the task's parameters it names.

    A key that cannot be computed (a missing store, a bad catalog) means no caching: the task
    then runs and fails with the real error.
    """
    import inspect

    wanted = list(inspect.signature(function).parameters)

    def cache_key(context, parameters: dict) -> str | None:
        try:
            return function(**{name: parameters[name] for name in wanted if name in parameters})
        except Exception:  # noqa: BLE001 - no key means no caching, never a failed task
            return None

    cache_key.__name__ = f"{function.__name__}_fn"
    return cache_key


def refreshed(task: Task, current: bool) -> Task:
    """``task`` itself when its outputs are current, else a copy that recomputes and re-caches."""
    return task if current else task.with_options(refresh_cache=True)
