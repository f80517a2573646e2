"""Per-image prediction and scoring on Dask through Prefect: 1 vs 2 workers, and the orchestration overhead.

    python benchmarks/scaleout.py [--images 8] [--repeats 2] [--mosaic 1]

Prepares a run folder once: real BBBC007 fields (400x400 and 450x450, the catalog's own
data; repeated under new names up to ``--images`` test images; with ``--mosaic K`` each test
image is K x K fields side by side, 800x800 for K=2, the size of a typical camera frame),
ingested, and a U-Net of the
default planned size trained for one short epoch (the weights do not matter here, the network
size does: inference costs what a real run's does, flip test-time augmentation included).

Then, each on a fresh copy of the run folder (no prediction, no cache):

* ``plain``: ``stages.predict_one`` and ``stages.score_one`` called in a loop in this process,
  without Prefect: the task time.
* ``dask-1``, ``dask-2``: the flows' per-image fan-out (:func:`segpipe.flows.steps.submit_predictions`,
  :func:`segpipe.flows.steps.submit_scores`, :func:`segpipe.flows.steps.collect`, as in
  :func:`segpipe.flows.steps.predict_and_score`: one Prefect task per image and stage, each image
  scored as soon as it is predicted) on a LocalCluster of
  1 or 2 worker processes (one thread each), timed after the cluster is up and every worker has
  imported the library and loaded the model (reported apart as start-up). Run ``--repeats``
  times, alternating 1 and 2 workers; the best time of each counts.

An empty task submitted and awaited 20 times on the thread runner and on a 1-worker
LocalCluster gives the floor of Prefect's own cost per task on each.

Per-task orchestration overhead, measured within each dask-1 run: (wall time of the fan-out -
the summed time of the work inside the tasks, which each task logs) / number of tasks. That is
what Prefect (task runs, states, cache keys, result persistence) and Dask (scheduling,
serialisation) add to each task; measuring both in the same run keeps the load of a shared
machine out of the ratio. Prefect runs on its embedded default; the Dask workers share the
flow's temporary server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from segpipe.prediction.params import PredictParams

CPU = PredictParams(device="cpu")
ROOT = Path(__file__).resolve().parents[1]
BBBC007 = ROOT / "data" / "bbbc007"
TRAIN, VALIDATION = "17P1_POS0006_D_1UL", "20P1_POS0007_D_1UL"


def prepare(work: Path, n_images: int, mosaic: int) -> Path:
    """Catalog, ingest and a trained model under ``work/base``; returns the output folder."""
    from segpipe.pipeline import RunFolder, stages
    from segpipe.pipeline.catalog import open_catalog
    from segpipe.training.params import TrainParams

    base = work / "base"
    marker = base / "ready.json"
    wanted = {"images": n_images, "mosaic": mosaic}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return base / "runs"
    shutil.rmtree(base, ignore_errors=True)
    data = base / "data"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    fields = sorted(p.stem for p in (BBBC007 / "images").glob("*.tif") if p.stem not in (TRAIN, VALIDATION))
    test = []
    for k in range(n_images):
        name = f"{fields[k % len(fields)]}_r{k}"
        if mosaic == 1:
            for sub in ("images", "labels"):
                shutil.copy(BBBC007 / sub / f"{fields[k % len(fields)]}.tif", data / sub / f"{name}.tif")
        else:
            tiles = [fields[(k * mosaic**2 + j) % len(fields)] for j in range(mosaic**2)]
            image, labels = tile_fields(tiles, mosaic)
            tifffile.imwrite(data / "images" / f"{name}.tif", image)
            tifffile.imwrite(data / "labels" / f"{name}.tif", labels)
        test.append(name)
    for name in (TRAIN, VALIDATION):
        for sub in ("images", "labels"):
            shutil.copy(BBBC007 / sub / f"{name}.tif", data / sub / f"{name}.tif")
    catalog = data / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  fields:\n    images: images/*.tif\n    labels: labels/*.tif\n    ndim: 2\n"
        "    classes: [background, nucleus]\n    instances: true\n    split:\n"
        f"      train: [{TRAIN}]\n      validation: [{VALIDATION}]\n      test: [{', '.join(test)}]\n"
    )
    output = base / "runs"
    run = RunFolder.of(output, "fields")
    stages.ingest(open_catalog(catalog), "fields", run)
    config = TrainParams(epochs=1, iterations_per_epoch=2, max_minutes=None, val_every=1, device="cpu")
    stages.train(run, config, progress=False)
    marker.write_text(json.dumps(wanted))
    return output


def tile_fields(names: list[str], k: int, edge: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """``k x k`` real fields (their top-left ``edge`` pixels) side by side; object ids kept unique."""
    images, labels, offset = [], [], 0
    for name in names:
        images.append(tifffile.imread(BBBC007 / "images" / f"{name}.tif")[:edge, :edge])
        tile = tifffile.imread(BBBC007 / "labels" / f"{name}.tif")[:edge, :edge].astype(np.uint32)
        tile[tile > 0] += offset
        offset = int(tile.max())
        labels.append(tile)
    rows = [slice(r * k, (r + 1) * k) for r in range(k)]
    image = np.concatenate([np.concatenate(images[row], axis=-1) for row in rows], axis=-2)
    label = np.concatenate([np.concatenate(labels[row], axis=-1) for row in rows], axis=-2)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def fresh_copy(output: Path, work: Path, label: str) -> Path:
    """The prepared run without predictions or scores, under ``work/label``."""
    target = work / label
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(output, target / "runs", ignore=shutil.ignore_patterns("predictions*", "metrics.json", ".dask-scratch"))
    return target / "runs"


def plain(output: Path) -> dict:
    """The per-image functions in a loop, no Prefect, after one warm-up image."""
    from segpipe.pipeline import RunFolder, stages

    run = RunFolder.of(output, "fields")
    names = stages.prepare_predictions(run)
    stages.predict_one(run, names[0], CPU)  # loads the model, warms up torch
    shutil.rmtree(run.predictions / names[0])
    predict, score = [], []
    for name in names:
        start = time.perf_counter()
        stages.predict_one(run, name, CPU)
        predict.append(time.perf_counter() - start)
        start = time.perf_counter()
        stages.score_one(run, name)
        score.append(time.perf_counter() - start)
    return {"seconds": sum(predict) + sum(score), "predict": predict, "score": score, "tasks": 2 * len(names)}


def _warm_worker(run_root: str) -> int:
    """Run on every Dask worker before timing: import the library, load the model once."""
    from segpipe.pipeline import RunFolder, stages  # torch, MONAI, zarr

    stages.predictor_for(RunFolder(Path(run_root)), CPU)
    return os.getpid()


def _flush_logs() -> None:
    """Send a Dask worker's pending log lines (``client.run`` calls this on its event loop: use a thread)."""
    import threading

    from prefect.logging.handlers import APILogWorker

    thread = threading.Thread(target=APILogWorker.drain_all, kwargs={"timeout": 10})
    thread.start()
    thread.join()


def on_dask(output: Path, workers: int) -> dict:
    """The flows' fan-out on a LocalCluster of ``workers`` processes, inside a flow run."""
    from prefect import flow
    from prefect.context import get_run_context

    from segpipe.flows.runners import RunnerParams, fan_out
    from segpipe.flows.steps import collect, scratch_dir, submit_predictions, submit_scores
    from segpipe.flows.tasks import prepare_predictions_task
    from segpipe.pipeline import RunFolder

    run = RunFolder.of(output, "fields")

    @flow(name="scaleout-benchmark", log_prints=False)
    def bench() -> dict:
        names = prepare_predictions_task(run)
        start = time.perf_counter()
        options = RunnerParams(kind="dask", workers=workers)
        with fan_out(options, scratch=scratch_dir(run)) as runner:
            pids = runner.client.run(_warm_worker, str(run.root))
            ready = time.perf_counter()
            predicted = submit_predictions(runner, run, names, CPU, None)
            scored = submit_scores(runner, run, names, after=predicted)
            parts, failed = collect(names, predicted, scored)
            done = time.perf_counter()
            runner.client.run(_flush_logs)  # the workers' last log lines, before the cluster stops
        assert not failed and len(parts) == len(names), failed
        return {
            "seconds": done - ready, "startup": ready - start, "workers": len(pids), "tasks": 2 * len(names),
            "flow_run_id": str(get_run_context().flow_run.id),
        }

    result = bench()
    flow_run_id = result.pop("flow_run_id")
    result["work"] = work_seconds(flow_run_id)
    result["running"] = running_seconds(flow_run_id)
    assert len(result["work"]) == len(result["running"]) == result["tasks"], result
    return result


def work_seconds(flow_run_id: str) -> list[float]:
    """The time each task spent on its image, from the tasks' log lines ("NAME: predicted in S s ...")."""
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    pattern = re.compile(r"^\S+: (?:predicted|scored) in ([0-9.]+) s in process")
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [float(m.group(1)) for log in logs if (m := pattern.match(log.message))]


def running_seconds(flow_run_id: str) -> list[float]:
    """Time each per-image task run spent in the Running state (the server's record)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [r.total_run_time.total_seconds() for r in runs if r.name.startswith(("predict-", "score-"))]


def empty_tasks(kind: str, n: int = 20) -> float:
    """Seconds per task for ``n`` Prefect tasks that do nothing, one at a time, on ``kind`` (1 worker)."""
    from prefect import flow, task

    from segpipe.flows.runners import RunnerParams, fan_out

    @task(name="empty")
    def empty(i: int) -> int:
        return i

    @flow(name="scaleout-empty-tasks")
    def run() -> float:
        with fan_out(RunnerParams(kind=kind, workers=1), scratch=Path(os.environ.get("TMPDIR", "/tmp")) / "segpipe-scaleout") as runner:
            runner.submit(empty, {"i": -1}).wait()  # the worker is up and has imported Prefect
            start = time.perf_counter()
            for i in range(n):
                runner.submit(empty, {"i": i}).wait()
            return (time.perf_counter() - start) / n

    return run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="test images (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each Dask variant, alternating (default 2)")
    parser.add_argument("--mosaic", type=int, default=1, help="each test image is K x K fields side by side (default 1)")
    parser.add_argument("--work", type=Path, default=None, help="default benchmarks/_work/scaleout/mosaic-K")
    args = parser.parse_args(argv)
    args.work = args.work or ROOT / "benchmarks" / "_work" / "scaleout" / f"mosaic-{args.mosaic}"
    args.work.mkdir(parents=True, exist_ok=True)

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    output = prepare(args.work, args.images, args.mosaic)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    base = plain(fresh_copy(output, args.work, "plain"))
    for repeat in range(args.repeats):
        for workers in (1, 2):
            label = f"dask-{workers}-{repeat}"
            storage = args.work / label / "prefect-storage"  # a cache of its own: nothing is reused
            with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}):
                runs[workers].append(on_dask(fresh_copy(output, args.work, label), workers))
    floor = {kind: empty_tasks(kind) for kind in ("thread", "dask")}
    reference = predictions_of(args.work / "plain")
    for label in [f"dask-{w}-{r}" for w in (1, 2) for r in range(args.repeats)]:
        assert predictions_of(args.work / label) == reference, f"{label}: predictions differ from the plain loop's"

    one, two = (min(runs[w], key=lambda r: r["seconds"]) for w in (1, 2))
    task = statistics.mean(base["predict"] + base["score"])
    overheads = [(r["seconds"] - sum(r["work"])) / r["tasks"] for r in runs[1]]
    in_run_task = [statistics.mean(r["work"]) for r in runs[1]]
    size = "400x400 and 450x450" if args.mosaic == 1 else f"{400 * args.mosaic}x{400 * args.mosaic}, {args.mosaic}x{args.mosaic} fields each"
    print(f"{args.images} images (BBBC007 fields, {size}), {base['tasks']} tasks, best of {args.repeats}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs")
    print(f"task time (plain loop): predict {statistics.mean(base['predict']):.3f} s, score "
          f"{statistics.mean(base['score']):.3f} s per image, mean {task:.3f} s")
    print("| variant | workers | time (s) | speed-up vs 1 worker | start-up (s) |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| plain loop, no Prefect | 1 (this process) | {base['seconds']:.2f} | - | - |")
    for result in (one, two):
        print(f"| Prefect + Dask LocalCluster | {result['workers']} | {result['seconds']:.2f} | "
              f"{one['seconds'] / result['seconds']:.2f}x | {result['startup']:.1f} |")
    print(f"an empty task, one at a time: {floor['thread'] * 1000:.0f} ms on the thread runner, "
          f"{floor['dask'] * 1000:.0f} ms on a 1-worker LocalCluster")
    for run, overhead, mean_task in zip(runs[1], overheads, in_run_task):
        inside = (sum(run["running"]) - sum(run["work"])) / run["tasks"]
        print(f"per-task orchestration overhead (1 worker): {overhead * 1000:.0f} ms = "
              f"{100 * overhead / mean_task:.1f}% of the mean task time in that run ({mean_task:.3f} s); goal < 5%. "
              f"Of it, {inside * 1000:.0f} ms in the Running state (cache key, result persistence, logging), "
              f"{(overhead - inside) * 1000:.0f} ms between tasks (Dask dispatch, task run creation and states)")


def predictions_of(run: Path) -> dict[str, bytes]:
    """The instance label TIFFs of a run, by name: identical whatever ran them."""
    folder = run / "runs" / "fields" / "predictions"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_instances.tif"))}


if __name__ == "__main__":
    sys.exit(main())
