"""Deployments for real: server, work pools, deploy/prefect.yaml, schedules, a worker, CLI triggers.

One module-scoped set-up (``deploy/setup.py`` against a fresh ``prefect server start``) serves
every test here; the worker starts only after the schedules were checked and paused, so no
scheduled run interferes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from segpipe.flows.tasks import GPU_TAG, artifact_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deploy" / "prefect.yaml"
EXPECTED = {
    "segpipe-pipeline/nightly": "segpipe-cpu",
    "segpipe-pipeline/nightly-gpu": "segpipe-gpu",
    "segpipe-ingest/refresh": "segpipe-cpu",
    "segpipe-train/weekly-gpu": "segpipe-gpu",
    "segpipe-predict/gpu": "segpipe-gpu",
    "segpipe-evaluate/rescore": "segpipe-cpu",
    "segpipe-segment/inbox": "segpipe-cpu",
}


def catalog_datasets() -> set[str]:
    return set(yaml.safe_load((ROOT / "data_catalog.yaml").read_text())["datasets"])


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """Run deploy/setup.py (pools, GPU limit, every deployment) with SEGPIPE_HOME set: it must not stick."""
    env = {**prefect_server.env, "SEGPIPE_HOME": "/nonexistent/deploy-machine/path"}
    result = subprocess.run(
        [sys.executable, "deploy/setup.py"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with prefect_server.settings():
        yield prefect_server


@pytest.fixture(scope="module")
def upcoming(deployed):
    """The scheduled runs the server created for the deployments; then every schedule is paused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"])))
    with get_client(sync_client=True) as client:
        deployments = {d.id: d for d in client.read_deployments()}
        deadline = time.monotonic() + 60
        runs = []
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=scheduled)
            if {r.parameters.get("dataset") for r in runs if deployments[r.deployment_id].name == "nightly"} >= catalog_datasets():
                break
            time.sleep(1)
        for deployment in deployments.values():
            client.pause_deployment(deployment.id)
        assert not client.read_flow_runs(flow_run_filter=scheduled), "pausing left scheduled runs"
    return [(deployments[r.deployment_id].name, r) for r in runs]


@pytest.fixture(scope="module")
def cpu_worker(upcoming, start_worker):
    return start_worker("segpipe-cpu")


def test_setup_creates_pools_gpu_limit_and_deployments_without_machine_paths(deployed):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        cpu, gpu = client.read_work_pool("segpipe-cpu"), client.read_work_pool("segpipe-gpu")
        limit = client.read_global_concurrency_limit_by_name(f"tag:{GPU_TAG}")
        deployments = {f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()}
    assert (cpu.type, cpu.concurrency_limit) == ("process", None)
    assert (gpu.type, gpu.concurrency_limit) == ("process", 1)
    env_defaults = [p.base_job_template["variables"]["properties"]["env"]["default"] for p in (cpu, gpu)]
    assert env_defaults == [{"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "0"}]
    assert limit.limit == 1 and limit.active
    assert {name: d.work_pool_name for name, d in deployments.items()} == EXPECTED
    for deployment in deployments.values():
        # deploy ran with SEGPIPE_HOME set; the worker, not the deploying machine, resolves it
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SEGPIPE_HOME }}"}}
        ]
    nightly = deployments["segpipe-pipeline/nightly"]
    assert {s.parameters["dataset"] for s in nightly.schedules if s.active} == catalog_datasets()
    assert {s.parameters["dataset"] for s in deployments["segpipe-pipeline/nightly-gpu"].schedules} == catalog_datasets()
    assert not any(s.active for s in deployments["segpipe-pipeline/nightly-gpu"].schedules)
    assert deployments["segpipe-pipeline/nightly-gpu"].parameters["train"] == {"device": "cuda"}


def test_schedules_create_upcoming_runs_per_dataset(upcoming):
    now = datetime.now(timezone.utc)
    nightly = [run for name, run in upcoming if name == "nightly"]
    assert {run.parameters["dataset"] for run in nightly} == catalog_datasets()
    assert all(run.expected_start_time > now for run in nightly)
    assert all(run.parameters["catalog"] == "data_catalog.yaml" for run in nightly)
    # the inactive GPU schedules create nothing
    assert not [run for name, run in upcoming if name in ("nightly-gpu", "weekly-gpu")]


def _task_states(client, flow_run_id) -> dict[str, str]:
    """``{task: state name}`` of a flow run; generic task names lose their random suffix."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    generic = ("ingest", "train", "prepare-predictions", "pool-scores", "report")
    states = {}
    for run in runs:
        if run.state is None:  # created an instant ago; its first state is not recorded yet
            continue
        name = run.name.rsplit("-", 1)[0] if run.name.rsplit("-", 1)[0] in generic else run.name
        states[name] = run.state.name
    return states


class GpuSlot:
    """Hold the ``segpipe-gpu`` tag concurrency slot from this process, as a training would."""

    def __init__(self, settings):
        self._settings = settings
        self.held, self.release = threading.Event(), threading.Event()
        self.released_at: datetime | None = None
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self):
        from prefect.concurrency.services import ConcurrencySlotAcquisitionService
        from prefect.concurrency.sync import concurrency

        # Prefect keeps one slot service per limit name and process, holding the client of the API it
        # first talked to: an earlier test on the embedded server would leave it pointing there.
        ConcurrencySlotAcquisitionService.drain_all(timeout=30, at_exit=False)
        with self._settings(), concurrency(f"tag:{GPU_TAG}", occupy=1, strict=True):
            self.held.set()
            self.release.wait(timeout=300)
            self.released_at = datetime.now(timezone.utc)

    def __enter__(self):
        self._thread.start()
        assert self.held.wait(timeout=60), "could not take the GPU slot"
        return self

    def __exit__(self, *exc):
        self.release.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def triggered(cpu_worker, deployed, make_crop_catalog, tmp_path_factory):
    """``prefect deployment run`` of the nightly pipeline on crops while another run holds the GPU slot.

    Returns the flow run, its output folder, the catalog, when the slot was released, the
    task states seen while it was held, and the CLI's exit code and output.
    """
    from prefect.client.orchestration import get_client

    catalog = make_crop_catalog()
    out = tmp_path_factory.mktemp("deployed") / "runs"
    params = ["--param", "dataset=crops", "--param", f"catalog={catalog}", "--param", f"output={out}", "--param", 'train={"epochs": 1}']
    with get_client(sync_client=True) as client, GpuSlot(deployed.settings) as slot:
        trigger = subprocess.Popen(
            [sys.executable, "-m", "prefect", "--no-prompt", "deployment", "run", "segpipe-pipeline/nightly", *params,
             "--watch", "--watch-timeout", "300"],
            env=deployed.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            # Another run holds the GPU: this one ingests, then its training waits for the slot.
            deadline, flow_run = time.monotonic() + 240, None
            while time.monotonic() < deadline and trigger.poll() is None:
                flow_run = next((r for r in client.read_flow_runs() if r.parameters.get("output") == str(out)), None)
                if flow_run and _task_states(client, flow_run.id).get("ingest") in ("Completed", "Cached"):
                    break
                time.sleep(1)
            time.sleep(3)
            while_held = _task_states(client, flow_run.id) if flow_run else {}
            model_while_held = (out / "crops" / "model" / "model.pt").exists()
        except BaseException:
            trigger.kill()
            trigger.communicate()
            raise
    try:
        output, _ = trigger.communicate(timeout=300)
    finally:
        if trigger.poll() is None:
            trigger.kill()
    worker_log = Path(cpu_worker).read_text(errors="replace")[-4000:]
    return {
        "flow_run": flow_run, "out": out, "catalog": catalog, "released_at": slot.released_at, "while_held": while_held,
        "model_while_held": model_while_held, "returncode": trigger.returncode, "output": output + "\n" + worker_log,
    }


def test_cli_trigger_completes_after_waiting_for_the_gpu_slot(triggered):
    from prefect.client.orchestration import get_client

    assert triggered["returncode"] == 0, triggered["output"]
    assert triggered["while_held"].get("ingest") in ("Completed", "Cached")
    assert triggered["while_held"].get("train") in (None, "Pending") and not triggered["model_while_held"]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(triggered["flow_run"].id)
        train = [r for r in client.read_task_runs() if r.flow_run_id == flow_run.id and r.name.startswith("train-")]
    assert flow_run.state.name == "Completed"
    assert len(train) == 1 and train[0].start_time >= triggered["released_at"]
    assert train[0].tags == [GPU_TAG]


def test_report_artifacts_read_back_through_the_api(triggered):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    assert triggered["returncode"] == 0, triggered["output"]
    keys = [artifact_key("crops", "report"), artifact_key("crops", "metrics")]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=keys), flow_run_id=ArtifactFilterFlowRunId(any_=[triggered["flow_run"].id])
            )
        )
    by_key = {a.key: a.data for a in artifacts}
    run = triggered["out"] / "crops"
    assert (run / "report.md").read_text().strip() in by_key["crops-report"]
    metrics = json.loads((run / "metrics.json").read_text())
    table = json.loads(by_key["crops-metrics"])
    assert [(row["image"], row["status"], row["seg"]) for row in table] == [
        (r["name"], "scored", r["seg"]) for r in metrics["per_image"]
    ]


def segpipe(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``segpipe`` command in this process (the Prefect client points at the test server)."""
    from segpipe.cli import main

    monkeypatch.setattr(sys, "argv", ["segpipe", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_segpipe_run_submits_to_the_deployment_and_reuses_the_cache(triggered, deployed, monkeypatch, capsys):
    from prefect.client.orchestration import get_client

    assert triggered["returncode"] == 0, triggered["output"]
    code, out, err = segpipe(
        monkeypatch, capsys, "run", "crops", "--deployment", "nightly",
        "--catalog", str(triggered["catalog"]), "--output", str(triggered["out"]), "--epochs", "1",
    )
    assert code == 0, out + err
    assert ": Completed" in out
    flow_run_id = out.split("(")[1].split(")")[0]
    assert (f"submitted flow run {out.split()[2]} ({flow_run_id}) of segpipe-pipeline/nightly; waiting for a worker of "
            "pool segpipe-cpu to run it (1 online)") in err  # at once; it said "none running" beside a running worker
    with get_client(sync_client=True) as client:
        states = _task_states(client, flow_run_id)
    assert states == {
        "ingest": "Cached", "train": "Cached", "prepare-predictions": "Completed", "predict-A9_p9d": "Cached",
        "score-A9_p9d": "Cached", "pool-scores": "Completed", "report": "Completed",
    }


def test_segpipe_run_names_a_missing_deployment(deployed, monkeypatch, capsys):
    code, out, err = segpipe(monkeypatch, capsys, "run", "crops", "--deployment", "no-such")
    assert code == 2
    assert "no deployment named 'segpipe-pipeline/no-such'" in err and "Traceback" not in err
    # it named deploy/setup.py even where the name was a deployment of another flow (inbox is segpipe-segment's)
    assert "--deployment takes a segpipe-pipeline deployment: " in err and "nightly" in err.splitlines()[-1], err


def test_segpipe_run_with_dask_predicts_and_scores_on_a_two_worker_local_cluster(triggered, deployed, monkeypatch, capsys, tmp_path):
    """``segpipe run --runner dask --workers 2`` on a copy of the deployed run, predictions removed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    assert triggered["returncode"] == 0, triggered["output"]
    out = tmp_path / "runs"
    shutil.copytree(triggered["out"], out)
    shutil.rmtree(out / "crops" / "predictions.zarr")
    shutil.rmtree(out / "crops" / "predictions")
    code, stdout, stderr = segpipe(
        monkeypatch, capsys, "run", "crops", "--catalog", str(triggered["catalog"]), "--output", str(out),
        "--epochs", "1", "--runner", "dask", "--workers", "2",
    )
    assert code == 0, stdout + stderr
    summary = json.loads(stdout[stdout.index("{"):])
    expected = json.loads((triggered["out"] / "crops" / "metrics.json").read_text())
    assert summary["seg"] == expected["seg"] and summary["failed"] == []
    assert per_image_scores(out / "crops" / "metrics.json") == per_image_scores(triggered["out"] / "crops" / "metrics.json")
    with get_client(sync_client=True) as client:
        flow_run = next(r for r in client.read_flow_runs() if r.parameters.get("output") == str(out))
        assert flow_run.parameters["runner"]["kind"] == "dask" and flow_run.parameters["runner"]["workers"] == 2
        states = _task_states(client, flow_run.id)
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))]
    assert states["predict-A9_p9d"] == "Completed" and states["score-A9_p9d"] in ("Completed", "Cached")
    predicted_in = [m for m in logs if m.startswith("A9_p9d: predicted in ")]
    assert len(predicted_in) == 1 and f"process {os.getpid()} " not in predicted_in[0]  # on a Dask worker
    assert (out / "crops" / "predictions" / "A9_p9d_instances.tif").is_file()
    assert not (out / "crops" / ".dask-scratch").exists()  # the cluster's scratch space in the run folder went with it


def per_image_scores(path: Path) -> list[tuple]:
    return [(row["name"], row["seg"], row["iou"]) for row in json.loads(path.read_text())["per_image"]]


def test_setup_run_again_keeps_each_schedule_on_or_off_as_the_server_has_it(deployed):
    """A schedule paused on the server was turned back on by the next setup.py (which adding a
    dataset needs), and a resumed inbox turned back off."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = next(d for d in client.read_deployments() if d.name == "nightly")
        paused = next(s for s in nightly.schedules if s.slug == "nightly-bbbc007")
        client.update_deployment_schedule(nightly.id, paused.id, active=False)
    result = subprocess.run([sys.executable, "deploy/setup.py"], cwd=ROOT, env=deployed.env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with get_client(sync_client=True) as client:
        nightly = next(d for d in client.read_deployments() if d.name == "nightly")
        for deployment in client.read_deployments():
            client.pause_deployment(deployment.id)  # nothing scheduled is left behind for the module's worker
    active = {s.slug: s.active for s in nightly.schedules}
    assert active["nightly-bbbc007"] is False and sum(active.values()) == len(active) - 1


def test_ctrl_c_while_waiting_for_a_deployment_run_cancels_it_on_the_server(deployed, make_crop_catalog, tmp_path):
    """Ctrl-C while `segpipe run --deployment` waited left its flow run Scheduled on the server: a worker
    ran it later, beside the rerun, in the same folder. (No worker serves the GPU pool here: it waits.)"""
    import os
    import signal

    from prefect.client.orchestration import get_client

    catalog = make_crop_catalog()
    run = subprocess.Popen(
        [sys.executable, "-c", "from segpipe.cli import main; main()", "run", "crops", "--deployment", "nightly-gpu",
         "--catalog", str(catalog), "--output", str(tmp_path / "runs")],
        env=deployed.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        submitted = run.stderr.readline()  # said at once, before any wait
        assert submitted.startswith("submitted flow run "), submitted
        assert "; no worker of pool segpipe-gpu is online, so it waits, Scheduled then Late" in submitted, submitted
        flow_run_id = submitted.split("(")[1].split(")")[0]
        time.sleep(3)
        os.killpg(run.pid, signal.SIGINT)
        _, rest = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode == 130 and "Traceback" not in rest, rest[-3000:]
    assert f"flow run {submitted.split()[3]} ({flow_run_id}) cancelled on the server" in rest
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).state.name == "Cancelled"
