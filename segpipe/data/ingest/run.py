"""Ingest a catalog dataset into its zarr store: skip if unchanged, else build a new one atomically."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import zarr
from tqdm.auto import tqdm

from segpipe import __version__
from segpipe.data.catalog import Dataset
from segpipe.data.collection import Entry, write_collection
from segpipe.data.records import ImageRecord
from segpipe.errors import StoreError, naming
from segpipe.progress import bar_size
from segpipe.data.ingest.atomic import clean_stale, missing_folders, partial_path, remove_empty, replace_store
from segpipe.data.ingest.fingerprint import (
    FORMAT_VERSION,
    check_duplicates,
    check_pixel_duplicates,
    check_unchanged,
    collect_digests,
    fingerprint_of,
    remember_times,
)
from segpipe.data.ingest.params import MIB, IngestParams
from segpipe.data.ingest.processes import can_use_processes, ingest_in_processes
from segpipe.data.ingest.record import ingest_record
from segpipe.data.readers.units import sizes_text
from segpipe.data.store import read_record, wait_for_writes
from segpipe.data.validate import check_channels, check_objects

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_dataset` did."""

    store: Path
    fingerprint: str
    skipped: bool
    n_images: int


def ingest_dataset(
    dataset: Dataset,
    store: str | Path,
    params: IngestParams | None = None,
    *,
    progress: bool = True,
    warn_spacing: bool = True,
    mixed_channels_ok: bool = False,
) -> IngestResult:
    """Write ``dataset`` into the zarr store at ``store``.

    An unchanged dataset (same fingerprint) is left alone unless ``params.force``. The new store is
    written next to the target under a temporary name and renamed into place, so an
    interrupted ingest never leaves a store that looks complete; leftovers of a killed run
    are removed first. Images are ingested by a pool of threads, each streaming its image.

    Args:
        dataset: A resolved catalog entry.
        store: Where the store goes (``.../data.zarr``).
        params: Whether to rebuild an unchanged store; threads and memory.
        progress: Show a progress bar.
        warn_spacing: Warn about images with no pixel size in their file or the catalog (off for a
            caller that warns once for many datasets, as ``segpipe segment`` does).
        mixed_channels_ok: Accept images with different numbers of channels (``segpipe segment``,
            whose model check names the images a model cannot read); a dataset to train on or
            score is refused.

    Raises:
        StoreError: A file is where the store goes.
        InputError: A source file is unreadable or its content is refused, or (unless
            ``mixed_channels_ok``) the images have different numbers of channels.
    """
    options = params or IngestParams()
    store = Path(store)
    if store.exists() and not store.is_dir():  # before anything is written or moved
        raise StoreError(f"{store}: a file, where the store (a folder) goes; move it away and run again")
    clean_stale(store)
    existing = read_record(store)
    background: _Digests | None = None
    if existing is not None:
        digests = collect_digests(dataset, existing.get("sources"))
        fingerprint = fingerprint_of(dataset, digests)
        if not options.force and existing.get("fingerprint") == fingerprint:
            remember_times(store, existing, digests)
            log.info("%s: store %s is up to date, nothing to ingest", dataset.name, store)
            return IngestResult(store, fingerprint, True, len(existing["images"]))
    else:  # nothing to compare with: digest the sources while the store is written
        background = _Digests(dataset)

    partial = partial_path(store)
    made = missing_folders(store.parent)  # removed again if the ingest is refused: nothing half-written
    finished = False
    try:
        with naming(store):  # a failed write (a full disk) names the store, not nothing
            store.parent.mkdir(parents=True, exist_ok=True)
            root = zarr.open_group(str(partial), mode="w")
            infos = _ingest_all(root, partial, dataset, options, progress=progress)
            if background is not None:
                digests = background.result()
                fingerprint = fingerprint_of(dataset, digests)
            check_duplicates(dataset, digests)
            check_pixel_duplicates(infos)
            check_objects(infos)
            if not mixed_channels_ok:
                check_channels(infos)
            check_unchanged(dataset, digests)
            write_collection(root, [Entry.of_info(info) for info in infos])
            root.attrs["segpipe"] = _store_record(dataset, fingerprint, digests, infos)
            replace_store(partial, store)
            finished = True
    finally:
        if background is not None:
            background.join()
        if partial.exists():
            wait_for_writes()  # chunk writes still in flight after a failure would put it back
            shutil.rmtree(partial, ignore_errors=True)
        if not finished:
            remove_empty(made)
    log.info("%s: ingested %d images into %s", dataset.name, len(infos), store)
    if warn_spacing:
        _warn_default_spacing(dataset, infos)
        _warn_file_spacing_set_aside(dataset, infos)
    _warn_one_plane(dataset, infos)
    return IngestResult(store, fingerprint, False, len(infos))


def _warn_one_plane(dataset: Dataset, infos: list[dict]) -> None:
    """One warning for a 3D entry whose images all have one plane (2D files under ``ndim: 3``)."""
    if dataset.entry.ndim == 3 and infos and all(info["shape"][-3] == 1 for info in infos):
        log.warning(
            "%s: every image has one plane (Z) but the catalog says ndim: 3, so a 3D network would see one plane; "
            "set ndim: 2 for 2D images, or axes: (e.g. ZYX) if their planes were read as time points or channels",
            dataset.name,
        )


def _ingest_all(
    root: zarr.Group, path: Path, dataset: Dataset, options: IngestParams, *, progress: bool
) -> list[dict]:
    records = list(dataset.records)
    bar = tqdm(total=len(records), desc=f"ingest {dataset.name}", unit="image", disable=not progress, **bar_size())
    all_small = all(_memory_estimate(record, options) < options.max_slab_bytes for record in records)
    n_processes = options.n_processes(len(records), all_small=all_small)
    with bar:
        if n_processes > 1 and can_use_processes():
            log.info("%s: ingesting %d images in %d processes", dataset.name, len(records), n_processes)
            try:
                return ingest_in_processes(path, dataset, records, options, n_processes=n_processes, on_done=bar.update)
            except (BrokenProcessPool, BrokenPipeError) as err:
                log.warning(
                    "%s: worker processes failed (%s); ingesting in threads instead. A script that calls "
                    "ingest needs the `if __name__ == \"__main__\":` guard for worker processes.",
                    dataset.name, err,
                )
                bar.reset()
                root = zarr.open_group(str(path), mode="w")
        return _ingest_in_threads(root, dataset, records, options, on_done=bar.update)


def _ingest_in_threads(
    root: zarr.Group, dataset: Dataset, records: list[ImageRecord], options: IngestParams, *, on_done
) -> list[dict]:
    gate = _MemoryGate(int(options.memory_mib * MIB))

    def job(record: ImageRecord) -> list[dict]:
        with gate.hold(_memory_estimate(record, options)):
            return ingest_record(root, dataset, record, options)

    with ThreadPoolExecutor(max_workers=options.n_workers(len(records))) as pool:
        futures = [pool.submit(job, record) for record in records]
        for future in futures:
            future.add_done_callback(lambda f: on_done(1) if not f.cancelled() and not f.exception() else None)
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        except BaseException:  # a failed image, Ctrl-C or SIGTERM: the images not started are not started
            for future in futures:
                future.cancel()
            raise
        return [info for future in futures for info in future.result()]


def _memory_estimate(record: ImageRecord, options: IngestParams) -> int:
    """Pixel memory an image will hold: up to three slabs, or its files' size if smaller."""
    size = 0
    for path in (record.image, record.labels, record.ignore):
        if path is not None:
            size += path.stat().st_size if path.is_file() else options.max_slab_bytes
    return min(size, 3 * options.max_slab_bytes)


class _MemoryGate:
    """Lets threads go while the memory they declared fits in a budget (one always goes)."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, amount: int):
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + amount <= self.budget)
            self.used += amount
        try:
            yield
        finally:
            with self._cond:
                self.used -= amount
                self._cond.notify_all()


class _Digests(threading.Thread):
    """Digest the sources in a background thread (hashlib releases the GIL)."""

    def __init__(self, dataset: Dataset):
        super().__init__(name="segpipe-digests", daemon=True)
        self.dataset = dataset
        self._result: dict | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._result = collect_digests(self.dataset)
        except BaseException as err:  # re-raised in the caller's thread
            self._error = err

    def result(self) -> dict:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _warn_default_spacing(dataset: Dataset, infos: list[dict]) -> None:
    """One warning for the images whose pixel size nobody gave (neither the file nor the catalog)."""
    guessed = [info for info in infos if info.get("spacing_source") == "default"]
    if guessed:
        axes = ", ".join("zyx"[3 - dataset.entry.ndim :])
        first = guessed[0]
        taken = (f"the model's pixel size, {' x '.join(f'{float(v):g}' for v in first['spacing'])} {first['unit']}"
                 if dataset.assumed_spacing is not None else f"1 {first['unit']} per pixel")
        unit = dataset.entry.unit
        alone = (f" (unit: {unit} names the unit of a pixel size, and none is given: it is not used)"
                 if unit and dataset.entry.spacing is None and dataset.assumed_spacing is None else "")
        log.warning(
            "%s: %d image(s) have no pixel size in their file (first: %s); taking %s%s. If that is wrong, "
            "set spacing: [%s] (and unit:) in the catalog entry, or --spacing for segpipe segment: a model trained "
            "at another pixel size would see these images at the wrong scale",
            dataset.name, len(guessed), first["source"], taken, alone, axes,
        )


def _warn_file_spacing_set_aside(dataset: Dataset, infos: list[dict]) -> None:
    """One warning for the images whose file gives another pixel size than the catalog's ``spacing:``."""
    other = [info for info in infos if info.get("file_spacing")]
    if other:
        first = other[0]
        log.warning(
            "%s: %d image(s) give another pixel size in their file than spacing: in the catalog (first: %s, its file "
            "%s, the catalog %s %s); the catalog's is used, for the scale the network sees and for areas and volumes. "
            "If the files are right, remove spacing: from the catalog entry",
            dataset.name, len(other), first["source"], first["file_spacing"], sizes_text(first["spacing"]), first["unit"],
        )


def _store_record(dataset: Dataset, fingerprint: str, digests: dict, infos: list[dict]) -> dict:
    entry = dataset.entry
    units = {info["unit"] for info in infos}
    return {
        "complete": True,
        "dataset": dataset.name,
        "fingerprint": fingerprint,
        "format_version": FORMAT_VERSION,
        "segpipe_version": __version__,
        "ndim": entry.ndim,
        "classes": entry.classes,
        "instances": entry.instances,
        "labelled": any(info["labels_source"] is not None for info in infos),
        "unit": units.pop() if len(units) == 1 else (entry.unit or "micrometer"),
        "ground_truth": entry.ground_truth,
        "description": entry.description,
        "images": infos,
        "sources": digests,
    }
