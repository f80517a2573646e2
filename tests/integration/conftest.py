"""A real Prefect server (``prefect server start``) and worker for the integration tests.

The server gets its own temporary PREFECT_HOME (database, result cache, profiles) and a free
port on 127.0.0.1; server and worker run in their own process groups and are stopped by group
(SIGINT, then SIGTERM, then SIGKILL) whatever the tests do.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120
IDLE_SERVICES = (
    "cancellation_cleanup", "db_vacuum", "event_logger", "foreman", "late_runs", "pause_expirations",
    "repossessor", "cleanup_reconciler", "triggers",
)


@dataclass(frozen=True)
class PrefectServer:
    """A running server: its API URL, home folder and the environment of processes that use it."""

    url: str
    home: Path
    env: dict[str, str]

    def settings(self):
        """``temporary_settings`` pointing this process's Prefect client at the server."""
        from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.url, PREFECT_LOCAL_STORAGE_PATH: self.home / "storage"})

    def prefect(self, *args: str, timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
        """Run the ``prefect`` CLI against the server (no prompts, stdin closed)."""
        return subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args],
            env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kwargs,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_group(command: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start ``command`` in a new process group (session), output to ``log``."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process group: SIGINT, wait, SIGTERM, wait, SIGKILL (until no member is left)."""
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {STARTUP_SECONDS} s:\n{tail(log)}")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> PrefectServer:
    """``prefect server start`` on a free local port with a temporary home and SQLite database."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "SEGPIPE_HOME"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=url,
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_CLI_PROMPT="false",
        PREFECT_SERVER_UI_ENABLED="false",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        MKL_NUM_THREADS=env.get("MKL_NUM_THREADS", "1"),
    )
    # Services these tests do not use, off to spare the CPU (scheduler and recorders stay on).
    for service in IDLE_SERVICES:
        env[f"PREFECT_SERVER_SERVICES_{service.upper()}_ENABLED"] = "false"
    log = home / "server.log"
    server = start_group([sys.executable, "-m", "prefect", "server", "start"], env=env, log=log, cwd=home)
    try:
        wait_healthy(url, server, log)
        yield PrefectServer(url, home, env)
    finally:
        stop_group(server)


@pytest.fixture(scope="session")
def start_worker(prefect_server):
    """Start ``prefect worker start --pool POOL`` running flows from this checkout (SEGPIPE_HOME)."""
    workers = []

    def start(pool: str) -> Path:
        log = prefect_server.home / f"worker-{pool}.log"
        env = {**prefect_server.env, "SEGPIPE_HOME": str(ROOT)}
        workers.append(start_group([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool], env=env, log=log, cwd=prefect_server.home))
        return log

    try:
        yield start
    finally:
        for worker in workers:
            stop_group(worker)


@pytest.fixture(scope="module", autouse=True)
def fresh_prefect_services():
    """Prefect keeps one concurrency-slot service per limit and process, holding the client of the
    API it first talked to: after a module here took the GPU slot on the real server, a later test
    of this process (pytest-xdist runs modules in any order) would wait for the slot there. Stopped
    at the module's end; the next use starts them again."""
    yield
    from prefect.concurrency.services import ConcurrencySlotAcquisitionService

    ConcurrencySlotAcquisitionService.drain_all(timeout=30, at_exit=False)
