"""bioimageio's validation reports and errors, each in one line."""

from __future__ import annotations

import re
from pathlib import Path


def first_failure(summary) -> tuple[str, str]:
    """The first failed check of a validation summary and its first error."""
    for detail in summary.details:
        if detail.status == "failed":
            problem = _entry_line(detail.errors[0]) if detail.errors else "failed"
            return detail.name, problem
    return "status", summary.status


def first_error(summary, package: Path | None = None) -> str:
    for detail in summary.details:
        if detail.errors:
            return _entry_line(detail.errors[0], package)
    return f"status {summary.status}"


def _entry_line(entry, package: Path | None = None) -> str:
    """One line for a validation error: where, and what, with paths inside the package as member names."""
    where = ".".join(str(p) for p in entry.loc if not union_branch(p))
    message = one_line(entry.msg).replace(":zipfile:/", "").removeprefix("Value error, ")
    if package is not None:
        message = message.replace(f"{package}/", "")
    message = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1...", message)  # shorten SHA-256 hex digests
    if entry.type == "FileNotFoundError":
        message = f"{message}: missing from the package"
    return f"{where}: {message}" if where else message


def union_branch(part) -> bool:
    """Pydantic's names of the union branch it tried (``function-after[...]``, ``ArchitectureFromFileDescr``)."""
    text = str(part)
    return "[" in text or (text[:1].isupper() and text.isidentifier())


def one_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
