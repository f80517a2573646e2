"""Task runner options of the flows: validation, local-only Dask settings, sharing the embedded server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from segpipe.flows.runners import RunnerParams, build_task_runner


def test_defaults_are_one_thread_or_two_local_dask_workers(tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    thread = build_task_runner(RunnerParams(), scratch=tmp_path / "scratch")
    assert isinstance(thread, ThreadPoolTaskRunner) and thread._max_workers == 1
    dask = build_task_runner(RunnerParams(kind="dask"), scratch=tmp_path / "scratch")
    assert isinstance(dask, DaskTaskRunner)
    assert dask.cluster_kwargs == {
        "n_workers": 2, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0", "local_directory": str(tmp_path / "scratch"),
    }
    assert (tmp_path / "scratch").is_dir()
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:  # a real scheduler answers there
        address = cluster.scheduler_address
        remote = build_task_runner(RunnerParams(kind="dask", address=address, workers=4), scratch=tmp_path / "other")
    assert remote.address == address and not (tmp_path / "other").exists()


def test_a_scheduler_address_given_to_a_deployment_is_checked_where_the_flow_runs(tmp_path):
    """A deployment's run takes its runner options on the worker, past the command line's check: a
    closed address waited 30 s there, then failed with Dask's traceback."""
    import socket

    from segpipe.errors import RunnerError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(RunnerError, match="no Dask scheduler reachable there"):
        build_task_runner(RunnerParams(kind="dask", address=address), scratch=tmp_path / "scratch")


@pytest.mark.parametrize(
    "values",
    [{"kind": "process"}, {"kind": "thread", "address": "tcp://h:8786"}, {"kind": "dask", "workers": 0}, {"threads": 2}],
)
def test_invalid_options_are_refused(values):
    with pytest.raises(ValidationError):
        RunnerParams(**values)


def test_dask_workers_are_pointed_at_the_flows_server(prefect_harness):
    """A fan-out hands the flow's server to its Dask workers, and leaves the settings as they were.

    (On the embedded default the flow sees no API URL and the workers would each start a
    temporary server of their own; under the test harness the URL is already set.)
    """
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from segpipe.flows.runners import _share_embedded_server

    @flow
    def probe() -> tuple:
        with get_client(sync_client=True) as client:
            url = str(client.api_url).rstrip("/")
        before = PREFECT_API_URL.value()
        with _share_embedded_server():
            inside = PREFECT_API_URL.value()
        return url, before, inside, PREFECT_API_URL.value()

    url, before, inside, after = probe()
    assert after == before
    assert inside == url and url.startswith("http://127.0.0.1:")


def test_local_dask_workers_do_without_dasks_malloc_trimming():
    import dask
    import distributed  # noqa: F401  (registers the defaults)

    from segpipe.flows.runners import local_worker_settings

    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    assert dask.config.get(key) == 65536  # Dask's default, which slows inference down
    with local_worker_settings():
        assert dask.config.get(key) is None
    assert dask.config.get(key) == 65536


def test_worker_settings_leave_dasks_configuration_whole_in_a_fresh_process():
    """Entered before ``distributed`` is imported, they must not drop its defaults on exit."""
    import subprocess
    import sys

    code = (
        "import dask\n"
        "from segpipe.flows.runners import local_worker_settings\n"
        "with local_worker_settings():\n"
        "    pass\n"
        "print(dask.config.get('distributed.comm.timeouts.connect'),"
        " dask.config.get('distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["30s", "65536"]


def test_an_address_where_no_dask_scheduler_answers_is_refused_in_one_line(tmp_path):
    """`--dask-address` of the dashboard's web port hung the run for good (Dask's handshake waits on
    a read without a time limit), and bytes that are no Dask message failed it with "MemoryError:
    Unable to allocate 3.07 EiB": each is one line now, within the check's time limit, as is a
    worker's address given for the scheduler's. A real scheduler passes, with or without the scheme."""
    import socket
    import threading
    import time

    from distributed import LocalCluster

    from segpipe.errors import RunnerError
    from segpipe.flows.runners import check_scheduler

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        check_scheduler(cluster.scheduler_address)
        check_scheduler(cluster.scheduler_address.removeprefix("tcp://") + "/")  # as Dask takes it
        worker = next(iter(cluster.scheduler.workers))
        with pytest.raises(RunnerError, match=rf"--dask-address {worker}: a Dask worker answers there, not the scheduler"):
            check_scheduler(worker)
    for reply in (b"", b"\xff" * 64):  # a server that never answers (a web port), one that sends other bytes
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            port = server.getsockname()[1]

            def serve(server=server, reply=reply):
                connection, _ = server.accept()
                connection.sendall(reply)
                time.sleep(5)
                connection.close()

            threading.Thread(target=serve, daemon=True).start()
            start = time.monotonic()
            with pytest.raises(RunnerError, match=rf"--dask-address tcp://127.0.0.1:{port}: something answers there, but no "
                                                  r"Dask scheduler \((no Dask handshake within 2 s|what it sent is no Dask message)"):
                check_scheduler(f"tcp://127.0.0.1:{port}", timeout=2)
            assert time.monotonic() - start < 10


def test_a_tls_scheduler_is_checked_as_dasks_client_connects_to_it():
    """A tls:// scheduler was refused as "no Dask handshake within 5 s" at once: the check connected
    without the TLS settings Dask's configuration gives its client. With them it passes; without,
    the line says what is missing."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    from segpipe.errors import RunnerError
    from segpipe.flows.runners import check_scheduler

    security = Security.temporary()  # certificates made for the test (PEM text, as Dask's configuration takes them)
    with LocalCluster(n_workers=0, processes=False, protocol="tls://", host="127.0.0.1", security=security,
                      dashboard_address="127.0.0.1:0") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        with pytest.raises(RunnerError, match=rf"--dask-address {address}: something answers there, but no Dask scheduler \(TypeError: TLS"):
            check_scheduler(address)
        with dask.config.set({"distributed.comm.tls.ca-file": security.tls_ca_file,
                              "distributed.comm.tls.client.cert": security.tls_client_cert,
                              "distributed.comm.tls.client.key": security.tls_client_key}):
            check_scheduler(address)


def test_a_scheduler_address_nothing_answers_at_is_refused_in_one_line_at_once(segpipe_cli, tmp_path):
    """`--dask-address` of a scheduler not running waited Dask's 30 s, then said "Timed out trying to
    connect" without naming Dask or the option."""
    import socket
    import time

    from segpipe.errors import RunnerError
    from segpipe.flows.runners import check_scheduler

    with socket.socket() as listening:  # a port something accepts at, which is then closed
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
    with pytest.raises(RunnerError, match=rf"--dask-address tcp://127.0.0.1:{port}: no Dask scheduler reachable there"):
        check_scheduler(f"tcp://127.0.0.1:{port}")  # closed now: refused
    with pytest.raises(RunnerError, match=r"not a Dask scheduler address \(tcp://HOST:PORT"):
        check_scheduler("tcp://somewhere:")
    start = time.monotonic()
    result = segpipe_cli("run", "bbbc007", "--runner", "dask", "--dask-address", f"tcp://127.0.0.1:{port}",
                         "--output", tmp_path / "out")
    assert result.code == 2 and len(result.errors) == 1 and "no Dask scheduler reachable" in result.errors[0], result.errors
    assert time.monotonic() - start < 20 and not (tmp_path / "out").exists()


def test_the_run_says_when_dask_workers_leave_and_when_none_is_left(caplog):
    """A cluster whose workers all died kept the run waiting without a word (a walk-through waited
    2 min 20 s for nothing); a worker lost midway had its finished work redone, unsaid."""
    import logging
    import time

    from distributed import Client, LocalCluster

    from segpipe.flows.runners import watch_workers

    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client, caplog.at_level(logging.WARNING, logger="segpipe.flows.runners"):
        client.wait_for_workers(2)
        with watch_workers(client, where="tcp://scheduler:8786", interval=0.05, alone_after=0.5):
            time.sleep(0.3)
            cluster.scale(1)
            deadline = time.monotonic() + 20
            while "left (1 left)" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "no Dask worker" not in caplog.text
            cluster.scale(0)
            while "has had no Dask worker" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
    said = [r.getMessage() for r in caplog.records if r.name == "segpipe.flows.runners"]
    assert said[0].startswith("1 Dask worker(s) of tcp://scheduler:8786 left (1 left)"), said
    assert said[0].endswith("are computed again by the others")
    # the last one gone: no others to compute them (it said "by the others" with none left)
    assert said[1].endswith("(0 left): their unfinished tasks, and the results they held, are computed again by the next "
                            "worker to join (none is left now)"), said
    assert sum("has had no Dask worker for" in line for line in said) == 1, said  # said once, not every look


def test_dask_without_its_extra_is_refused_in_one_line(segpipe_cli, tmp_path, monkeypatch):
    """After the README's install (no extras), `segment --runner dask` failed inside the flow with
    Prefect's ModuleNotFoundError traceback; it now names the extra before anything runs."""
    import sys

    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # as an install without the extra: import fails
    with pytest.raises(ValueError, match=r"runner 'dask' needs segpipe's dask extra: pip install -c constraints.txt -e '\.\[dask\]'"):
        RunnerParams(kind="dask")
    result = segpipe_cli("segment", "--model", "cells-2d", "data/bbbc007/images", "--runner", "dask", "--output", tmp_path / "out")
    assert result.code == 2 and len(result.errors) == 1 and "needs segpipe's dask extra" in result.errors[0], result.errors
    assert not (tmp_path / "out").exists()


def test_local_dask_workers_drop_the_traceback_of_a_scheduler_gone(caplog):
    """Ctrl-C on a local cluster: a worker's heartbeat could find the command's scheduler already
    closed and print Dask's error with a network traceback after the command's own line. The
    workers' preload drops that record (logged as Dask's ``Worker.heartbeat`` logs it); others pass."""
    import logging

    from distributed.comm.core import CommClosedError

    from segpipe.flows.dask_worker import quiet_lost_scheduler

    logger = logging.getLogger("distributed.worker")

    def heartbeat_fails():
        try:
            raise CommClosedError("in <TCP (closed) ConnectionPool.heartbeat_worker>: Stream is closed")
        except OSError:
            logger.exception("Failed to communicate with scheduler during heartbeat.")

    caplog.set_level(logging.INFO, logger="distributed.worker")
    heartbeat_fails()
    assert [r.exc_info is not None for r in caplog.records] == [True]  # what the user saw
    caplog.clear()
    kept_out = quiet_lost_scheduler()
    try:
        assert quiet_lost_scheduler() is kept_out  # once per process
        heartbeat_fails()
        logger.warning("Heartbeat to scheduler failed")  # another record passes
        assert [r.getMessage() for r in caplog.records] == ["Heartbeat to scheduler failed"]
    finally:
        logger.removeFilter(kept_out)
