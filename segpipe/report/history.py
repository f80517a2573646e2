"""Read the training history (``model/history.csv``) for the training-curve figure."""

from __future__ import annotations

import csv
from pathlib import Path


def read_history(path: Path) -> list[dict]:
    """Rows of ``history.csv`` with numbers parsed (empty cells become ``None``)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    return rows
