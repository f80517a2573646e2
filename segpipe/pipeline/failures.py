"""A run's failed inputs told from those that failed the same way before.

An input that fails as it failed in the output folder's last run (the same error, its files the
same size and times) is a known failure, dated from the run it first failed in. A
scheduled run over an inbox with one bad file then says it once (the run that met it fails) and
goes on without failing every later run for it, so that a new failure still stands out.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from segpipe.pipeline.segment_files import InputResult


def earlier_failures(summary: Path) -> dict[str, dict]:
    """The failed inputs of the run that wrote ``summary`` (``segment.json``) by path; none without one
    (or one this code cannot read: every failure is then new)."""
    try:
        inputs = json.loads(summary.read_text())["inputs"]
        return {row["path"]: row for row in inputs if row.get("error")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def dated(results: list[InputResult], earlier: dict[str, dict], *, now: datetime | None = None) -> list[InputResult]:
    """``results`` with each failure dated: one that failed in the earlier run with the same error and
    the same files keeps that run's date and is marked ``failed_before``; any other is dated now (UTC)."""
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    out = []
    for result in results:
        if result.error is None:
            out.append(result)
            continue
        before = earlier.get(result.path, {})
        same = (before.get("error") == result.error and before.get("failing_since")
                and before.get("failed_files") == result.failed_files)
        out.append(replace(result, failing_since=before["failing_since"] if same else stamp, failed_before=bool(same)))
    return out


def new_failures(results: list[InputResult]) -> list[InputResult]:
    """The failures of this run that are not the earlier run's failures again."""
    return [r for r in results if r.error is not None and not r.failed_before]
