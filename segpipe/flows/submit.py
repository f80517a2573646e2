"""Run the pipeline from the command line: in this process, or as a run of a deployment on a server."""

from __future__ import annotations

import logging
from typing import Any

from segpipe.errors import SegpipeError

PIPELINE_FLOW = "segpipe-pipeline"


class SubmitError(SegpipeError):
    """A run could not be submitted to a deployment (no server, no such deployment)."""


def run_here(parameters: dict[str, Any]):
    """Run the pipeline flow in this process; returns its final state.

    A flow that failed on bad input or an operating-system error (a full disk, a read-only
    folder) re-raises that error (a :class:`SegpipeError` or :class:`OSError`), so the CLI reports
    it in one line; other failures come back as the Failed state. Those errors are logged
    without their traceback (they are not bugs) unless ``segpipe`` logs at debug level.
    """
    from segpipe.flows.embedded import start_embedded_server
    from segpipe.flows.logs import quiet_expected_errors
    from segpipe.flows.pipeline import segpipe_pipeline

    start_embedded_server()
    with quiet_expected_errors() as held:
        state = segpipe_pipeline(**parameters, return_state=True)
        if state.is_failed():
            error = state.result(raise_on_failure=False)
            if isinstance(error, SegpipeError | OSError):
                held.said(error)
                raise error
    return state


def server_unreachable(url: str, reason: str | None = None) -> str:
    """The one line for a Prefect server at PREFECT_API_URL that does not answer."""
    why = f" ({reason})" if reason else ""
    return (f"{url}: no Prefect server answers{why}; start it (deploy/README.md), or unset PREFECT_API_URL to run on "
            "Prefect's embedded server")


def failed_on_input(message: str) -> str | None:
    """The error of a flow run that failed on bad input or an operating-system error, from its final
    state's message (Prefect's ``Flow run encountered an exception: CatalogError: ...``), as the
    CLI's one line says it; ``None`` for any other failure."""
    import re

    from segpipe.flows.logs import error_type

    found = re.match(r"Flow run encountered an exception: (\w+): (.*)", message, re.DOTALL)
    if found is None:
        return None
    kind = error_type(found.group(1))
    known = kind is not None and issubclass(kind, SegpipeError | OSError)
    return found.group(2).strip().splitlines()[0] if known else None


def deployment_name(name: str) -> str:
    """``nightly`` -> ``segpipe-pipeline/nightly``; a full ``FLOW/DEPLOYMENT`` name is kept."""
    return name if "/" in name else f"{PIPELINE_FLOW}/{name}"


def merged(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``defaults``, key by key into nested parameter objects."""
    out = dict(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def submit(deployment: str, given: dict[str, Any], *, wait: bool = True, poll_seconds: float = 2.0, say=print):
    """Create a run of ``deployment`` with the ``given`` parameters over the deployment's own.

    Args:
        deployment: ``NAME`` of a segpipe-pipeline deployment, or ``FLOW/NAME``.
        given: The parameters given on the command line; nested ones (``train``, ``predict``)
            are merged field by field into the deployment's, which fill everything else.
        wait: Poll until the run is final; otherwise return it as scheduled. Ctrl-C while waiting
            cancels the run on the server (a worker would otherwise run it later, beside the
            rerun), then stops.
        poll_seconds: Seconds between polls.
        say: Where the line naming the submitted run goes (at once, before any wait).

    Returns:
        The flow run (its ``state`` is final when ``wait``).

    Raises:
        SubmitError: No server is configured or none answers, or it has no such deployment.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise SubmitError(
            "--deployment needs a Prefect server: set PREFECT_API_URL (see deploy/README.md), "
            "or leave --deployment out to run here"
        )
    name = deployment_name(deployment)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    try:
        with get_client(sync_client=True) as client:
            try:
                found = client.read_deployment_by_name(name)
            except ObjectNotFound:
                raise SubmitError(f"{url}: no deployment named {name!r}; {_known(client)}") from None
            waiting = _waiting_for(client, found.work_pool_name) if wait else ""
        flow_run = run_deployment(name, parameters=merged(found.parameters, given), timeout=0)
        say(f"submitted flow run {flow_run.name} ({flow_run.id}) of {name}{waiting}")
        return _wait(flow_run, poll_seconds) if wait else flow_run
    except httpx.HTTPError as err:  # connection refused, a name that does not resolve, a timeout
        raise SubmitError(server_unreachable(url, str(err) or type(err).__name__)) from None


def _waiting_for(client, pool: str | None) -> str:
    """What the run waits for: the pool's online workers, or that none is (it stays Scheduled, then Late)."""
    if not pool:
        return "; waiting for a worker to run it"
    from prefect.client.schemas.objects import WorkerStatus

    online = [w for w in client.read_workers_for_work_pool(work_pool_name=pool) if w.status == WorkerStatus.ONLINE]
    if online:
        return f"; waiting for a worker of pool {pool} to run it ({len(online)} online)"
    return (f"; no worker of pool {pool} is online, so it waits, Scheduled then Late, until one starts "
            f"(prefect worker start --pool {pool})")


def _known(client) -> str:
    """What the server does have: the segpipe-pipeline deployments, by name."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    deployments = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[PIPELINE_FLOW])))
    names = sorted(d.name for d in deployments)
    return (f"--deployment takes a {PIPELINE_FLOW} deployment: {', '.join(names)}" if names
            else f"the server has no {PIPELINE_FLOW} deployment (deploy with deploy/setup.py)")


def _wait(flow_run, poll_seconds: float):
    """``flow_run`` once final; Ctrl-C (or SIGTERM) cancels it on the server first."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    with get_client(sync_client=True) as client:
        try:
            while not (flow_run.state and flow_run.state.is_final()):
                time.sleep(poll_seconds)
                flow_run = client.read_flow_run(flow_run.id)
            return flow_run
        except BaseException:
            current = client.read_flow_run(flow_run.id).state
            if current is not None and not current.is_final():
                stop = Cancelling if current.is_running() else Cancelled
                client.set_flow_run_state(flow_run.id, stop(message="stopped from the command that submitted it"), force=True)
                logging.getLogger(__name__).warning("flow run %s (%s) cancelled on the server", flow_run.name, flow_run.id)
            raise
