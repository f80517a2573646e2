"""Ingest one catalog dataset into its OME-Zarr store (skipped while the sources are unchanged)."""

from __future__ import annotations

from prefect import flow

from flows.steps import ingest_step


@flow(name="segpipe-ingest", log_prints=True)
def segpipe_ingest(dataset: str, catalog: str = "data_catalog.yaml", output: str = "runs", force: bool = False) -> dict:
    """Validate ``dataset``'s files and write ``OUTPUT/DATASET/data.zarr``; ``force`` re-ingests."""
    return ingest_step(catalog, dataset, output, force=force)
