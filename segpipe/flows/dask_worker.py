"""Set-up of a local cluster's Dask workers (a Dask preload, named by :func:`segpipe.flows.runners.local_worker_settings`).

Ctrl-C in the terminal reaches the workers of the cluster the command started, which are in its
process group: each would stop with a KeyboardInterrupt traceback of its own while the command
closes the cluster. The workers ignore it; the command closes them as it stops.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    """Called by Dask in each worker process as it starts."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
