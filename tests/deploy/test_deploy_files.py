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


def load_setup():
    spec = importlib.util.spec_from_file_location("segpipe_deploy_setup", DEPLOY / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    return setup


@pytest.fixture(scope="module")
def project() -> dict:
    """What deploy/setup.py deploys: prefect.yaml with one schedule per dataset of the bundled catalog."""
    return load_setup().project_with_schedules(ROOT / "data_catalog.yaml")


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
        # nested parameter objects (train, predict, runner) validate against the flow's models
        dataset = {"dataset": "bbbc007"} if "dataset" in accepted else {}
        flow.validate_parameters({**dataset, **deployment.get("parameters", {})})
        flows.setdefault(flow.name, []).append(deployment["name"])
    assert set(flows) == {"segpipe-pipeline", "segpipe-ingest", "segpipe-train", "segpipe-predict", "segpipe-evaluate", "segpipe-segment"}


def test_every_catalog_dataset_is_scheduled_in_every_scheduled_deployment(project):
    for deployment in project["deployments"]:
        schedules = deployment.get("schedules", [])
        if schedules and deployment["name"] in project["definitions"]["schedules"]:
            assert {s["parameters"]["dataset"] for s in schedules} == catalog_datasets(), deployment["name"]
            assert all(s["timezone"] == "UTC" and len(s["cron"].split()) == 5 for s in schedules)
    nightly = next(d for d in project["deployments"] if d["name"] == "nightly")
    assert all(s.get("active", True) for s in nightly["schedules"])
    starts = [60 + 20 * i for i in range(len(catalog_datasets()))]  # dataset i at 01:00 plus i x 20 minutes
    assert [s["cron"] for s in nightly["schedules"]] == [f"{m % 60} {m // 60} * * *" for m in starts]
    assert nightly["schedules"][1]["cron"] == "20 1 * * *"


def test_a_new_dataset_is_scheduled_without_editing_the_deployments(tmp_path):
    """A catalog entry is all it takes; its ``schedule:`` key and the catalog's ``schedules:`` override."""
    catalog = yaml.safe_load((ROOT / "data_catalog.yaml").read_text())
    for entry in catalog["datasets"].values():  # the copy lives elsewhere: point at the bundled files
        entry["allow_outside_root"] = True
        for key in ("images", "labels"):
            entry[key] = str(ROOT / entry[key])
    catalog["datasets"]["new-cells"] = {
        **catalog["datasets"]["bbbc007"], "schedule": {"nightly": "30 4 * * 1", "refresh": False},
    }
    catalog["schedules"] = {"rescore": {"cron": "0 7 * * *", "active": False}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    expanded = {d["name"]: d.get("schedules", []) for d in load_setup().project_with_schedules(path)["deployments"]}
    by_dataset = {  # the inbox deployment has one fixed schedule of its own, not one per dataset
        name: {s["parameters"]["dataset"]: s for s in schedules} for name, schedules in expanded.items() if name != "inbox"
    }
    assert by_dataset["nightly"]["new-cells"]["cron"] == "30 4 * * 1"
    assert by_dataset["nightly"]["bbbc007"]["cron"] == "0 1 * * *"  # the others keep their staggered defaults
    assert "new-cells" not in by_dataset["refresh"] and "bbbc007" in by_dataset["refresh"]
    assert {s["cron"] for s in by_dataset["rescore"].values()} == {"0 7 * * *"}
    assert not any(s["active"] for s in by_dataset["rescore"].values())
    assert by_dataset["nightly"]["new-cells"]["slug"] == "nightly-new-cells"


@pytest.mark.parametrize(("schedule", "message"), [
    ({"nightlyy": "0 4 * * *"}, r"dataset 'new-cells': schedule: 'nightlyy' names no scheduled deployment of deploy/prefect.yaml \("),
    ({"nightly": "not a cron"}, r"dataset 'new-cells': schedule.nightly: 'not a cron' is no cron expression"),
    ({"nightly": {"cron": "0 3 * * *", "timezone": "Mars/Base"}}, r"schedule.nightly.timezone: 'Mars/Base' is no time zone"),
])
def test_a_schedule_that_cannot_run_is_refused_before_anything_is_deployed(tmp_path, schedule, message):
    """A misspelt deployment was ignored (the default taken); a bad cron passed the catalog and ended setup in a traceback."""
    from segpipe.errors import CatalogError

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.tif").write_bytes(b"x")
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"new-cells": {"images": "img/*.tif", "model": "cells-2d", "schedule": schedule}}}))
    with pytest.raises(CatalogError, match=message):
        load_setup().project_with_schedules(path)


def test_pull_step_resolves_the_checkout_on_the_worker(project):
    assert project["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SEGPIPE_HOME }}"}}
    ]
    assert project["build"] is None and project["push"] is None


def test_work_pools_are_defined_and_used(project):
    POOLS = load_setup().POOLS

    files = {path.stem for path in (DEPLOY / "work-pools").glob("*.json")}
    used = {d["work_pool"]["name"] for d in project["deployments"]}
    assert used == files == set(POOLS)
    for name in files:
        template = json.loads((DEPLOY / "work-pools" / f"{name}.json").read_text())
        assert template["job_configuration"]["env"] == "{{ env }}"
        assert "working_dir" in template["variables"]["properties"]
    gpu_deployments = [d for d in project["deployments"] if d["work_pool"]["name"] == "segpipe-gpu"]
    for deployment in gpu_deployments:
        devices = [deployment["parameters"].get(stage, {}).get("device") for stage in ("train", "predict")]
        assert "cuda" in devices and set(devices) <= {"cuda", None}


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


def test_every_folder_a_deployment_reads_or_writes_is_kept_outside_the_worker_container(project):
    """The inbox deployment read inbox/ and wrote segmented/ inside the container: the host could not
    drop images in, and a rebuild lost the results."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounted = {entry.split(":")[1] for entry in compose["services"]["worker"]["volumes"]}
    folders = set()
    for deployment in project["deployments"]:
        parameters = deployment.get("parameters") or {}
        paths = [parameters.get(key) for key in ("output", "runs")] + list(parameters.get("inputs") or [])
        folders |= {f"/opt/segpipe/{Path(path).parts[0]}" for path in paths if isinstance(path, str)}
    assert folders and folders <= mounted, folders - mounted


def test_worker_dask_config_unsets_malloc_trimming():
    config = yaml.safe_load((DEPLOY / "dask.yaml").read_text())
    assert config["distributed"]["nanny"]["pre-spawn-environ"] == {"MALLOC_TRIM_THRESHOLD_": None}
    assert "COPY deploy/dask.yaml /etc/dask/segpipe.yaml" in (DEPLOY / "Dockerfile").read_text()


def test_a_schedule_turned_on_or_off_on_the_server_stays_so_when_setup_runs_again(project):
    """Re-running setup.py (which adding a dataset needs) turned a resumed inbox back off and a
    paused nightly schedule back on: every schedule took the file's `active` again."""
    import copy

    setup = load_setup()
    states = {("segpipe-segment", "inbox", "inbox"): True, ("segpipe-pipeline", "nightly", "nightly-bbbc007"): False,
              ("another-flow", "inbox", "inbox"): False}  # another flow's deployment of the same name: not this one
    kept = setup.keeping_states(copy.deepcopy(project), states)
    by_slug = {(d["name"], s["slug"]): s["active"] for d in kept["deployments"] for s in d.get("schedules") or []}
    assert by_slug[("inbox", "inbox")] is True and by_slug[("nightly", "nightly-bbbc007")] is False
    unchanged = {(d["name"], s["slug"]): s["active"] for d in project["deployments"] for s in d.get("schedules") or []}
    changed = {("inbox", "inbox"), ("nightly", "nightly-bbbc007")}
    assert {k: v for k, v in by_slug.items() if k not in changed} == {k: v for k, v in unchanged.items() if k not in changed}
    assert unchanged[("inbox", "inbox")] is False  # the file's default, for a server that has none yet
