"""Temporary names beside a file or store being written, and the path such a name stands for.

Every writer in segpipe writes a file (or a store) under a temporary name in the same folder and
moves it into place when it is complete, so a failed or killed run never leaves a torn file under
the real name. The temporary name is always made here:

    .NAME.KIND-PID-HEX[SUFFIX]

``KIND`` is ``tmp`` (a file being written), ``partial`` (a store being written) or ``old`` (a
previous store set aside while the new one moves in); ``PID`` is the writer's process id, so a
later run can tell what a dead process left (:func:`writer_alive`); ``HEX`` keeps two writers in
one process apart; ``SUFFIX`` is kept where a library insists on the file's extension (``.zip``).
:func:`meant` reads a temporary name back, so an error on one names the file the user asked for.
"""

from __future__ import annotations

import contextlib
import os
import re
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
    match = _NAME.match(path.name)
    if match is None:
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


@contextlib.contextmanager
def replacing(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` (one
    rename) when the block ends without an error, and is removed whatever happens."""
    tmp = temporary_path(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
