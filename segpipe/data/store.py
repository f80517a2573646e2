"""The dataset store: one zarr v3 group per dataset, one OME-Zarr image per catalog image.

Layout::

    data.zarr/                   root; attrs["segpipe"] describes the dataset and its images
      OME/                       the list of images, for viewers (segpipe.data.collection)
      <image name>/              OME-Zarr (NGFF 0.5) image: multiscales with axes, scale per level
                                 (and a region's translation), omero channel names
        s0, s1, ...              image, (c, [z,] y, x), source dtype; s1... averaged (segpipe.data.pyramid)
        labels/gt/s0, s1, ...    ground truth, ([z,] y, x), unsigned integers; s1... picked voxels
        labels/ignore/s0, s1, ...  sparse ground truth only: 1 where nothing is annotated, uint8;
                                 s1... picked voxels, like the ground truth's
        labels/predicted-*       predicted label maps, copied here by prediction

The record's ``images`` list has, per image: ``name``, ``split``, ``shape``, ``spacing``
(``[z,] y, x``), ``unit``, ``affine`` (NIfTI sources: the source's voxel-to-world matrix in
its own ``i, j, k`` order, moved to the image's first voxel), ``source``/``labels_source``,
``region``, ``origin`` (a region's start in physical units, ``None`` at zero), ``levels``
(each pyramid level's factor per spatial axis), ``ignore_source`` (the ignore mask file),
``ignored_pixels`` (pixels of ``labels/ignore``, which exists only when there are some),
``frame`` (time point of a 2D+t or 3D+t file), ``plane`` (z of a per-plane
annotation), ``source_axes``, ``dtype``, ``labels_dtype``, ``chunks``, ``has_objects`` (whether the ground
truth marks anything; ``None`` without ground truth) and ``pixels_sha256`` (a digest of the
decoded image, ``None`` for a constant one: the same pixels saved twice are found by it). ``sources`` holds
size, time and SHA-256 of every file read, for the fingerprint.

Readers never see a half-written store: ingest writes under a temporary name and renames it
into place, and :func:`open_store` refuses a store without its completion record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from segpipe.data import ngff
from segpipe.data.pyramid import average, downsample_all, level_shape, pick
from segpipe.data.readers.units import length_factor
from segpipe.errors import StoreError, StoreNotFound

IMAGE_LEVEL = "s0"
GT_NAME = "gt"
IGNORE_NAME = "ignore"
IGNORE_CLASSES = ("annotated", "not annotated")  # the values 0 and 1 of labels/ignore
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def wait_for_writes(timeout: float = 120.0) -> None:
    """Wait until the writes zarr has in flight in this process have ended.

    zarr writes the chunks of one assignment concurrently on its event loop; when one fails (a
    full disk) the assignment raises at once while the others go on. Call this before removing a
    store that failed, or those writes put its folders back after the removal.
    """
    loop = getattr(zarr.core.sync, "loop", [None])[0]
    if loop is None or not loop.is_running():
        return

    async def settle() -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(settle(), loop).result(timeout + 5)


@dataclass(frozen=True)
class StoredImage:
    """One image of a store, opened lazily (zarr arrays, not loaded)."""

    name: str
    split: str
    image: zarr.Array
    labels: zarr.Array | None
    spacing: tuple[float, ...]
    info: dict
    ignore: zarr.Array | None = None  # 1 where the ground truth annotates nothing (sparse ground truth)
    context: zarr.Array | None = None  # a region's surroundings in its source image (segpipe.data.ingest.record.CONTEXT)

    @property
    def in_context(self) -> tuple[slice, ...]:
        """Where the image lies in :attr:`context`, per spatial axis."""
        offset = self.info["context_offset"]
        return tuple(slice(o, o + n) for o, n in zip(offset, self.image.shape[-len(offset) :]))

    def spacing_in(self, unit: str, *, default_unit: str | None = None) -> tuple[float, ...]:
        """The pixel size in ``unit``, converted from the image's own unit (else ``default_unit``,
        else taken to be ``unit``)."""
        factor = length_factor(self.info.get("unit") or default_unit or unit, unit)
        return tuple(float(s) * factor for s in self.spacing)

    @property
    def spacing_guessed(self) -> bool:
        """Whether the file gave no pixel size, so ingest took 1 per pixel."""
        return self.info.get("spacing_source") == "default"

    def ignored(self) -> np.ndarray | None:
        """The pixels the ground truth leaves unannotated (``bool``), or ``None`` when it annotates all of them."""
        return None if self.ignore is None else np.asarray(self.ignore) > 0


def chunk_shape(
    shape: tuple[int, ...],
    ndim: int,
    *,
    spatial_chunk: int | None = None,
    itemsize: int | None = None,
    max_slab_bytes: int | None = None,
) -> tuple[int, ...]:
    """Chunks sized for sliding windows: whole channels, 256 px in 2D or 64^3 voxels in 3D.

    Ingest streams a stack one row of chunks (a *slab*: the chunk depth of the first spatial
    axis, all of the others) at a time. When ``itemsize`` and ``max_slab_bytes`` are given and
    a 64-plane slab would exceed the budget, 3D chunks get fewer planes and wider in-plane
    edges (about the same voxels per chunk), so peak memory stays bounded whatever the size.
    """
    lead = tuple(shape[: len(shape) - ndim])
    spatial = tuple(shape[-ndim:])
    if spatial_chunk is not None:
        return lead + tuple(min(spatial_chunk, s) for s in spatial)
    if ndim == 2:
        edges = [256, 256]
        if itemsize and max_slab_bytes:
            row_bytes = int(np.prod(lead, dtype=np.int64)) * spatial[1] * itemsize
            edges[0] = int(max(16, min(256, max_slab_bytes // max(row_bytes, 1))))
        return lead + tuple(min(e, s) for e, s in zip(edges, spatial))
    depth, edge = 64, 64
    if itemsize and max_slab_bytes:
        plane_bytes = int(np.prod(lead, dtype=np.int64)) * spatial[1] * spatial[2] * itemsize
        depth = int(max(1, min(64, max_slab_bytes // max(plane_bytes, 1))))
        edge = 64 if depth >= 32 else 128 if depth >= 8 else 256
    return lead + (min(depth, spatial[0]), min(edge, spatial[1]), min(edge, spatial[2]))


def axes_for(ndim: int, *, channels: bool) -> list[dict]:
    """NGFF axes: optional channel axis, then ``(z,) y, x`` in space."""
    names = ["z", "y", "x"][-ndim:]
    axes = [{"name": n, "type": "space"} for n in names]
    return ([{"name": "c", "type": "channel"}] if channels else []) + axes


def write_ome_metadata(
    group: zarr.Group,
    *,
    ndim: int,
    channels: bool,
    spacing,
    unit: str,
    name: str,
    factors=None,
    frames: int = 0,
    origin=None,
    averaged: bool = True,
    omero: dict | None = None,
) -> None:
    """Write NGFF 0.5 ``multiscales`` (levels of ``factors``, default the full resolution only) in ``group``.

    ``averaged``: the levels are block means (images), else picked voxels (label maps).
    """
    attrs = ngff.multiscale_attrs(
        name=name, ndim=ndim, spacing=spacing, unit=unit, factors=factors or [(1,) * ndim], channels=channels,
        frames=frames, origin=origin, averaged=averaged,
    )
    if omero is not None:
        attrs["ome"]["omero"] = omero
    group.attrs["ome"] = {**group.attrs.get("ome", {}), **attrs["ome"]}


def ome_image_attrs(
    *, ndim: int, channels: bool, spacing, unit: str, name: str, factors=None, origin=None, omero: dict | None = None
) -> dict:
    """The attributes of an image group: multiscales of averaged levels, and ``omero`` channels if given."""
    attrs = ngff.multiscale_attrs(
        name=name, ndim=ndim, spacing=spacing, unit=unit, factors=factors or [(1,) * ndim], channels=channels,
        origin=origin, averaged=True,
    )
    if omero is not None:
        attrs["ome"]["omero"] = omero
    return attrs


def ome_label_attrs(
    *,
    ndim: int,
    spacing,
    unit: str,
    name: str = GT_NAME,
    listed: Sequence[str] | None = None,
    factors=None,
    origin=None,
    classes=None,
    instances: bool = True,
) -> tuple[dict, dict]:
    """Attributes of the ``labels`` group (listing ``listed``, default ``name`` alone) and of its
    label image ``name``.

    The label image has picked-voxel levels of ``factors`` and ``image-label`` metadata: class
    colours and names for a class map (``instances`` false), its source image for both kinds.
    """
    image = ngff.multiscale_attrs(
        name=name, ndim=ndim, spacing=spacing, unit=unit, factors=factors or [(1,) * ndim], channels=False,
        origin=origin, averaged=False,
    )
    image["ome"]["image-label"] = ngff.image_label(classes, instances=instances)
    return ngff.labels_group_attrs(list(listed or [name])), image


def create_levels(group: zarr.Group, base: zarr.Array, factors, *, ndim: int) -> list[zarr.Array]:
    """Arrays ``s1, s2, ...`` in ``group`` for the levels of ``factors`` below ``base`` (``s0``): its dtype,
    chunks (cut to the level's shape) and dimension names."""
    lead = tuple(base.shape[: base.ndim - ndim])
    names = getattr(base.metadata, "dimension_names", None)
    arrays = []
    for level, factor in enumerate(list(factors)[1:], start=1):
        shape = lead + level_shape(base.shape[base.ndim - ndim :], factor)
        chunks = tuple(min(c, s) for c, s in zip(base.chunks, shape))
        arrays.append(group.create_array(
            ngff.level_path(level), shape=shape, dtype=base.dtype, chunks=chunks, compressors=COMPRESSOR,
            dimension_names=list(names) if names else None, overwrite=True,
        ))
    return arrays


def array_options(shape, ndim: int, chunks=None) -> dict:
    """Chunks, compressor and NGFF ``dimension_names`` of a store array (``c`` first if it has one)."""
    chunks = tuple(chunks) if chunks is not None else chunk_shape(tuple(shape), ndim)
    names = [a["name"] for a in axes_for(ndim, channels=len(shape) > ndim)]
    return {"chunks": chunks, "compressors": COMPRESSOR, "dimension_names": names}


def create_array(group: zarr.Group, name: str, *, shape, dtype, ndim: int, chunks=None) -> zarr.Array:
    """A chunked, lz4-compressed array in ``group`` (chunks from :func:`chunk_shape` by default).

    Its zarr ``dimension_names`` are the NGFF axis names, as NGFF 0.5 requires.
    """
    return group.create_array(name, shape=shape, dtype=dtype, **array_options(shape, ndim, chunks))


@dataclass(frozen=True)
class GroupPlan:
    """How an image group is laid out beyond its pixels.

    Attributes:
        factors: Pyramid levels, as factors against the full resolution per spatial axis
            (:func:`segpipe.data.pyramid.level_factors`); ``((1, ...),)``: ``s0`` only.
        origin: Where the image's first pixel lies in a larger image it was cut from, in
            physical units per spatial axis (``None``: at zero).
        channel_names: Name of each stored channel (``None``: ``channel 0``, ``channel 1``, ...).
        classes: Class names of the ground truth (for its colours and names when it is a class map).
        instances: Whether the ground truth holds objects rather than classes.
    """

    factors: tuple[tuple[int, ...], ...]
    origin: tuple[float, ...] | None = None
    channel_names: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    instances: bool = True

    def omero(self, windows: list[tuple[float, float]]) -> dict:
        """``omero`` channels for display ranges ``windows`` (one per channel)."""
        names = self.channel_names or (
            ("image",) if len(windows) == 1 else tuple(f"channel {i}" for i in range(len(windows)))
        )
        return ngff.omero(names, windows)


def channel_windows(block: np.ndarray) -> list[tuple[float, float]]:
    """``(min, max)`` of each channel of a ``(C, ...)`` block."""
    flat = block.reshape(block.shape[0], -1)
    return [(float(low), float(high)) for low, high in zip(flat.min(axis=1), flat.max(axis=1))]


def write_small_image_group(
    root: zarr.Group,
    name: str,
    image: np.ndarray,
    labels: np.ndarray | None,
    *,
    ndim: int,
    spacing,
    unit: str,
    chunks,
    plan: GroupPlan | None = None,
    ignore: np.ndarray | None = None,
) -> None:
    """Write an in-memory image, its labels (if any) and their ignore mask (if any: ``uint8``, 1 =
    not annotated) as an OME-Zarr image group, built in memory first.

    zarr spends far more on each store call than a small image's bytes cost (every call is
    a hand-over to its event loop, and each file of a local store another to a thread), so
    the nodes (the groups with their attributes, the arrays of every level) and the chunks
    are made by zarr in a :class:`~zarr.storage.MemoryStore` and then written out key by key:
    as plain files when ``root`` lives in a local directory, through the store's API otherwise.
    The pyramid levels of ``plan`` are computed in memory (averaged image; picked labels and
    ignore mask).
    """
    from zarr.core.group import GroupMetadata

    plan = plan or GroupPlan(factors=((1,) * ndim,))
    attrs = ome_image_attrs(ndim=ndim, channels=True, spacing=spacing, unit=unit, name=name, factors=plan.factors,
                            origin=plan.origin, omero=plan.omero(channel_windows(image)))
    images = [image, *downsample_all(image, plan.factors, average)]
    nodes = {name: GroupMetadata(attributes=attrs)}
    arrays = {}
    for level, pixels in enumerate(images):
        key = f"{name}/{ngff.level_path(level)}"
        nodes[key] = _array_metadata(pixels.shape, pixels.dtype.str, ndim, _cut(chunks, pixels.shape, level))
        arrays[key] = pixels
    if labels is not None:
        maps = {GT_NAME: labels} | ({IGNORE_NAME: ignore.astype(np.uint8, copy=False)} if ignore is not None else {})
        for label_name, label_map in maps.items():
            labels_attrs, label_attrs = label_image_attrs(label_name, ndim=ndim, spacing=spacing, unit=unit,
                                                          plan=plan, listed=list(maps))
            nodes[f"{name}/labels"] = GroupMetadata(attributes=labels_attrs)
            nodes[f"{name}/labels/{label_name}"] = GroupMetadata(attributes=label_attrs)
            for level, pixels in enumerate([label_map, *downsample_all(label_map, plan.factors, pick)]):
                key = f"{name}/labels/{label_name}/{ngff.level_path(level)}"
                nodes[key] = _array_metadata(pixels.shape, pixels.dtype.str, ndim, _cut(chunks[1:], pixels.shape, level))
                arrays[key] = pixels
    built: dict = {}
    made = dict(zarr.create_hierarchy(store=zarr.storage.MemoryStore(built), nodes=nodes))
    for key, pixels in arrays.items():
        made[key][...] = pixels
    # zarr also made the root above ``name`` in memory: writing it would replace ``root``'s
    # zarr.json (and its attributes) in place while other processes may be reading it
    _copy_keys({key: value for key, value in built.items() if key.startswith(f"{name}/")}, root)


def label_image_attrs(
    name: str, *, ndim: int, spacing, unit: str, plan: GroupPlan, listed: Sequence[str]
) -> tuple[dict, dict]:
    """:func:`ome_label_attrs` of label image ``name`` of an ingested image laid out by ``plan``:
    the ground truth carries the dataset's classes, the ignore map its own two (annotated, not)."""
    classes, instances = (plan.classes, plan.instances) if name != IGNORE_NAME else (IGNORE_CLASSES, False)
    return ome_label_attrs(ndim=ndim, spacing=spacing, unit=unit, name=name, listed=listed, factors=plan.factors,
                           origin=plan.origin, classes=classes, instances=instances)


def _cut(chunks, shape, level: int) -> tuple[int, ...]:
    """``chunks`` as given for the full resolution, cut to the shape of a smaller level."""
    return tuple(int(c) if level == 0 else min(int(c), int(s)) for c, s in zip(chunks, shape))


def _copy_keys(built: dict, root: zarr.Group) -> None:
    """Write ``built`` (store key -> zarr buffer) under ``root``'s path in its store."""
    prefix = f"{root.path}/" if root.path else ""
    if isinstance(root.store, zarr.storage.LocalStore):
        base = Path(root.store.root)
        for key, buffer in built.items():
            path = base / f"{prefix}{key}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buffer.to_bytes())
        return
    for key, buffer in built.items():
        zarr.core.sync.sync(root.store.set(f"{prefix}{key}", buffer))


@functools.lru_cache(maxsize=256)
def _array_metadata(shape: tuple[int, ...], dtype: str, ndim: int, chunks: tuple[int, ...]):
    """The zarr metadata :func:`create_array` would write, made once per shape on a scratch store."""
    scratch = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    return create_array(scratch, "a", shape=shape, dtype=np.dtype(dtype), ndim=ndim, chunks=chunks).metadata


def open_store(path: str | Path) -> tuple[zarr.Group, dict]:
    """Open a complete store read-only; returns the root group and its ``segpipe`` record.

    Raises:
        StoreError: No store there, or one that ingest did not finish.
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreNotFound(f"{path}: no zarr store here; run `segpipe ingest` first")
    root = zarr.open_group(str(path), mode="r")
    record = root.attrs.get("segpipe")
    if not record or not record.get("complete"):
        raise StoreError(f"{path}: store is incomplete (interrupted ingest?); run `segpipe ingest` again")
    return root, record


def read_record(path: str | Path) -> dict | None:
    """The ``segpipe`` record of a complete store, or ``None`` if there is none."""
    try:
        return open_store(path)[1]
    except (StoreError, json.JSONDecodeError, FileNotFoundError):
        return None


class ImageStore:
    """A complete dataset store, read-only: images, ground truth where there is any, and the record.

    Open one with :meth:`open`; every stage that reads images takes an ``ImageStore``.
    """

    def __init__(self, path: Path, root: zarr.Group, record: dict):
        self.path = path
        self.root = root
        self.record = record

    @classmethod
    def open(cls, path: str | Path) -> ImageStore:
        """Open the store at ``path``; :class:`StoreError` when there is none or it is incomplete."""
        root, record = open_store(path)
        return cls(Path(path), root, record)

    @property
    def name(self) -> str:
        """The catalog dataset the store was ingested from."""
        return self.record["dataset"]

    @property
    def ndim(self) -> int:
        return int(self.record["ndim"])

    @property
    def classes(self) -> list[str]:
        return list(self.record["classes"])

    @property
    def instances(self) -> bool:
        return bool(self.record["instances"])

    @property
    def unit(self) -> str:
        return self.record.get("unit") or "micrometer"

    @property
    def labelled(self) -> bool:
        """Whether the dataset has ground truth (every image then has labels)."""
        return self.record.get("labelled", True)

    def require_labels(self, what: str) -> None:
        """Refuse to ``what`` (train on, score) a store without ground truth."""
        if not self.labelled:
            raise StoreError(
                f"{self.path}: dataset {self.name!r} has no ground truth (no labels in the catalog): "
                f"it can be segmented, but not used to {what}"
            )

    def names(self, split: str | None = None, *, labelled: bool | None = None) -> list[str]:
        """Image names, optionally of one split and only those with (or without) ground truth, in catalog order."""
        return [info["name"] for info in self._infos(split, labelled)]

    def images(self, split: str | None = None, *, labelled: bool | None = None) -> list[StoredImage]:
        """Images (opened lazily), filtered as :meth:`names` is."""
        return [self._stored(info) for info in self._infos(split, labelled)]

    def _infos(self, split: str | None, labelled: bool | None) -> list[dict]:
        return [
            info for info in self.record["images"]
            if (split is None or info["split"] == split)
            and (labelled is None or (info.get("labels_source") is not None) == labelled)
        ]

    def image(self, name: str) -> StoredImage:
        """One image by name."""
        info = next((info for info in self.record["images"] if info["name"] == name), None)
        if info is None:
            raise StoreError(f"{self.path}: no image named {name!r}")
        return self._stored(info)

    def _stored(self, info: dict) -> StoredImage:
        group = self.root[info["name"]]
        labels = group[f"labels/{GT_NAME}/{IMAGE_LEVEL}"] if info.get("labels_source") is not None else None
        ignore = group[f"labels/{IGNORE_NAME}/{IMAGE_LEVEL}"] if labels is not None and info.get("ignored_pixels") else None
        context = group["context"] if info.get("context_offset") is not None else None
        return StoredImage(info["name"], info["split"], group[IMAGE_LEVEL], labels, tuple(info["spacing"]), info, ignore, context)


def array_digest(array: zarr.Array) -> str:
    """SHA-256 of a zarr array's stored files (metadata and compressed chunks), without decoding them."""
    root = getattr(array.store, "root", None)
    digest = hashlib.sha256()
    if root is None:  # an in-memory store: hash the values
        digest.update(np.ascontiguousarray(array[...]).tobytes())
        return digest.hexdigest()
    folder = Path(str(root)) / array.path
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()
