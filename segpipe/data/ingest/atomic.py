"""Write a store under a temporary name and move it into place; clean up after killed runs.

Temporary names (:mod:`segpipe.temporary`) carry the writer's process id
(``.data.zarr.partial-<pid>-<random>``), so a later run removes what a killed one left behind and
never touches a live run's files.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from segpipe.temporary import parse, temporary_path, writer_alive

log = logging.getLogger(__name__)


def partial_path(store: Path) -> Path:
    """A fresh temporary name next to ``store``."""
    return temporary_path(store, kind="partial")


def replace_store(partial: Path, store: Path) -> None:
    """Move the finished store into place; the old one goes only once the new one is there."""
    old = temporary_path(store, kind="old")
    if store.exists():
        store.rename(old)
    partial.rename(store)
    if old.exists():
        shutil.rmtree(old)


def clean_stale(store: Path) -> list[Path]:
    """Remove temporary stores of ``store`` left by processes that no longer run.

    A previous store set aside (``.old-``) by a run killed before the new one was in place
    is moved back, so the last complete store survives.

    Returns:
        The paths removed or restored.
    """
    done = []
    if not store.parent.is_dir():
        return done
    for path in sorted(store.parent.iterdir()):
        found = parse(path)
        if found is None or found.path != store or found.kind == "tmp" or writer_alive(found.pid):
            continue
        if found.kind == "old" and not store.exists():
            path.rename(store)
            log.warning("restored %s from %s (an ingest was interrupted)", store, path)
        else:
            shutil.rmtree(path, ignore_errors=True)
            log.warning("removed %s left by an interrupted ingest", path)
        done.append(path)
    return done


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first: what making it would create."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove each folder of ``folders`` (deepest first) that is empty; stop at the first that is not."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return
