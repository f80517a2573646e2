"""Exceptions users see: each message names the file or entry and the problem."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class SegpipeError(Exception):
    """Base class of the errors the CLI reports without a traceback, each in one line (a library's
    message quoted in it keeps its words, not its line breaks)."""

    def __str__(self) -> str:
        return " ".join(line.strip() for line in super().__str__().splitlines() if line.strip())


class CatalogError(SegpipeError):
    """The catalog file or one of its entries is invalid."""


class InputError(SegpipeError):
    """An input file cannot be read or holds data the pipeline refuses."""


class NoInputs(InputError):
    """Inputs named nothing to segment (a pattern that matches no file, a folder without images):
    an inbox that is empty for now, not a broken input."""


class RunnerError(SegpipeError):
    """The task runner cannot start: a Dask scheduler out of reach."""


class StoreError(SegpipeError):
    """A zarr store is missing, incomplete or from another dataset."""


class ModelError(SegpipeError):
    """A model folder, its card or its weights are invalid, or do not fit the input."""


class StoreNotFound(StoreError, FileNotFoundError):
    """A store or prediction that should be there is not (an OS error too: on a network
    filesystem it may come back, so the flows retry it)."""


class ModelNotFound(ModelError, FileNotFoundError):
    """No model where one was named (an OS error too, like :class:`StoreNotFound`)."""


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an OS error that names no file (a write that failed on a full disk, say) ``path``, so
    the one line the command line prints says where; errors that name their file pass as they are."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None or isinstance(err, SegpipeError):
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err


def explain(err: ValidationError) -> str:
    """Pydantic's errors as ``field: problem`` pairs, one per problem, without its raw union text."""
    parts = []
    for item in err.errors():
        loc = [str(p) for p in item["loc"] if not _is_union_branch(p)]
        message = "unknown field" if item["type"] == "extra_forbidden" else _plain(item["msg"])
        if item["type"] == "string_type" and isinstance(item.get("input"), int | float) and not isinstance(item["input"], bool):
            message += (f", got the number {item['input']} (YAML reads unquoted digits as a number, 001 as 1: "
                        "quote names, '001')")
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)  # a whole-entry check names its own field
    return "; ".join(dict.fromkeys(parts))


def _plain(message: str) -> str:
    """A validator's own message without pydantic's ``Value error, `` prefix."""
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _is_union_branch(part) -> bool:
    """Pydantic names the branch of a union it tried (``function-after[...]``, ``FileSplit``, ``int``)."""
    text = str(part)
    return "[" in text or (text[:1].isupper() and text.isidentifier())
