"""Ctrl-C held back from the processes a command starts; what an interrupted command kept.

A terminal sends Ctrl-C (SIGINT) to every process of the command's process group: helper processes
(Prefect's embedded server, Dask's workers, the files process) would stop at once, each with its
own traceback, while the command itself still needs them to stop cleanly. Started inside
:func:`interrupts_held`, a process inherits SIGINT blocked and never receives it; the command stops
it when it ends (SIGTERM), as it does on a normal exit.

An interrupted command ends with a line saying that what it finished is kept (a run resumes); a
step that writes its result whole, as an ingest writes its store, keeps nothing of its own work:
:func:`keeps_nothing` around it makes that line say so (:func:`interrupted_step`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C blocked in this thread for the block: processes and threads started in it inherit the
    blocked signal; for this process a Ctrl-C pressed meanwhile is only held back until the block
    ends. Works from any thread (POSIX; elsewhere nothing changes)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Steps stopped by Ctrl-C or SIGTERM inside :func:`keeps_nothing`, innermost first.
_stopped: list[str] = []


@contextlib.contextmanager
def keeps_nothing(step: str) -> Iterator[None]:
    """Mark the block as a step that keeps nothing of its work when it is stopped (a store written
    whole): if Ctrl-C or SIGTERM ends it, :func:`interrupted_step` names ``step``."""
    try:
        yield
    except BaseException as err:
        if not isinstance(err, Exception):  # KeyboardInterrupt or SystemExit (SIGTERM): stopped, not failed
            _stopped.append(step)
        raise


def interrupted_step() -> str | None:
    """The step, marked by :func:`keeps_nothing`, that Ctrl-C or SIGTERM stopped in this process, if any."""
    return _stopped[0] if _stopped else None
