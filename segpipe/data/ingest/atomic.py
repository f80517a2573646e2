"""Write a store under a temporary name and move it into place; clean up after killed runs.

Temporary names carry the writer's process id (``.data.zarr.partial-<pid>-<random>``), so a
later run removes what a killed one left behind and never touches a live run's files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


def partial_path(store: Path) -> Path:
    """A fresh temporary name next to ``store``."""
    return store.with_name(f".{store.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def replace_store(partial: Path, store: Path) -> None:
    """Move the finished store into place; the old one goes only once the new one is there."""
    old = store.with_name(f".{store.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
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
    pattern = re.compile(rf"^\.{re.escape(store.name)}\.(partial|old)-(\d+)-[0-9a-f]+$")
    done = []
    if not store.parent.is_dir():
        return done
    for path in sorted(store.parent.iterdir()):
        match = pattern.match(path.name)
        if not match or _alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not store.exists():
            path.rename(store)
            log.warning("restored %s from %s (an ingest was interrupted)", store, path)
        else:
            shutil.rmtree(path, ignore_errors=True)
            log.warning("removed %s left by an interrupted ingest", path)
        done.append(path)
    return done


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
