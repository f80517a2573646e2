"""Ingest: catalog datasets into OME-Zarr stores, streamed, in parallel, atomically, idempotently.

``from segpipe.data.ingest import ingest_dataset, IngestResult`` is the entry point; the modules
hold one step each: :mod:`~segpipe.data.ingest.fingerprint` (skip unchanged sources),
:mod:`~segpipe.data.ingest.atomic` (temporary name, rename, cleanup), :mod:`~segpipe.data.ingest.record`
(one image and its labels), :mod:`~segpipe.data.ingest.stream` (slab-by-slab copy).
"""

from segpipe.data.ingest.fingerprint import current_digest, dataset_fingerprint, file_digest
from segpipe.data.ingest.params import IngestParams
from segpipe.data.ingest.run import IngestResult, ingest_dataset

__all__ = ["IngestParams", "IngestResult", "current_digest", "dataset_fingerprint", "file_digest", "ingest_dataset"]
