"""``segpipe run``: the whole pipeline as a Prefect flow, here or on a deployment's worker."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from segpipe.cli.app import DEFAULT_CATALOG, DEFAULT_OUTPUT, CatalogOpt, DatasetArg, OutputOpt, app
from segpipe.cli.options import params
from segpipe.cli.stages import TRAIN_OPTIONS, init_from_here
from segpipe.flows.runners import RunnerParams
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams

RUNNER_OPTIONS = {"kind": "--runner", "address": "--dask-address", "workers": "--workers"}


@app.command()
@params(
    train=(TrainParams, TRAIN_OPTIONS),
    predict=(PredictParams, {"device": "--device"}),
    runner=(RunnerParams, RUNNER_OPTIONS),
)
def run(
    dataset: DatasetArg,
    train: TrainParams,
    predict: PredictParams,
    runner: RunnerParams,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    output: OutputOpt = DEFAULT_OUTPUT,
    deployment: Annotated[
        Optional[str],
        typer.Option(help="Submit a run of this segpipe-pipeline deployment (e.g. nightly) to the Prefect server instead."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="With --deployment: wait until the run has finished.")] = True,
) -> None:
    """Run the whole pipeline (ingest, train, predict, score, report) as a Prefect flow.

    With no Prefect server configured this uses Prefect's embedded default: nothing to start.
    Re-running resumes: every step is cached on its inputs' content and parameters, training
    continues from its last checkpoint, finished predictions are kept. With --deployment the run
    goes to a worker of the server at PREFECT_API_URL, with the options given here over the
    deployment's own (paths are the worker's). --device sets where training and prediction both
    run. Exit code 1 when the run failed (images that failed are listed in the report), 2 on bad input.
    """
    from segpipe.flows.submit import failed_on_input, run_here, submit

    if deployment is None:
        from segpipe.pipeline.catalog import open_catalog

        loaded = open_catalog(catalog)
        loaded.dataset(dataset)  # a bad catalog or entry: one line, before Prefect starts
        if loaded.entry(dataset).model is None:  # it trains: a start that is missing or cannot train it, said now
            from segpipe.pipeline import RunFolder, stages
            from segpipe.pipeline.catalog import train_params

            stages.start_model(RunFolder.of(output, dataset), train_params(loaded, dataset, init_from_here(train, catalog)),
                               catalog=loaded)
        if runner.address:
            from segpipe.flows.runners import check_scheduler

            check_scheduler(runner.address)
        state = run_here(
            {"dataset": dataset, "catalog": str(catalog), "output": str(output), "train": init_from_here(train, catalog),
             "predict": predict, "runner": runner}
        )
        if not state.is_completed():
            typer.echo(f"error: {state.message}", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(state.result(), indent=2))
        return
    given = {"dataset": dataset}
    for name, value in (("catalog", catalog), ("output", output)):
        if value != {"catalog": DEFAULT_CATALOG, "output": DEFAULT_OUTPUT}[name]:
            given[name] = str(value)
    for name, value in (("train", train), ("predict", predict), ("runner", runner)):
        if value.model_fields_set:
            given[name] = value.model_dump(mode="json", exclude_unset=True)
    flow_run = submit(deployment, given, wait=wait, say=lambda line: typer.echo(line, err=True))
    typer.echo(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.name}")
    if wait and not flow_run.state.is_completed():
        bad_input = failed_on_input(flow_run.state.message or "")
        typer.echo(f"error: {bad_input or flow_run.state.message}", err=True)
        raise typer.Exit(2 if bad_input else 1)
