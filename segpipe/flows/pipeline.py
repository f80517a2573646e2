"""The whole pipeline for one catalog dataset: ingest, train, predict, score, report."""

from __future__ import annotations

from prefect import flow

from segpipe.data.ingest.params import IngestParams
from segpipe.flows.runners import RunnerParams
from segpipe.flows.steps import evaluate_step, ingest_step, outcome, predict_and_score, train_step
from segpipe.flows.tasks import segmentation_report_task
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
    overrides the defaults. A dataset whose entry names a ``model:`` is not trained on: that model
    is applied (and scored where there is ground truth); a dataset without labels needs one. Each step is cached on its inputs' content and parameters: a re-run
    with nothing changed reuses every result, and a change re-runs what depends on it.
    Prediction and scoring run one task per image on ``runner`` (threads, or a Dask cluster).
    Images that fail are listed in the report and the run ends Failed; the others' results are
    kept, and a re-run redoes only what is missing.
    """
    from segpipe.data.store import ImageStore
    from segpipe.pipeline.catalog import open_catalog, train_params
    from segpipe.pipeline.models import model_to_apply

    run = RunFolder.of(output, dataset)
    loaded = open_catalog(catalog)
    params = train_params(loaded, dataset, train)
    ingest_step(catalog, dataset, run, ingest)
    applied = model_to_apply(loaded, dataset, output=output)  # the catalog's model: key, else train one here
    trained = train_step(run, params, catalog) if applied is None else {"epochs": None, "model": applied}
    parts, failed = predict_and_score(runner, run, split=split, params=predict, model=applied)
    if not ImageStore.open(run.store).names(split, labelled=True):  # nothing to score: a segmentation report
        report = segmentation_report_task(run, split)
        return outcome({"dataset": dataset, "model": trained["model"], "report": report, "failed": sorted(failed)}, failed)
    metrics, report = evaluate_step(run, parts, failed, split=split)
    summary = {
        "dataset": dataset,
        "seg": metrics.get("seg"),
        "op_csb": metrics.get("op_csb"),
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
