"""Content fingerprints: a store records what it was made from, so unchanged sources are skipped.

The fingerprint digests the catalog entry (less its ``training`` overrides, which do not
change the store) and the SHA-256 of every source file. The store also keeps each file's size,
modification time and status-change time next to its digest; a file whose three are unchanged
is not read again, so checking a large dataset is a ``stat`` per file. The status-change time
(``st_ctime`` on Linux and macOS, which no copy can set; on Windows it is the creation time, and a
file overwritten in place keeps it) tells a file replaced by one of the same size copied with
its old modification time (``cp -p``, ``rsync -t``); a ``chmod`` or a rename changes it too, and
the file is then read once more, its digest unchanged.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from segpipe.data.catalog import Dataset
from segpipe.errors import InputError
from segpipe.data.readers.omezarr import is_ome_zarr
from segpipe.data.readers import natural_key

FORMAT_VERSION = 4  # bump when the store layout changes, so old stores are rebuilt


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, read in blocks.

    Raises:
        InputError: ``path`` is a pipe, socket or device (reading a pipe waits for a writer forever).
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise InputError(f"{path}: not a file (a pipe, socket or device); name image files")
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def source_files(dataset: Dataset) -> list[Path]:
    """Every file the dataset reads: images, labels, ignore masks, and the slices of slice folders."""
    paths: set[Path] = set()
    for record in dataset.records:
        for path in (record.image, record.labels, record.ignore):
            if path is None:
                continue
            if is_ome_zarr(path):  # every metadata and chunk file
                paths.update(p for p in path.rglob("*") if p.is_file())
            elif path.is_dir():
                paths.update(p for p in path.glob(dataset.entry.slice_glob) if p.is_file())
            else:
                paths.add(path)
    return sorted(paths, key=lambda p: [str(p.parent), *natural_key(p)])


def source_key(dataset: Dataset, path: Path) -> str:
    """How a file is named in the fingerprint: relative to the catalog root when inside it."""
    return str(path.relative_to(dataset.root)) if path.is_relative_to(dataset.root) else str(path)


def stat_of(path: Path) -> dict:
    """Size, modification time and status-change time (ns) of a file."""
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns}


def collect_digests(dataset: Dataset, known: dict | None = None, *, files: Iterable[Path] | None = None) -> dict:
    """``{key: {size, mtime_ns, sha256}}`` for the dataset's files.

    Args:
        dataset: The resolved dataset.
        known: The ``sources`` of an existing store; a file with the same size and times keeps
            its recorded digest instead of being read.
        files: Restrict to these files (default: all of :func:`source_files`).
    """
    known = known or {}
    out = {}
    for path in files if files is not None else source_files(dataset):
        key = source_key(dataset, path)
        try:
            out[key] = current_digest(path, known.get(key))
        except FileNotFoundError as err:
            raise InputError(f"{path}: file disappeared during ingest") from err
    return out


def current_digest(path: Path, known: dict | None = None) -> dict:
    """``{size, mtime_ns, ctime_ns, sha256}`` of a file: ``known`` (an entry of a store's ``sources``)
    where the file's size and times are still those, without reading it; else the file is read
    (a store made before ``ctime_ns`` was recorded reads each file once more)."""
    now = stat_of(path)
    if known and known.get("sha256") and all(known.get(key) == value for key, value in now.items()):
        return known
    return {**now, "sha256": file_digest(path)}


def remember_times(store: Path, record: dict, digests: dict) -> None:
    """Record in ``store`` the sizes and times of files whose bytes its record already holds (a
    copy or a touch moved their times): otherwise each check reads them again, until the store is
    rebuilt. Only the record's own files, only where the digest is the same; written atomically."""
    import zarr

    known = record.get("sources") or {}
    moved = {key: digests[key] for key, old in known.items()
             if key in digests and digests[key] != old and digests[key].get("sha256") == old.get("sha256")}
    if not moved:
        return
    try:
        root = zarr.open_group(str(store), mode="r+")
        current = dict(root.attrs.get("segpipe") or {})
        if current.get("fingerprint") != record.get("fingerprint"):  # rebuilt meanwhile: not this record's store
            return
        root.attrs["segpipe"] = {**current, "sources": {**(current.get("sources") or {}), **moved}}
    except OSError:  # a read-only store still works: its files are read again next time, as before
        return


def fingerprint_of(dataset: Dataset, digests: dict) -> str:
    """Digest of the entry's settings and of every source file's content."""
    digest = hashlib.sha256(f"segpipe-store-{FORMAT_VERSION}".encode())
    unset = {"series"} if dataset.entry.series is None else set()  # stores made before the field keep their fingerprint
    digest.update(dataset.entry.model_dump_json(exclude={"training", "schedule", "model", *unset}).encode())
    if not unset:  # label and ignore files of several series follow it (stores that read their first are made again)
        digest.update(b"labels-at-series")
    if dataset.assumed_spacing is not None:  # another model's pixel size for files without one: ingested again
        digest.update(f"assumed-spacing {dataset.assumed_spacing}".encode())
    for key in sorted(digests):
        digest.update(key.encode())
        digest.update(digests[key]["sha256"].encode())
    return digest.hexdigest()


def dataset_fingerprint(dataset: Dataset, known: dict | None = None) -> str:
    """Fingerprint of a dataset, reading every file but those ``known`` (a store's ``sources``)
    with their recorded size and times."""
    return fingerprint_of(dataset, collect_digests(dataset, known))


def check_unchanged(dataset: Dataset, digests: dict) -> None:
    """Refuse to finish a store when a source changed while it was being ingested.

    Raises:
        InputError: A file's size or times differ from when it was digested.
    """
    for path in source_files(dataset):
        key = source_key(dataset, path)
        now = stat_of(path)
        if key in digests and now != {k: digests[key].get(k) for k in now}:
            raise InputError(f"{path}: file changed while it was being ingested; run ingest again")


def check_duplicates(dataset: Dataset, digests: dict) -> None:
    """Refuse two different image files with the same content (a duplicate in the splits).

    Raises:
        InputError: Naming both files and their splits.
    """
    seen: dict[str, tuple[Path, str]] = {}
    for record in dataset.records:
        if record.image.is_dir():
            continue
        digest = digests[source_key(dataset, record.image)]["sha256"]
        first = seen.get(digest)
        if first is not None and first[0] != record.image:
            raise InputError(
                f"{record.image} ({record.split}) has the same content as {first[0]} ({first[1]}): "
                "a duplicate file in the splits"
            )
        seen.setdefault(digest, (record.image, record.split))


def check_pixel_duplicates(infos: list[dict]) -> None:
    """Refuse the same pixels in two splits from two files whose bytes differ (saved again with
    other metadata or compression), by the pixel digests ingest computed (``pixels_sha256``).

    Pixels repeated within one split leak nothing, and constant images (no digest) carry nothing
    to leak; both are accepted.

    Raises:
        InputError: Naming both files and their splits.
    """
    seen: dict[str, dict] = {}
    for info in infos:
        digest = info.get("pixels_sha256")
        if digest is None:
            continue
        first = seen.setdefault(digest, info)
        if first["source"] != info["source"] and first["split"] != info["split"]:
            raise InputError(
                f"{info['source']} ({info['split']}) holds the same pixels as {first['source']} ({first['split']}), "
                "saved with other metadata or compression: the same image in two splits; remove one of them or "
                "put both in one split"
            )
