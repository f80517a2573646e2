"""The run history of a dataset: one JSON line per scored run in ``OUTPUT/DATASET/runs.jsonl``.

Each line holds the headline scores (with their intervals) of the model and of the classical
baseline, which model produced them, when, and on what machine, so reports can compare a run
with the previous ones and the index page can list every dataset's latest run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
from pathlib import Path
from typing import Any

from segpipe.errors import InputError
from segpipe.models.card import ModelCard

RUNS_FILE = "runs.jsonl"

# Headline scores: key in the run summary -> (label, how to read it from metrics.json).
HEADLINE = {
    "seg": "SEG",
    "op_csb": "OP_CSB",
    "det": "DET",
    "f1_50": "F1 @ IoU 0.5",
    "ap_50": "AP @ IoU 0.5",
    "pq_50": "PQ @ IoU 0.5",
    "mean_iou": "mean IoU",
    "mean_dice": "mean Dice",
}


def headline(metrics: dict) -> dict[str, Any]:
    """The headline scores and their intervals from a ``metrics.json`` dict.

    Returns:
        ``{key: value}`` for each key of :data:`HEADLINE` plus ``"ci": {key: [low, high] | None}``;
        scores a dataset does not have (SEG of a semantic dataset) are ``None``.
    """
    ci = metrics.get("ci") or {}
    half = next((m for m in metrics.get("matching") or [] if abs(m["thresh"] - 0.5) < 1e-9), None)
    half_ci = (ci.get("matching") or {}).get("0.5") or {}
    values = {
        "seg": (metrics.get("seg"), ci.get("seg")),
        "op_csb": (metrics.get("op_csb"), ci.get("op_csb")),
        "det": (metrics.get("det"), ci.get("det")),
        "f1_50": (half and half.get("f1"), half_ci.get("f1")),
        "ap_50": (half and half.get("ap"), half_ci.get("ap")),
        "pq_50": (half and half.get("panoptic_quality"), half_ci.get("panoptic_quality")),
        "mean_iou": (metrics.get("mean_iou"), ci.get("mean_iou")),
        "mean_dice": (metrics.get("mean_dice"), ci.get("mean_dice")),
    }
    out: dict[str, Any] = {key: value for key, (value, _) in values.items()}
    out["ci"] = {key: interval for key, (_, interval) in values.items()}
    return out


def machine() -> dict[str, Any]:
    """Where this process runs: host, OS, Python, CPU model and count, and the GPU if any."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": None,
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = str(torch.__version__)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def append_run(run_dir: str | Path, entry: dict) -> Path:
    """Append one run to ``runs.jsonl`` (one line, written and flushed in a single call)."""
    path = Path(run_dir) / RUNS_FILE
    line = json.dumps(entry, allow_nan=False, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read_runs(run_dir: str | Path) -> list[dict]:
    """Every run of a dataset, oldest first (an empty list when there is no history).

    Raises:
        InputError: A line that is not a JSON object (the file and line are named).
    """
    path = Path(run_dir) / RUNS_FILE
    if not path.is_file():
        return []
    runs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {number} is not valid JSON ({err.msg})") from err
        if not isinstance(entry, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        runs.append(entry)
    return runs


def _mtime(path: Path) -> str | None:
    if not path.exists():
        return None
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return stamp.isoformat(timespec="seconds")


def new_run(metrics: dict, *, card: ModelCard | None, model_file: Path | None = None, predictions: Path | None = None) -> dict:
    """Describe the run being scored: id, time, model, device, machine, stage times.

    Args:
        metrics: The run's scores (``scoring_seconds`` and ``n_images`` are copied).
        card: The model card, if the run has a model.
        model_file: ``model.pt``; its modification time is when training finished.
        predictions: The prediction store; its modification time is when prediction finished.
    """
    import torch

    now = dt.datetime.now(dt.timezone.utc)
    training = card.training if card is not None else None
    wanted = training.config.get("device", "auto") if training is not None else "auto"
    device = "cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu"
    return {
        "run_id": now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2),
        "timestamp": now.isoformat(timespec="seconds"),
        "model": card.network if card is not None else None,
        "model_name": card.name if card is not None else None,
        "config_key": training.config_key if training is not None else None,
        "epochs": training.epochs if training is not None else None,
        "train_seconds": training.seconds if training is not None else None,
        "device": device,
        "machine": machine(),
        "scoring_seconds": metrics.get("scoring_seconds"),
        "n_images": metrics.get("n_images"),
        "model_time": _mtime(model_file) if model_file else None,
        "predictions_time": _mtime(predictions) if predictions else None,
    }


#: What makes two scorings one run: the same model, the same predictions, the same scores.
SAME_RUN_KEYS = ("model", "model_name", "config_key", "epochs", "model_time", "predictions_time", "n_images", "dataset",
                 "split", "scores", "baseline")


def same_run(entry: dict, earlier: dict | None) -> bool:
    """Whether ``entry`` (:func:`run_entry`) scores what ``earlier`` scored, with the same result: a
    model and predictions unchanged since (a cached ``segpipe run``, ``segpipe score`` once more),
    on the same files (a run recorded without their fingerprint is taken by its scores alone)."""
    return (earlier is not None and all(entry.get(key) == earlier.get(key) for key in SAME_RUN_KEYS)
            and earlier.get("data_fingerprint") in (None, entry.get("data_fingerprint")))


def run_entry(metrics: dict, run: dict) -> dict:
    """The line :func:`append_run` writes for a run: its description and headline scores."""
    entry = {k: v for k, v in run.items() if k != "machine"}
    entry["host"] = (run.get("machine") or {}).get("host")
    entry["gpu"] = (run.get("machine") or {}).get("gpu")
    entry["dataset"] = metrics.get("dataset")
    entry["split"] = metrics.get("split")
    entry["scores"] = headline(metrics)
    base = metrics.get("baseline")
    entry["baseline"] = {k: v for k, v in headline(base).items() if k != "ci"} if base else None
    return entry
