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
    with quiet_expected_errors():
        state = segpipe_pipeline(**parameters, return_state=True)
    if state.is_failed():
        error = state.result(raise_on_failure=False)
        if isinstance(error, SegpipeError | OSError):
            raise error
    return state


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


def submit(deployment: str, given: dict[str, Any], *, wait: bool = True, poll_seconds: float = 2.0):
    """Create a run of ``deployment`` with the ``given`` parameters over the deployment's own.

    Args:
        deployment: ``NAME`` of a segpipe-pipeline deployment, or ``FLOW/NAME``.
        given: The parameters given on the command line; nested ones (``train``, ``predict``)
            are merged field by field into the deployment's, which fill everything else.
        wait: Poll until the run is final; otherwise return it as scheduled.
        poll_seconds: Seconds between polls.

    Returns:
        The flow run (its ``state`` is final when ``wait``).

    Raises:
        SubmitError: No server is configured, or it has no such deployment.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise SubmitError(
            "--deployment needs a Prefect server: set PREFECT_API_URL (see deploy/README.md), "
            "or leave --deployment out to run here"
        )
    name = deployment_name(deployment)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    try:
        with get_client(sync_client=True) as client:
            defaults = client.read_deployment_by_name(name).parameters
        parameters = merged(defaults, given)
        return run_deployment(name, parameters=parameters, timeout=None if wait else 0, poll_interval=poll_seconds)
    except ObjectNotFound as err:
        raise SubmitError(f"{PREFECT_API_URL.value()}: no deployment named {name!r} (deploy with deploy/setup.py)") from err
