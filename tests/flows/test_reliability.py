"""Caching, failure isolation, resuming and retries of the flows, on real crops and a real Prefect API.

A module fixture trains once into a template folder (catalog, crops and run, two test images);
each test works on its own copy, whose first run is a cache miss (keys hold the run folder).
Task states are read back through the Prefect API.
"""

from __future__ import annotations

import contextvars
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

TEST_IMAGES = ["A9_p9d", "17P1_POS0013_D_1UL"]
NAMES = ["17P1_POS0006_D_1UL", "A9_p5d", "20P1_POS0007_D_1UL", *TEST_IMAGES]
GENERIC = ("ingest", "train", "prepare-predictions", "pool-scores", "report")


def task_states(flow_run_id) -> dict[str, tuple[str, int]]:
    """``{task: (state name, run count)}``; generic task names lose their random suffix."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    states = {}
    for run in runs:
        base = run.name.rsplit("-", 1)[0]
        states[base if base in GENERIC else run.name] = (run.state.name, run.run_count)
    return states


def names_of(states: dict) -> dict[str, str]:
    return {task: state for task, (state, _) in states.items()}


class Run:
    """A copy of the template: its catalog, output folder and a way to run flows on it."""

    def __init__(self, root: Path):
        self.root = root
        self.catalog = root / "crops" / "catalog.yaml"
        self.output = root / "runs"
        self.run_dir = self.output / "crops"

    def pipeline(self, **train):
        from segpipe.flows.pipeline import segpipe_pipeline
        from segpipe.training.params import TrainParams

        state = segpipe_pipeline(
            dataset="crops", catalog=str(self.catalog), output=str(self.output), train=TrainParams(epochs=1, **train),
            return_state=True,
        )
        return state, task_states(state.state_details.flow_run_id)

    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())


def per_image(metrics: dict) -> dict[str, dict]:
    return {row["name"]: row for row in metrics["per_image"]}


@pytest.fixture(scope="module")
def template(prefect_harness, make_crop_catalog, tmp_path_factory) -> Path:
    """Crops (two test images) trained one epoch by the pipeline; returns the folder to copy."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    catalog = make_crop_catalog(NAMES)
    text = catalog.read_text()
    catalog.write_text(text.replace(f"test: [{TEST_IMAGES[0]}]", f"test: [{', '.join(TEST_IMAGES)}]"))
    root = catalog.parent.parent / "template"
    shutil.copytree(catalog.parent, root / "crops")
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("template-storage")}):
        state, _ = Run(root).pipeline()
    assert state.is_completed(), state.message
    return root


@pytest.fixture
def run(template, tmp_path) -> Run:
    shutil.copytree(template, tmp_path / "work")
    return Run(tmp_path / "work")


def test_unchanged_rerun_is_cached_and_changes_rerun_what_depends_on_them(run):
    state, first = run.pipeline()
    assert state.is_completed()
    assert all(s == "Completed" for s in names_of(first).values()), first  # a new run folder: no cache yet
    predicted = {p: p.stat().st_mtime_ns for p in (run.run_dir / "predictions").glob("*.tif")}
    before = per_image(run.metrics())

    state, again = run.pipeline()
    assert state.is_completed()
    assert names_of(again) == {
        "ingest": "Cached", "train": "Cached", "prepare-predictions": "Completed",
        **{f"predict-{n}": "Cached" for n in TEST_IMAGES}, **{f"score-{n}": "Cached" for n in TEST_IMAGES},
        "pool-scores": "Completed", "report": "Completed",
    }
    assert {p: p.stat().st_mtime_ns for p in predicted} == predicted
    assert per_image(run.metrics()) == before

    # New ground truth for one test image (one object erased): re-ingest, re-score that image only.
    changed = TEST_IMAGES[1]
    labels_file = run.root / "crops" / "labels" / f"{changed}.tif"
    labels = tifffile.imread(labels_file)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    labels[labels == ids[np.argmax(counts)]] = 0
    tifffile.imwrite(labels_file, labels)
    state, relabelled = run.pipeline()
    assert state.is_completed()
    assert names_of(relabelled) == {
        "ingest": "Completed", "train": "Cached", "prepare-predictions": "Completed",
        **{f"predict-{n}": "Cached" for n in TEST_IMAGES},
        f"score-{TEST_IMAGES[0]}": "Cached", f"score-{changed}": "Completed",
        "pool-scores": "Completed", "report": "Completed",
    }
    after = per_image(run.metrics())
    assert after[TEST_IMAGES[0]] == before[TEST_IMAGES[0]]
    assert after[changed]["n_objects"] == before[changed]["n_objects"] - 1

    # Another seed: same data, new model; everything from training on runs again.
    state, reseeded = run.pipeline(seed=1)
    assert state.is_completed()
    assert names_of(reseeded) == {
        "ingest": "Cached", "train": "Completed", "prepare-predictions": "Completed",
        **{f"predict-{n}": "Completed" for n in TEST_IMAGES}, **{f"score-{n}": "Completed" for n in TEST_IMAGES},
        "pool-scores": "Completed", "report": "Completed",
    }
    card = json.loads((run.run_dir / "model" / "model_card.json").read_text())
    assert card["training"]["config"]["seed"] == 1


def test_a_corrupt_prediction_fails_its_image_only_and_a_rerun_resumes(run):
    state, _ = run.pipeline()
    assert state.is_completed()
    good, bad = TEST_IMAGES
    expected = per_image(run.metrics())
    chunks = [p for p in (run.run_dir / "predictions.zarr" / bad / "labels" / "instances" / "s0").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(b"not a compressed chunk")

    state, broken = run.pipeline()
    assert state.is_failed() and bad in state.message and good not in state.message
    assert broken[f"score-{bad}"] == ("Failed", 1)  # a decoding error is not retried
    assert names_of(broken)[f"score-{good}"] == "Cached" and names_of(broken)["report"] == "Completed"
    metrics = run.metrics()
    assert list(per_image(metrics)) == [good] and per_image(metrics)[good] == expected[good]
    assert [f["name"] for f in metrics["failed"]] == [bad] and metrics["failed"][0]["error"].startswith("score: ")
    report = (run.run_dir / "report.md").read_text()
    assert bad in report and "fail" in report.lower()

    # Clearing the broken output and running again redoes that image only.
    shutil.rmtree(run.run_dir / "predictions.zarr" / bad)
    state, resumed = run.pipeline()
    assert state.is_completed(), state.message
    assert names_of(resumed)[f"predict-{bad}"] == "Completed"
    assert names_of(resumed)[f"predict-{good}"] == "Cached" and names_of(resumed)[f"score-{good}"] == "Cached"
    assert names_of(resumed)["train"] == "Cached"
    assert per_image(run.metrics()) == expected and run.metrics()["failed"] == []


def test_io_errors_are_retried_with_backoff(run):
    """The predictions are away when scoring starts and come back once a task awaits its retry."""
    from segpipe.flows.evaluate import segpipe_evaluate
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterState, TaskRunFilterStateName

    predictions = run.run_dir / "predictions.zarr"
    away = predictions.with_name("predictions.away")
    predictions.rename(away)
    restored = threading.Event()

    def restore_when_retrying() -> None:
        waiting = TaskRunFilter(state=TaskRunFilterState(name=TaskRunFilterStateName(any_=["AwaitingRetry"])))
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not client.read_task_runs(task_run_filter=waiting):
                time.sleep(0.2)
        away.rename(predictions)
        restored.set()

    helper = threading.Thread(target=contextvars.copy_context().run, args=(restore_when_retrying,), daemon=True)
    helper.start()
    state = segpipe_evaluate(dataset="crops", output=str(run.output), return_state=True)
    helper.join(timeout=60)
    assert restored.is_set()
    assert state.is_completed(), state.message
    states = task_states(state.state_details.flow_run_id)
    scores = {task: value for task, value in states.items() if task.startswith("score-")}
    assert set(scores) == {f"score-{n}" for n in TEST_IMAGES}
    assert all(name == "Completed" for name, _ in scores.values())
    assert scores[f"score-{TEST_IMAGES[0]}"][1] == 2  # failed on the missing folder, then succeeded
    assert [f["name"] for f in run.metrics()["failed"]] == []
