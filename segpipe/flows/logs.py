"""segpipe's own log lines (training and prediction progress, per-stage notes) in Prefect's run logs.

The library logs through the ``segpipe`` loggers and knows nothing of Prefect. Inside a flow or
task run, :class:`RunLogHandler` sends those records to the run's logs (the UI, ``prefect flow-run
logs``); outside a run it does nothing, so the library's CLI and tests are unaffected.
"""

from __future__ import annotations

import contextlib
import logging

from prefect.logging.handlers import APILogHandler


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, for records emitted inside a flow or task run only."""

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        super().emit(record)


def forward_segpipe_logs(level: int = logging.INFO) -> None:
    """Install :class:`RunLogHandler` on the ``segpipe`` logger once per process (idempotent)."""
    logger = logging.getLogger("segpipe")
    if not any(isinstance(handler, RunLogHandler) for handler in logger.handlers):
        logger.addHandler(RunLogHandler())
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)


class _NoTracebackFor(logging.Filter):
    """Drop the traceback of records about errors that are the input's or the machine's, not bugs."""

    def __init__(self, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, self.expected):
            record.exc_info, record.exc_text = None, None
            return bool(record.getMessage().strip())  # a record that was only its traceback says nothing
        return True


@contextlib.contextmanager
def quiet_expected_errors(
    loggers: tuple[str, ...] = ("prefect.flow_runs", "prefect.task_runs"), *, also: tuple[type[BaseException], ...] = ()
):
    """While a flow runs here, log its bad-input and OS errors (and ``also``: a lost Dask scheduler)
    in one line each, without a traceback (the command line prints them in one line too); at debug
    level tracebacks stay."""
    from segpipe.errors import SegpipeError

    if logging.getLogger("segpipe").isEnabledFor(logging.DEBUG):
        yield
        return
    quiet = _NoTracebackFor((SegpipeError, OSError, *also))
    filters = [(logging.getLogger(name), quiet) for name in loggers]
    if also:  # a lost scheduler: the Dask client's own reconnection tracebacks too (the command says what happened)
        import asyncio

        from distributed.comm.core import CommClosedError

        lost = _NoTracebackFor((asyncio.CancelledError, CommClosedError, OSError, TimeoutError, *also))
        filters.append((logging.getLogger("distributed.client"), lost))
    for logger, kept_out in filters:
        logger.addFilter(kept_out)
    try:
        yield
    finally:
        for logger, kept_out in filters:
            logger.removeFilter(kept_out)
