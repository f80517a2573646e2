"""Ingest a catalog dataset into its zarr store, atomically and only when the sources changed."""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from tqdm.auto import tqdm

from segpipe import __version__
from segpipe.catalog import Dataset, ImageRecord
from segpipe.errors import InputError
from segpipe.readers import ImageData, read_image
from segpipe.store import read_record, write_image_group
from segpipe.validate import check_image, check_labels, check_pair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_dataset` did."""

    store: Path
    fingerprint: str
    skipped: bool
    n_images: int


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def dataset_fingerprint(dataset: Dataset) -> str:
    """Digest of the entry's settings and every source file's content."""
    digest = hashlib.sha256(dataset.entry.model_dump_json().encode())
    for path in sorted({p for r in dataset.records for p in (r.image, r.labels)}):
        digest.update(str(path.relative_to(dataset.root) if path.is_relative_to(dataset.root) else path).encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def ingest_dataset(dataset: Dataset, store: str | Path, *, force: bool = False, progress: bool = True) -> IngestResult:
    """Write ``dataset`` into the zarr store at ``store``.

    An unchanged dataset (same fingerprint) is left alone unless ``force``. The new store is
    written next to the target under a temporary name and renamed into place, so an
    interrupted ingest never leaves a store that looks complete.

    Raises:
        InputError: A source file is unreadable or its content is refused.
    """
    store = Path(store)
    fingerprint = dataset_fingerprint(dataset)
    existing = read_record(store)
    if not force and existing and existing.get("fingerprint") == fingerprint:
        log.info("%s: store %s is up to date, nothing to ingest", dataset.name, store)
        return IngestResult(store, fingerprint, True, len(existing["images"]))

    store.parent.mkdir(parents=True, exist_ok=True)
    partial = store.with_name(f".{store.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        root = zarr.open_group(str(partial), mode="w")
        infos = []
        cache: dict[Path, tuple[ImageData, np.ndarray]] = {}
        for record in tqdm(dataset.records, desc=f"ingest {dataset.name}", unit="image", disable=not progress):
            infos.append(_ingest_record(root, dataset, record, cache))
        root.attrs["segpipe"] = _store_record(dataset, fingerprint, infos)
        _replace(partial, store)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    log.info("%s: ingested %d images into %s", dataset.name, len(infos), store)
    return IngestResult(store, fingerprint, False, len(infos))


def _store_record(dataset: Dataset, fingerprint: str, infos: list[dict]) -> dict:
    entry = dataset.entry
    return {
        "complete": True,
        "dataset": dataset.name,
        "fingerprint": fingerprint,
        "segpipe_version": __version__,
        "ndim": entry.ndim,
        "classes": entry.classes,
        "instances": entry.instances,
        "unit": entry.unit,
        "ground_truth": entry.ground_truth,
        "description": entry.description,
        "images": infos,
    }


def _replace(partial: Path, store: Path) -> None:
    """Move the finished store into place; the old one goes only once the new one is there."""
    old = store.with_name(f".{store.name}.old-{uuid.uuid4().hex[:8]}")
    if store.exists():
        store.rename(old)
    partial.rename(store)
    if old.exists():
        shutil.rmtree(old)


def _load_pair(dataset: Dataset, record: ImageRecord) -> tuple[ImageData, np.ndarray]:
    entry = dataset.entry
    image = read_image(record.image, fmt=entry.format, ndim=entry.ndim, channel_axis=entry.channel_axis)
    check_image(image.array, record.image)
    labels = read_image(record.labels, fmt=entry.format, ndim=entry.ndim)
    n_classes = None if entry.instances else len(entry.classes)
    label_array = check_labels(labels.array, record.labels, n_classes=n_classes)
    check_pair(image.array, label_array, record.image, record.labels, ndim=entry.ndim)
    if image.spacing and labels.spacing and not np.allclose(image.spacing, labels.spacing, rtol=1e-3):
        raise InputError(
            f"{record.image} has spacing {image.spacing} but its labels {record.labels} have {labels.spacing}"
        )
    return image, label_array


def _ingest_record(root: zarr.Group, dataset: Dataset, record: ImageRecord, cache: dict) -> dict:
    entry = dataset.entry
    if record.image not in cache:
        cache.clear()  # a region split reads its single file once
        cache[record.image] = _load_pair(dataset, record)
    image, labels = cache[record.image]
    array = image.array if entry.channel_axis is not None else image.array[np.newaxis]
    if entry.channels is not None:
        if max(entry.channels) >= array.shape[0]:
            raise InputError(f"{record.image}: channels {entry.channels} requested, file has {array.shape[0]}")
        array = array[entry.channels]
    if record.region is not None:
        array, labels = _crop(array, labels, record)
    spacing = tuple(entry.spacing or image.spacing or (1.0,) * entry.ndim)
    write_image_group(root, record.name, array, labels, ndim=entry.ndim, spacing=spacing, unit=entry.unit)
    return {
        "name": record.name,
        "split": record.split,
        "source": str(record.image),
        "labels_source": str(record.labels),
        "region": [list(b) for b in record.region] if record.region else None,
        "shape": list(array.shape),
        "spacing": list(spacing),
        "affine": image.affine.tolist() if image.affine is not None else None,
    }


def _crop(array: np.ndarray, labels: np.ndarray, record: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
    shape = labels.shape
    for (start, stop), size in zip(record.region, shape):
        if stop > size:
            raise InputError(f"{record.image}: region {record.split} {record.region} exceeds the image shape {shape}")
    window = tuple(slice(a, b) for a, b in record.region)
    return array[(slice(None), *window)], labels[window]
