"""The ingest stage's parameters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024
MANY_IMAGES = 64


class IngestParams(BaseModel):
    """Whether to ingest again, and how ingest uses the machine.

    Attributes:
        force: Rebuild the store even when the sources are unchanged.
        workers: Images ingested at the same time (threads); ``None``: four per CPU, at most 8.
            Small images spend most of their time waiting on file and zarr calls, so more
            threads than CPUs pay off; large ones are held back by ``memory_mib``.
        max_slab_mib: Memory for one slab (a row of chunks) of a streamed image, in MiB; 3D
            chunks get fewer planes when a 64-plane slab would not fit (see
            :func:`segpipe.data.store.chunk_shape`). One image holds up to three slabs at a time.
        memory_mib: Pixel memory all threads together may hold; an image needing more than
            what is left waits for others to finish (one image always runs).
        prefetch: Read the next slab while the current one is compressed and written.
        processes: Worker processes for a dataset of many small images (zarr's per-node work
            holds the GIL, so threads cannot spread it over the CPUs); ``None``: one per CPU
            (at most 8) when there are at least ``MANY_IMAGES`` images and every one fits in a
            slab, else none; ``1``: threads only.
        pyramid: Write downsampled levels (``s1``, ``s2``, ...) of every image and label map
            for viewers (see :mod:`segpipe.data.pyramid`); off: the full resolution only.
        pyramid_min_size: No level is made from one whose smaller in-plane side is this or less
            (so an image of this size or smaller has the full resolution only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    force: bool = Field(default=False, description="Rebuild the store even when the sources are unchanged.")
    workers: int | None = Field(default=None, ge=1)
    max_slab_mib: float = Field(default=32.0, gt=0)
    memory_mib: float = Field(default=128.0, gt=0)
    prefetch: bool = True
    processes: int | None = Field(default=None, ge=1)
    pyramid: bool = Field(default=True, description="Write downsampled levels for viewers; --no-pyramid: the full resolution only.")
    pyramid_min_size: int = Field(default=256, ge=1)

    def pyramid_levels(self) -> int | None:
        """Most pyramid levels, as :func:`segpipe.data.pyramid.level_factors` takes them."""
        return None if self.pyramid else 1

    @property
    def max_slab_bytes(self) -> int:
        return int(self.max_slab_mib * MIB)

    def n_workers(self, n_jobs: int) -> int:
        """Threads to use for ``n_jobs`` images."""
        import os

        wanted = self.workers or min(8, 4 * (os.cpu_count() or 1))
        return max(1, min(wanted, n_jobs))

    def n_processes(self, n_jobs: int, *, all_small: bool) -> int:
        """Worker processes to use for ``n_jobs`` images (``1``: none, threads in this process)."""
        import os

        if self.processes is not None:
            return max(1, min(self.processes, n_jobs))
        if n_jobs < MANY_IMAGES or not all_small:
            return 1
        return min(8, os.cpu_count() or 1)
