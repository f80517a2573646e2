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


def _logged(name: str, message: str, error: BaseException) -> str:
    """What a handler on ``name`` writes for ``message`` logged with ``error``'s traceback."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(name)
    kept = logger.handlers, logger.propagate  # Prefect's API handler warns outside a run: this handler alone
    logger.handlers, logger.propagate = [handler], False
    try:
        try:
            raise error
        except BaseException:  # noqa: BLE001
            logger.error(message, exc_info=True)
    finally:
        logger.handlers, logger.propagate = kept
    return stream.getvalue()


def test_a_lost_dask_scheduler_is_one_line_each_not_tracebacks():
    """Killing the scheduler of `segment --runner dask --dask-address` printed Prefect's 40-line
    traceback and the Dask client's, then the command's own line; now the lines alone (a bug of
    the pipeline, another error type, keeps its traceback)."""
    import asyncio

    from distributed.client import FutureCancelledError

    from segpipe.flows.logs import quiet_expected_errors

    lost = FutureCancelledError("segment_input_task-1", reason="scheduler-connection-lost")
    assert "Traceback" in _logged("prefect.flow_runs", "Encountered exception", lost)
    with quiet_expected_errors(also=(FutureCancelledError,)):
        assert _logged("prefect.flow_runs", "Encountered exception", lost) == "Encountered exception\n"
        assert _logged("distributed.client", "", asyncio.CancelledError()) == ""  # only a traceback: dropped
        assert _logged("distributed.client", "Failed to reconnect", asyncio.CancelledError()) == "Failed to reconnect\n"
        assert "Traceback" in _logged("prefect.flow_runs", "Encountered exception", KeyError("a bug"))
    assert "Traceback" in _logged("distributed.client", "", asyncio.CancelledError())  # only while the flow runs


def test_the_command_says_what_the_cluster_lost_and_that_a_rerun_resumes(tmp_path):
    from distributed.client import FutureCancelledError

    from segpipe.cli.segment import _cluster_lost
    from segpipe.flows.runners import RunnerParams

    lost = FutureCancelledError("segment_input_task-1", reason="scheduler-connection-lost")
    runner = RunnerParams(kind="dask", address="tcp://10.0.0.5:8786")
    assert _cluster_lost(lost, runner, tmp_path / "out") == (
        "the Dask scheduler at tcp://10.0.0.5:8786 stopped answering during the run (scheduler-connection-lost); "
        f"the inputs finished are kept in {tmp_path / 'out'}: run the same command again to segment the rest")


def test_prefects_records_of_an_error_the_command_says_are_held_off_the_terminal():
    """`segpipe run` on an empty label file said it four times: the task's final state, the flow's
    exception, the flow's final state (Prefect's records), then the command's line."""
    import io

    from segpipe.errors import InputError
    from segpipe.flows.logs import quiet_expected_errors

    stream = io.StringIO()
    terminal = logging.StreamHandler(stream)
    root, flows, tasks = logging.getLogger(), logging.getLogger("prefect.flow_runs"), logging.getLogger("prefect.task_runs")
    prefect = logging.getLogger("prefect")  # Prefect's logging setup, in a process that ran a flow, sets its level
    kept = [(lg, lg.handlers, lg.propagate, lg.level, lg.disabled) for lg in (root, prefect, flows, tasks)]
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    root.handlers, root.level = [terminal], logging.INFO
    prefect.level = logging.INFO
    for lg in (flows, tasks):  # a logging configuration loaded earlier in this worker may have disabled them
        lg.handlers, lg.propagate, lg.level, lg.disabled = [], True, logging.NOTSET, False
    bad = InputError("labels/a.tif: file is empty (0 bytes)")
    other = InputError("images/b.tif: not a readable TIFF")
    try:
        with quiet_expected_errors() as held:
            flows.info("Beginning flow run 'x'")
            tasks.error(f"Finished in state Failed('Task run encountered an exception InputError: {other}')")
            tasks.error(f"Finished in state Failed('Task run encountered an exception InputError: {bad}')")
            try:
                raise bad
            except InputError:
                flows.error("Encountered exception during execution: %r", bad, exc_info=True)
            flows.info(f"Finished in state Failed('Flow run encountered an exception: InputError: {bad}')")
            tasks.error("Finished in state Failed('Task run encountered an exception ValueError: a bug')")
            assert stream.getvalue().splitlines() == ["Beginning flow run 'x'", "Finished in state Failed('Task run "
                                                      "encountered an exception ValueError: a bug')"]  # bugs: at once
            held.said(bad)
    finally:
        for lg, handlers, propagate, level, off in kept:
            lg.handlers, lg.propagate, lg.level, lg.disabled = handlers, propagate, level, off
        logging.disable(disabled)
    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if "a.tif" in line]  # the command says it, once
    assert lines[-1] == f"Finished in state Failed('Task run encountered an exception InputError: {other}')"  # not said: printed
    assert "Traceback" not in stream.getvalue()
