"""Where the per-image tasks run: threads in the flow's process, or a Dask cluster (prefect-dask).

Flows take a :class:`RunnerParams` parameter ``runner`` (a deployment or
``prefect deployment run --param 'runner={"kind": "dask"}'`` can set it); :func:`fan_out` opens
the task runner for the per-image part of the flow. Ingest and training run in the flow's own
process either way.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from segpipe.errors import RunnerError

log = logging.getLogger(__name__)

RunnerKind = Literal["thread", "dask"]


class RunnerParams(BaseModel):
    """Where a flow's per-image tasks run."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    kind: RunnerKind = "thread"
    """thread: a thread pool in the flow's process; dask: a Dask cluster."""
    address: str | None = None
    """Scheduler of an existing Dask cluster (tcp://host:8786); not set: a LocalCluster started for the run."""
    workers: int | None = Field(None, ge=1)
    """Threads, or LocalCluster worker processes (default: 1 thread, or 2 Dask workers)."""
    threads_per_worker: int = Field(1, ge=1)
    """Threads in each LocalCluster worker."""

    @model_validator(mode="after")
    def _address_needs_dask(self) -> RunnerParams:
        if self.address and self.kind != "dask":
            raise ValueError("a Dask scheduler address needs runner 'dask'")
        if self.kind == "dask":
            try:
                import prefect_dask  # noqa: F401
            except ImportError:
                raise ValueError("runner 'dask' needs segpipe's dask extra: pip install -c constraints.txt -e '.[dask]' "
                                 "(from the repository root)") from None
        return self

    def cluster_kwargs(self, scratch: Path) -> dict:
        """LocalCluster settings: local ports only, scratch files under ``scratch``."""
        return {
            "n_workers": self.workers or 2,
            "threads_per_worker": self.threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
            "local_directory": str(scratch),
        }


def check_scheduler(address: str, *, timeout: float = 5.0) -> None:
    """Refuse a Dask scheduler address nothing answers at, in one line and within ``timeout``
    seconds (Dask itself waits 30 s, then names neither Dask nor the option).

    Raises:
        RunnerError: The address cannot be read, nothing accepts a connection there, or what does
            is no Dask scheduler (:func:`dask_identity`).
    """
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        host, port = parse_host_port(parse_address(address.rstrip("/"))[1])
        port = int(port)
    except (ValueError, TypeError):
        raise RunnerError(f"--dask-address {address}: not a Dask scheduler address (tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786)") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err)).lower()
        raise RunnerError(f"--dask-address {address}: no Dask scheduler reachable there ({reason}); start one with "
                          "`dask scheduler` on that machine, or leave --dask-address out for a local cluster") from None
    bare = address.rstrip("/")
    kind, problem = dask_identity(bare if "://" in bare else f"tcp://{bare}", timeout=timeout)  # as Dask reads it
    if kind is None:
        raise RunnerError(f"--dask-address {address}: something answers there, but no Dask scheduler ({problem}); give "
                          "the address the scheduler logs as 'Scheduler at: tcp://...' (port 8786 by default)")
    if kind != "Scheduler":
        raise RunnerError(f"--dask-address {address}: a Dask {kind.lower()} answers there, not the scheduler; give the "
                          "address the scheduler logs as 'Scheduler at: tcp://...' (port 8786 by default)")


def dask_identity(address: str, *, timeout: float) -> tuple[str | None, str | None]:
    """What answers Dask's ``identity`` call at ``address`` (``Scheduler``, ``Worker``, ...), or ``None``
    with why not. Connected as Dask's client connects (its configured TLS settings for ``tls://``),
    within ``timeout`` seconds: a web server (a dashboard's port) never answers Dask's handshake,
    whose read has no time limit of its own, and other bytes read as a Dask frame ask for any size
    of memory. Asked on a thread of its own, outside any running event loop."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect
    from distributed.security import Security

    async def ask() -> str | None:
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity"})
            reply = await comm.read()
        finally:
            comm.abort()
        return str(reply.get("type")) if isinstance(reply, dict) and reply.get("type") else None

    async def bounded() -> str | None:
        return await asyncio.wait_for(ask(), timeout)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segpipe-dask-probe") as pool:
        try:
            kind = pool.submit(asyncio.run, bounded()).result()
        except (TimeoutError, asyncio.TimeoutError):
            return None, f"no Dask handshake within {timeout:g} s: a dashboard's web port?"
        except MemoryError:  # bytes read as the length of a Dask frame
            return None, "what it sent is no Dask message"
        except Exception as err:  # a closed connection, a TLS setting missing, another protocol
            return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no reason given'}"
    return (kind, None) if kind else (None, "its answer names no Dask server")


def build_task_runner(options: RunnerParams, *, scratch: Path):
    """A Prefect task runner for ``options`` (not started).

    Raises:
        RunnerError: ``options.address`` names no reachable scheduler (checked here too: a
            deployment's run gets its options on the worker, not from the command line's check).
    """
    if options.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=options.workers or 1)
    from prefect_dask import DaskTaskRunner

    if options.address:
        check_scheduler(options.address)
        return DaskTaskRunner(address=options.address)
    scratch.mkdir(parents=True, exist_ok=True)
    return DaskTaskRunner(cluster_kwargs=options.cluster_kwargs(scratch))


@contextlib.contextmanager
def fan_out(options: RunnerParams, *, scratch: Path) -> Iterator:
    """Open the task runner for a flow's per-image tasks; call inside a flow run.

    On Prefect's embedded default (no ``PREFECT_API_URL``) the flow's process runs a temporary
    server; Dask workers are pointed at it instead of each starting their own. A local cluster's
    processes do not see Ctrl-C (the run closes the cluster as it stops), and its scratch folder
    goes with it.
    """
    with contextlib.ExitStack() as stack:
        if options.kind == "dask":
            stack.enter_context(_share_embedded_server())
            if not options.address:
                stack.enter_context(local_worker_settings())
                stack.callback(shutil.rmtree, scratch, ignore_errors=True)  # after the cluster is closed
        runner = stack.enter_context(build_task_runner(options, scratch=scratch))
        if options.kind == "dask":
            stack.enter_context(watch_workers(runner.client, where=options.address or "the local cluster"))
        yield runner


#: Seconds between two looks at the cluster's workers, and how long a cluster may have none
#: before the run says it is waiting for one.
WATCH_INTERVAL, ALONE_AFTER = 10.0, 60.0


@contextlib.contextmanager
def watch_workers(client, *, where: str, interval: float = WATCH_INTERVAL, alone_after: float = ALONE_AFTER) -> Iterator[None]:
    """While the block runs, say when Dask workers leave (their unfinished tasks, and the results
    they held, are computed again by the others) and when none has been left for ``alone_after``
    seconds (Dask then waits for one to join, however long: the run would otherwise wait silently)."""
    stop = threading.Event()

    def watch() -> None:
        seen, alone_since, said = None, None, False
        while not stop.wait(interval):
            try:
                count = len(client.scheduler_info(n_workers=-1)["workers"])
            except Exception:  # noqa: BLE001 (the scheduler itself gone: the tasks' own errors say so)
                continue
            if seen is not None and count < seen:
                by = "the others" if count else "the next worker to join (none is left now)"
                log.warning("%d Dask worker(s) of %s left (%d left): their unfinished tasks, and the results they held, "
                            "are computed again by %s", seen - count, where, count, by)
            if count:
                alone_since, said = None, False
            else:
                alone_since = alone_since if alone_since is not None else time.monotonic()
                if not said and time.monotonic() - alone_since >= alone_after:
                    log.warning("%s has had no Dask worker for %d s: the run waits until one joins (start one with "
                                "`dask worker ADDRESS`), or stop it with Ctrl-C", where, round(time.monotonic() - alone_since))
                    said = True
            seen = count

    thread = threading.Thread(target=watch, name="segpipe-dask-workers", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


def local_worker_settings():
    """Dask settings for the LocalCluster's worker processes, while it starts.

    The workers leave Ctrl-C to the command (:mod:`segpipe.flows.dask_worker`). Dask's nanny starts
    them with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand freed memory back to the
    system at once; sliding-window inference allocates and frees large arrays all the time and ran
    1.8x slower so (``benchmarks/scaleout.py``). Unset it.
    """
    import dask
    import distributed  # noqa: F401  (its defaults first: set() on a missing section would drop it on exit)

    return dask.config.set({
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.worker.preload": ["segpipe.flows.dask_worker"],  # Ctrl-C is the command's
    })


@contextlib.contextmanager
def _share_embedded_server() -> Iterator[None]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/")
    log.info("embedded Prefect server at %s shared with the Dask workers", url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield
