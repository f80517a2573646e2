"""The files' worker of ``segment``: a real second process that logs to the parent and dies with it."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from segpipe.errors import SegpipeError
from segpipe.pipeline.files_process import MAX_PROCESSES, files_processes, files_worker


def _warn(text: str) -> int:
    logging.getLogger("segpipe.pipeline.segment").warning("from the worker: %s", text)
    return os.getpid()


def _fail() -> None:
    raise ValueError("bad input")


def test_work_runs_in_another_process_and_its_warnings_reach_the_parent(caplog):
    with files_worker(processes=1) as worker:
        worker.started.result(timeout=120)
        pid = worker.submit(_warn, "field_7.tif").result(timeout=60)
        failed = worker.submit(_fail)
        assert isinstance(failed.exception(timeout=60), ValueError)
    assert pid != os.getpid()
    assert "from the worker: field_7.tif" in caplog.text


def test_until_the_process_is_up_work_runs_here():
    with files_worker(processes=1) as worker:
        first = worker.submit(os.getpid)  # the process is still importing
        worker.started.result(timeout=120)
        later = worker.submit(os.getpid)
        assert first.result() == os.getpid() and later.result(timeout=60) != os.getpid()


def test_a_thread_where_no_process_pays():
    with files_worker(processes=0) as worker:
        assert worker.submit(os.getpid).result(timeout=60) == os.getpid()


PARENT = textwrap.dedent(
    """
    import os, signal, sys
    from segpipe.pipeline.files_process import files_worker
    with files_worker(processes=1) as worker:
        print(worker.started.result(timeout=120), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_ends_when_its_parent_is_killed():
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as parent:
        worker = int(parent.stdout.readline())
        assert parent.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 20
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not _running(worker)
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def test_how_many_processes():
    assert files_processes(1, device="cpu", cpus=16) == 0  # one input: a thread
    assert files_processes(1000, device="cpu", cpus=16) == 1  # the network takes the other cores
    assert files_processes(1000, device="cuda", cpus=16) == MAX_PROCESSES
    assert files_processes(1000, device="cuda", cpus=2) == 1
    assert files_processes(3, device="cuda", cpus=16) == 2


def test_a_worker_that_dies_is_one_clear_error():
    with pytest.raises(SegpipeError, match="ended unexpectedly"):
        with files_worker(processes=1) as worker:
            pid = worker.started.result(timeout=120)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            worker.submit(os.getpid).result(timeout=60)


def _interrupt_while_starting(processes: int) -> tuple[list[int], int]:
    with files_worker(processes=processes) as worker:
        pids = list(worker.executor._processes)
        assert len(pids) == processes  # every worker is spawned at once
        for pid in pids:
            os.kill(pid, signal.SIGINT)  # still importing: the set-up takes a second or more
        worker.started.result(timeout=120)
        return pids, worker.submit(os.getpid).result(timeout=60)


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_ctrl_c_while_the_workers_start_is_left_to_the_parent(processes, where):
    """Ctrl-C reaches the whole process group; a worker still importing (a second or two after it is
    spawned, before its set-up runs) printed a KeyboardInterrupt traceback and died. Each worker holds
    it back from its first instruction and ignores it once set up, whichever thread started it."""
    if where == "main thread":
        pids, worked = _interrupt_while_starting(processes)
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pids, worked = pool.submit(_interrupt_while_starting, processes).result(timeout=180)
    assert worked in pids
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == set()  # the caller's mask is as it was
