"""segpipe's log lines reach a run's Prefect logs, and only from inside a run."""

from __future__ import annotations

import logging


def test_library_lines_inside_a_task_reach_the_run_logs(prefect_harness):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.context import get_run_context
    from prefect.logging.handlers import APILogWorker

    from segpipe.flows.logs import RunLogHandler, forward_segpipe_logs

    forward_segpipe_logs()
    forward_segpipe_logs()  # idempotent
    assert sum(isinstance(h, RunLogHandler) for h in logging.getLogger("segpipe").handlers) == 1
    logging.getLogger("segpipe.progress").info("outside any run: not sent, no warning")

    @task
    def work() -> None:
        logging.getLogger("segpipe.progress").info("train: 5/10 it (50%)")

    @flow
    def run() -> str:
        work()
        return str(get_run_context().flow_run.id)

    flow_run_id = run()
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    messages = [log.message for log in logs]
    assert "train: 5/10 it (50%)" in messages
    assert not any("outside any run" in m for m in messages)
