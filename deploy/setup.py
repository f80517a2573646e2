"""Set up segpipe on the Prefect server at PREFECT_API_URL: work pools, GPU limit, deployments.

    python deploy/setup.py [--gpu-slots N] [--catalog data_catalog.yaml]

1. Work pools from ``deploy/work-pools/*.json`` (process workers): ``segpipe-cpu`` (flow runs
   see no GPU) and ``segpipe-gpu`` (GPU 0, one flow run at a time: concurrency limit 1).
2. The ``segpipe-gpu`` tag concurrency limit: every train task carries that tag, so at most
   ``--gpu-slots`` trainings run at once on the whole server, whichever pool or schedule
   started them.
3. ``prefect deploy --all`` of ``deploy/prefect.yaml`` from the repository root, with one
   schedule per catalog dataset (:mod:`segpipe.flows.schedules`: the file's default schedule of
   each deployment, or the catalog's own), and with SEGPIPE_HOME unset so that the pull step
   keeps ``{{ $SEGPIPE_HOME }}`` for the worker.

Running it again updates everything, and keeps each existing schedule on or off as it was (a
schedule resumed or paused with ``prefect deployment schedule`` stays so; a new one takes the
file's ``active``). deploy/README.md lists the same steps as CLI commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POOLS = {"segpipe-cpu": None, "segpipe-gpu": 1}  # pool name -> flow-run concurrency limit
GPU_TAG = "segpipe-gpu"


async def create_pools_and_limits(gpu_slots: int) -> None:
    """Create (or overwrite) the work pools and the GPU tag concurrency limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    async with get_client() as client:
        for name, limit in POOLS.items():
            template = json.loads((HERE / "work-pools" / f"{name}.json").read_text())
            pool = WorkPoolCreate(name=name, type="process", base_job_template=template, concurrency_limit=limit)
            await client.create_work_pool(pool, overwrite=True)
            print(f"work pool {name}: process, concurrency limit {limit or 'none'}")
        await client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=gpu_slots)
        print(f"tag concurrency limit {GPU_TAG}: {gpu_slots}")


def project_with_schedules(catalog: Path) -> dict:
    """``deploy/prefect.yaml`` with one schedule per dataset of ``catalog`` in each scheduled deployment."""
    from segpipe.flows.schedules import expand_project
    from segpipe.pipeline.catalog import open_catalog

    project = yaml.safe_load((HERE / "prefect.yaml").read_text())
    loaded = open_catalog(catalog)
    loaded.check()  # every entry gets schedules: an invalid one is refused here, before anything is created
    return expand_project(project, loaded)


def flow_name(entrypoint: str) -> str:
    """The name of the flow an entrypoint (``segpipe/flows/segment.py:segpipe_segment``) names."""
    import importlib

    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name).name


async def schedules_on_server() -> dict[tuple[str, str, str], bool]:
    """``{(flow, deployment, schedule slug): active}`` of the deployments already on the server."""
    from prefect.client.orchestration import get_client

    deployments, page = [], 200
    async with get_client() as client:
        while True:  # every page: a shared server may hold more deployments than one answer gives
            batch = await client.read_deployments(limit=page, offset=len(deployments))
            deployments += batch
            if len(batch) < page:
                break
        flows = {flow_id: (await client.read_flow(flow_id)).name for flow_id in {d.flow_id for d in deployments}}
    return {(flows[d.flow_id], d.name, s.slug): s.active for d in deployments for s in d.schedules if s.slug}


def keeping_states(project: dict, states: dict[tuple[str, str, str], bool]) -> dict:
    """``project`` with each schedule the server already has set on or off as it is there (to switch
    one, `prefect deployment schedule pause|resume`: the file's ``active`` counts for new ones only)."""
    for deployment in project["deployments"]:
        flow = flow_name(deployment["entrypoint"])
        for schedule in deployment.get("schedules") or []:
            key = (flow, deployment["name"], schedule.get("slug"))
            if key in states:
                schedule["active"] = states[key]
    return project


def deploy(catalog: Path) -> None:
    """``prefect deploy --all`` from the repository root, without baking in SEGPIPE_HOME."""
    env = {k: v for k, v in os.environ.items() if k != "SEGPIPE_HOME"}
    project = keeping_states(project_with_schedules(catalog), asyncio.run(schedules_on_server()))
    with tempfile.TemporaryDirectory() as tmp:
        expanded = Path(tmp) / "prefect.yaml"
        expanded.write_text(yaml.safe_dump(project, sort_keys=False))
        command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(expanded)]
        subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-slots", type=int, default=1, help="trainings that may hold a GPU at once (default 1)")
    parser.add_argument("--catalog", type=Path, default=ROOT / "data_catalog.yaml", help="catalog whose datasets get schedules")
    args = parser.parse_args(argv)
    if args.gpu_slots < 1:
        parser.error("--gpu-slots must be at least 1")
    import httpx
    from prefect.settings import PREFECT_API_URL

    from segpipe.errors import SegpipeError

    url = PREFECT_API_URL.value()
    if not url:  # Prefect would start a temporary server, set everything up on it and throw it away
        _refuse("PREFECT_API_URL is not set: point it at your Prefect server (deploy/README.md, step 2)")
    try:
        project_with_schedules(args.catalog)  # a bad catalog fails before anything is created
        asyncio.run(create_pools_and_limits(args.gpu_slots))
        deploy(args.catalog)
    except SegpipeError as err:
        _refuse(str(err))
    except httpx.HTTPError as err:  # connection refused, a name that does not resolve, a timeout
        _refuse(f"{url}: no Prefect server answers ({err}); start it first (deploy/README.md, step 1)")


def _refuse(line: str) -> None:
    """One line on stderr and exit code 2, as segpipe's commands end on bad input."""
    print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
