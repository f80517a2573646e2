"""The deployment files agree with the flows, the catalog and each other (no server needed)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from pathlib import Path

import pytest
import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load((DEPLOY / "prefect.yaml").read_text())


def catalog_datasets() -> set[str]:
    return set(yaml.safe_load((ROOT / "data_catalog.yaml").read_text())["datasets"])


def load_entrypoint(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_every_flow_has_a_deployment_whose_parameters_it_accepts(project):
    flows = {}
    for deployment in project["deployments"]:
        flow = load_entrypoint(deployment["entrypoint"])
        assert isinstance(flow, Flow)
        accepted = set(inspect.signature(flow.fn).parameters)
        given = set(deployment.get("parameters", {}))
        for schedule in deployment.get("schedules", []):
            given |= set(schedule.get("parameters", {}))
        assert given <= accepted, (deployment["name"], given - accepted)
        flows.setdefault(flow.name, []).append(deployment["name"])
    assert set(flows) == {"segpipe-pipeline", "segpipe-ingest", "segpipe-train", "segpipe-predict", "segpipe-evaluate"}


def test_every_catalog_dataset_is_scheduled_in_every_scheduled_deployment(project):
    for deployment in project["deployments"]:
        schedules = deployment.get("schedules", [])
        if schedules:
            assert {s["parameters"]["dataset"] for s in schedules} == catalog_datasets(), deployment["name"]
            assert all(s["timezone"] == "UTC" and len(s["cron"].split()) == 5 for s in schedules)
    nightly = next(d for d in project["deployments"] if d["name"] == "nightly")
    assert all(s.get("active", True) for s in nightly["schedules"])


def test_pull_step_resolves_the_checkout_on_the_worker(project):
    assert project["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SEGPIPE_HOME }}"}}
    ]
    assert project["build"] is None and project["push"] is None


def test_work_pools_are_defined_and_used(project):
    spec = importlib.util.spec_from_file_location("segpipe_deploy_setup", DEPLOY / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    POOLS = setup.POOLS

    files = {path.stem for path in (DEPLOY / "work-pools").glob("*.json")}
    used = {d["work_pool"]["name"] for d in project["deployments"]}
    assert used == files == set(POOLS)
    for name in files:
        template = json.loads((DEPLOY / "work-pools" / f"{name}.json").read_text())
        assert template["job_configuration"]["env"] == "{{ env }}"
        assert "working_dir" in template["variables"]["properties"]
    gpu_deployments = [d for d in project["deployments"] if d["work_pool"]["name"] == "segpipe-gpu"]
    assert all(d["parameters"].get("device") == "cuda" for d in gpu_deployments)


def test_compose_file_wires_postgres_server_and_worker(project):
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "server", "setup", "worker"} <= set(services)
    db = services["postgres"]["environment"]
    url = services["server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and f"@postgres:5432/{db['POSTGRES_DB']}" in url
    assert f"//{db['POSTGRES_USER']}:" in url
    pools = {d["work_pool"]["name"] for d in project["deployments"]}
    for name in ("worker", "gpu-worker"):
        service = services[name]
        assert service["command"][:4] == ["prefect", "worker", "start", "--pool"] and service["command"][4] in pools
        assert service["environment"]["PREFECT_API_URL"] == "http://server:4200/api"
        assert service["environment"]["SEGPIPE_HOME"] == "/opt/segpipe"
    assert services["setup"]["command"] == ["python", "deploy/setup.py"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "SEGPIPE_HOME=/opt/segpipe" in dockerfile and "WORKDIR /opt/segpipe" in dockerfile


def test_worker_dask_config_unsets_malloc_trimming():
    config = yaml.safe_load((DEPLOY / "dask.yaml").read_text())
    assert config["distributed"]["nanny"]["pre-spawn-environ"] == {"MALLOC_TRIM_THRESHOLD_": None}
    assert "COPY deploy/dask.yaml /etc/dask/segpipe.yaml" in (DEPLOY / "Dockerfile").read_text()
