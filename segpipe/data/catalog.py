"""The data catalog: which datasets exist, where their files are and how they are split.

A catalog is a YAML file (``data_catalog.yaml``) mapping dataset names to entries. Paths and
globs in an entry are relative to the folder holding the catalog (its *root*); a path that
resolves outside the root, through ``..`` or a symlink, is refused unless the entry sets
``allow_outside_root: true``.

Everything a later stage needs is checked here, at load time, with the entry and file named:
unknown keys, globs matching nothing, images without labels, split names that match no file,
a file in two splits. Every key is described in ``docs/catalog.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, NonNegativeInt, Tag, ValidationError, field_validator, model_validator

from segpipe.data.catalog_yaml import read_yaml
from segpipe.data.ctc import ctc_records
from segpipe.data.readers.units import length_unit, pixel_size_problem
from segpipe.data.records import ImageRecord, Split
from segpipe.errors import CatalogError, explain

SPLITS = ("train", "validation", "test")

IMAGE_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".png", ".ome.zarr", ".zarr")
_NAME_SUFFIXES = (*IMAGE_SUFFIXES, ".ome.tif", ".ome.tiff")  # what a name drops: x.ome.tif is x
COLOURS = {"red": 0, "green": 1, "blue": 2, "alpha": 3}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSplit(_Strict):
    """Split by file: each list names images by their file stem (``train`` may stay empty only in
    an entry whose ``model:`` is applied, not trained)."""

    train: list[str] = Field(default_factory=list)
    validation: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)


class RegionSplit(_Strict):
    """Split one large image by region: ``[start, stop)`` per spatial axis, in array order (a
    ``train`` region is needed unless the entry's ``model:`` is applied, not trained)."""

    regions: dict[Split, list[tuple[int, int]]]

    @field_validator("regions")
    @classmethod
    def _check_regions(cls, regions: dict) -> dict:
        for split, bounds in regions.items():
            for start, stop in bounds:
                if not 0 <= start < stop:
                    raise ValueError(f"region {split}: [{start}, {stop}] is empty or negative")
        _check_disjoint(regions)
        return regions


def _check_disjoint(regions: dict[str, list[tuple[int, int]]]) -> None:
    """Refuse two splits' regions that share pixels: test pixels must never be trained on."""
    named = [(split, bounds) for split, bounds in regions.items()]
    for i, (first, a) in enumerate(named):
        for second, b in named[i + 1 :]:
            if len(a) != len(b):
                continue  # the number of ranges is checked against ndim when the entry is resolved
            common = [[max(a0, b0), min(a1, b1)] for (a0, a1), (b0, b1) in zip(a, b)]
            if all(start < stop for start, stop in common):
                raise ValueError(
                    f"regions {first} {[list(r) for r in a]} and {second} {[list(r) for r in b]} overlap in {common}: "
                    f"those pixels would be both in {first} and in {second}; make the regions disjoint "
                    "(each [start, stop) ends where the next one starts)"
                )


def _split_kind(value: Any) -> str:
    """Which kind of split a catalog's ``split:`` is: by region when it has ``regions:``, else by file."""
    if isinstance(value, dict):
        return "RegionSplit" if "regions" in value else "FileSplit"
    return "RegionSplit" if isinstance(value, RegionSplit) else "FileSplit"


#: A split by file or by region, told apart by the ``regions`` key, so a mistake is reported for the
#: kind of split written (not for both kinds).
SplitSpec = Annotated[
    Annotated[FileSplit, Tag("FileSplit")] | Annotated[RegionSplit, Tag("RegionSplit")], Discriminator(_split_kind)
]


class Schedule(_Strict):
    """When a deployment runs for a dataset (``deploy/setup.py`` makes one schedule per dataset).

    Attributes:
        cron: Five-field cron expression.
        timezone: Time zone of ``cron``.
        active: Created paused when false.
    """

    cron: Annotated[str, AfterValidator(lambda text: _cron(text))]
    timezone: Annotated[str, AfterValidator(lambda name: _timezone(name))] = "UTC"
    active: bool = True


def _cron(text: str) -> str:
    """``text`` when it is a five-field cron expression Prefect can run."""
    from cronsim import CronSim, CronSimError  # Prefect's own cron parser

    if not re.fullmatch(r"\S+( \S+){4}", text):
        raise ValueError(f"{text!r} is no cron expression: five fields, minute hour day month weekday (e.g. '0 3 * * *')")
    try:
        CronSim(text, dt.datetime(2000, 1, 1))
    except CronSimError as err:
        raise ValueError(f"{text!r} is no cron expression ({err})") from None
    return text


def _timezone(name: str) -> str:
    """``name`` when it names an IANA time zone."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is no time zone (IANA names: UTC, Europe/Berlin, America/New_York)") from None
    return name


#: A deployment's schedule for a dataset: a cron string, a full schedule, or ``false`` for none.
ScheduleSpec = Annotated[
    Annotated[Schedule, Tag("Schedule")] | Annotated[str, AfterValidator(_cron), Tag("Cron")] | Annotated[Literal[False], Tag("Off")],
    Discriminator(lambda value: _schedule_kind(value)),
]


def _schedule_kind(value: Any) -> str:
    """Which form a schedule is written in, so that a problem is said of that form alone."""
    if isinstance(value, dict | Schedule):
        return "Schedule"
    return "Off" if value is False else "Cron"


class _Schedules(_Strict):
    schedules: dict[str, ScheduleSpec]


class DatasetEntry(_Strict):
    """One dataset of the catalog.

    Attributes:
        description: Free text shown in reports.
        images: Glob (or list of globs) of image files, relative to the catalog root. A match
            that is a folder is one 3D stack of the 2D slices inside it (see ``slice_glob``);
            for ``format: ctc`` the matches are Cell Tracking Challenge sequence folders.
        labels: Glob (or list) of label files. Labels pair with images by file stem (after
            ``images_suffix``/``labels_suffix`` are removed), or one-to-one when each side holds
            a single file. For ``ctc`` a folder template with ``{seq}`` (default ``{seq}_GT/SEG``).
            Left out, the images have no ground truth: they can be segmented (``segpipe predict``,
            ``segpipe segment``), not trained on or scored.
        format: ``tiff``, ``nifti``, ``png`` or ``ctc``; ``auto`` picks by suffix.
        ndim: Spatial dimensions of the images (2 or 3).
        axes: What each axis of the image files is (letters ``T``, ``C``, ``Z``, ``Y``, ``X``),
            overriding the file's metadata; frames (``T``) become separate images.
        label_axes: The same for the label files.
        channel_axis: Axis of the channels in the source arrays, if there is one.
        channels: Channels to keep, in order (default: all): indices, or ``red``/``green``/``blue``.
        series: For TIFF files of several image series (an OME-TIFF of several positions or
            scenes): which series the images are, counted from 0 (default: the first, with a
            warning that the others are left out). Label and ignore files of several series are read
            at the same one; those of one series are the labels of that series.
        images_suffix: Removed from image file stems before pairing (e.g. ``_img``).
        labels_suffix: Removed from label file stems before pairing (e.g. ``_masks``).
        slice_glob: Which files of a slice folder are slices (natural sort order).
        classes: Names of the semantic classes, background first.
        instances: Whether labels are instance maps (one id per object) rather than class maps.
        spacing: Pixel or voxel size per spatial axis; read from the files when omitted.
        unit: Unit of the spacing; read from the files when omitted (else ``micrometer``).
        ground_truth: How the labels were made, shown in every report (e.g. a silver standard).
        ignore_label: A label value meaning "not annotated" (sparse ground truth, as nnU-Net's
            ``ignore`` label): its pixels are neither trained on nor scored. Instance maps: a
            reserved id (e.g. 65535); class maps: a value that is no class (``>= len(classes)``).
        ignore_masks: Glob (or list) of ignore masks, one per partly annotated image, paired with
            images by file stem (after ``ignore_suffix`` is removed); nonzero marks the pixels
            nobody annotated. Images without one are annotated throughout. For ``ctc`` a folder
            template with ``{seq}`` whose files are named like the ground truth (``man_segT.tif``).
        ignore_suffix: Removed from ignore-mask file stems before pairing (e.g. ``_ignore``).
        split: By file (for ``ctc``: by sequence folder name) or by region; required with labels,
            unless ``model`` is set. Without a split, every image is in ``test`` (the split predicted
            and, with labels, scored).
        model: The model to segment these images with: a model folder (relative to the catalog),
            or the name of a catalog dataset whose trained model to use.
        allow_outside_root: Accept files resolving outside the catalog's folder.
        schedule: Per deployment (``nightly``, ``refresh``, ...), when it runs for this dataset: a
            cron string, ``{cron, timezone, active}``, or ``false`` for never; deployments not
            named keep the catalog's ``schedules:`` or ``deploy/prefect.yaml``'s default.
        training: Per-dataset overrides of the training defaults: any field of
            :class:`segpipe.training.params.TrainParams` (e.g. ``patch_size``, ``epochs``, ``max_minutes``),
            checked when the pipeline loads the catalog (:func:`segpipe.pipeline.catalog.open_catalog`).
    """

    description: str = ""
    images: str | list[str]
    labels: str | list[str] | None = None
    format: Literal["auto", "tiff", "nifti", "png", "ctc"] = "auto"
    ndim: Literal[2, 3] = 2
    axes: str | None = Field(default=None, pattern=r"^[TCSZYXtcszyx]+$")
    label_axes: str | None = Field(default=None, pattern=r"^[TCSZYXtcszyx]+$")
    channel_axis: int | None = None
    channels: list[NonNegativeInt | Literal["red", "green", "blue", "alpha"]] | None = Field(default=None, min_length=1)
    series: NonNegativeInt | None = None
    images_suffix: str = ""
    labels_suffix: str = ""
    slice_glob: str = "*"
    classes: list[str] = Field(default_factory=lambda: ["background", "foreground"], min_length=2)
    instances: bool = True
    spacing: list[float] | None = None
    unit: str | None = None
    ground_truth: str = ""
    ignore_label: int | None = Field(default=None, ge=1)
    ignore_masks: str | list[str] | None = None
    ignore_suffix: str = ""
    split: SplitSpec | None = None
    model: str | None = None
    allow_outside_root: bool = False
    schedule: dict[str, ScheduleSpec] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("unit")
    @classmethod
    def _length_unit(cls, value: str | None) -> str | None:
        return length_unit(value)

    @model_validator(mode="after")
    def _check_spacing(self) -> DatasetEntry:
        if self.spacing is not None:
            if len(self.spacing) != self.ndim:
                raise ValueError(f"spacing has {len(self.spacing)} values, ndim is {self.ndim}")
            problem = pixel_size_problem(self.spacing, self.unit)
            if problem:
                raise ValueError(f"spacing: {problem}")
        for key in ("spacing", "patch_size"):
            value = self.training.get(key)
            if isinstance(value, (list, tuple)) and len(value) != self.ndim:
                raise ValueError(f"training: {key} {list(value)} has {len(value)} values, ndim is {self.ndim}")
        twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if twice:
            raise ValueError(f"classes: {', '.join(repr(c) for c in twice)} named twice (each class needs its own name)")
        if self.instances and len(self.classes) != 2:
            raise ValueError("instance datasets have exactly two classes: background and the objects")
        if self.split is None and self.labels is not None and self.model is None:
            raise ValueError(
                "split: required for a dataset with labels (train, validation, test); "
                "leave labels out for images that are only to be segmented, or name the model: to score on all of them"
            )
        if isinstance(self.split, FileSplit) and not self.split.train and self.labelled and self.model is None:
            raise ValueError(
                "split: train names no image: name some to train a model on, or set model: to score an existing "
                "model on the images"
            )
        if isinstance(self.split, RegionSplit) and "train" not in self.split.regions and self.labelled and self.model is None:
            raise ValueError(
                "split: a region split needs a 'train' region to train a model on, or set model: to score an "
                "existing model on the regions given"
            )
        if not self.labelled and self.split is not None and _trains(self.split):
            raise ValueError(
                "split: names train or validation images, but the dataset has no labels; images without "
                "labels can be segmented, not trained on (add labels:, or leave the split out)"
            )
        if not self.labelled and (self.ignore_label is not None or self.ignore_masks is not None):
            raise ValueError("ignore_label/ignore_masks: mark what the labels leave unannotated, but the dataset has no labels")
        if self.ignore_label is not None and not self.instances and self.ignore_label < len(self.classes):
            raise ValueError(
                f"ignore_label: {self.ignore_label} is the class {self.classes[self.ignore_label]!r}; "
                f"use a value that is no class (>= {len(self.classes)}, e.g. 255)"
            )
        if self.format == "ctc" and self.ignore_masks is not None and (
            not isinstance(self.ignore_masks, str) or "{seq}" not in self.ignore_masks
        ):
            raise ValueError("ignore_masks: for ctc, one folder template with {seq} (e.g. '{seq}_GT/IGNORE')")
        if self.format == "ctc" and isinstance(self.split, RegionSplit):
            raise ValueError("split: a ctc dataset is split by sequence folder, not by region")
        if self.channels is not None and len(set(self.channel_indices())) != len(self.channels):
            raise ValueError(f"channels: {self.channels} names a channel twice")
        return self

    @property
    def labelled(self) -> bool:
        """Whether the entry declares ground truth (a ``ctc`` entry finds its own, where there is any)."""
        return self.labels is not None or self.format == "ctc"

    def channel_indices(self) -> list[int] | None:
        """``channels`` as indices (colour names mapped to RGB(A) positions), or ``None``."""
        if self.channels is None:
            return None
        return [COLOURS[c] if isinstance(c, str) else c for c in self.channels]


@dataclass(frozen=True)
class Dataset:
    """A validated catalog entry with its files resolved.

    ``assumed_spacing``: the pixel size and unit taken for an image whose file gives none (``None``:
    1 per pixel); ``segment`` passes the model's, so such an image is seen at its own pixels.
    """

    name: str
    entry: DatasetEntry
    root: Path
    records: tuple[ImageRecord, ...]
    assumed_spacing: tuple[tuple[float, ...], str] | None = None

    def split(self, split: Split) -> list[ImageRecord]:
        """Records of one split, in catalog order."""
        return [r for r in self.records if r.split == split]


class Catalog:
    """A loaded, validated data catalog.

    An entry that does not validate is kept aside in :attr:`invalid` with its one-line problem:
    asking for it raises that line, while every other entry stays usable (one lab's typo does not
    stop another lab's runs). :meth:`check` raises the first problem, for whoever needs them all.
    """

    def __init__(
        self, path: Path, entries: dict[str, DatasetEntry], schedules: dict[str, ScheduleSpec] | None = None,
        invalid: dict[str, str] | None = None,
    ):
        self.path = path
        self.root = path.parent.resolve()
        self.entries = entries
        self.schedules = schedules or {}
        self.invalid = invalid or {}

    def __contains__(self, name: object) -> bool:
        """Whether the catalog declares dataset ``name``, valid or not."""
        return name in self.entries or name in self.invalid

    def names(self) -> list[str]:
        """Valid dataset names, in file order."""
        return list(self.entries)

    def set_invalid(self, name: str, problem: str) -> None:
        """Move entry ``name`` aside with ``problem`` (a full line, the catalog and entry named)."""
        self.entries.pop(name, None)
        self.invalid[name] = problem

    def check(self) -> None:
        """Raise the first invalid entry's problem (:class:`CatalogError`); nothing when all are valid."""
        if self.invalid:
            raise CatalogError(next(iter(self.invalid.values())))

    def entry(self, name: str) -> DatasetEntry:
        """One entry as written; :class:`CatalogError` says what is wrong with an invalid one, and
        names the known ones when there is none."""
        if name in self.invalid:
            raise CatalogError(self.invalid[name])
        if name not in self.entries:
            known = ", ".join(self.entries) or "none"
            raise CatalogError(f"{self.path}: no dataset named {name!r} (known: {known})")
        return self.entries[name]

    def dataset(self, name: str) -> Dataset:
        """Resolve one entry's files and split; raises :class:`CatalogError` on any problem."""
        entry = self.entry(name)
        records = _resolve_records(name, entry, self.root, self.path)
        return Dataset(name=name, entry=entry, root=self.root, records=tuple(records))


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file.

    Args:
        path: The YAML file.

    Returns:
        The catalog; entries are checked for unknown keys and types now (an invalid one is set
        aside in :attr:`Catalog.invalid`), their files when :meth:`Catalog.dataset` resolves them.

    Raises:
        CatalogError: The file is missing or is not YAML, or its top level or schedules are invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise CatalogError(f"{path}: expected a top-level 'datasets:' mapping of name to entry")
    unknown = set(raw) - {"datasets", "schedules"}
    if unknown:
        raise CatalogError(f"{path}: unknown top-level keys {sorted(unknown)}")
    try:
        schedules = _Schedules.model_validate({"schedules": raw.get("schedules") or {}}).schedules
    except ValidationError as err:
        raise CatalogError(f"{path}: {explain(err)}") from None
    entries, invalid = {}, {}
    for name, body in raw["datasets"].items():
        if not _DATASET_NAME.fullmatch(str(name)):
            invalid[str(name)] = (f"{path}: dataset {name!r}: a dataset's name is a folder of its runs: letters, digits "
                                  "and . _ + -, parts joined by / (no spaces, no part starting with a dot)")
            continue
        try:
            entries[str(name)] = DatasetEntry.model_validate(body or {})
        except ValidationError as err:
            invalid[str(name)] = f"{path}: dataset {name!r}: {explain(err)}"
    return Catalog(path, entries, schedules, invalid)


#: A dataset's name: its run folder under --output (``lab/cells`` is a folder in a folder), so it
#: cannot leave it: parts of letters, digits and ``. _ + -``, none starting with a dot.
_DATASET_NAME = re.compile(r"[^\W][\w.+-]*(/[^\W][\w.+-]*)*")


def _stem(path: Path, suffix: str = "") -> str:
    """The name an image or label file is paired and stored by: without its image suffix (an
    OME-Zarr folder's ``.ome.zarr`` and an OME-TIFF's ``.ome.tif`` too), a folder of slices or a
    sequence by its whole name; then without ``suffix``."""
    name = path.name
    stem = path.stem
    for ext in sorted(_NAME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(ext) and len(name) > len(ext):
            stem = name[: -len(ext)]
            break
    if path.is_dir() and not name.lower().endswith(".zarr"):
        stem = name
    if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]
    return stem


def check_inside(path: Path, root: Path, *, where: str, allow_outside: bool) -> None:
    """Refuse ``path`` if it resolves (through ``..`` or symlinks) outside ``root``."""
    resolved = path.resolve()
    if not allow_outside and not resolved.is_relative_to(root):
        raise CatalogError(
            f"{where}: {path} resolves to {resolved}, outside the catalog root {root}; "
            "set allow_outside_root: true in the entry to accept it"
        )


def _expand(
    patterns: str | list[str], root: Path, *, where: str, allow_outside: bool, slice_glob: str = "*"
) -> list[Path]:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(root / pattern), recursive=True))
        if not matches:
            raise CatalogError(f"{where}: {pattern!r} matches no file under {root}")
        for match in matches:
            path = Path(match)
            if path.is_symlink() and not path.exists():  # else dropped, and its label called one without an image
                raise CatalogError(f"{where}: {path} is a broken link: its target {os.readlink(path)} does not exist")
            check_inside(path, root, where=where, allow_outside=allow_outside)
            if path.is_dir():  # a folder of 2D slices: every slice must stay inside too
                slices = [p for p in path.glob(slice_glob) if p.is_file()]
                if not slices:
                    raise CatalogError(f"{where}: folder {path} holds no file matching {slice_glob!r}")
                for item in slices:
                    check_inside(item, root, where=where, allow_outside=allow_outside)
            if path.is_file() or path.is_dir():
                found.append(path.absolute())
    if len(set(found)) != len(found):
        dupes = sorted({str(p) for p in found if found.count(p) > 1})
        raise CatalogError(f"{where}: files listed twice: {', '.join(dupes)}")
    return found


def _pair(images: list[Path], labels: list[Path], entry: DatasetEntry, *, where: str) -> dict[str, tuple[Path, Path]]:
    pairs = _paired(images, labels, entry, where=where)
    for image, label in pairs.values():
        if image.resolve() == label.resolve():
            raise CatalogError(f"{where}: {image} is both an image and its own label file (the labels glob matches the "
                               "images); point labels: at the label masks")
    return pairs


def _paired(images: list[Path], labels: list[Path], entry: DatasetEntry, *, where: str) -> dict[str, tuple[Path, Path]]:
    if len(images) == 1 and len(labels) == 1:
        return {_stem(images[0], entry.images_suffix): (images[0], labels[0])}
    by_stem: dict[str, Path] = {}
    for path in labels:
        stem = _stem(path, entry.labels_suffix)
        if stem in by_stem:
            raise CatalogError(f"{where}: two label files share the name {stem!r}: {by_stem[stem]}, {path}")
        by_stem[stem] = path
    pairs = {}
    for image in images:
        stem = _stem(image, entry.images_suffix)
        if stem in pairs:
            raise CatalogError(f"{where}: two images share the name {stem!r}: {pairs[stem][0]}, {image}")
        if stem not in by_stem:
            raise CatalogError(f"{where}: image {image} has no label file named {stem}{entry.labels_suffix}.*"
                               f"{_labels_suffix_hint(stem, labels, entry.labels_suffix)}")
        pairs[stem] = (image, by_stem.pop(stem))
    if by_stem:
        raise CatalogError(f"{where}: label files without an image: {', '.join(map(str, by_stem.values()))}")
    return pairs


def _ending(short: str, long: str) -> str:
    """What ``long`` adds at the end of ``short`` (``_mask`` for ``a0`` and ``a0_mask``); "" where it does not begin with it."""
    return long[len(short):] if long.startswith(short) and len(long) > len(short) else ""


def _labels_suffix_hint(stem: str, labels: list[Path], suffix: str) -> str:
    """Where a label file is named ``stem`` plus an ending (``a0_mask.tif`` for ``a0``): the key that
    removes that ending before pairing; else nothing."""
    for path in labels:
        if ending := _ending(stem, _stem(path, suffix)):
            return f" ({path.name} is; labels_suffix: {ending} removes that ending before pairing)"
    return ""


def _resolve_records(name: str, entry: DatasetEntry, root: Path, path: Path) -> list[ImageRecord]:
    where = f"{path}: dataset {name!r}"
    outside = entry.allow_outside_root
    images = _expand(entry.images, root, where=f"{where}: images", allow_outside=outside, slice_glob=entry.slice_glob)
    if entry.format == "ctc":
        template = entry.labels if isinstance(entry.labels, str) else "{seq}_GT/SEG"
        records = ctc_records(
            images, template=template, ndim=entry.ndim, where=where, required=entry.labels is not None,
            ignore_template=entry.ignore_masks,
        )
        for record in records:
            if record.labels is not None:
                check_inside(record.labels, root, where=f"{where}: labels", allow_outside=outside)
            if record.ignore is not None:
                check_inside(record.ignore, root, where=f"{where}: ignore_masks", allow_outside=outside)
        assigned = _assign_splits(records, entry, where=where, key=lambda r: r.name.rsplit("-t", 1)[0])
        for record in assigned:
            sequence = record.image.parent
            if record.split in ("train", "validation") and not any(
                r.labels is not None for r in assigned if r.image.parent == sequence
            ):
                gt = sequence.parent / template.format(seq=sequence.name)
                raise CatalogError(
                    f"{where}: no ground-truth folder {gt} for sequence {sequence}, which is in the {record.split} split"
                )
        return assigned
    if entry.labels is None:
        pairs = _unpaired(images, entry, where=where)
    else:
        labels = _expand(entry.labels, root, where=f"{where}: labels", allow_outside=outside, slice_glob=entry.slice_glob)
        pairs = _pair(images, labels, entry, where=where)
    masks = _ignore_masks(entry, pairs, root, where=where)

    if isinstance(entry.split, RegionSplit):
        if len(pairs) != 1:
            raise CatalogError(f"{where}: a region split needs exactly one image, found {len(pairs)}")
        stem, (image, label) = next(iter(pairs.items()))
        records = []
        for split, bounds in entry.split.regions.items():
            if len(bounds) != entry.ndim:
                raise CatalogError(f"{where}: region {split} has {len(bounds)} ranges, ndim is {entry.ndim}")
            records.append(
                ImageRecord(f"{stem}-{split}", image, label, split, tuple(map(tuple, bounds)), ignore=masks.get(stem))
            )
        return sorted(records, key=lambda r: SPLITS.index(r.split))

    unsplit = [ImageRecord(stem, image, label, "test", ignore=masks.get(stem)) for stem, (image, label) in pairs.items()]
    return _assign_splits(unsplit, entry, where=where, key=lambda r: r.name)


def _ignore_masks(entry: DatasetEntry, pairs: dict, root: Path, *, where: str) -> dict[str, Path]:
    """The ignore mask of each image that has one, by image stem; a mask naming no image is an error."""
    if entry.ignore_masks is None:
        return {}
    found = _expand(
        entry.ignore_masks, root, where=f"{where}: ignore_masks", allow_outside=entry.allow_outside_root,
        slice_glob=entry.slice_glob,
    )
    if len(pairs) == 1 and len(found) == 1:
        return {next(iter(pairs)): found[0]}
    masks: dict[str, Path] = {}
    for path in found:
        stem = _stem(path, entry.ignore_suffix)
        if stem in masks:
            raise CatalogError(f"{where}: two ignore masks share the name {stem!r}: {masks[stem]}, {path}")
        if stem not in pairs:
            ending = next((ending for name in pairs if (ending := _ending(name, stem))), "")
            hint = f"; ignore_suffix: {ending} removes that ending before pairing" if ending else ""
            raise CatalogError(
                f"{where}: ignore mask {path} names no image (expected an image named {stem}{entry.images_suffix}.*{hint})"
            )
        masks[stem] = path
    return masks


def _trains(split: FileSplit | RegionSplit) -> bool:
    """Whether a split gives any image to training or validation."""
    if isinstance(split, RegionSplit):
        return any(name in split.regions for name in ("train", "validation"))
    return bool(split.train or split.validation)


def _unpaired(images: list[Path], entry: DatasetEntry, *, where: str) -> dict[str, tuple[Path, None]]:
    """Images without ground truth, by name (names must be unique)."""
    named: dict[str, tuple[Path, None]] = {}
    for image in images:
        stem = _stem(image, entry.images_suffix)
        if stem in named:
            raise CatalogError(f"{where}: two images share the name {stem!r}: {named[stem][0]}, {image}")
        named[stem] = (image, None)
    return named


def _assign_splits(records: list[ImageRecord], entry: DatasetEntry, *, where: str, key) -> list[ImageRecord]:
    """Give each record the split that names its ``key`` (file stem, or CTC sequence); without a
    split, every record is in ``test``."""
    if entry.split is None:
        return [dataclasses.replace(r, split="test") for r in records]
    assert isinstance(entry.split, FileSplit)
    groups: dict[str, list[ImageRecord]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    out = []
    seen: dict[str, str] = {}
    for split in SPLITS:
        for stem in getattr(entry.split, split):
            if stem in seen and seen[stem] == split:
                raise CatalogError(f"{where}: {stem!r} is named twice in the {split} split")
            if stem in seen:
                raise CatalogError(f"{where}: {stem!r} is in both the {seen[stem]} and {split} splits")
            if stem not in groups:
                hint = (f" (an OME-TIFF {stem}.tif is named {stem[:-4]!r}, without .ome)"
                        if stem.lower().endswith(".ome") and stem[:-4] in groups else "")
                raise CatalogError(f"{where}: split {split} names {stem!r}, but no image has that name{hint}")
            seen[stem] = split
            out += [dataclasses.replace(r, split=split) for r in groups[stem]]
    unassigned = sorted(set(groups) - set(seen))
    if unassigned:
        raise CatalogError(f"{where}: images in no split: {', '.join(unassigned)}")
    return out
