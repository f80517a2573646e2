"""Settings of one ingest run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class IngestOptions(BaseModel):
    """How ingest uses the machine.

    Attributes:
        workers: Images ingested at the same time (threads); ``None``: up to 4, at most the CPUs.
        max_slab_mib: Memory for one slab (a row of chunks) of a streamed image, in MiB. Peak
            memory is about ``workers * 3 * max_slab_mib`` plus the interpreter; 3D chunks get
            fewer planes when a 64-plane slab would not fit (see :func:`segpipe.store.chunk_shape`).
        prefetch: Read the next slab while the current one is compressed and written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int | None = Field(default=None, ge=1)
    max_slab_mib: float = Field(default=32.0, gt=0)
    prefetch: bool = True

    @property
    def max_slab_bytes(self) -> int:
        return int(self.max_slab_mib * MIB)

    def n_workers(self, n_jobs: int) -> int:
        """Threads to use for ``n_jobs`` images."""
        import os

        wanted = self.workers or min(4, os.cpu_count() or 1)
        return max(1, min(wanted, n_jobs))
