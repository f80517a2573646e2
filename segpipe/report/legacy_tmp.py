"""Per-dataset report: metrics tables, overlays of prediction vs ground truth, training curve."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from segpipe.transforms import percentile_normalize  # noqa: E402

GT_COLOUR = (0.1, 0.9, 0.2)
PRED_COLOUR = (1.0, 0.2, 0.8)


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` produced."""

    markdown: str
    path: Path
    figures: list[Path]


def display_slice(array: np.ndarray, ndim: int) -> np.ndarray:
    """The 2D plane shown for an image: itself in 2D, the middle z slice in 3D."""
    return array[array.shape[0] // 2] if ndim == 3 else array


def overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, path: Path, *, title: str) -> Path:
    """Save the image with ground-truth (green) and predicted (magenta) outlines side by side."""
    shown = np.clip(percentile_normalize(image[np.newaxis])[0], 0, 1)
    rgb = np.stack([shown] * 3, axis=-1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), constrained_layout=True)
    for ax, labels, colour, name in ((axes[0], gt, GT_COLOUR, "ground truth"), (axes[1], pred, PRED_COLOUR, "prediction")):
        canvas = rgb.copy()
        canvas[find_boundaries(labels, mode="inner")] = colour
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(f"{name}: {len(np.unique(labels)) - (1 if (labels == 0).any() else 0)} objects")
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def training_curve(history: list[dict], path: Path) -> Path:
    """Plot training loss and validation scores per epoch."""
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], label="training loss", color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    val = [(row["epoch"], row) for row in history if row.get("val_score") not in (None, "")]
    if val:
        twin = ax.twinx()
        for key, colour in (("val_seg", "tab:red"), ("val_dice", "tab:green")):
            points = [(e, float(r[key])) for e, r in val if r.get(key) not in (None, "")]
            if points:
                twin.plot(*zip(*points), marker="o", color=colour, label=key.replace("_", " "))
        twin.set_ylabel("validation score")
        twin.set_ylim(0, 1)
        twin.legend(loc="lower right")
    ax.legend(loc="upper right")
    ax.set_title("training curve")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def read_history(path: Path) -> list[dict]:
    """Rows of ``history.csv`` with numbers parsed (empty cells become ``None``)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    return rows


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def metrics_markdown(metrics: dict) -> str:
    """Dataset-level and per-image tables."""
    classes = list(metrics["iou"])
    lines = ["| measure | value |", "| --- | --- |"]
    if metrics.get("seg") is not None:
        lines.append(f"| SEG (CTC, object-weighted, {metrics['n_objects']} objects) | {_fmt(metrics['seg'])} |")
    for name in classes:
        lines.append(f"| IoU {name} | {_fmt(metrics['iou'][name])} |")
        lines.append(f"| Dice {name} | {_fmt(metrics['dice'][name])} |")
    lines += ["", "| image | SEG | objects | " + " | ".join(f"IoU {c}" for c in classes[1:]) + " |"]
    lines.append("| --- " * (3 + len(classes) - 1) + "|")
    for row in metrics["per_image"]:
        ious = " | ".join(_fmt(row["iou"][c]) for c in classes[1:])
        lines.append(f"| {row['name']} | {_fmt(row.get('seg'))} | {row.get('n_objects', '')} | {ious} |")
    return "\n".join(lines)


def write_report(
    run_dir: Path,
    *,
    dataset: str,
    record: dict,
    metrics: dict,
    card: dict,
    history: list[dict],
    views: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
) -> Report:
    """Write ``report.md`` and its figures into ``run_dir``.

    Args:
        run_dir: The dataset's run folder.
        dataset: Dataset name.
        record: The store's ``segpipe`` record (description, ground-truth note).
        metrics: The scores (``metrics.json`` content).
        card: The model card.
        history: Training history rows.
        views: ``(name, image, gt, pred)`` per test image, for overlays (2D planes or volumes).
    """
    figures_dir = run_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    ndim = card["spatial_dims"]
    for name, image, gt, pred in views:
        path = figures_dir / f"overlay_{name}.png"
        seg = next((r.get("seg") for r in metrics["per_image"] if r["name"] == name), None)
        title = f"{dataset} / {name}" + (f"  (SEG {seg:.3f})" if seg is not None else "")
        figures.append(overlay(display_slice(image, ndim), display_slice(gt, ndim), display_slice(pred, ndim), path, title=title))
    if history:
        figures.append(training_curve(history, figures_dir / "training_curve.png"))

    post = card.get("postprocess")
    lines = [
        f"# segpipe report: {dataset}",
        "",
        record.get("description", "").strip(),
        "",
    ]
    if record.get("ground_truth"):
        lines += [f"**Ground truth.** {record['ground_truth'].strip()}", ""]
    lines += [
        "## Scores on the test split",
        "",
        metrics_markdown(metrics),
        "",
        "## Model",
        "",
        f"- network: `{card['model']}` {card['model_options']}, {card['spatial_dims']}D, "
        f"{card['in_channels']} input channel(s), classes {card['classes']}",
        f"- patch {card['patch_size']}, trained {card.get('epochs_trained', '?')} epochs "
        f"in {card.get('train_seconds', 0):.0f} s, best epoch {card.get('best_epoch', '?')}",
        f"- post-processing (chosen on validation): {json.dumps(post) if post else 'argmax'}",
        f"- validation: {json.dumps(card.get('validation', {}))}",
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{p.stem}](figures/{p.name})" for p in figures]
    markdown = "\n".join(lines) + "\n"
    path = run_dir / "report.md"
    path.write_text(markdown)
    return Report(markdown, path, figures)
