"""``segpipe run`` starts Prefect's embedded server; when it does not come up in time the user gets
one line saying why and what to do, not Prefect's traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_an_embedded_server_that_does_not_start_is_one_line(make_crop_catalog, tmp_path):
    catalog = make_crop_catalog()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "1"  # no server starts that fast
    command = [sys.executable, "-c", "from segpipe.cli import main; main()", "run", "crops", "--catalog", str(catalog),
               "--output", str(tmp_path / "runs"), "--epochs", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: Prefect's embedded server did not start within 1 s (a busy machine starts it slowly); run again, "
        "allow it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or point PREFECT_API_URL at a running "
        "server (prefect server start)"
    ]
