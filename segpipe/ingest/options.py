"""Settings of one ingest run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class IngestOptions(BaseModel):
    """How ingest uses the machine.

    Attributes:
        workers: Images ingested at the same time (threads); ``None``: four per CPU, at most 8.
            Small images spend most of their time waiting on file and zarr calls, so more
            threads than CPUs pay off; large ones are held back by ``memory_mib``.
        max_slab_mib: Memory for one slab (a row of chunks) of a streamed image, in MiB; 3D
            chunks get fewer planes when a 64-plane slab would not fit (see
            :func:`segpipe.store.chunk_shape`). One image holds up to three slabs at a time.
        memory_mib: Pixel memory all threads together may hold; an image needing more than
            what is left waits for others to finish (one image always runs).
        prefetch: Read the next slab while the current one is compressed and written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int | None = Field(default=None, ge=1)
    max_slab_mib: float = Field(default=32.0, gt=0)
    memory_mib: float = Field(default=128.0, gt=0)
    prefetch: bool = True

    @property
    def max_slab_bytes(self) -> int:
        return int(self.max_slab_mib * MIB)

    def n_workers(self, n_jobs: int) -> int:
        """Threads to use for ``n_jobs`` images."""
        import os

        wanted = self.workers or min(8, 4 * (os.cpu_count() or 1))
        return max(1, min(wanted, n_jobs))
