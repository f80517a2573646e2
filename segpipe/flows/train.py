"""Train (or resume training) a model on an ingested dataset."""

from __future__ import annotations

from prefect import flow

from segpipe.flows.steps import train_step
from segpipe.pipeline.run_folder import RunFolder
from segpipe.training.params import TrainParams


@flow(name="segpipe-train", log_prints=True)
def segpipe_train(
    dataset: str, catalog: str = "data_catalog.yaml", output: str = "runs", train: TrainParams = TrainParams()
) -> dict:
    """Train on ``OUTPUT/DATASET/data.zarr`` (run the ingest flow first).

    The catalog entry's ``training:`` section and the fields of ``train`` set here make the
    parameters; the same parameters on the same data are a cache hit, and a killed run resumes
    from its last epoch. Training holds a slot of the ``segpipe-gpu`` tag concurrency limit.
    """
    from segpipe.pipeline.catalog import open_catalog, train_params

    return train_step(RunFolder.of(output, dataset), train_params(open_catalog(catalog), dataset, train), catalog)
