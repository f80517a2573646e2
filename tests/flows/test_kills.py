"""Kill ``segpipe run`` with SIGKILL at points along the pipeline, run it again, and check that the re-run
ends with the metrics of an uninterrupted run and that no process of a killed run is left behind.

Each ``segpipe run`` is the real command line in its own session (process group) with its own
PREFECT_HOME (result cache), on four real 160x160 crops trained two epochs of two steps; it talks to
the tests' Prefect server or (every third slow trial) starts its embedded one, as a user's does. A kill point is reached when the run writes a file (a partial store,
``last.pt``, ``metrics.json``) or logs a line (the training plan, an image predicted); the whole group
(or, as the out-of-memory killer does, the ``segpipe`` process alone) is then killed, at once or after
a random delay. The default test kills one run twice at fixed points; ``-m slow`` kills many runs at
random points and prints the counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from same_metrics import assert_same_metrics

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 2
RUN_SECONDS = 420  # one run on a loaded 2-core machine, server start included, takes 30-120 s
MARKER = "SEGPIPE_KILL_TEST"  # in the environment of every process a run starts


@dataclass(frozen=True)
class KillPoint:
    """Where to kill a run: ``reached(run folder, its log so far, when it started)``."""

    stage: str
    reached: Callable[[Path, str, float], bool]


def _new(path: Path, since: float) -> bool:
    """``path`` was written by this run (an earlier run's file does not count)."""
    with contextlib.suppress(FileNotFoundError):
        return path.stat().st_mtime >= since
    return False


def _partial_store(run: Path, log: str, since: float) -> bool:
    return run.is_dir() and any(p.name.startswith(".data.zarr.partial-") for p in run.iterdir())


KILL_POINTS = [
    KillPoint("ingest", _partial_store),
    KillPoint("training", lambda run, log, since: "training plan:" in log),
    KillPoint("training, after epoch 1", lambda run, log, since: _new(run / "model" / "last.pt", since)),
    KillPoint("tuning", lambda run, log, since: "post-processing tuned on validation" in log),
    KillPoint("prediction", lambda run, log, since: _new(run / "predictions.zarr", since)),
    KillPoint("scoring", lambda run, log, since: "predicted in" in log),
    KillPoint("report", lambda run, log, since: _new(run / "metrics.json", since)),
]
POINTS = {point.stage: point for point in KILL_POINTS}


class Runs:
    """``segpipe run crops`` on one output folder and one PREFECT_HOME, run after run; on the Prefect
    server at ``api_url``, or (``None``) each run on its own embedded one."""

    def __init__(self, catalog: Path, root: Path, *, api_url: str | None = None):
        self.catalog, self.root, self.api_url = catalog, root, api_url
        self.output, self.home = root / "runs", root / "prefect-home"
        self.run_dir = self.output / "crops"
        self.count = 0
        root.mkdir(parents=True, exist_ok=True)

    def start(self) -> tuple[subprocess.Popen, Path, str]:
        """Start a run in a new session; returns it, its log and its marker value."""
        self.count += 1
        log = self.root / f"run-{self.count}.log"
        marker = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **{MARKER: marker})
        if self.api_url is not None:
            env["PREFECT_API_URL"] = self.api_url
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-c", "from segpipe.cli import main; main()", "run", "crops", "--catalog",
                 str(self.catalog), "--output", str(self.output), "--epochs", str(EPOCHS)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return process, log, marker

    def finish(self) -> dict:
        """Run to the end; returns metrics.json."""
        process, log, marker = self.start()
        try:
            code = process.wait(timeout=RUN_SECONDS)
        finally:
            kill_group(process)
        assert code == 0, log.read_text()[-3000:]
        assert left_behind(marker) == []
        return json.loads((self.run_dir / "metrics.json").read_text())

    def kill_at(self, point: KillPoint, *, delay: float = 0.0, leader_only: bool = False) -> bool:
        """Run until ``point`` (then ``delay`` seconds more) and SIGKILL the run's process group, or
        (``leader_only``) the ``segpipe`` process alone, as the out-of-memory killer does; False when
        the run ended before (the point was behind it: a cached stage)."""
        process, log, marker = self.start()
        since = time.time() - 1  # file times are coarser than the clock
        try:
            deadline = time.monotonic() + RUN_SECONDS
            while not point.reached(self.run_dir, log.read_text(errors="replace"), since):
                if process.poll() is not None:
                    break
                assert time.monotonic() < deadline, f"{point.stage} not reached:\n{log.read_text()[-3000:]}"
                time.sleep(0.05)
            time.sleep(delay)
            if process.poll() is not None:
                assert process.returncode == 0, log.read_text()[-3000:]
                return False
            if leader_only:
                process.kill()
                process.wait(timeout=60)
                assert left_behind(marker, wait=30) == [], f"processes left behind by a run killed at {point.stage}"
        finally:
            kill_group(process)
        assert left_behind(marker) == [], f"processes left behind by a run killed at {point.stage}"
        return True


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the run's whole process group and reap its leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def left_behind(marker: str, wait: float = 10.0) -> list[str]:
    """Live processes (not zombies) carrying ``marker`` in their environment, after up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARKER) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:120]}")
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.fixture(scope="module")
def catalog(make_crop_catalog) -> Path:
    return make_crop_catalog()


@pytest.fixture(scope="module")
def api_url(prefect_harness) -> str:
    """The test Prefect server: runs on it skip starting their own (half a minute on a busy machine)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def reference(catalog, api_url, tmp_path_factory) -> dict:
    """metrics.json of an uninterrupted run."""
    return Runs(catalog, tmp_path_factory.mktemp("reference"), api_url=api_url).finish()


def test_a_run_killed_in_training_and_in_scoring_resumes_to_the_same_metrics(catalog, api_url, reference, tmp_path):
    runs = Runs(catalog, tmp_path, api_url=api_url)
    assert runs.kill_at(POINTS["training, after epoch 1"])
    assert (runs.run_dir / "model" / "last.pt").is_file()
    assert runs.kill_at(POINTS["scoring"], leader_only=True)
    assert_same_metrics(runs.finish(), reference)
    log = (tmp_path / "run-2.log").read_text()
    assert "resuming after epoch 1" in log  # the second run went on from the first one's checkpoint


@pytest.mark.slow
def test_runs_killed_at_random_points_resume_to_the_same_metrics(catalog, api_url, reference, tmp_path):
    """Trials of one to three kills each, at random points (in pipeline order) and delays; every third
    trial's runs start their own embedded Prefect server, which a kill must take down too."""
    rng = random.Random(int(os.environ.get("SEGPIPE_KILL_SEED", "17")))
    trials = int(os.environ.get("SEGPIPE_KILL_TRIALS", "10"))
    counts: Counter = Counter()
    for trial in range(trials):
        runs = Runs(catalog, tmp_path / f"trial-{trial}", api_url=None if trial % 3 == 2 else api_url)
        points = sorted(rng.sample(range(len(KILL_POINTS)), rng.randint(1, 3)))
        for index in points:
            point, delay, leader_only = KILL_POINTS[index], rng.choice([0.0, rng.uniform(0, 3)]), rng.random() < 0.5
            if runs.kill_at(point, delay=delay, leader_only=leader_only):
                counts["kills"] += 1
                counts[f"killed at {point.stage}"] += 1
                counts["kills of segpipe alone" if leader_only else "kills of the process group"] += 1
            else:
                counts[f"ended before {point.stage}"] += 1
        assert_same_metrics(runs.finish(), reference)
        counts["trials"] += 1
        counts["trials resumed identically"] += 1
        shutil.rmtree(runs.root, ignore_errors=True)
        print(f"after trial {trial + 1}:", dict(sorted(counts.items())), flush=True)
    print(dict(sorted(counts.items())))
    assert counts["kills"] >= trials  # most points are reached: kills are not all skipped
