"""Ingest one catalog record (an image file and its labels, if it has any) into OME-Zarr image groups.

The sources are opened lazily and checked before any pixel is written (dtype, axes, shapes,
spacing, region); the label map is then read once to check its values and pick its dtype, and
image and labels are streamed slab by slab into the store; sparse ground truth (an ignore
value, an ignore mask) also gets its ``labels/ignore`` map (:mod:`segpipe.data.ingest.ignore`).
Checks that need the pixels (NaN, a constant image with labels) run on the way; if one fails
the whole temporary store is dropped by the caller, so nothing half-written survives.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zarr

from segpipe.data.catalog import Dataset, DatasetEntry
from segpipe.data.records import ImageRecord
from segpipe.errors import InputError
from segpipe.data.ingest.ignore import check_ignore_source, split_ignored
from segpipe.data.ingest.params import IngestParams
from segpipe.data.ingest.stream import slab_windows, stream_copy
from segpipe.data.readers import AxesSpec, SelectedSource, Source, open_source
from segpipe.data.readers.source import LastReadCache, Window
from segpipe.data.readers.tiff import image_series
from segpipe.data.readers.units import length_factor, sizes_text
from segpipe.data.pyramid import Beside, average, chain, level_factors, pick, steps_between
from segpipe.data.store import (
    GT_NAME,
    IGNORE_NAME,
    IMAGE_LEVEL,
    GroupPlan,
    channel_windows,
    chunk_shape,
    create_array,
    create_levels,
    label_image_attrs,
    ome_image_attrs,
    write_small_image_group,
)
from segpipe.data.validate import check_image_block, check_image_dtype, check_label_block, label_dtype

DEFAULT_UNIT = "micrometer"


def _series_of(path: Path, series: int | None) -> int | None:
    """The series to read of a label or ignore file: the images' when it holds several series (labels
    written per position beside them), else none (one file of labels for that position)."""
    if series is None or not Path(path).is_file() or image_series(Path(path)) == 1:
        return None
    return series


def check_record(dataset: Dataset, record: ImageRecord) -> None:
    """Check what the headers of ``record``'s files show against the catalog entry, reading no
    pixels: shapes of image, labels and ignore mask, the region inside the image, the channels
    in the file (``segpipe catalog``; ingest checks the same as it reads).

    Raises:
        InputError: A mismatch, with the file named.
    """
    with ExitStack() as stack:
        _checked(dataset, record, *_open_record(stack, dataset, record))


def _checked(dataset: Dataset, record: ImageRecord, image: Source, labels: Source | None, mask: Source | None):
    """The headers of ``record``'s opened files checked against the entry; returns the window to
    read and the channels (``None``: all)."""
    ndim = dataset.entry.ndim
    _check_sources(image, labels, ndim=ndim)
    _check_spacings(image, labels, ndim=ndim)
    if mask is not None:
        check_ignore_source(mask, image, ndim=ndim)
    return _window(record, image, ndim=ndim), _channels(image, dataset.entry)


def _open_record(stack: ExitStack, dataset: Dataset, record: ImageRecord) -> tuple[Source, Source | None, Source | None]:
    """The image, labels and ignore mask of ``record`` opened (closed with ``stack``)."""
    entry = dataset.entry
    ndim = entry.ndim
    fmt = "auto" if entry.format == "ctc" else entry.format
    plane_fill = "Z" if ndim == 3 or record.plane is not None else ""
    image_spec = AxesSpec(override=entry.axes, fill=plane_fill, channel_axis=entry.channel_axis)
    image: Source = stack.enter_context(
        open_source(record.image, fmt=fmt, spec=image_spec, slice_glob=entry.slice_glob, series=entry.series)
    )
    if record.plane is not None:
        image = SelectedSource(image, z=record.plane)
    label_fill = ("Z" if ndim == 3 else "") + ("T" if image.frames > 1 else "")
    labels: Source | None = None
    if record.labels is not None:
        labels = LastReadCache(
            stack.enter_context(
                open_source(
                    record.labels,
                    fmt=fmt,
                    spec=AxesSpec(override=entry.label_axes, fill=label_fill),
                    slice_glob=entry.slice_glob,
                    series=_series_of(record.labels, entry.series),
                )
            )
        )
    mask: Source | None = None
    if record.ignore is not None and labels is not None:
        mask = LastReadCache(
            stack.enter_context(
                open_source(
                    record.ignore, fmt=fmt, spec=AxesSpec(override=entry.label_axes, fill=label_fill),
                    slice_glob=entry.slice_glob, series=_series_of(record.ignore, entry.series),
                )
            )
        )
    return image, labels, mask


def ingest_record(root: zarr.Group, dataset: Dataset, record: ImageRecord, options: IngestParams) -> list[dict]:
    """Write ``record`` into ``root``: one image group per frame; returns their info dicts."""
    entry = dataset.entry
    ndim = entry.ndim
    with ExitStack() as stack:
        image, labels, mask = _open_record(stack, dataset, record)
        window, channels = _checked(dataset, record, image, labels, mask)
        truth = Truth(labels, mask, entry.ignore_label) if labels is not None else None
        spacing, unit, spacing_source = _spacing(
            image, ndim=ndim, catalog=entry.spacing, catalog_unit=entry.unit, assumed=dataset.assumed_spacing
        )
        n_classes = None if entry.instances else len(entry.classes)
        label_stats = [
            _label_stats(truth, t, window, ndim=ndim, n_classes=n_classes, options=options)
            if truth is not None else FrameTruth(0, False, 0, 0)
            for t in range(image.frames)
        ]
        high = max(stats.high for stats in label_stats)
        if truth is not None and truth.sparse and not any(stats.background for stats in label_stats):
            raise InputError(truth.nothing_annotated_outside_objects(record.name))
        set_aside = _file_spacing_set_aside(image, ndim=ndim, spacing=spacing, unit=unit) if spacing_source == "catalog" else None
        infos = []
        width = max(3, len(str(image.frames - 1)))
        for t in range(image.frames):
            name = record.name if image.frames == 1 else f"{record.name}-t{t:0{width}d}"
            infos.append(
                _write_frame(
                    root,
                    name,
                    image,
                    truth,
                    t,
                    window=window,
                    layout=FrameLayout(
                        ndim, channels, label_dtype(high) if labels is not None else None, label_stats[t].labelled, spacing,
                        unit, tuple(entry.classes), entry.instances, ignored_pixels=label_stats[t].ignored,
                        channel_names=_display_names(_names_read(image.meta.channel_names, channels)),
                    ),
                    options=options,
                )
                | {
                    "split": record.split,
                    "source": str(record.image),
                    "labels_source": str(record.labels) if record.labels is not None else None,
                    "ignore_source": str(record.ignore) if mask is not None else None,
                    "ignored_pixels": label_stats[t].ignored if labels is not None else None,
                    "spacing_source": spacing_source,
                    "file_spacing": set_aside,
                    "region": [list(b) for b in record.region] if record.region else None,
                    "frame": t if image.frames > 1 else record.frame,
                    "plane": record.plane,
                    "source_axes": image.meta.axes,
                    "affine": _moved(image.meta.affine, image, window),
                    "world": image.meta.world,
                    "world_unit": image.meta.unit if image.meta.affine is not None else None,  # the affine's, as the file says
                    "qform": _moved(image.meta.qform, image, window),
                    "qform_space": image.meta.qform_space,
                    "time_step": image.meta.time_step,
                    "channels": channels,  # the file's channels read, in order (None: all)
                    "channel_names": _names_read(image.meta.channel_names, channels),
                }
            )
    return infos


def _check_sources(image: Source, labels: Source | None, *, ndim: int) -> None:
    check_image_dtype(image.dtype, image.path)
    if ndim == 2 and image.spatial[0] != 1:
        raise InputError(
            f"{image.path}: the file has {image.spatial[0]} planes (Z) but the catalog says ndim: 2; "
            "set ndim: 3, or axes: (e.g. TYX) if the planes are time points"
        )
    if min(image.spatial[3 - ndim :]) == 0:
        raise InputError(f"{image.path}: image has no pixels (shape {image.shape})")
    if labels is None:
        return
    if labels.channels != 1:
        raise InputError(f"{labels.path}: a label map has one channel, this file has {labels.channels} (read as "
                         f"{labels.meta.axes or 'channels'}; if they are planes or time points, set label_axes: ZYX or TYX, "
                         "and axes: for the images, in the catalog entry)")
    image_shape = image.spatial[3 - ndim :]
    label_shape = labels.spatial[3 - ndim :]
    if image_shape != label_shape:
        raise InputError(
            f"{image.path} has spatial shape {image_shape} but its labels {labels.path} have shape {label_shape}"
        )
    if labels.spatial[0] != image.spatial[0] or labels.frames != image.frames:
        raise InputError(
            f"{image.path} has {image.frames} frame(s) of {image.spatial[0]} plane(s), its labels {labels.path} "
            f"{labels.frames} frame(s) of {labels.spatial[0]} plane(s): set label_axes (e.g. TYX or ZYX) in the "
            "catalog entry so that the labels' axes read as the image's"
        )
    _check_placement(image, labels)


def _check_placement(image: Source, labels: Source) -> None:
    """Refuse labels whose NIfTI header places their voxels elsewhere than the image's (a tool that
    reoriented them flipped the array): ingested voxel by voxel, they would be mirrored. A file
    whose header places its voxels nowhere (no sform or qform) is taken on the image's grid."""
    from segpipe.data.readers.placement import placement_problem

    mine, theirs = image.meta, labels.meta
    if mine.affine is None or theirs.affine is None or mine.world is None or theirs.world is None:
        return
    problem = placement_problem(theirs.affine, mine.affine, shape=tuple(reversed(labels.spatial)))
    if problem:
        raise InputError(f"{labels.path}: placed in the world otherwise than its image {image.path} ({problem}); "
                         "save the labels on the image's grid, with the image's affine")


def _window(record: ImageRecord, image: Source, *, ndim: int) -> Window:
    z, y, x = image.spatial
    if record.region is None:
        return slice(0, z), slice(0, y), slice(0, x)
    shape = image.spatial[3 - ndim :]
    for (start, stop), size in zip(record.region, shape):
        if stop > size:
            raise InputError(f"{record.image}: region {record.split} {record.region} exceeds the image shape {shape}")
    bounds = [slice(a, b) for a, b in record.region]
    return tuple([slice(0, z)] * (3 - ndim) + bounds)  # type: ignore[return-value]


def _names_read(names: tuple[str | None, ...] | None, channels: list[int] | None) -> list[str | None] | None:
    """The file's names of the channels read (``None`` where it names none)."""
    if not names or not any(names):
        return None
    return [names[c] if c < len(names) else None for c in (channels if channels is not None else range(len(names)))]


def _display_names(names: list[str | None] | None) -> tuple[str, ...] | None:
    """The channels' names for viewers: the file's, ``channel i`` where it names one and not another."""
    if names is None:
        return None
    return tuple(name or f"channel {i}" for i, name in enumerate(names))


def _channels(image: Source, entry: DatasetEntry) -> list[int] | None:
    """The channels the entry asks for, as numbers from 0 (``None``: all)."""
    wanted = entry.channel_indices()
    if wanted is None:
        return None
    if max(wanted) >= image.channels:
        named = ", ".join(f"{a} (channel {w})" if isinstance(a, str) else str(a) for a, w in zip(entry.channels, wanted))
        have = "1 channel (a grey image)" if image.channels == 1 else f"{image.channels} channels, 0 to {image.channels - 1}"
        raise InputError(f"{image.path}: channels: {named} asked for, the file has {have}")
    return wanted


def _check_spacings(image: Source, labels: Source | None, *, ndim: int) -> None:
    """An image and its labels must not give different pixel sizes (where both give one)."""
    if labels is None:
        return
    own, theirs = image.meta.spacing[3 - ndim :], labels.meta.spacing[3 - ndim :]
    for axis, a, b in zip("zyx"[3 - ndim :], own, theirs):
        if a is not None and b is not None and not np.isclose(a, b, rtol=1e-3):
            raise InputError(
                f"{image.path} has spacing {tuple(own)} but its labels {labels.path} have {tuple(theirs)} "
                f"(they differ along {axis})"
            )


def _spacing(
    image: Source, *, ndim: int, catalog: list[float] | None, catalog_unit: str | None,
    assumed: tuple[tuple[float, ...], str] | None = None,
) -> tuple[tuple[float, ...], str, str]:
    """Pixel size, unit, and where the size came from (``catalog``, ``file`` or ``default``: 1 per
    pixel, or ``assumed`` where the file gives no size on any axis)."""
    own = image.meta.spacing[3 - ndim :]
    if catalog is not None:
        return tuple(float(s) for s in catalog), catalog_unit or image.meta.unit or DEFAULT_UNIT, "catalog"
    if assumed is not None and any(s is None for s in own) and (all(s is None for s in own) or image.meta.unit in (None, assumed[1])):
        # the axes the file leaves out (all, or a stack's z with y and x in the model's unit) take the model's
        return tuple(float(s if s is not None else a) for s, a in zip(own, assumed[0][-ndim:])), assumed[1], "default"
    if any(s is None for s in own):  # no pixel size: 1 per pixel in the file's unit or the default, whatever unit: says
        return tuple(float(s) if s is not None else 1.0 for s in own), image.meta.unit or DEFAULT_UNIT, "default"
    unit = image.meta.unit or catalog_unit or DEFAULT_UNIT  # a unit alone fills in, never relabels the file's
    return tuple(float(s) for s in own), unit, "file"


def _file_spacing_set_aside(image: Source, *, ndim: int, spacing: tuple[float, ...], unit: str) -> str | None:
    """The pixel size ``image``'s file gives (``0.5 x 0.5 millimeter``) where the one given for it
    (the catalog's ``spacing:``, ``--spacing``) differs from it by more than 1% on some axis; else
    ``None`` (also where the file gives no size, or one without a unit, on some axis)."""
    own, own_unit = image.meta.spacing[3 - ndim :], image.meta.unit
    if any(s is None for s in own) or own_unit is None:  # a size without a unit (a NIfTI's default 1) claims nothing
        return None
    factor = length_factor(own_unit, unit)
    if all(math.isclose(float(s) * factor, g, rel_tol=0.01) for s, g in zip(own, spacing)):
        return None
    return f"{sizes_text(own)} {own_unit}"


@dataclass(frozen=True)
class Truth:
    """The ground truth of a record: its label map, its ignore mask (if any) and the ignore value (if any)."""

    labels: Source
    mask: Source | None
    ignore_label: int | None

    @property
    def sparse(self) -> bool:
        """Whether anything can be marked unannotated."""
        return self.mask is not None or self.ignore_label is not None

    def nothing_annotated_outside_objects(self, name: str) -> str:
        """The one line refusing a record whose ignore mask or value leaves no background annotated."""
        how = f"ignore mask {self.mask.path}" if self.mask is not None else f"ignore_label in {self.labels.path}"
        return (f"{how}: marks every pixel of {name} outside its objects as not annotated, so nothing there is known "
                "background to learn or score; mark only the part left unannotated (a mask never hides an object), "
                "or leave the image out of the splits")

    def read(self, t: int, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (ignore value made background) and ignored pixels of frame ``t`` in ``window``, ``(1, z, y, x)``."""
        mask = self.mask.read(t, window) if self.mask is not None else None
        return split_ignored(self.labels.read(t, window), mask, self.ignore_label)


class FrameTruth(NamedTuple):
    """What one frame's ground truth holds (:func:`_label_stats`)."""

    high: int
    """The largest label (the ignore value left out)."""
    labelled: bool
    """Whether it marks any object or class."""
    ignored: int
    """Pixels left unannotated."""
    background: int
    """Annotated background pixels, counted where something can be left unannotated (0 otherwise)."""


def _label_stats(
    truth: Truth, t: int, window: Window, *, ndim: int, n_classes: int | None, options: IngestParams
) -> FrameTruth:
    """Check frame ``t`` of a label map slab by slab and count what it holds."""
    high, labelled, ignored, background = 0, False, 0, 0
    labels = truth.labels
    spatial = (1,) + tuple(s.stop - s.start for s in window[3 - ndim :])
    depth = chunk_shape(spatial, ndim, itemsize=labels.dtype.itemsize, max_slab_bytes=options.max_slab_bytes)[1]
    for sub, _ in slab_windows(window, ndim=ndim, depth=max(depth, 1)):
        block, unannotated = truth.read(t, sub)
        high = max(high, check_label_block(block, labels.path, n_classes=n_classes))
        labelled = labelled or bool(block.any())
        ignored += int(np.count_nonzero(unannotated)) if unannotated is not None else 0
        background += int(np.count_nonzero((block == 0) & ~unannotated)) if unannotated is not None else 0
    return FrameTruth(high, labelled, ignored, background)


@dataclass(frozen=True)
class FrameLayout:
    """How one frame is stored: its axes, channel selection, label type and physical grid."""

    ndim: int
    channels: list[int] | None
    labels_dtype: np.dtype | None  # None: the frame has no ground truth
    labelled: bool  # the ground truth marks at least one object or class in this frame
    spacing: tuple[float, ...]
    unit: str
    classes: tuple[str, ...] = ()
    instances: bool = True
    ignored_pixels: int = 0  # pixels the ground truth leaves unannotated: labels/ignore is written when > 0
    channel_names: tuple[str, ...] | None = None  # the file's names of the channels stored (viewers show them)

    def plan(self, window: Window, options: IngestParams) -> GroupPlan:
        """The frame's pyramid levels, its origin in the source (a region's start) and its labels' meaning."""
        spatial = tuple(s.stop - s.start for s in window[3 - self.ndim :])
        factors = level_factors(spatial, self.spacing, levels=options.pyramid_levels(), min_size=options.pyramid_min_size)
        origin = tuple(float(s.start) * step for s, step in zip(window[3 - self.ndim :], self.spacing))
        return GroupPlan(factors=tuple(factors), origin=origin if any(origin) else None, channel_names=self.channel_names,
                         classes=self.classes or None, instances=self.instances)


def _write_frame(
    root: zarr.Group,
    name: str,
    image: Source,
    truth: Truth | None,
    t: int,
    *,
    window: Window,
    layout: FrameLayout,
    options: IngestParams,
) -> dict:
    ndim, channels, labels_dtype = layout.ndim, layout.channels, layout.labels_dtype
    spacing, unit = layout.spacing, layout.unit
    spatial = tuple(s.stop - s.start for s in window[3 - ndim :])
    n_channels = len(channels) if channels is not None else image.channels
    shape = (n_channels, *spatial)
    chunks = chunk_shape(shape, ndim, itemsize=image.dtype.itemsize, max_slab_bytes=options.max_slab_bytes)
    label_bytes = labels_dtype.itemsize if labels_dtype is not None else 0
    frame_bytes = int(np.prod(shape, dtype=np.int64)) * (image.dtype.itemsize + label_bytes)
    plan = layout.plan(window, options)
    if frame_bytes <= options.max_slab_bytes:  # small: read it whole, write the group in one go
        block = image.read(t, window)
        block = block[channels] if channels is not None else block
        block = block[:, 0] if ndim == 2 else block
        check_image_block(block, image.path)
        low, high = block.min(), block.max()
        digest = PixelDigest(block.dtype, block.shape)
        digest.update(block)
        label_block = ignore_block = None
        if truth is not None:
            label_block, ignored = truth.read(t, window)
            label_block = np.ascontiguousarray(_spatial(label_block, ndim).astype(labels_dtype, copy=False))
            if layout.ignored_pixels:
                ignore_block = np.ascontiguousarray(_spatial(ignored, ndim).astype(np.uint8))
            if layout.labelled and low == high:
                raise InputError(f"{image.path}: image is constant ({low}) but {truth.labels.path} labels objects in it")
        write_small_image_group(
            root, name, np.ascontiguousarray(block), label_block, ndim=ndim, spacing=spacing, unit=unit, chunks=chunks,
            plan=plan, ignore=ignore_block,
        )
        context = _write_context(root[name], image, t, window=window, layout=layout, options=options)
    else:
        context = {}  # a region too large to read whole keeps no context
        digest, (low, high) = _stream_frame(
            root, name, image, truth, t, window=window, layout=layout, plan=plan, options=options
        )
    return {
        "name": name,
        "shape": list(shape),
        "spacing": list(spacing),
        "unit": unit,
        "dtype": str(image.dtype),
        "labels_dtype": str(labels_dtype) if labels_dtype is not None else None,
        "chunks": list(chunks),
        "has_objects": layout.labelled if labels_dtype is not None else None,
        "levels": [list(f) for f in plan.factors],
        "origin": list(plan.origin) if plan.origin is not None else None,
        "pixels_sha256": None if low == high else digest.hexdigest(),
    } | context


#: Pixels of the source image kept around a region on every side (fewer where the image ends): the
#: region is predicted inside them, so windows at its edges see the image beyond it, not padding.
CONTEXT = 128


def _write_context(
    group: zarr.Group, image: Source, t: int, *, window: Window, layout: FrameLayout, options: IngestParams
) -> dict:
    """The image around a region (``window`` cut from a larger frame), up to :data:`CONTEXT` pixels on every
    side, as array ``context`` of the region's group; its info: ``context_offset``, where the region starts
    in it per spatial axis. Nothing (``{}``) for a whole frame, or where the context would not fit in one slab."""
    ndim, full = layout.ndim, image.spatial
    spatial = window[3 - ndim :]
    sizes = full[3 - ndim :]
    if all(s.start == 0 and s.stop == n for s, n in zip(spatial, sizes)):
        return {}
    around = tuple(slice(max(0, s.start - CONTEXT), min(n, s.stop + CONTEXT)) for s, n in zip(spatial, sizes))
    channels = len(layout.channels) if layout.channels is not None else image.channels
    if channels * int(np.prod([s.stop - s.start for s in around], dtype=np.int64)) * image.dtype.itemsize > options.max_slab_bytes:
        return {}
    block = image.read(t, (*window[: 3 - ndim], *around))
    block = block[layout.channels] if layout.channels is not None else block
    block = np.ascontiguousarray(block[:, 0] if ndim == 2 else block)
    check_image_block(block, image.path)
    array = create_array(group, "context", shape=block.shape, dtype=block.dtype, ndim=ndim, chunks=block.shape)
    array[...] = block
    return {"context_offset": [s.start - a.start for s, a in zip(spatial, around)]}


def _spatial(block: np.ndarray, ndim: int) -> np.ndarray:
    """A ``(1, z, y, x)`` block as ``([z,] y, x)``."""
    return block[0, 0] if ndim == 2 else block[0]


class PixelDigest:
    """SHA-256 of an image's decoded pixels, fed ``(C, [z,] y, x)`` slabs along the first spatial axis.

    The dtype and shape come first, then the values with the first spatial axis outermost, so a
    frame digested whole or slab by slab gives the same digest. Two files with other bytes
    (compression, tags, another container) but the same pixels have the same digest.
    """

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]):
        self._hash = hashlib.sha256(f"{np.dtype(dtype).str}{tuple(shape)}".encode())

    def update(self, block: np.ndarray) -> None:
        self._hash.update(np.ascontiguousarray(np.moveaxis(block, 0, 1)).data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _stream_frame(
    root: zarr.Group,
    name: str,
    image: Source,
    truth: Truth | None,
    t: int,
    *,
    window: Window,
    layout: FrameLayout,
    plan: GroupPlan,
    options: IngestParams,
) -> tuple[PixelDigest, tuple]:
    """Write a frame too large for one slab: image, then labels (and the ignore map), slab by
    slab, with their pyramid levels; returns the image's pixel digest and ``(min, max)``."""
    ndim, spacing, unit, labels_dtype = layout.ndim, layout.spacing, layout.unit, layout.labels_dtype
    group = root.create_group(
        name,
        attributes=ome_image_attrs(
            ndim=ndim, channels=True, spacing=spacing, unit=unit, name=name, factors=plan.factors, origin=plan.origin
        ),
    )
    digest = PixelDigest(image.dtype, (len(layout.channels) if layout.channels is not None else image.channels,
                                       *(s.stop - s.start for s in window[3 - ndim :])))
    copied = copy_image(
        group, image, t, window=window, ndim=ndim, channels=layout.channels, options=options, digest=digest,
        factors=plan.factors,
    )
    group.attrs["ome"] = {**group.attrs["ome"], "omero": plan.omero(copied.windows)}
    low, high = copied.low, copied.high
    if truth is None:
        return digest, (low, high)
    if layout.labelled and low == high:
        raise InputError(f"{image.path}: image is constant ({low}) but {truth.labels.path} labels objects in it")
    listed = (GT_NAME, IGNORE_NAME) if layout.ignored_pixels else (GT_NAME,)
    labels_attrs, gt_attrs = label_image_attrs(GT_NAME, ndim=ndim, spacing=spacing, unit=unit, plan=plan, listed=listed)
    label_root = group.create_group("labels", attributes=labels_attrs)
    gt = label_root.create_group(GT_NAME, attributes=gt_attrs)
    stream = dict(like=copied.array, plan=plan, ndim=ndim, window=window, prefetch=options.prefetch)
    _stream_label_image(gt, read=lambda sub: truth.read(t, sub)[0], dtype=labels_dtype, **stream)
    if layout.ignored_pixels:
        _, ignore_attrs = label_image_attrs(IGNORE_NAME, ndim=ndim, spacing=spacing, unit=unit, plan=plan, listed=listed)
        ignore_group = label_root.create_group(IGNORE_NAME, attributes=ignore_attrs)
        _stream_label_image(ignore_group, read=lambda sub: truth.read(t, sub)[1], dtype=np.uint8, **stream)
    return digest, (low, high)



def _stream_label_image(group, *, read, dtype, like, plan, ndim: int, window, prefetch) -> None:
    """``read(sub)`` streamed into ``group``'s ``s0`` as ``dtype`` (shaped and chunked like the
    image ``like`` without its channels), its picked pyramid levels fed as the slabs pass."""
    array = create_array(group, IMAGE_LEVEL, shape=like.shape[1:], dtype=dtype, ndim=ndim, chunks=like.chunks[1:])
    levels = chain(create_levels(group, array, plan.factors, ndim=ndim), steps_between(plan.factors), reduce=pick, ndim=ndim)

    def cast(block: np.ndarray, _) -> np.ndarray:
        block = block.astype(dtype, copy=False)
        if levels is not None:
            levels.push(block)
        return block

    stream_copy(read, array, window=window, ndim=ndim, channels=False, on_block=cast, prefetch=prefetch)
    if levels is not None:
        levels.close()

@dataclass(frozen=True)
class Copied:
    """What :func:`copy_image` wrote: the full-resolution array, the image's range and each channel's."""

    array: zarr.Array
    low: object
    high: object
    windows: list[tuple[float, float]]


def copy_image(
    group: zarr.Group,
    image: Source,
    t: int,
    *,
    window: Window,
    ndim: int,
    channels: list[int] | None,
    options: IngestParams,
    digest: PixelDigest | None = None,
    factors=None,
) -> Copied:
    """Stream frame ``t`` of ``image`` (inside ``window``) into ``group/s0``, refusing NaN and Inf;
    ``digest`` is fed every slab, in order. The levels of ``factors`` (``s1``, ...; none by
    default) are averaged from the slabs as they pass.
    """
    spatial = tuple(s.stop - s.start for s in window[3 - ndim :])
    n_channels = len(channels) if channels is not None else image.channels
    shape = (n_channels, *spatial)
    chunks = chunk_shape(shape, ndim, itemsize=image.dtype.itemsize, max_slab_bytes=options.max_slab_bytes)
    array = create_array(group, IMAGE_LEVEL, shape=shape, dtype=image.dtype, ndim=ndim, chunks=chunks)
    factors = factors or [(1,) * ndim]
    levels = chain(create_levels(group, array, factors, ndim=ndim), steps_between(factors), reduce=average, ndim=ndim)
    levels = Beside(levels) if levels is not None else None
    windows: list[list] = [[None, None] for _ in range(n_channels)]

    def read(sub: Window) -> np.ndarray:
        block = image.read(t, sub)
        return block[channels] if channels is not None else block

    def check(block: np.ndarray, offset: tuple[int, ...]) -> None:
        check_image_block(block, image.path, offset=offset)
        for window_c, (lo, hi) in zip(windows, channel_windows(block)):
            window_c[0] = lo if window_c[0] is None else min(window_c[0], lo)
            window_c[1] = hi if window_c[1] is None else max(window_c[1], hi)
        if digest is not None:
            digest.update(block)
        if levels is not None:
            levels.push(block)

    stream_copy(read, array, window=window, ndim=ndim, channels=True, on_block=check, prefetch=options.prefetch)
    if levels is not None:
        levels.close()
    low = image.dtype.type(min(w[0] for w in windows))
    high = image.dtype.type(max(w[1] for w in windows))
    return Copied(array, low, high, [(w[0], w[1]) for w in windows])


def _moved(affine, image: Source, window: Window) -> list[list[float]] | None:
    """A NIfTI transform of ``image`` (its affine, its qform), moved to the window's first voxel."""
    if affine is None:
        return None
    affine = np.array(affine, dtype=float)
    start = {"Z": window[0].start, "Y": window[1].start, "X": window[2].start}
    file_axes = [a for a in image.meta.axes if a in "ZYX"][:3]
    offset = np.array([start[a] for a in file_axes] + [0] * (3 - len(file_axes)), dtype=float)
    affine[:3, 3] += affine[:3, :3] @ offset
    return affine.tolist()

