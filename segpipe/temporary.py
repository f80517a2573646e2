"""Temporary names beside a file or store being written, and the path such a name stands for.

segpipe's writers of stores, models, tables, summaries and reports write under a temporary name in
the same folder and move the result into place when it is complete, so a failed or killed run
never leaves a torn file under the real name. Those names are made here:

    .NAME.KIND-PID-HEX[SUFFIX]

``KIND`` is ``tmp`` (a file being written), ``partial`` (a store being written) or ``old`` (a
previous store set aside while the new one moves in); ``PID`` is the writer's process id, so a
later run can tell what a dead process left (:func:`writer_alive`); ``HEX`` keeps two writers in
one process apart; ``SUFFIX`` is kept where a library insists on the file's extension (``.zip``).
:func:`meant` reads a temporary name back, so an error on one names the file the user asked for.

Not made here: the group a prediction is streamed into inside its zarr store
(``.IMAGE.partial``, a fixed name so that a stopped run resumes it), and the report's figures,
which matplotlib writes in place (a report made again rewrites them).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = ("tmp", "partial", "old")

_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|partial|old)-(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>\.\w+)?$")


@dataclass(frozen=True)
class Temporary:
    """What a temporary name says: the path it stands for, its kind and its writer's process id."""

    path: Path
    kind: str
    pid: int


def temporary_path(path: str | Path, *, kind: str = "tmp", keep_suffix: bool = False) -> Path:
    """A fresh temporary name beside ``path`` (see the module's docstring for its form).

    ``keep_suffix`` ends the name with ``path``'s suffix, for writers that check the extension.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    path = Path(path)
    stem, suffix = (path.stem, path.suffix) if keep_suffix else (path.name, "")
    return path.with_name(f".{stem}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def parse(path: str | Path) -> Temporary | None:
    """What the temporary name ``path`` stands for, or ``None`` when it is not one segpipe makes."""
    path = Path(path)
    match = _NAME.fullmatch(path.name)
    if match is None or match["name"] in (".", ".."):
        return None
    real = path.with_name(match["name"] + (match["suffix"] or ""))
    return Temporary(real, match["kind"], int(match["pid"]))


def meant(filename: str) -> str:
    """The file a temporary name stands for (the one the user asked for), else ``filename``."""
    found = parse(filename)
    return str(found.path) if found else filename


def writer_alive(pid: int) -> bool:
    """Whether the process that made a temporary name still runs (then its files are not stale)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


#: A temporary file untouched for this long whose writer's process id is not running here is a
#: killed writer's. The age keeps a file another machine is writing into a shared folder (a Dask
#: worker on another node, whose process ids mean nothing here) from being taken for one.
STALE_AFTER = 3600.0


def remove_stale(folder: str | Path, *, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writers no longer run and that nothing has
    written to for ``older_than`` seconds (a killed process's half-written copies); returns them.
    Stores have their own rule (``data.ingest.atomic``)."""
    removed, now = [], time.time()
    for candidate in Path(folder).glob(".*.tmp-*"):
        found = parse(candidate)
        if not (found and found.kind == "tmp" and candidate.is_file() and not writer_alive(found.pid)):
            continue
        try:
            if now - candidate.stat().st_mtime < older_than:
                continue
        except OSError:  # gone meanwhile
            continue
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


#: Folders this process has swept with :func:`remove_stale` (each once: a listing per write would
#: make writing N files into one folder take N listings of it, ``benchmarks/temporary_writes.py``).
_swept: set[str] = set()


def _sweep_once(folder: Path) -> None:
    key = os.path.abspath(folder)
    if key not in _swept and folder.is_dir():
        remove_stale(folder)
        _swept.add(key)


@contextlib.contextmanager
def replacing(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` (one
    rename) when the block ends without an error, and is removed whatever happens. What a killed
    writer left in ``path``'s folder is removed the first time this process writes there."""
    _sweep_once(Path(path).parent)
    tmp = temporary_path(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
