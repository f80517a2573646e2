"""segpipe's own log lines (training and prediction progress, per-stage notes) in Prefect's run logs.

The library logs through the ``segpipe`` loggers and knows nothing of Prefect. Inside a flow or
task run, :class:`RunLogHandler` sends those records to the run's logs (the UI, ``prefect flow-run
logs``); outside a run it does nothing, so the library's CLI and tests are unaffected.
"""

from __future__ import annotations

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
