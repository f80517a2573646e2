"""Ctrl-C held back from the processes a command starts.

A terminal sends Ctrl-C (SIGINT) to every process of the command's process group: helper processes
(Prefect's embedded server, Dask's workers, the files process) would stop at once, each with its
own traceback, while the command itself still needs them to stop cleanly. Started inside
:func:`interrupts_held`, a process inherits SIGINT blocked and never receives it; the command stops
it when it ends (SIGTERM), as it does on a normal exit.
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
