"""The ``segpipe`` Typer application, its shared options, and the entry point that turns errors into one line."""

from __future__ import annotations

import errno
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from segpipe.cli.watchdog import watch_children
from segpipe.errors import InputError, SegpipeError
from segpipe.temporary import meant

app = typer.Typer(
    help=(
        "Batch segmentation of microscopy and medical image stacks.\n\n"
        "Declare datasets in data_catalog.yaml, then `segpipe run DATASET` ingests them into "
        "OME-Zarr, trains a MONAI U-Net (or FCN), predicts the test split with sliding windows, "
        "splits touching objects, scores against ground truth (IoU, Dice, CTC SEG) and writes "
        "a report under OUTPUT/DATASET/.\n\nExample: segpipe run bbbc007 --output runs"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)

def output_folder(path: Path) -> Path:
    """``--output`` must be a folder (made when missing): a file there is refused at once, in one line."""
    if path is not None and path.exists() and not path.is_dir():
        raise InputError(f"{path}: --output is a file, not a folder; choose a folder (it is made when missing)")
    return path


CatalogOpt = Annotated[Path, typer.Option("--catalog", "-c", help="Catalog YAML file.")]
OutputOpt = Annotated[
    Path,
    typer.Option("--output", "-o", help="Folder for run outputs (one subfolder per dataset).", callback=output_folder),
]
DatasetArg = Annotated[str, typer.Argument(help="Dataset name from the catalog.")]
SplitOpt = Annotated[
    Literal["train", "validation", "test"], typer.Option(help="Which split to predict, score or report: train, validation or test.")
]
DEFAULT_CATALOG = Path("data_catalog.yaml")
DEFAULT_OUTPUT = Path("runs")

#: Prefect defaults for a lab machine that may be offline and busy; the user's own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry calls (and their errors) offline
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # the embedded server is slow on a loaded machine
}


#: How Prefect's embedded server says it did not come up in time.
PREFECT_SERVER_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"
#: How Prefect's error begins when the server at PREFECT_API_URL does not answer.
PREFECT_UNREACHABLE = "Failed to reach API at"


def server_timeout_line() -> str:
    """One line for an embedded Prefect server that did not start: why, and the two ways out."""
    seconds = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    return (
        f"Prefect's embedded server did not start within {seconds} s (a busy machine starts it slowly); "
        "run again, allow it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "
        "or point PREFECT_API_URL at a running server (prefect server start)"
    )


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # debug lines of the pipeline, not of every library it uses (matplotlib, zarr); Prefect also sets
    # its loggers' level from its setting when it configures its logging, later
    for own in ("segpipe", "prefect"):
        logging.getLogger(own).setLevel(logging.DEBUG if verbose else logging.NOTSET)
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"
    for noisy in ("httpx", "httpcore", "torch"):  # one line per Prefect API call; torch's cache statistics at exit
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger("tifffile").addFilter(_said_by_segpipe)


def _said_by_segpipe(record: logging.LogRecord) -> bool:
    """Drop tifffile's errors on a file it cannot read ("ImageJ series metadata invalid or corrupted
    file", "invalid page offset", once per attempt) and its warning that a file has no first page:
    segpipe's one line names the file and the problem. Its warnings on files it reads (metadata it
    falls back from) pass."""
    return record.levelno < logging.ERROR and NO_FIRST_PAGE not in record.getMessage()


#: tifffile's warning on a file whose first page cannot be found: nothing in it can be read.
NO_FIRST_PAGE = "invalid offset to first page"


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging of segpipe's and Prefect's steps.")] = False) -> None:
    _setup_logging(verbose)


def os_error_line(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which file (the one asked for, not a
    temporary name), and what to do."""
    where = f"{meant(str(err.filename))}: " if err.filename else ""
    existing = bool(err.filename) and os.path.exists(err.filename)
    advice = {
        errno.ENOSPC: "the disk is full; free space or write somewhere else",
        # a file or folder that is there (an input, a program) is not a place to be made
        errno.EACCES: "permission denied (this user may not use it: check its permissions)" if existing
        else "permission denied; choose a folder you can write to",
        errno.EROFS: "the file system is read-only; write somewhere else",
        errno.ENOTDIR: "a path component is a file, not a folder",
        errno.EEXIST: "it already exists",
    }.get(err.errno, err.strerror or str(err))
    return f"{where}{advice}"


class Terminated(SystemExit):
    """The command was stopped by SIGTERM (exit code 143, as a shell reports a process ended by it)."""


def _stop_on_sigterm(signum: int, frame) -> None:
    """SIGTERM ends the command as Ctrl-C does: clean-ups run (``finally`` blocks, context managers,
    ``atexit``: the embedded Prefect server is stopped) instead of the process vanishing at once."""
    raise Terminated(128 + signum)


@contextlib.contextmanager
def stop_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while the command runs (main thread only).

    A Python handler that was in place before (that of a program running the command in-process,
    such as the test runner's) is called after the command's clean-ups, so SIGTERM stops that
    program too instead of ending one command of it."""
    try:
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signal.SIGTERM, None)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


#: The exit code of a command stopped by Ctrl-C.
INTERRUPTED = 130
#: A ``-W`` option for the processes multiprocessing starts (it passes ``sys.warnoptions`` on).
QUIET_RESOURCE_TRACKER = "ignore:resource_tracker:UserWarning"


#: Seconds a stopped command has to finish its clean-ups before it ends regardless (:func:`exit_within`).
EXIT_GRACE = 20.0


def entry() -> None:
    """The ``segpipe`` program: :func:`main`, and a command stopped by Ctrl-C or SIGTERM ends at most
    :data:`EXIT_GRACE` seconds after Python began to exit (:func:`exit_within`). Only the program
    does this: a script or test that calls :func:`main` and goes on is never ended by it."""
    try:
        main()
    except SystemExit as stop:
        if stop.code in (INTERRUPTED, 128 + signal.SIGTERM):
            exit_within(EXIT_GRACE, stop.code)
        raise


def exit_within(seconds: float, code: int) -> None:
    """End the process with ``code`` if it is still there ``seconds`` after Python began to exit. A
    stopped command runs its clean-ups and ends, unless a thread it started still waits on something
    that never comes (a Dask client's handshake with a server that never answers): Python waits for
    such a thread before it exits, and the command stayed after Ctrl-C and SIGTERM until killed. The
    watchdog stops the processes the command started either way (:mod:`segpipe.cli.watchdog`)."""
    def end() -> None:
        threading.main_thread().join()  # returns once Python is exiting: its clean-ups are under way
        time.sleep(seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    threading.Thread(target=end, name="segpipe-exit", daemon=True).start()


def _what_is_kept() -> str:
    """The end of the line of a stopped command: how to go on, and whether its work was kept."""
    from segpipe.interrupts import interrupted_step

    step = interrupted_step()
    if step is None:
        return "run the same command again to resume; what was finished is kept"
    return f"{step} was stopped and keeps nothing of it (it is written whole); run the same command again to start it over"


def main() -> None:
    """Entry point: run the app; segpipe's own errors and OS errors become one line and exit code 2.
    The processes a command starts end with it, even when it is killed (:mod:`segpipe.cli.watchdog`)."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)  # before Prefect is imported: it reads settings once
    # Python's multiprocessing resource tracker (a helper process it starts with this option) says "There appear to
    # be N leaked semaphore objects" after a command stopped while worker processes ran; it removes them itself
    if QUIET_RESOURCE_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_RESOURCE_TRACKER)
    try:
        with stop_on_sigterm(), watch_children():
            app()
    except SystemExit as stop:
        if stop.code == INTERRUPTED:  # Ctrl-C (typer's code for it)
            typer.echo(f"interrupted: {_what_is_kept()}", err=True)
        elif stop.code == 128 + signal.SIGTERM:  # Terminated
            typer.echo(f"stopped (SIGTERM): {_what_is_kept()}", err=True)
        raise
    except SegpipeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        typer.echo(f"error: {os_error_line(err)}", err=True)
        sys.exit(2)
    except RuntimeError as err:
        if str(err).startswith(PREFECT_UNREACHABLE):  # PREFECT_API_URL names a server that does not answer
            from prefect.settings import PREFECT_API_URL

            from segpipe.flows.submit import server_unreachable

            typer.echo(f"error: {server_unreachable(PREFECT_API_URL.value())}", err=True)
            sys.exit(2)
        if not str(err).startswith(PREFECT_SERVER_TIMEOUT):
            raise
        typer.echo(f"error: {server_timeout_line()}", err=True)
        sys.exit(1)
