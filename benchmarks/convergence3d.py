"""3D convergence at a fixed number of epochs: segpipe's planned 3D defaults against the previous plan.

Trains every 3D task with default settings and ``--epochs`` epochs (10: what a short fixed schedule
must reach), through the pipeline's own stages (ingest, train, predict with test-time flips, score),
and prints test Dice, SEG and F1 at IoU 0.5 against the classical baseline (Otsu + watershed for
nuclei, multi-Otsu for tissue classes), for two plans side by side:

- ``planned``: today's defaults (:func:`segpipe.training.plan.plan_training`);
- ``previous`` (the named baseline): the 3D plan before, widths 16..256, patches of about 64
  voxels' physical edge, batch 2, 25 iterations per epoch.

Tasks: the bundled ``synthetic-nuclei-3d`` and ``mni152-tissue`` and the generated volumes of
:mod:`nuclei3d` (large sparse nuclei, crowded small ones), which check that the plan holds beyond
the bundled data. Training runs on the CPU threads segpipe chooses (``--threads`` to fix them).

Run: ``python benchmarks/convergence3d.py [--epochs 10] [--plans planned previous] [--tasks ...]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nuclei3d

from segpipe.data.store import ImageStore
from segpipe.pipeline import RunFolder, stages
from segpipe.pipeline.catalog import open_catalog, train_params
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams
from segpipe.training.plan import fingerprint_store, plan_patch_size

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("synthetic-nuclei-3d", "mni152-tissue")
PREVIOUS_EDGE = 64  # the previous plan's target patch edge in 3D


def previous_patch(shape: list[int], spacing: list[float]) -> tuple[int, ...]:
    """The previous plan's patch: about 64 voxels' physical edge, multiples of 16, no larger than the image."""
    return plan_patch_size(shape, spacing, edge=PREVIOUS_EDGE)


def plan_overrides(plan: str, store: ImageStore, extra: dict) -> dict:
    """The training fields a plan sets explicitly (``planned``: none, the defaults decide)."""
    if plan == "previous":
        fingerprint = fingerprint_store(store)
        return {
            "features": (16, 32, 64, 128, 256, 16),
            "patch_size": previous_patch(fingerprint["median_shape"], fingerprint["median_spacing"]),
            "batch_size": 2,
            "iterations_per_epoch": 25,
        }
    if plan == "custom":
        return {k: tuple(v) if isinstance(v, list) else v for k, v in extra.items()}
    return {}


def run_task(catalog, task: str, plan: str, *, output: Path, epochs: int, extra: dict) -> dict:
    """Ingest, train, predict and score one task under one plan; the scores and the training record."""
    run = RunFolder.of(output / plan, task)
    stages.ingest(catalog, task, run)
    overrides = plan_overrides(plan, ImageStore.open(run.store), extra)
    params = train_params(catalog, task, TrainParams(epochs=epochs, **overrides))
    started = time.perf_counter()
    trained = stages.train(run, params, catalog=catalog, progress=False)
    seconds = time.perf_counter() - started
    stages.predict(run, PredictParams(), progress=False)
    metrics = stages.score(run)
    card = trained.model.card
    history = [(row["epoch"], round(row["val_score"], 3)) for row in trained.history if "val_score" in row]
    return {
        "task": task, "plan": plan, "seconds": round(seconds), "metrics": metrics, "history": history,
        "config": {k: card.training.config[k] for k in ("features", "patch_size", "batch_size", "iterations_per_epoch", "epochs")},
        "best_epoch": card.training.best_epoch,
    }


def f1_at(section: dict, threshold: float = 0.5) -> float | None:
    return next((row["f1"] for row in section.get("matching") or [] if row.get("thresh") == threshold), None)


def summary(result: dict) -> dict:
    """The figures printed per run: per-class Dice, SEG and F1@0.5 of the model and the baseline."""
    metrics = result["metrics"]
    baseline = metrics.get("baseline") or {}

    def dice(section):
        return {k: round(v, 3) for k, v in (section.get("dice") or {}).items() if k != "background"}

    def score(value):
        return None if value is None else round(value, 3)

    return {
        "dice": dice(metrics), "seg": score(metrics.get("seg")), "f1": score(f1_at(metrics)),
        "baseline_dice": dice(baseline), "baseline_seg": score(baseline.get("seg")), "baseline_f1": score(f1_at(baseline)),
    }


def write_catalog(folder: Path) -> Path:
    """A catalog of the generated volumes, under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    generated = "".join(nuclei3d.write_dataset(volume, folder) for volume in nuclei3d.VARIANTS)
    path = folder / "catalog.yaml"
    path.write_text("datasets:\n" + generated)
    return path


def main() -> None:
    tasks = [*BUNDLED, *(v.name for v in nuclei3d.VARIANTS)]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--plans", nargs="+", default=["planned", "previous"], choices=["planned", "previous", "custom"])
    parser.add_argument("--tasks", nargs="+", default=tasks, choices=tasks)
    parser.add_argument("--set", default="{}", help="JSON training fields of the 'custom' plan")
    parser.add_argument("--output", type=Path, default=Path("/tmp/segpipe-convergence3d"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: segpipe's choice; sets OMP_NUM_THREADS)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what segpipe's thread choice honours
    bundled, generated = open_catalog(ROOT / "data_catalog.yaml"), open_catalog(write_catalog(args.output / "data"))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, "
          f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
          f"load average {os.getloadavg()[0]:.1f} at start; {args.epochs} epochs")
    for task in args.tasks:
        for plan in args.plans:
            catalog = bundled if task in BUNDLED else generated
            result = run_task(catalog, task, plan, output=args.output, epochs=args.epochs, extra=json.loads(args.set))
            row = {"task": task, "plan": plan, **summary(result), "train_s": result["seconds"],
                   "best_epoch": result["best_epoch"], "val": result["history"], "config": result["config"]}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
