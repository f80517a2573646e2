"""Segment the images in folders or globs with a trained model, one task per input.

The flow behind ``segpipe segment`` for unattended use (the ``inbox`` deployment segments a
folder on a schedule). Each input is a task cached on the input's bytes, the model and the
settings, so a re-run segments only what is new or changed; an input that fails fails alone.
The run ends with a table artifact of what was segmented and what failed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from segpipe.errors import NoInputs
from segpipe.flows.caching import key_fn, keyed
from segpipe.flows.logs import forward_segpipe_logs
from segpipe.flows.runners import RunnerParams, fan_out
from segpipe.flows.tasks import IO_RETRIES, artifact_key, transient
from segpipe.pipeline.segment_files import SegmentParams, counted
from segpipe.prediction.params import PredictParams

#: How the message of a run that found its folder being written ends (the command line leaves it out).
NOTHING_SEGMENTED = "; this run segmented nothing"

forward_segpipe_logs()


def input_key(path: str, name: str, kind: str, model: str, output: str, read: SegmentParams, predict: PredictParams) -> str:
    """The input's bytes (every file of it), the model's id, the settings and the output folder (a
    series of a file is told by its name, ``STEM_sN``).

    A file the input's store in the output folder recorded with the same size and times is not
    read again: a scheduled run over an inbox of unchanged files costs a ``stat`` per file."""
    from segpipe.data.ingest import current_digest
    from segpipe.data.ingest.fingerprint import remember_times
    from segpipe.data.inputs import input_files
    from segpipe.data.store import read_record
    from segpipe.models.model import Model
    from segpipe.pipeline.models import assumed_spacing
    from segpipe.pipeline.segment_files import SegmentFolder

    store = SegmentFolder(Path(output)).images(name)
    record = read_record(store) or {}
    known = record.get("sources") or {}
    current = {key: current_digest(p, known.get(key)) for key, p in input_files(Path(path)).items()}
    remember_times(store, record, current)  # a touched input is read once, not every run (a cached task never ingests)
    digests = [[key, value["sha256"]] for key, value in current.items()]
    opened = Model.open(model)
    settings = [read.model_dump(mode="json"), predict.model_dump(mode="json", exclude={"device"})]
    assumed = assumed_spacing(opened.card)  # the pixel size a file without one is taken at
    return keyed("segment-input", str(Path(output).resolve()), name, kind, digests, opened.id, settings,
                 *([] if assumed is None else [["assumed-spacing", list(assumed[0]), assumed[1]]]))


def outputs_current(path: str, name: str, output: str) -> bool:
    """The input's measurements are still there (nobody removed the output folder)."""
    from segpipe.pipeline.segment_files import SegmentFolder

    folder = SegmentFolder(Path(output))
    return folder.measurements(name).is_file() and folder.images(name).is_dir()


@task(name="segment-input", task_run_name="segment-{name}", retry_condition_fn=transient, cache_key_fn=key_fn(input_key), **IO_RETRIES)
def segment_input_task(path: str, name: str, kind: str, model: str, output: str, read: SegmentParams, predict: PredictParams,
                       series: int | None = None):
    """Ingest, predict, export and measure one input (its error fails this task only)."""
    from segpipe.data.inputs import Input
    from segpipe.pipeline import stages
    from segpipe.pipeline.segment import segment_input
    from segpipe.pipeline.segment_files import SegmentFolder

    predictor = stages.cached_predictor(model, predict)
    result = segment_input(Input(name, Path(path), kind, series=series), predictor, SegmentFolder(Path(output)), read, progress=True)
    get_run_logger().info("%s: %d objects in %d image(s)", name, sum(result.objects.values()), len(result.images))
    return result


@flow(name="segpipe-segment", log_prints=True)
def segpipe_segment(
    inputs: list[str],
    model: str,
    output: str = "segmented",
    catalog: str = "data_catalog.yaml",
    runs: str = "runs",
    read: SegmentParams = SegmentParams(),
    predict: PredictParams = PredictParams(),
    runner: RunnerParams = RunnerParams(),
    empty_ok: bool = True,
    settled: float = 0.0,
) -> dict:
    """Segment every input (files, folders, globs) with ``model`` into ``output``.

    ``model`` is a model folder, or a dataset of ``catalog`` whose trained model (in ``runs``) to
    use. An input the model does not fit is listed as failed beside the others; a model that fits
    none of them fails the run before anything is written. With
    ``empty_ok`` (an inbox), inputs that match nothing yet make a run with nothing to do; files
    a glob matches that are not images are passed over. ``settled``: inputs whose files changed in
    the last that many seconds (still being copied in) are left for a later run (the inbox
    deployment waits 60 s). A run that finds another writing ``output`` leaves it be and ends
    Cancelled, saying so (not Completed: it segmented nothing). A run in which every input fails
    records them as any run does in an inbox (``empty_ok``: the next run knows them again, so a
    schedule over an inbox of only bad files does not fail for ever); run from the command line it
    writes no tables or report (an earlier run's stay) and fails with the first one's error, as
    ``segpipe segment`` does.
    """
    from segpipe.pipeline.models import resolve_model
    from segpipe.pipeline.segment import SegmentInputs, spacing_for_model
    from segpipe.pipeline.segment_files import FolderBusy, SegmentFolder

    known = None
    if not Path(model).exists() and Path(catalog).is_file():
        from segpipe.pipeline.catalog import open_catalog

        known = open_catalog(catalog)
    chosen = resolve_model(model, output=runs, catalog=known)
    folder = SegmentFolder(Path(output))
    given = folder.given_names()  # a names file it cannot read fails the run, not "nothing to segment"
    read = spacing_for_model(read, chosen.card)
    nothing = {"output": output, "model": str(chosen.folder), "segmented": 0, "unchanged": 0, "objects": 0, "failed": {}}
    try:
        gathered = SegmentInputs.gather(inputs, folder, given, chosen.card, read, settled=settled)
        return _segment_into(folder, inputs, gathered, chosen, output, read, read.ordered(predict), runner,
                             created=not folder.root.exists(), strict=not empty_ok)
    except NoInputs:  # none yet, or gone by the time the folder was held (named again under its lock)
        if not empty_ok:
            raise
        get_run_logger().info("%s: nothing to segment", " ".join(inputs))
        return nothing
    except FolderBusy as busy:  # a scheduled run that finds the last one still at work leaves it be, and says so
        from prefect.states import Cancelled

        get_run_logger().warning("%s%s (its inputs are taken by a later run)", busy, NOTHING_SEGMENTED)
        return Cancelled(message=f"{busy}{NOTHING_SEGMENTED}")


def _segment_into(folder, patterns, gathered, chosen, output, read, predict, runner, *, created: bool, strict: bool):
    """The flow's work once its inputs are known (``created``: the run makes ``folder``); raises
    :class:`FolderBusy` when another run holds ``folder``, and, ``strict``, :class:`InputError` when
    every input fails."""
    from segpipe.flows.caching import refreshed
    from segpipe.flows.steps import failure
    from segpipe.pipeline.segment import (
        every_input_failed, report_segmentation, warn_file_spacing_set_aside, warn_guessed_spacing, warn_noise,
        warn_other_model, write_summary, write_tables,
    )
    from segpipe.data.inputs import files_now
    from segpipe.pipeline.failures import dated, earlier_failures
    from segpipe.pipeline.segment_files import InputResult, failed_input

    with folder.writing():
        gathered = gathered.named_now(patterns, folder, chosen.card, read)
        warn_other_model(folder, chosen)
        items, unfit, order = gathered.items, gathered.unfit, gathered.order
        with fan_out(runner, scratch=folder.root / ".dask-scratch") as task_runner:
            futures = {
                item.name: task_runner.submit(
                    refreshed(segment_input_task, outputs_current(str(item.path), item.name, output)),
                    {"path": str(item.path), "name": item.name, "kind": item.kind, "model": str(chosen.folder),
                     "output": output, "read": read.for_input(item), "predict": predict, "series": item.series},
                )
                for item in items
            }
            results = []
            for item in items:
                error = failure(futures[item.name])
                if error is None:
                    result = futures[item.name].result()
                    if futures[item.name].state.name == "Cached":  # its labels were current: nothing done now
                        result = dataclasses.replace(result, skipped=True)
                    results.append(result)
                else:  # said as segment says it, the input named once (Prefect has logged the task's failure)
                    raised = futures[item.name].result(raise_on_failure=False)
                    results.append(failed_input(item, raised, alone=True) if isinstance(raised, Exception)
                                   else InputResult(item.name, item.where, item.kind, error=error, failed_files=files_now(item.path)))
        results = sorted(results + unfit, key=lambda result: order[result.path])
        if strict and results and all(r.error is not None for r in results):  # as segment: one line, earlier tables kept
            every_input_failed(results, folder, created=created)
        folder.keep_names(items, results)
        results = dated(results, earlier_failures(folder.summary))
        warn_guessed_spacing(results, chosen.card)  # once for the run, as segment says it
        warn_file_spacing_set_aside(results, read)
        warn_noise(results, predict.inference_for(chosen.card.inference).noise_only)
        write_tables(folder, results)
        write_summary(folder, chosen, predict, results)
        report = report_segmentation(folder, chosen.card)
    rows = [
        {"input": r.path, "images": len(r.images), "objects": sum(r.objects.values()), "status": r.status,
         "error": r.error}
        for r in results
    ]
    create_table_artifact(key=artifact_key(Path(output).name or "segment", "segmented"), table=rows,
                          description=f"inputs segmented with {chosen.card.name} into {output}")
    failed = {r.path: r.error for r in results if r.error}
    summary = {"output": output, "model": str(chosen.folder), **counted(results), "failed": failed, "report": str(report)}
    return _ending(results, summary)


def _ending(results, summary: dict):
    """The run's state: Failed for an input that failed anew; Completed, with a message and a warning,
    when every failure is an earlier run's again (the input unchanged), so that a schedule over an
    inbox with one bad file does not fail for ever; the summary otherwise."""
    from prefect.states import Completed, Failed

    from segpipe.pipeline.failures import new_failures

    failed = [r for r in results if r.error is not None]
    if not failed:
        return summary
    new = new_failures(results)
    known = [r for r in failed if r.failed_before]
    if new:
        again = f"; {len(known)} more fail as before, unchanged" if known else ""
        return Failed(message=f"{len(new)} of {len(results)} input(s) failed: {_said(new)}{again}")
    since = min(r.failing_since for r in known)
    message = (f"{len(known)} input(s) fail as they have since {since}, their files unchanged (replace or remove them): "
               f"{_said(known)}")
    get_run_logger().warning(message)
    return Completed(message=message, data=summary)


def _said(results) -> str:
    """Each failed input's path and error, the path once."""
    return "; ".join(r.error if r.path in r.error else f"{r.path}: {r.error}" for r in results)
