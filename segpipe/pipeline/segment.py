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

import csv
import errno
import json
import logging
import os
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import zarr
from pydantic import BaseModel, ConfigDict, Field

from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.inputs import Input, find_inputs, input_dataset
from segpipe.data.readers import AxesSpec, open_source
from segpipe.data.store import IMAGE_LEVEL, ImageStore, StoredImage, create_array
from segpipe.errors import InputError, ModelError, SegpipeError, naming
from segpipe.models.card import ModelCard
from segpipe.models.device import available_cpus, use_cpu_threads
from segpipe.prediction.export import export_ctc, export_nifti, export_tiff, source_affine, tiff_axes
from segpipe.models.model import Model
from segpipe.pipeline.files_process import files_processes, files_worker
from segpipe.prediction.fit import check_fits
from segpipe.prediction.params import PredictParams
from segpipe.prediction.measure import measure_objects
from segpipe.prediction.predict import Current, Predicted, Predictor, run_network
from segpipe.prediction.store import PredictionStore
from segpipe.progress import Progress

log = logging.getLogger(__name__)

LABELS_NAME = "segmentation"


class SegmentParams(BaseModel):
    """How inputs are read when their files do not say (the catalog's keys, for files without one)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    spacing: list[float] | None = Field(None, min_length=2, max_length=3)
    """Pixel size per spatial axis ([z,] y, x), for every input (overrides the files)."""
    unit: str | None = None
    """Unit of --spacing (micrometer, millimeter, ...)."""
    axes: str | None = Field(None, pattern=r"^[TCSZYXtcszyx]+$")
    """What each axis of the input files is (letters T C Z Y X), for files that do not say."""
    channels: list[int] | None = Field(None, min_length=1)
    """Channels to keep, in order, as the model was trained on them (default: all)."""


@dataclass(frozen=True)
class SegmentFolder:
    """Where a segmentation run writes (``OUTPUT``)."""

    root: Path

    def images(self, name: str) -> Path:
        return self.root / "images" / f"{name}.ome.zarr"

    def predictions(self, name: str) -> Path:
        return self.root / ".predictions" / f"{name}.zarr"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    def measurements(self, name: str) -> Path:
        return self.root / "measurements" / f"{name}.csv"

    @property
    def table(self) -> Path:
        return self.root / "measurements.csv"

    @property
    def counts(self) -> Path:
        return self.root / "counts.csv"

    @property
    def summary(self) -> Path:
        return self.root / "segment.json"


@dataclass
class InputResult:
    """What segmenting one input did."""

    name: str
    path: str
    kind: str
    images: list[str] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    skipped: bool = False
    files: list[str] = field(default_factory=list)
    error: str | None = None
    guessed_spacing: str | None = None
    """The unit taken at 1 per pixel where neither the input's file nor ``--spacing`` gave a pixel size."""


def check_input(item: Input, card: ModelCard, params: SegmentParams) -> None:
    """Refuse an input the model cannot segment (dimensions, channels), before anything is written.

    A file that cannot be read at all is not refused here: it fails on its own later.
    """
    path = item.path if item.kind != "ctc" else _first_frame(item.path)
    spec = AxesSpec(override=params.axes, fill="Z" if card.spatial_dims == 3 else "")
    try:
        with open_source(path, spec=spec) as source:
            planes, channels = source.spatial[0], source.channels
    except InputError:
        return
    if params.channels is not None:
        channels = len(params.channels)
    what = f"{item.path}: model {card.name!r}"
    if card.spatial_dims == 2 and planes > 1:
        raise ModelError(f"{what} segments 2D images; this is a 3D stack of {planes} planes (use a 3D model)")
    if card.spatial_dims == 3 and planes == 1:
        raise ModelError(f"{what} segments 3D volumes; this is a single 2D plane (use a 2D model)")
    if channels != card.in_channels:
        names = f" ({', '.join(card.channel_names)})" if card.channel_names else ""
        raise ModelError(
            f"{what} takes {card.in_channels} channel(s){names}, this image has {channels}; choose them with --channels"
        )


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
        InputError: No input found.
        ModelError: The model does not fit an input (nothing is written then).
    """
    params = params or SegmentParams()
    items = find_inputs(patterns)
    for item in items:
        check_input(item, predictor.card, params)
    folder.root.mkdir(parents=True, exist_ok=True)  # a read-only place, or a file there, fails now
    threads = torch.get_num_threads()
    with naming(folder.root), Progress(len(items), desc="segment", unit="input", enabled=progress) as bar:
        try:
            processes = files_processes(len(items), device=predictor.device.type, cpus=available_cpus())
            if predictor.device.type == "cpu" and processes:
                use_cpu_threads(reserved=processes)
            results = _pipelined(items, predictor, folder, params, processes=processes, bar=bar, progress=progress)
        finally:
            torch.set_num_threads(threads)
        warn_guessed_spacing(results, predictor.card)
        write_tables(folder, results)
        write_summary(folder, predictor.model, predictor.params, results)
        report_segmentation(folder, predictor.card)
    return results


def warn_guessed_spacing(results: list[InputResult], card: ModelCard) -> None:
    """One warning for every input whose pixel size nobody gave (a run of 1,000 such files gets one line)."""
    guessed = [r for r in results if r.guessed_spacing]
    if guessed:
        axes = " ".join("ZYX"[3 - card.spatial_dims :])
        log.warning(
            "%d of %d input(s) have no pixel size in their file (first: %s); taking 1 %s per pixel. If that is wrong, "
            "give it with --spacing (%s) and --unit: the model was trained at %s %s per pixel, and an image at another "
            "pixel size is resampled to it only when its own is known",
            len(guessed), len(results), guessed[0].path, guessed[0].guessed_spacing, axes,
            "x".join(f"{s:g}" for s in card.spacing), card.unit,
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
) -> list[InputResult]:
    """Every input through its three steps: the network's here, the files' in the files' workers
    (``processes``; 0: a thread), as many inputs ahead as there are workers, and behind."""
    model, card = predictor.model, predictor.card
    results: list[InputResult | Future] = []
    ahead = max(1, processes)
    with files_worker(processes=processes, preload=(__name__,)) as files:

        def prepare(item: Input) -> Future:
            return files.submit(guarded, item, folder, prepare_input, item, model, folder, params)

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
                    made = guarded(item, folder, predict_input, store, predictions, predictor, progress=progress)
                    if isinstance(made, InputResult):
                        results.append(made)
                    else:
                        results.append(files.submit(guarded, item, folder, finish_input, item, store, predictions, made, card, folder))
                for earlier in results:  # an output error in the files' worker ends the run now
                    if isinstance(earlier, Future) and earlier.done():
                        earlier.result()
                bar.update(1, failed=sum(isinstance(r, InputResult) and r.error is not None for r in results))
            return [r.result() if isinstance(r, Future) else r for r in results]
        finally:  # a run that ends early still finishes the inputs the network has done (leaving the workers waits)
            for future in prepared:
                future.cancel()


def guarded(item: Input, folder: SegmentFolder, step, /, *args, **kwargs):
    """``step(*args, **kwargs)`` for ``item``, with an unreadable input (bad input, an OS error reading it) made
    a failed :class:`InputResult`; an error writing the output (a full disk, a read-only folder)
    or a model that does not fit ends the run instead."""
    try:
        return step(*args, **kwargs)
    except ModelError:
        raise
    except OSError as err:
        if _writing(err, folder):
            raise
        log.warning("%s: failed: %s", item.path, err)
        return InputResult(item.name, str(item.path), item.kind, error=f"{type(err).__name__}: {err}")
    except SegpipeError as err:
        log.warning("%s: failed: %s", item.path, err)
        return InputResult(item.name, str(item.path), item.kind, error=f"{type(err).__name__}: {err}")


def _writing(err: OSError, folder: SegmentFolder) -> bool:
    """Whether an OS error is the output's (no space, read-only, a path under the output folder),
    which every other input would meet too, rather than the input's."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return err.filename is not None and Path(os.path.abspath(err.filename)).is_relative_to(folder.root.absolute())


def segment_input(
    item: Input, predictor: Predictor, folder: SegmentFolder, params: SegmentParams, *, progress: bool = False
) -> InputResult:
    """Ingest, predict, attach labels, export and measure one input (kept where current)."""
    store, predictions = prepare_input(item, predictor.model, folder, params)
    made = predict_input(store, predictions, predictor, progress=progress)
    return finish_input(item, store, predictions, made, predictor.card, folder)


def prepare_input(
    item: Input, model: Model, folder: SegmentFolder, params: SegmentParams
) -> tuple[ImageStore, PredictionStore]:
    """Ingest one input into its OME-Zarr (kept where current), check that the model fits it and open
    its store of predictions."""
    card = model.card
    dataset = input_dataset(
        item, ndim=card.spatial_dims, classes=card.classes, instances=card.instances,
        spacing=params.spacing, unit=params.unit, axes=params.axes, channels=params.channels,
    )
    store_path = folder.images(item.name)
    ingest_dataset(dataset, store_path, IngestParams(), progress=False, warn_spacing=False)  # one warning per run
    store = ImageStore.open(store_path)
    check_fits(card, store, where=str(item.path))
    return store, PredictionStore.for_model(folder.predictions(item.name), model)


def predict_input(
    store: ImageStore, predictions: PredictionStore, predictor: Predictor, *, progress: bool = False
) -> list[Current | Predicted]:
    """Run the network on every image of an ingested input (images kept where current); their labels are made in :func:`finish_input`."""
    return [run_network(image, predictor, predictions, progress=progress) for image in store.images()]


def finish_input(
    item: Input,
    store: ImageStore,
    predictions: PredictionStore,
    made: list[Current | Predicted],
    card: ModelCard,
    folder: SegmentFolder,
) -> InputResult:
    """Make and write the labels the network's output gives, attach them under the image, export label
    files and measure the objects (unless all current)."""
    made = [r.complete(attach=False) for r in made]
    result = InputResult(item.name, str(item.path), item.kind, images=store.names())
    guessed = [image for image in store.images() if image.info.get("spacing_source") == "default"]
    result.guessed_spacing = (guessed[0].info.get("unit") or store.unit) if guessed else None
    result.skipped = all(r.skipped for r in made) and folder.measurements(item.name).is_file()
    if not result.skipped:
        attach_labels(store.path, predictions, store)
        result.files = [str(p) for p in export_labels(item, store, predictions, folder)]
        write_measurements(folder.measurements(item.name), store.images(), predictions, card, unit=store.unit)
    else:
        result.files = [str(p) for p in label_files(item, folder) if p.exists()]
    result.objects = _counts(folder.measurements(item.name), store.names())
    return result


def attach_labels(store_path: Path, predictions: PredictionStore, store: ImageStore) -> None:
    """Copy each image's labels under it in its OME-Zarr (NGFF ``labels/segmentation``)."""
    from segpipe.data.store import ome_label_attrs

    root = zarr.open_group(str(store_path), mode="a")
    for image in store.images():
        source = predictions.labels(image.name)
        group = root[image.name]
        labels_attrs, attrs = ome_label_attrs(
            ndim=store.ndim, spacing=image.spacing, unit=image.info.get("unit") or store.unit, name=LABELS_NAME
        )
        frames = source.ndim - store.ndim
        if frames:  # a time series' labels keep the image's frame axes
            attrs = _with_frames(attrs, frames)
        label_root = group.require_group("labels")
        if LABELS_NAME in label_root:
            del label_root[LABELS_NAME]
        target = label_root.create_group(LABELS_NAME, attributes=attrs)
        array = create_array(target, IMAGE_LEVEL, shape=source.shape, dtype=source.dtype, ndim=store.ndim, chunks=source.chunks)
        for index in np.ndindex(*source.shape[:frames]):
            for start in range(0, source.shape[frames], source.chunks[frames]):
                window = (*index, slice(start, start + source.chunks[frames]))
                array[window] = source[window]
        ome = dict(labels_attrs["ome"])
        ome["labels"] = sorted({*(label_root.attrs.get("ome", {}).get("labels") or []), LABELS_NAME})
        label_root.attrs["ome"] = ome


def _with_frames(attrs: dict, frames: int) -> dict:
    """Label attributes for an array with ``frames`` leading time axes."""
    attrs = json.loads(json.dumps(attrs))
    multiscale = attrs["ome"]["multiscales"][0]
    multiscale["axes"] = [{"name": "t", "type": "time"}] * frames + multiscale["axes"]
    for dataset in multiscale["datasets"]:
        for transform in dataset["coordinateTransformations"]:
            transform["scale"] = [1.0] * frames + transform["scale"]
    return attrs


def label_files(item: Input, folder: SegmentFolder) -> list[Path]:
    """The label files written for ``item``."""
    if item.kind == "ctc":
        return [folder.labels / f"{item.name}_RES"]
    if item.kind == "nifti":
        return [folder.labels / f"{item.name}_labels.nii.gz"]
    if item.kind in ("tiff", "png"):
        return [folder.labels / f"{item.name}_labels.tif"]
    return []


def export_labels(item: Input, store: ImageStore, predictions: PredictionStore, folder: SegmentFolder) -> list[Path]:
    """Label files named after the input, in the input's own kind (OME-Zarr inputs: none besides the zarr)."""
    images = store.images()
    ndim = store.ndim
    if item.kind == "ctc":
        frames = [(int(image.name.rsplit("-t", 1)[1]), predictions.labels(image.name)) for image in images]
        return [export_ctc(frames, folder.labels, sequence=item.name)]
    (image,) = images
    labels = predictions.labels(image.name)
    frames = labels.ndim - ndim
    if item.kind == "nifti":
        affine = source_affine(image.info, ndim=ndim)
        return [export_nifti(labels, label_files(item, folder)[0], affine=affine, ndim=ndim, unit=image.info.get("unit"))]
    if item.kind in ("tiff", "png"):
        unit = image.info.get("unit")
        return [export_tiff(labels, label_files(item, folder)[0], axes=tiff_axes(ndim, frames), spacing=image.spacing, unit=unit)]
    return []


def write_measurements(
    path: Path, images: list[StoredImage], predictions: PredictionStore, card: ModelCard, *, unit: str
) -> Path:
    """One row per object of every image (frames of a time series one by one)."""
    rows: list[dict] = []
    for image in images:
        labels = predictions.labels(image.name)
        frames = labels.ndim - card.spatial_dims
        for index in np.ndindex(*labels.shape[:frames]):
            pixels = image.image[(slice(None), *index)] if frames else image.image
            columns = measure_objects(
                labels[index] if frames else labels, pixels, spacing=image.spacing, channel_names=card.channel_names
            )
            frame = {"frame": index[0]} if frames == 1 else {}
            for k in range(columns["label"].size):
                rows.append({"image": image.name, **frame, **{key: _plain(value[k]) for key, value in columns.items()}, "unit": unit})
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(path, rows, empty_fields=["image", "label"])
    return path


def write_tables(folder: SegmentFolder, results: list[InputResult]) -> None:
    """The run's ``measurements.csv`` (every object) and ``counts.csv`` (objects per image)."""
    rows: list[dict] = []
    counts: list[dict] = []
    for result in results:
        if result.error is not None:
            counts.append({"input": result.path, "image": "", "objects": "", "status": "failed", "error": result.error})
            continue
        path = folder.measurements(result.name)
        with open(path, newline="") as handle:
            rows += [{"input": result.path, **row} for row in csv.DictReader(handle)]
        counts += [
            {"input": result.path, "image": image, "objects": result.objects.get(image, 0), "status": "segmented", "error": ""}
            for image in result.images
        ]
    folder.root.mkdir(parents=True, exist_ok=True)
    _write_csv(folder.table, rows, empty_fields=["input", "image", "label"])
    _write_csv(folder.counts, counts, empty_fields=["input", "image", "objects", "status", "error"])


def write_summary(folder: SegmentFolder, model: Model, params: PredictParams, results: list[InputResult]) -> Path:
    """``segment.json``: the model, the settings and what happened to every input."""
    summary = {
        "model": {"name": model.card.name, "folder": str(model.folder), "id": model.id},
        "inference": params.inference_for(model.card.inference).model_dump(mode="json"),
        "resample": params.resample,
        "inputs": [asdict(r) for r in results],
        "failed": [r.path for r in results if r.error is not None],
    }
    tmp = folder.summary.with_name(f".{folder.summary.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, folder.summary)
    finally:
        tmp.unlink(missing_ok=True)
    return folder.summary


def _counts(path: Path, images: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(images, 0)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            counts[row["image"]] = counts.get(row["image"], 0) + 1
    return counts


def _write_csv(path: Path, rows: list[dict], *, empty_fields: list[str]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields or empty_fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _first_frame(folder: Path) -> Path:
    from segpipe.data.ctc import sequence_frames

    frames = sequence_frames(folder)
    return next(iter(frames.values()))


def report_segmentation(folder: SegmentFolder, card: ModelCard, *, title: str | None = None) -> Path:
    """``report.md`` and ``report.html`` of a run's tables, with overlays of a sample of its images."""
    from segpipe.report.segmentation import choose_sample, read_tables, write_segmentation_report

    counts, objects = read_tables(folder.root)
    views, spacing, unit = [], {}, "micrometer"
    for name in choose_sample(counts):
        row = next(r for r in counts if r["image"] == name)
        item_name = next((p.name.removesuffix(".ome.zarr") for p in (folder.root / "images").glob("*.ome.zarr")
                          if (p / name).is_dir()), None)
        if item_name is None:
            continue
        store = ImageStore.open(folder.images(item_name))
        image = store.image(name)
        labels = PredictionStore.open(folder.predictions(item_name)).labels(name)
        frames = labels.ndim - store.ndim
        pixels = np.asarray(image.image[(slice(None), *([0] * frames))])
        views.append((f"{row['input']} ({name})" if row["input"] else name, pixels, np.asarray(labels[(0,) * frames])))
        spacing[name], unit = image.spacing, store.unit
    report = write_segmentation_report(
        folder.root, title=title or f"Segmentation with {card.name}", card=card, counts=counts, objects=objects,
        views=views, unit=unit, ndim=card.spatial_dims, spacing_by_image=spacing,
    )
    return report.path


def measure_run(run_root: Path, store: ImageStore, predictions: PredictionStore, card: ModelCard, *, split: str) -> list[dict]:
    """A catalog run without ground truth: its split's measurements and counts, as ``segment`` writes them."""
    folder = SegmentFolder(run_root)
    table = run_root / "measurements" / "all.csv"
    counts = _counts(write_measurements(table, store.images(split), predictions, card, unit=store.unit), store.names(split))
    with open(table, newline="") as handle:
        objects = [{"input": store.name, **row} for row in csv.DictReader(handle)]
    counts_rows = [{"input": store.name, "image": n, "objects": c, "status": "segmented", "error": ""} for n, c in counts.items()]
    _write_csv(folder.table, objects, empty_fields=["input", "image", "label"])
    _write_csv(folder.counts, counts_rows, empty_fields=["input", "image", "objects", "status", "error"])
    return counts_rows
