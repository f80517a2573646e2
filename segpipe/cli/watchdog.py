"""End the processes a command started when the command itself is killed outright.

A process killed with SIGKILL (the out-of-memory killer picks the largest one: the command,
while it trains) runs no clean-up, so what it started would run on as orphans: Prefect's
embedded server, ingest worker processes, a local Dask cluster. :func:`watch_children` marks
the environment every process the command starts inherits, and starts a watchdog: a small
process reading a pipe that only the command holds open. When the command ends, however it
ends, the pipe closes; the watchdog sends SIGTERM to every process still carrying the mark,
SIGKILL to those still there :data:`GRACE_SECONDS` later, and exits. After a normal exit the
command has stopped its children already and the watchdog finds nothing.

Linux only (processes are found through ``/proc``); elsewhere nothing is started. This file
runs as a script too (the watchdog), importing nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator

#: The environment variable that marks a command's processes; its value names the command.
MARK = "SEGPIPE_COMMAND"
GRACE_SECONDS = 5.0
_watching: list[tuple[str, int, int]] = []  # (mark, the pipe's write end, the watchdog's pid): one per process


@contextlib.contextmanager
def watch_children() -> Iterator[None]:
    """Mark the processes started inside the block; a watchdog ends those still running when this
    process ends. The mark leaves ``os.environ`` with the block; the watchdog stays until the process
    exits (one per process, however many blocks)."""
    if not os.path.exists("/proc/self/environ"):
        yield
        return
    if not _watching:
        _watching.append(_start())
    mark = _watching[0][0]
    previous = os.environ.get(MARK)
    os.environ[MARK] = mark
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MARK, None)
        else:
            os.environ[MARK] = previous


def _start() -> tuple[str, int, int]:
    """Spawn the watchdog (no :class:`subprocess.Popen`, whose clean-up would warn about a child that is
    meant to outlive it); returns the mark, the pipe's write end and the watchdog's process id."""
    mark = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    read, write = os.pipe()  # not inherited: only this process holds the write end
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, os.path.abspath(__file__), mark],
            {**os.environ, MARK: mark},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
    finally:
        os.close(read)
    return mark, write, pid


def marked(mark: str) -> list[int]:
    """Live processes (other than this one) whose environment carries ``MARK=mark``."""
    wanted = f"{MARK}={mark}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if wanted in handle.read().split(b"\0"):
                    found.append(int(entry.name))
    return found


def end_marked(mark: str, *, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the processes carrying ``mark``, then SIGKILL those still there after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        for pid in marked(mark):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while marked(mark) and time.monotonic() < deadline:
            time.sleep(0.1)


def _watchdog(mark: str) -> None:
    """Wait for the command to end (the pipe on stdin closes), then end what it left running. Ctrl-C,
    SIGTERM and a closed terminal reach the whole process group: the watchdog outlives them."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    end_marked(mark)


if __name__ == "__main__":
    _watchdog(sys.argv[1])
