"""The files' side of ``segpipe segment``: ingest an input, then make, write, export and measure its labels.

:mod:`segpipe.pipeline.segment` runs the network; the steps here run beside it in a process of
their own (:mod:`segpipe.pipeline.files_process`) and need no torch, so that process starts in
about a second and holds a fraction of the network's memory (``benchmarks/RESULTS.md``,
"The files' process without torch"). Everything handed to it pickles: the input, the model
(its folder and card), the stores and the network's output (:class:`~segpipe.prediction.complete.Predicted`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import zarr
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, field_validator

from segpipe.data.ctc import FRAME as CTC_FRAME
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.inputs import Input, files_now, input_dataset
from segpipe.data.locks import exclusive
from segpipe.data.readers.units import length_unit
from segpipe.data.store import IMAGE_LEVEL, ImageStore, StoredImage, array_options
from segpipe.errors import InputError, SegpipeError
from segpipe.models.card import ModelCard
from segpipe.models.model import Model
from segpipe.pipeline.models import assumed_spacing
from segpipe.prediction.complete import LARGE, Current, Predicted
from segpipe.prediction.export import (
    FrameStack, affine_unit, export_ctc, export_nifti, export_tiff, labels_space, source_affine, tiff_axes,
)
from segpipe.prediction.fit import check_fits
from segpipe.prediction.measure import measure_objects
from segpipe.prediction.noise_frames import of_results, recorded
from segpipe.prediction.params import PredictParams
from segpipe.prediction.store import PredictionStore
from segpipe.temporary import replacing

log = logging.getLogger(__name__)

LABELS_NAME = "segmentation"


class SegmentParams(BaseModel):
    """How inputs are read when their files do not say (the catalog's keys, for files without one)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    spacing: list[Annotated[PositiveFloat, Field(allow_inf_nan=False)]] | None = None
    """Pixel size per spatial axis ([z,] y, x), or one for every axis, for every input (overrides the files). An input whose file gives
    none (PNG, plain TIFF) is taken at the model's pixel size and not resampled: give this where it is another
    (a PNG at 0.25 um for a model trained at 0.5 um finds objects twice their size otherwise)."""
    unit: str | None = None
    """Unit of --spacing: nanometer, micrometer, millimeter, centimeter or meter (or nm, um, mm, cm, m);
    default: the model's unit. Without --spacing: the unit of files that give a pixel size but no unit
    (a NIfTI header's unknown units; default: the model's unit); a file's own unit is kept."""
    axes: str | None = None
    """What each axis of the input files is (letters T C Z Y X), e.g. TYX to segment a ZYX stack's planes
    with a 2D model; it replaces every input's own axes, so give files of other axes in a run of their own."""
    channels: list[NonNegativeInt | str] | None = Field(None, min_length=1)
    """Channels to keep, in order, as the model was trained on them: numbers counted from 0, or the names an
    OME-TIFF gives its channels (DAPI), or red/green/blue (default: all); a generalist (cells-2d) then reads
    them in this order instead of choosing its inputs per image."""

    @field_validator("unit")
    @classmethod
    def _length_unit(cls, value: str | None) -> str | None:
        return length_unit(value)

    @field_validator("spacing")
    @classmethod
    def _two_or_three(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) not in (1, 2, 3):
            raise ValueError(f"{len(value)} values; give 1 (every axis), 2 (Y X) or 3 (Z Y X), separated by commas (0.5 or 0.5,0.5 or 2,0.5,0.5)")
        return value

    @field_validator("axes")
    @classmethod
    def _axis_letters(cls, value: str | None) -> str | None:
        if value is None:
            return value
        unknown = sorted({letter for letter in value if letter.upper() not in "TCSZYX"})
        if unknown or not value:
            what = f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not an axis" if unknown else "empty"
            raise ValueError(f"{what}; use the letters T C Z Y X (S: colour samples, as C), one per axis, e.g. TYX")
        return value

    @field_validator("channels", mode="before")
    @classmethod
    def _numbers_as_numbers(cls, value):
        if not isinstance(value, list):
            return value
        numbers = [int(v) if isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d+\s*", v) else v for v in value]
        if any(isinstance(v, int) and v < 0 for v in numbers):  # one message, not one per member of the union
            raise ValueError("channels are counted from 0; a negative number is none")
        return numbers

    @field_validator("channels")
    @classmethod
    def _each_once(cls, value: list[int | str] | None) -> list[int | str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{','.join(map(str, value))} names a channel twice; give each channel once")
        return value

    def ordered(self, predict: PredictParams) -> PredictParams:
        """``predict`` for inputs read with these parameters: --channels gives the order, so a
        generalist reads them as given instead of choosing its inputs per image."""
        if self.channels is not None and predict.input_order != "stored":
            return predict.model_copy(update={"input_order": "stored"})
        return predict

    def for_input(self, item: Input) -> SegmentParams:
        """These parameters with the channels chosen for ``item`` alone (a grey image saved in colour, a
        composite with flat channels), if any."""
        return self if item.channels is None else self.model_copy(update={"channels": list(item.channels)})


class FolderBusy(InputError):
    """Another run is writing into the output folder."""


@dataclass(frozen=True)
class SegmentFolder:
    """Where a segmentation run writes (``OUTPUT``)."""

    root: Path

    def own_folders(self) -> tuple[Path, ...]:
        """The folders this run writes its files into (never read as inputs)."""
        return tuple(self.root / name for name in ("images", "labels", ".predictions", "measurements", "figures"))

    def images(self, name: str) -> Path:
        return self.root / "images" / f"{name}.ome.zarr"

    @property
    def all_predictions(self) -> Path:
        """The folder of every input's prediction store (:meth:`predictions`)."""
        return self.root / ".predictions"

    def predictions(self, name: str) -> Path:
        return self.all_predictions / f"{name}.zarr"

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

    @property
    def names(self) -> Path:
        """``names.json``: the name each input was given here, kept over runs (its files bear it)."""
        return self.root / "names.json"

    def given_names(self) -> dict[str, str]:
        """The names earlier runs gave their inputs, by :attr:`Input.where` (none: ``{}``)."""
        try:
            given = json.loads(self.names.read_text())
        except (FileNotFoundError, NotADirectoryError):  # a first run (an output that is a file fails when written)
            return {}
        except ValueError as err:  # not JSON, not text; an OS error reading it is the command line's one line
            raise InputError(f"{self.names}: not the names file segpipe writes ({err}); remove it to name inputs afresh") from None
        return {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}

    def sources_of(self, name: str) -> dict | None:
        """The files the input named ``name`` here was made from (its store's ``sources``), or ``None``."""
        try:
            record = zarr.open_group(str(self.images(name)), mode="r").attrs.get("segpipe") or {}
        except (OSError, ValueError):  # no store there (or not a zarr group): nothing recorded
            return None
        sources = record.get("sources") if isinstance(record, dict) else None
        return sources if isinstance(sources, dict) else None

    def keep_names(self, items: list[Input], results: list[InputResult]) -> None:
        """Add the inputs this run segmented (their files bear their names) to ``names.json``, under
        the run's lock; ``results``: what happened to each of ``items``. An input found at a new place
        (:func:`~segpipe.data.inputs.find_inputs`) is kept there only: its name leaves its old place."""
        done = {r.path for r in results if r.error is None}
        given = self.given_names()
        now = {item.where: item.name for item in items if item.where in done}
        named_now = set(now.values())
        merged = {**{where: name for where, name in given.items() if name not in named_now}, **now}
        if merged != given:
            with replacing(self.names) as tmp:
                tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the folder for one run (an advisory lock on ``.segment.lock``, released when the
        run ends or its process dies): a second run into the same folder at the same time would
        write the same files and tables; it is refused in one line."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".segment.lock", "a+") as handle:
            try:
                refused = exclusive(handle, wait=False)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise FolderBusy(
                    f"{self.root}: another segpipe segment is writing here (process {holder}); wait for it to end, "
                    "or give another --output"
                ) from None
            if refused is not None:  # a filesystem without flock (some cluster mounts): go on without
                log.warning("%s: cannot lock the folder (%s); a second run into it at the same time is not kept out",
                            self.root, refused.strerror or refused)
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(handle, fcntl.LOCK_UN)


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
    file_spacing: str | None = None
    """The pixel size its file gives where ``--spacing`` set another (``0.5 x 0.5 millimeter``)."""
    noise_only: dict[str, int] = field(default_factory=dict)
    """Its images predicted in this run that held only noise in some frames, with how many (:mod:`segpipe.inference.noise`)."""
    noise_frames: dict[str, int] = field(default_factory=dict)
    """The same for every image of the input, predicted in this run or kept from an earlier one (``counts.csv``)."""
    failed_files: str | None = None
    """A failed input's files as they were when it failed (:func:`~segpipe.data.inputs.files_now`)."""
    failing_since: str | None = None
    """When a failed input first failed as it fails now (UTC), its files and its error the same since."""
    failed_before: bool = False
    """It failed as in the output folder's last run, its files unchanged (:mod:`segpipe.pipeline.failures`)."""

    @property
    def status(self) -> str:
        """``failed``; ``unchanged`` (its labels were current and kept); or ``segmented`` (in this run)."""
        return "failed" if self.error is not None else "unchanged" if self.skipped else "segmented"


def counted(results: list[InputResult]) -> dict[str, int]:
    """How many inputs were segmented in this run and kept unchanged, and the objects of those not failed."""
    statuses = [r.status for r in results]
    return {
        "segmented": statuses.count("segmented"),
        "unchanged": statuses.count("unchanged"),
        "objects": sum(sum(r.objects.values()) for r in results if r.error is None),
    }


def guarded(item: Input, folder: SegmentFolder, step, /, *args, alone: bool = False, **kwargs):
    """``step(*args, **kwargs)`` for ``item``, with an unreadable input (bad input, an OS error reading it)
    or one the model does not fit (a later frame of a sequence with other channels) made a failed
    :class:`InputResult` (``alone``: the run's only input, see :func:`failed_input`); an error writing
    the output (a full disk, a read-only folder) ends the run instead."""
    try:
        return step(*args, **kwargs)
    except OSError as err:
        if _writing(err, folder):
            raise
        return failed_input(item, err, alone=alone)
    except SegpipeError as err:
        return failed_input(item, err, alone=alone)


def failed_input(item: Input, err: Exception, *, alone: bool = False) -> InputResult:
    """``item`` failed with ``err``: one warning line naming it (none for a run's only input, whose error
    ends the run in one line), and its result."""
    reason = str(err).removeprefix(f"{item.where}: ").removeprefix(f"{item.path}: ").removeprefix(f"{item.name}: ")  # named once
    if not alone:
        log.warning("%s: failed: %s", item.where, reason)
    return InputResult(item.name, item.where, item.kind, error=f"{type(err).__name__}: {reason}", failed_files=files_now(item.path))


def _writing(err: OSError, folder: SegmentFolder) -> bool:
    """Whether an OS error is the output's (no space, read-only, a path under the output folder),
    which every other input would meet too, rather than the input's."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return err.filename is not None and Path(os.path.abspath(err.filename)).is_relative_to(folder.root.absolute())


def prepare_input(
    item: Input, model: Model, folder: SegmentFolder, params: SegmentParams
) -> tuple[ImageStore, PredictionStore]:
    """Ingest one input into its OME-Zarr (kept where current), check that the model fits it and open
    its store of predictions."""
    card = model.card
    dataset = input_dataset(
        item, ndim=card.spatial_dims, classes=card.classes, instances=card.instances,
        spacing=params.spacing, unit=params.unit or card.unit, axes=params.axes,
        channels=params.for_input(item).channels, assumed_spacing=assumed_spacing(card),
    )
    store_path = folder.images(item.name)
    ingest_dataset(dataset, store_path, IngestParams(), progress=False, warn_spacing=False,  # one warning per run
                   mixed_channels_ok=True)  # the model's check names a frame it cannot read
    store = ImageStore.open(store_path)
    check_fits(card, store, where=item.where)
    return store, PredictionStore.for_model(folder.predictions(item.name), model)


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
    result = InputResult(item.name, item.where, item.kind, images=store.names())
    images = store.images()
    guessed = [image for image in images if image.spacing_guessed]
    result.guessed_spacing = (guessed[0].info.get("unit") or store.unit) if guessed else None
    result.file_spacing = next((image.info["file_spacing"] for image in images if image.info.get("file_spacing")), None)
    result.noise_only = of_results(made)
    result.noise_frames = recorded(predictions, store.names())
    result.skipped = (
        all(r.skipped for r in made) and folder.measurements(item.name).is_file() and _attached(store.path, store.names())
    )  # a store ingested again (another --spacing: the predictions stay, the sizes change) has no labels under it
    if not result.skipped:
        attach_labels(store.path, predictions, store)
        result.files = [str(p) for p in export_labels(item, store, predictions, folder)]
        if sum(int(np.prod(im.image.shape[1:], dtype=np.int64)) for im in images) >= LARGE:
            log.info("%s: measuring the objects", item.where)  # a minute or more on a large image
        # in the model's unit, so that every input's sizes compare (one in nanometres, one in micrometres)
        write_measurements(folder.measurements(item.name), images, predictions, card, unit=card.unit, own_unit=store.unit)
    else:
        result.files = [str(p) for p in label_files(item, folder) if p.exists()]
    result.objects = count_objects(folder.measurements(item.name), store.names())
    return result


def _attached(store_path: Path, names: list[str]) -> bool:
    """Whether every image of the store has labels under it (:func:`attach_labels`)."""
    root = zarr.open_group(str(store_path), mode="r")
    return all(f"{name}/labels/{LABELS_NAME}" in root for name in names)


def attach_labels(store_path: Path, predictions: PredictionStore, store: ImageStore) -> None:
    """Copy each image's labels under it in its OME-Zarr (NGFF ``labels/segmentation``), with the
    image's pyramid levels (picked pixels), so a viewer zoomed out shows both from the same level."""
    from segpipe.data.pyramid import build_levels, pick, steps_between
    from segpipe.data.store import create_levels, ome_label_attrs

    root = zarr.open_group(str(store_path), mode="a")
    for image in store.images():
        source = predictions.labels(image.name)
        group = root[image.name]
        factors = [tuple(f) for f in image.info.get("levels") or [(1,) * store.ndim]]
        labels_attrs, attrs = ome_label_attrs(
            ndim=store.ndim, spacing=image.spacing, unit=image.info.get("unit") or store.unit, name=LABELS_NAME,
            factors=factors, origin=image.info.get("origin"),
        )
        frames = source.ndim - store.ndim
        if frames:  # a time series' labels keep the image's frame axes
            attrs = _with_frames(attrs, frames)
        label_root = group.require_group("labels")
        if LABELS_NAME in label_root:
            del label_root[LABELS_NAME]
        target = label_root.create_group(LABELS_NAME, attributes=attrs)
        options = array_options(source.shape, store.ndim, source.chunks)
        if frames:  # its leading axes named t, as its metadata says, so that its levels are built frame by frame
            options["dimension_names"] = ["t"] * frames + list(options["dimension_names"])[-store.ndim:]
        array = target.create_array(IMAGE_LEVEL, shape=source.shape, dtype=source.dtype, **options)
        for index in np.ndindex(*source.shape[:frames]):
            for start in range(0, source.shape[frames], source.chunks[frames]):
                window = (*index, slice(start, start + source.chunks[frames]))
                array[window] = source[window]
        levels = create_levels(target, array, factors, ndim=store.ndim)
        build_levels(array, levels, steps_between(factors), reduce=pick, ndim=store.ndim)
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



def ctc_time_points(images: list[StoredImage], predictions) -> list[tuple[int, object]]:
    """A CTC sequence's labels per time point (its ``tNNN.tif``): a frame's own labels, or, where a 2D
    model read a 3D frame's planes as frames (``--axes TYX``), its planes stacked back into the
    frame's volume, each plane's objects numbered apart (a mask per plane overwrote the time points)."""
    by_time: dict[int, list[StoredImage]] = {}
    for image in images:
        match = CTC_FRAME.match(Path(image.info.get("source") or "").name)
        t = int(match[1]) if match else int(image.name.rsplit("-t", 1)[1])
        by_time.setdefault(t, []).append(image)
    points = []
    for t, group in sorted(by_time.items()):
        if len(group) == 1:
            points.append((t, predictions.labels(group[0].name)))
            continue
        planes, offset = [], 0
        for image in sorted(group, key=lambda im: im.info.get("frame") or 0):
            labels = np.asarray(predictions.labels(image.name)[...]).astype(np.uint32)
            planes.append(np.where(labels > 0, labels + offset, 0).astype(np.uint32))
            offset += int(labels.max())
        points.append((t, np.stack(planes)))
    return points

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
        return [export_ctc(ctc_time_points(images, predictions), folder.labels, sequence=item.name)]
    image = images[0]
    if len(images) == 1:
        labels = predictions.labels(image.name)
    else:  # a time series, stored one image per frame: its frames in one file again
        labels = FrameStack([predictions.labels(frame.name) for frame in sorted(images, key=lambda im: im.info.get("frame") or 0)])
    frames = labels.ndim - ndim
    if item.kind == "nifti":
        affine = source_affine(image.info, ndim=ndim)
        unit = affine_unit(image.info)
        dims = (len(image.info.get("source_axes") or "") or None) if frames == 0 else None  # the file's own, as ingest read them
        source_axes = image.info.get("source_axes") or ""
        if frames == 1 and ndim == 2 and len(source_axes) == 3 and set(source_axes) == set("TYX"):
            # a volume's planes read as frames (--axes XYT): the labels in the volume's own layout, to overlay it
            volume = np.transpose(labels[:], ["TYX".index(a) for a in reversed(source_axes)])
            return [export_nifti(volume, label_files(item, folder)[0], affine=affine, ndim=3, unit=unit,
                                 world=labels_space(image.info))]
        return [export_nifti(labels, label_files(item, folder)[0], affine=affine, ndim=ndim, unit=unit, source_dims=dims,
                             world=labels_space(image.info), qform=image.info.get("qform"),
                             qform_space=image.info.get("qform_space"), time_step=image.info.get("time_step") if frames else None)]
    if item.kind in ("tiff", "png"):
        unit = image.info.get("unit")
        z_step = (_planes_read_as_frames(image, labels.shape[0], series=item.series)
                  if frames == 1 and ndim == 2 and item.kind == "tiff" else None)
        if z_step is not None:  # a stack's planes read as frames (--axes TYX): the labels in the stack's own layout
            return [export_tiff(labels, label_files(item, folder)[0], axes="ZYX", spacing=(z_step, *image.spacing), unit=unit)]
        return [export_tiff(labels, label_files(item, folder)[0], axes=tiff_axes(ndim, frames), spacing=image.spacing, unit=unit,
                            time_step=image.info.get("time_step") if frames else None)]
    return []


def _planes_read_as_frames(image: StoredImage, frames: int, *, series: int | None = None) -> float | None:
    """The z step of a TIFF stack (image ``series`` of a file of several) whose ``frames`` planes a
    2D model read as frames (``--axes TYX``): the file itself says they are planes (Z) and gives
    their step; ``None`` otherwise (a time series)."""
    from segpipe.data.readers import AxesSpec, open_source

    if image.info.get("source_axes") != "TYX" or not image.info.get("source"):
        return None
    try:
        with open_source(Path(image.info["source"]), spec=AxesSpec(fill="Z"), series=series) as own:
            if own.frames == 1 and own.spatial[0] == frames and own.meta.spacing[0] is not None:
                return float(own.meta.spacing[0])
    except (InputError, OSError):
        return None
    return None


#: Where an image's pixel size came from, as measurements.csv says it: its file, the user
#: (``--spacing``, a catalog's ``spacing:``), or nobody (1 per pixel, or the model's, taken).
PIXEL_SIZE_SOURCES = {"file": "file", "catalog": "given", "default": "guessed"}


def write_measurements(
    path: Path, images: list[StoredImage], predictions: PredictionStore, card: ModelCard, *, unit: str,
    own_unit: str | None = None,
) -> Path:
    """One row per object of every image (frames of a time series one by one), in ``unit``: each
    image's pixel size is converted from its own unit (else ``own_unit``, else ``unit``)."""
    rows: list[dict] = []
    for image in images:
        labels = predictions.labels(image.name)
        frames = labels.ndim - card.spatial_dims
        spacing = image.spacing_in(unit, default_unit=own_unit)
        size, slant = ("area" if card.spatial_dims == 2 else "volume"), sheared_voxel(image, card.spatial_dims)
        for index in np.ndindex(*labels.shape[:frames]):
            pixels = image.image[(slice(None), *index)] if frames else image.image
            columns = measure_objects(
                labels[index] if frames else labels, pixels, spacing=spacing, channel_names=intensity_names(image, card)
            )
            frame = _frame_columns(index[0] if frames == 1 else image.info.get("frame"), image.info.get("time_step"))
            if not card.instances:  # a class map: each label is a class, named beside its number
                columns = {"label": columns["label"], "class": np.array(card.classes, dtype=object)[columns["label"]],
                           **{k: v for k, v in columns.items() if k != "label"}}
            columns |= world_centroids(columns, image, spacing, frame=index[0] if frames == 1 else image.info.get("frame") or 0)
            if size in columns:
                columns[size] = columns[size] * slant
            source = PIXEL_SIZE_SOURCES.get(image.info.get("spacing_source"), "file")
            for k in range(columns["label"].size):
                rows.append({"image": image.name, **frame, **{key: _plain(value[k]) for key, value in columns.items()}, "unit": unit,
                             "pixel_size": source})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, rows, empty_fields=["image", "label"])
    return path


def intensity_names(image: StoredImage, card: ModelCard) -> list[str]:
    """What each read channel's intensity column is called: its name in the file, else the model's
    name for it, else its number in the file (``1`` for the file's second channel read alone)."""
    n = int(image.image.shape[0])
    read = image.info.get("channels") or list(range(n))
    own = image.info.get("channel_names") or []
    model = card.channel_names or []
    names = [str((own[c] if c < len(own) else None) or (model[c] if c < len(model) else None) or read[c]) for c in range(n)]
    return names if len(set(names)) == n else [str(c) for c in read]


def _placing_affine(image: StoredImage) -> np.ndarray | None:
    """The affine that places a NIfTI input's voxels in its world; ``None`` for other inputs and for a
    NIfTI with neither an sform nor a qform (its affine is nibabel's stand-in: it places nothing)."""
    affine = image.info.get("affine")
    if affine is None or image.info.get("world") is None:
        return None
    return np.asarray(affine, dtype=float)


def sheared_voxel(image: StoredImage, ndim: int) -> float:
    """A voxel's true area or volume over the product of its edges' lengths: 1, except for a NIfTI
    input whose affine shears its grid (an uncorrected CT gantry tilt), whose voxels are
    parallelograms (the Gram determinant of its spatial columns)."""
    affine = _placing_affine(image)
    if affine is None:
        return 1.0
    file_axes = list(image.info.get("source_axes") or "XYZ")[:3]
    columns = [file_axes.index(a) for a in "XYZ"[:ndim] if a in file_axes]
    if len(columns) != ndim:
        return 1.0
    edges = affine[:3, columns]
    lengths = np.sqrt((edges**2).sum(axis=0))
    return float(np.sqrt(abs(np.linalg.det(edges.T @ edges))) / np.prod(lengths))


def world_centroids(columns: dict[str, np.ndarray], image: StoredImage, spacing, *, frame: int = 0) -> dict[str, np.ndarray]:
    """``world-x``, ``world-y``, ``world-z``: each object's centroid in the world coordinates of a
    NIfTI input's affine (scanner or template space, RAS, in the file's unit: what 3D Slicer and
    FSLeyes show), and ``world_unit``, that unit (empty where the file names none); none for
    inputs without an affine, or a NIfTI without an sform or a qform. ``columns``: :func:`measure_objects`'s;
    ``frame``: the frame measured, where one of the file's first three axes is time (a volume read
    plane by plane, ``--axes XYT``: the plane's index along it)."""
    affine = _placing_affine(image)
    if affine is None:
        return {}
    axes = "zyx"[3 - len(spacing):]
    n = columns["label"].size
    voxel = {a.upper(): columns[f"centroid-{a}"] / float(s) for a, s in zip(axes, spacing)} | {"T": np.full(n, float(frame))}
    file_axes = list(image.info.get("source_axes") or "XYZ")[:3]
    index = np.stack([voxel.get(a, np.zeros(n)) for a in file_axes] + [np.zeros(n)] * (3 - len(file_axes)))
    world = affine[:3, :3] @ index + affine[:3, 3:4]
    return {**{f"world-{name}": world[k] for k, name in enumerate("xyz")},
            "world_unit": np.full(n, image.info.get("world_unit") or "", dtype=object)}


def count_objects(path: Path, images: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(images, 0)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            counts[row["image"]] = counts.get(row["image"], 0) + 1
    return counts


def _frame_columns(frame: int | None, time_step: float | None) -> dict:
    """``frame`` of a time series' image and, where the file gives the time between frames, ``time``
    in seconds; nothing for an image that is no frame of a series."""
    if frame is None:
        return {}
    return {"frame": int(frame)} | ({"time": round(int(frame) * time_step, 6), "time_unit": "second"} if time_step else {})


def write_csv(path: Path, rows: list[dict], *, empty_fields: list[str]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with replacing(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields or empty_fields)
        writer.writeheader()
        writer.writerows(rows)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
