"""segpipe's own log lines (training and prediction progress, per-stage notes) in Prefect's run logs.

The library logs through the ``segpipe`` loggers and knows nothing of Prefect. Inside a flow or
task run, :class:`RunLogHandler` sends those records to the run's logs (the UI, ``prefect flow-run
logs``); outside a run it does nothing, so the library's CLI and tests are unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

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
    """Drop the traceback of records about errors that are the input's or the machine's, not bugs;
    mark the records it drops one from (``expected_error``)."""

    def __init__(self, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, self.expected):
            record.exc_info, record.exc_text = None, None
            record.expected_error = True
            return bool(record.getMessage().strip())  # a record that was only its traceback says nothing
        return True


#: How Prefect's final states name the error a task or flow run ended on.
_STATE_ERROR = re.compile(r"(?:Task|Flow) run encountered an exception:? (\w+): ")


class HeldLines(logging.Filter):
    """Prefect's records of runs that ended on an expected error, kept off the terminal until the
    command knows whether it says that error itself.

    A flow that fails on bad input logs it three times (the task's final state, the flow's
    exception, the flow's final state) before the command's own line says it once more. Prefect's
    own handlers (the run's logs on the server) get every record; only the terminal's handlers
    wait. :meth:`said` drops the held records about the error the command prints; the rest (an
    image that failed while the run went on) are printed when the flow is over.
    """

    def __init__(self, expected: tuple[type[BaseException], ...], handlers: list[logging.Handler]):
        super().__init__()
        self.expected, self.handlers, self.held = expected, handlers, []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("prefect.") and (getattr(record, "expected_error", False) or self._names_expected(record)):
            self.held.append(record)
            return False
        return True

    def _names_expected(self, record: logging.LogRecord) -> bool:
        found = _STATE_ERROR.search(record.getMessage())
        if found is None:
            return False
        kind = error_type(found.group(1))
        return kind is not None and issubclass(kind, self.expected)

    def said(self, error: BaseException) -> None:
        """Drop the held records about ``error``: the command prints it in its own line."""
        line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if line:
            quoted = repr(line)[1:-1]
            self.held = [r for r in self.held if line not in r.getMessage() and quoted not in r.getMessage()]

    def release(self) -> None:
        """Stop holding; print what is held."""
        for handler in self.handlers:
            handler.removeFilter(self)
        for record in self.held:
            for handler in self.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        self.held = []


def error_type(name: str) -> type[BaseException] | None:
    """The exception class a Prefect state message names: segpipe's errors and Python's own."""
    import builtins

    from segpipe import errors

    kind = getattr(errors, name, None) or getattr(builtins, name, None)
    return kind if isinstance(kind, type) and issubclass(kind, BaseException) else None


@contextlib.contextmanager
def quiet_expected_errors(
    loggers: tuple[str, ...] = ("prefect.flow_runs", "prefect.task_runs"), *, also: tuple[type[BaseException], ...] = ()
) -> Iterator[HeldLines]:
    """While a flow runs here, log its bad-input and OS errors (and ``also``: a lost Dask scheduler)
    without a traceback, and hold Prefect's records of them back from the terminal
    (:class:`HeldLines`: call its ``said`` with the error the command prints itself); at debug level
    tracebacks stay and nothing is held."""
    from segpipe.errors import SegpipeError

    expected = (SegpipeError, OSError, *also)
    terminal = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    held = HeldLines(expected, terminal)
    if logging.getLogger("segpipe").isEnabledFor(logging.DEBUG):
        yield held
        return
    for handler in terminal:
        handler.addFilter(held)
    quiet = _NoTracebackFor(expected)
    filters = [(logging.getLogger(name), quiet) for name in loggers]
    if also:  # a lost scheduler: the Dask client's own reconnection tracebacks too (the command says what happened)
        import asyncio

        from distributed.comm.core import CommClosedError

        lost = _NoTracebackFor((asyncio.CancelledError, CommClosedError, OSError, TimeoutError, *also))
        filters.append((logging.getLogger("distributed.client"), lost))
    for logger, kept_out in filters:
        logger.addFilter(kept_out)
    try:
        yield held
    finally:
        for logger, kept_out in filters:
            logger.removeFilter(kept_out)
        held.release()
