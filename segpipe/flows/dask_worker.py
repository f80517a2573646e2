"""Set-up of a local cluster's Dask workers (a Dask preload, named by :func:`segpipe.flows.runners.local_worker_settings`).

Ctrl-C in the terminal reaches the workers of the cluster the command started, which are in its
process group: each would stop with a KeyboardInterrupt traceback of its own while the command
closes the cluster. The workers ignore it; the command closes them as it stops.

The cluster's scheduler lives in the command's process: when a worker cannot reach it, the
command is stopping (and says why in its own line) or gone (and its watchdog ends the workers).
A heartbeat that finds it gone would log an error with a network traceback; the workers drop it.
"""

from __future__ import annotations

import logging
import signal
import threading

#: The start of the record a Dask worker logs when its heartbeat cannot reach the scheduler.
LOST_SCHEDULER = "Failed to communicate with scheduler"


class _LostScheduler(logging.Filter):
    """Drop a worker's records of a scheduler it cannot reach (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, OSError) and record.getMessage().startswith(LOST_SCHEDULER))


def quiet_lost_scheduler() -> logging.Filter:
    """Install the filter on Dask's worker logger (once per process) and return it."""
    logger = logging.getLogger("distributed.worker")
    for installed in logger.filters:
        if isinstance(installed, _LostScheduler):
            return installed
    kept_out = _LostScheduler()
    logger.addFilter(kept_out)
    return kept_out


def dask_setup(worker) -> None:
    """Called by Dask in each worker process as it starts."""
    quiet_lost_scheduler()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
