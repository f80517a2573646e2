"""The pipeline over a catalog: each dataset's run folder, and the stages as thin functions over it.

The rooms before this one each hold one stage and know nothing of catalogs or run folders:
:mod:`segpipe.data` (catalog, readers, stores, ingest), :mod:`segpipe.inference` (the
sliding-window engine and post-processing), :mod:`segpipe.models` (networks, model folders and
their cards), :mod:`segpipe.scoring` (metrics), :mod:`segpipe.training`, :mod:`segpipe.prediction`
and :mod:`segpipe.report`. Here they meet: :class:`RunFolder` says where a dataset's store, model,
predictions and report live, and :mod:`segpipe.pipeline.stages` runs each stage on them. The
Prefect flows (:mod:`segpipe.flows`) and the command line (:mod:`segpipe.cli`) call these.
"""

from segpipe.pipeline.run_folder import RunFolder

__all__ = ["RunFolder"]
