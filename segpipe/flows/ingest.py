"""Ingest one catalog dataset into its OME-Zarr store (skipped while the sources are unchanged)."""

from __future__ import annotations

from prefect import flow

from segpipe.data.ingest.params import IngestParams
from segpipe.flows.steps import ingest_step
from segpipe.pipeline.run_folder import RunFolder


@flow(name="segpipe-ingest", log_prints=True)
def segpipe_ingest(
    dataset: str, catalog: str = "data_catalog.yaml", output: str = "runs", ingest: IngestParams = IngestParams()
) -> dict:
    """Validate ``dataset``'s files and write ``OUTPUT/DATASET/data.zarr``; ``ingest.force`` re-ingests."""
    return ingest_step(catalog, dataset, RunFolder.of(output, dataset), ingest)
