"""Train (or resume training) a model on an ingested dataset."""

from __future__ import annotations

from prefect import flow

from flows.steps import train_step


@flow(name="segpipe-train", log_prints=True)
def segpipe_train(
    dataset: str,
    catalog: str = "data_catalog.yaml",
    output: str = "runs",
    model: str | None = None,
    epochs: int | None = None,
    max_minutes: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Train on ``OUTPUT/DATASET/data.zarr`` (run the ingest flow first).

    The catalog entry's ``training:`` section and these options make the configuration; the
    same configuration on the same data is a cache hit, and a killed run resumes from its
    last epoch. Training holds a slot of the ``segpipe-gpu`` tag concurrency limit.
    """
    from segpipe.stages import train_config_for

    config = train_config_for(catalog, dataset, model=model, epochs=epochs, max_minutes=max_minutes, seed=seed, device=device)
    return train_step(output, dataset, config)
