"""Shared helper of the ingest tests (a module with a unique name, importable from each test file)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_catalog(folder: Path, **entry) -> Path:
    """``folder/catalog.yaml`` holding one dataset ``d`` with ``entry``."""
    entry.setdefault("classes", ["background", "object"])
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"d": entry}}, sort_keys=False))
    return path
