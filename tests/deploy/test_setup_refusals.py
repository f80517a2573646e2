"""deploy/setup.py without a server to set up: one line and exit 2, nothing created anywhere."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setup(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "prefect")} | env
    return subprocess.run([sys.executable, "deploy/setup.py"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)


def test_without_a_server_url_it_refuses_instead_of_setting_up_a_temporary_server(tmp_path):
    """It created the pools and all seven deployments on a temporary server, then threw it away (exit 0)."""
    result = _setup(tmp_path)
    assert result.returncode == 2 and result.stderr == (
        "error: PREFECT_API_URL is not set: point it at your Prefect server (deploy/README.md, step 2)\n"), result.stderr


def test_a_server_that_does_not_answer_is_one_line(tmp_path):
    """It printed an 87-line traceback ending in httpx's ConnectError, exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    result = _setup(tmp_path, PREFECT_API_URL=url)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {url}: no Prefect server answers"), result.stderr
