"""The whole pipeline for one catalog dataset: ingest, train, predict, score, report."""

from __future__ import annotations

from prefect import flow

from segpipe.data.ingest.params import IngestParams
from segpipe.flows.runners import RunnerParams
from segpipe.flows.steps import evaluate_step, ingest_step, outcome, predict_and_score, train_step
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams


@flow(name="segpipe-pipeline", log_prints=True)
def segpipe_pipeline(
    dataset: str,
    catalog: str = "data_catalog.yaml",
    output: str = "runs",
    split: str = "test",
    ingest: IngestParams = IngestParams(),
    train: TrainParams = TrainParams(),
    predict: PredictParams = PredictParams(),
    runner: RunnerParams = RunnerParams(),
) -> dict:
    """Run every stage for ``dataset``; returns the headline scores and where the files are.

    The fields of ``train`` set here override the catalog entry's ``training:`` section, which
    overrides the defaults. Each step is cached on its inputs' content and parameters: a re-run
    with nothing changed reuses every result, and a change re-runs what depends on it.
    Prediction and scoring run one task per image on ``runner`` (threads, or a Dask cluster).
    Images that fail are listed in the report and the run ends Failed; the others' results are
    kept, and a re-run redoes only what is missing.
    """
    from segpipe.pipeline.catalog import open_catalog, train_params

    run = RunFolder.of(output, dataset)
    params = train_params(open_catalog(catalog), dataset, train)
    ingest_step(catalog, dataset, run, ingest)
    trained = train_step(run, params, catalog)
    parts, failed = predict_and_score(runner, run, split=split, params=predict)
    metrics, report = evaluate_step(run, parts, failed, split=split)
    summary = {
        "dataset": dataset,
        "seg": metrics.get("seg"),
        "iou": metrics["iou"],
        "dice": metrics["dice"],
        "epochs": trained["epochs"],
        "report": report,
        "failed": sorted(failed),
    }
    return outcome(summary, failed)


if __name__ == "__main__":
    import sys

    segpipe_pipeline(dataset=sys.argv[1] if len(sys.argv) > 1 else "bbbc007")
