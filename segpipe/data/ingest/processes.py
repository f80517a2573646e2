"""Ingest many small images in worker processes.

A small image costs little in pixels and much in zarr calls: every node and chunk written is
Python work under one GIL, so threads cannot spread it over the CPUs. Worker processes can.
They are started by a fork server (never a fork of this threaded process) that has already
imported the ingest code, so starting them costs a fraction of a second, and each worker
writes its share of the images straight into the temporary store the caller made.

A worker ends itself when the process that started the pool dies (even by ``kill -9``): it
would otherwise wait for work forever, and keep the fork server and the resource tracker
(which end when their last client does) alive with it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from pathlib import Path

import zarr

from segpipe.data.catalog import Dataset
from segpipe.data.records import ImageRecord
from segpipe.data.ingest.params import IngestParams
from segpipe.data.ingest.record import ingest_record
from segpipe.data.store import wait_for_writes
from segpipe.interrupts import interrupts_held

_PRELOAD = ["segpipe.data.ingest.record", "ome_zarr.writer"]
_worker: dict = {}  # this worker process's store, dataset and options, set once when it starts


def ingest_in_processes(
    store: Path,
    dataset: Dataset,
    records: list[ImageRecord],
    options: IngestParams,
    *,
    n_processes: int,
    on_done: Callable[[int], None],
) -> list[dict]:
    """Ingest ``records`` into the zarr group at ``store`` with ``n_processes`` workers.

    Records go out in batches; ``on_done`` is called with the number of images of each
    finished batch. The first error cancels the batches not yet started and is raised here.

    Returns:
        The image infos in the order of ``records``.
    """
    context = _context()
    pool = ProcessPoolExecutor(
        max_workers=n_processes, mp_context=context, initializer=_start_worker, initargs=(str(store), dataset, options)
    )
    try:
        futures: list[Future] = []
        with interrupts_held():  # the workers (started by the submissions) never see Ctrl-C: this process stops them
            for batch in _batches(records, n_processes):
                future = pool.submit(_ingest_batch, batch)
                future.add_done_callback(
                    lambda f, n=len(batch): on_done(n) if not f.cancelled() and f.exception() is None else None
                )
                futures.append(future)
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    except BaseException:  # Ctrl-C or SIGTERM: the store is thrown away, so the workers stop mid-write
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    failed = [f for f in futures if f in done and f.exception() is not None]
    if failed:
        raise failed[0].exception()  # type: ignore[misc]
    return [info for future in futures for info in future.result()]


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes now (SIGTERM), whatever batch they are in."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def can_use_processes() -> bool:
    """False inside a daemonic process (a Dask worker, say), which may not start children."""
    return not multiprocessing.current_process().daemon


def _context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _batches(records: list[ImageRecord], n_processes: int) -> Iterator[list[ImageRecord]]:
    """Batches small enough to balance the workers, large enough to keep hand-overs rare."""
    size = max(1, min(32, len(records) // (4 * n_processes)))
    for start in range(0, len(records), size):
        yield records[start : start + size]


def _start_worker(store: str, dataset: Dataset, options: IngestParams) -> None:
    _exit_with_parent()
    _worker.update(root=zarr.open_group(store, mode="r+"), dataset=dataset, options=options)


def _exit_with_parent() -> None:
    """Watch the parent's sentinel (a pipe that reaches EOF when it exits) and end this process then."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # waits on the sentinel: no polling
        os._exit(1)

    threading.Thread(target=watch, name="segpipe-exit-with-parent", daemon=True).start()


def _ingest_batch(records: list[ImageRecord]) -> list[dict]:
    root, dataset, options = _worker["root"], _worker["dataset"], _worker["options"]
    try:
        return [info for record in records for info in ingest_record(root, dataset, record, options)]
    except BaseException:
        wait_for_writes()  # the caller removes the store next: no write of ours may land after that
        raise
