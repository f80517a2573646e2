"""A second process for the files' side of a run (ingest, labels, zarr writes, exports), beside the network.

The network's thread holds Python's interpreter lock between its small operations; a thread
beside it that reads and writes zarr (whose every call hops through an event-loop thread and
a thread pool) takes that lock thousands of times per image, and the two slow each other
down: on 2 cores a small U-Net took 0.51 s per 512x512 field beside such a thread against
0.36 s beside a busy process (``benchmarks/RESULTS.md``). :func:`files_worker` gives a run
workers for that side: processes where they pay, a thread otherwise; :func:`files_processes`
says how many.
A process takes a second or two to start (its imports; the files' steps of ``segment`` live in
:mod:`segpipe.pipeline.segment_files`, which needs no torch); until it is up, the work it is
given runs in the caller, so nothing waits for it.

The processes are started with ``spawn`` (nothing of the parent's threads or CUDA state is
copied), all at once, with Ctrl-C held back from their first instruction and ignored once set up
(the run stops them after finishing what the network has done, even while they import), end
when their parent dies (Linux ``PR_SET_PDEATHSIG``; the CLI's watchdog ends them too), run their
native libraries on one thread, and send their log records to the parent's handlers.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import logging.handlers
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from segpipe.errors import SegpipeError
from segpipe.interrupts import interrupts_held

_PR_SET_PDEATHSIG = 1


class Worker:
    """Hands calls to ``executor`` once ``started`` is done; runs them in the caller before."""

    def __init__(self, executor: Executor, started: Future | None = None):
        self.executor, self.started = executor, started

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        if self.started is None or self.started.done():
            return self.executor.submit(fn, *args, **kwargs)
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # as the executor would hand it over
            future.set_exception(err)
        return future


#: Most processes for the files beside a GPU's network (each holds its own imports, about 0.1 GB).
MAX_PROCESSES = 4


def files_processes(inputs: int, *, device: str, cpus: int) -> int:
    """Processes for the files' side of a run of ``inputs`` inputs (0: a thread).

    One input has nothing to overlap with; on the CPU one process, while the network takes the
    other cores; beside a GPU, whose network is fast, the files are the work: a process per
    spare core, up to :data:`MAX_PROCESSES` and one per input after the first.
    """
    if inputs <= 1:
        return 0
    if device != "cuda":
        return 1
    return max(1, min(MAX_PROCESSES, cpus - 1, inputs - 1))


@contextlib.contextmanager
def files_worker(*, processes: int, preload: tuple[str, ...] = ()) -> Iterator[Worker]:
    """``processes`` worker processes, or (0) a thread; shut down, after their queued work, on leaving.

    ``preload``: modules each process imports before it counts as started (those its work needs).

    Raises:
        SegpipeError: A process died (killed, out of memory) while the block waited for its work.
    """
    if not processes:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-files") as pool:
            yield Worker(pool)
        return
    context = multiprocessing.get_context("spawn")
    records = context.Queue()
    listener = logging.handlers.QueueListener(records, _Forward())
    listener.start()
    levels = {name: logging.getLogger(name).getEffectiveLevel() for name in ("", "segpipe")}
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_start, initargs=(records, levels, os.getpid(), preload))
    with interrupts_held():  # the workers inherit it: Ctrl-C while they import is the parent's
        started = [pool.submit(os.getpid) for _ in range(processes)]  # one each: every worker spawned now
    try:
        yield Worker(pool, started=started[0])
    except BrokenProcessPool as err:
        raise SegpipeError(
            "a files process ended unexpectedly (killed, or out of memory?); run the command again: "
            "what is finished is kept"
        ) from err
    finally:
        pool.shutdown(wait=True, cancel_futures=False)
        listener.stop()
        records.close()


class _Forward:
    """Hands a record from the worker to the parent's logger of the same name (its handlers, caplog's too)."""

    def handle(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _start(records, levels: dict[str, int], parent: int, preload: tuple[str, ...]) -> None:
    """The worker's set-up: end with the parent, leave Ctrl-C to it, one native thread, logs to the parent, imports."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C held back since the spawn is dropped here
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"  # before the work's imports start their thread pools
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for module in preload:
        importlib.import_module(module)
