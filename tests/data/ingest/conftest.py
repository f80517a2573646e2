"""Helpers for ingest tests: write a one-dataset catalog, ingest it, look at what is left."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_helpers import write_catalog

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.store import ImageStore


@pytest.fixture
def ingest(tmp_path):
    """``ingest(folder, **entry)``: catalog, ingest into ``tmp_path/out/data.zarr``, return stored images."""
    store = tmp_path / "out" / "data.zarr"

    def run(folder: Path, *, options: IngestParams | None = None, **entry):
        dataset = load_catalog(write_catalog(folder, **entry)).dataset("d")
        ingest_dataset(dataset, store, options, progress=False)
        return {image.name: image for image in ImageStore.open(store).images()}

    run.store = store
    return run


@pytest.fixture
def leftovers(tmp_path):
    """Everything a refused ingest left in its output folder ``out``: nothing, not even the folder
    when the ingest made it."""
    out = tmp_path / "out"
    existed = out.exists()

    def look() -> list[str]:
        if not out.exists():
            return []
        names = sorted(p.name for p in out.iterdir())
        return names if names or existed else ["(the empty folder the ingest made)"]

    return look
