"""Ingest: catalog datasets into OME-Zarr stores, streamed, in parallel, atomically, idempotently.

``from segpipe.ingest import ingest_dataset, IngestResult`` is the entry point; the modules
hold one step each: :mod:`~segpipe.ingest.fingerprint` (skip unchanged sources),
:mod:`~segpipe.ingest.atomic` (temporary name, rename, cleanup), :mod:`~segpipe.ingest.record`
(one image and its labels), :mod:`~segpipe.ingest.stream` (slab-by-slab copy).
"""

from segpipe.ingest.fingerprint import dataset_fingerprint, file_digest
from segpipe.ingest.options import IngestOptions
from segpipe.ingest.run import IngestResult, ingest_dataset

__all__ = ["IngestOptions", "IngestResult", "dataset_fingerprint", "file_digest", "ingest_dataset"]
