"""Read the training history (``model/history.csv``) for the training-curve figure."""

from __future__ import annotations

import csv
from pathlib import Path


def read_history(path: Path) -> list[dict]:
    """Rows of ``history.csv`` with numbers parsed (empty cells become ``None``, words stay words)."""
    with open(path, newline="") as handle:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _cell(value: str | None) -> float | str | None:
    if value in ("", None):
        return None
    try:
        return float(value)
    except ValueError:
        return value
