"""The report's figures, drawn with matplotlib (Agg) into PNG files.

* :func:`overlay` -- ground-truth (green) and predicted (magenta) outlines on the image; 2D
  images get one row, 3D volumes three orthogonal planes (yx, zx, zy) drawn at their
  physical aspect ratio, cut through the densest plane of ground truth along each axis.
* :func:`training_curve` -- training loss and validation scores per epoch.
* :func:`iou_histogram` -- distribution of the per-object IoU, model and baseline.
* :func:`matching_curve` -- F1, average precision and panoptic quality against the IoU threshold.
* :func:`class_scores` -- IoU and Dice of each foreground class, model and baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from segpipe.inference.normalize import percentile_normalize  # noqa: E402

GT_COLOUR = (0.1, 0.9, 0.2)
PRED_COLOUR = (1.0, 0.2, 0.8)
DPI = 90


def cut_planes(gt: np.ndarray) -> tuple[int, ...]:
    """For each axis of a volume, the index of the plane holding the most ground truth."""
    fg = np.asarray(gt) > 0
    if not fg.any():
        return tuple(s // 2 for s in fg.shape)
    planes = []
    for axis in range(fg.ndim):
        other = tuple(a for a in range(fg.ndim) if a != axis)
        planes.append(int(np.argmax(fg.sum(axis=other))))
    return tuple(planes)


def _n_objects(labels: np.ndarray) -> int:
    ids = np.unique(labels)
    return int(ids.size - (1 if ids.size and ids[0] == 0 else 0))


def _rgb(plane: np.ndarray) -> np.ndarray:
    shown = np.clip(percentile_normalize(plane[np.newaxis].astype(np.float32))[0], 0, 1)
    return np.stack([shown] * 3, axis=-1)


def _outlined(rgb: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> np.ndarray:
    canvas = rgb.copy()
    if gt is not None:
        canvas[find_boundaries(gt, mode="inner")] = GT_COLOUR
    if pred is not None:
        canvas[find_boundaries(pred, mode="inner")] = PRED_COLOUR
    return canvas


def overlay(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    path: Path,
    *,
    title: str,
    spacing: Sequence[float] | None = None,
) -> Path:
    """Save outlines of ground truth and prediction on the image.

    Columns: ground truth, prediction, both. 2D images give one row; 3D volumes three rows,
    the yx, zx and zy planes through :func:`cut_planes`, each at the aspect ratio of ``spacing``.

    Args:
        image: One channel, ``([Z,] Y, X)``.
        gt: Ground-truth labels, same shape.
        pred: Predicted labels, same shape.
        path: PNG file to write.
        title: Figure title.
        spacing: Pixel size per axis (3D aspect ratios).
    """
    image, gt, pred = np.asarray(image), np.asarray(gt), np.asarray(pred)
    spacing = tuple(spacing) if spacing is not None else (1.0,) * image.ndim
    if image.ndim == 2:
        rows = [("", image, gt, pred, 1.0)]
    else:
        z, y, x = cut_planes(gt)
        sz, sy, sx = spacing
        rows = [
            (f"yx plane z={z}", image[z], gt[z], pred[z], sy / sx),
            (f"zx plane y={y}", image[:, y], gt[:, y], pred[:, y], sz / sx),
            (f"zy plane x={x}", image[:, :, x], gt[:, :, x], pred[:, :, x], sz / sy),
        ]
    n_gt, n_pred = _n_objects(gt), _n_objects(pred)
    heights = [r[1].shape[0] * r[4] for r in rows]
    width = max(r[1].shape[1] for r in rows)
    fig_w = 12.0
    fig_h = min(max(fig_w / 3 * sum(heights) / width + 0.8 + 0.3 * len(rows), 3.0), 16.0)
    fig, axes = plt.subplots(
        len(rows), 3, figsize=(fig_w, fig_h), squeeze=False, constrained_layout=True,
        gridspec_kw={"height_ratios": heights},
    )
    for (label, plane, g, p, aspect), ax_row in zip(rows, axes, strict=True):
        rgb = _rgb(plane)
        panels = (
            (_outlined(rgb, g, None), f"ground truth ({n_gt} objects)"),
            (_outlined(rgb, None, p), f"prediction ({n_pred} objects)"),
            (_outlined(rgb, g, p), "both"),
        )
        for ax, (canvas, name) in zip(ax_row, panels, strict=True):
            ax.imshow(canvas, interpolation="nearest", aspect=aspect)
            ax.set_title(f"{name}{', ' + label if label else ''}", fontsize=9)
            ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=DPI)
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
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def iou_histogram(series: dict[str, dict], path: Path) -> Path:
    """Bar chart of per-object IoU histograms (``{"edges", "counts"}``), one series per method."""
    fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    named = [(name, hist) for name, hist in series.items() if hist]
    width = 1.0 / (len(named) + 1)
    for k, (name, hist) in enumerate(named):
        edges = np.asarray(hist["edges"])
        counts = np.asarray(hist["counts"], np.float64)
        share = counts / max(counts.sum(), 1)
        step = edges[1] - edges[0]
        ax.bar(edges[:-1] + step * width * (k + 0.5), share, width=step * width, align="edge", label=f"{name} ({int(counts.sum())} objects)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU of each ground-truth object with its best predicted object")
    ax.set_ylabel("share of objects")
    ax.set_title("per-object IoU")
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def matching_curve(series: dict[str, list[dict]], path: Path) -> Path:
    """F1, average precision and panoptic quality against the IoU threshold, per method."""
    fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    styles = {"f1": "-", "ap": "--", "panoptic_quality": ":"}
    colours = ["tab:purple", "tab:gray", "tab:orange"]
    for colour, (name, rows) in zip(colours, series.items()):
        for key, style in styles.items():
            points = [(r["thresh"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, marker="o", markersize=3, color=colour, label=f"{name} {key.replace('_', ' ')}")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.set_title("matching against the IoU threshold")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def class_scores(series: dict[str, dict], path: Path) -> Path:
    """Grouped bars of each foreground class's IoU and Dice, one colour per method.

    Args:
        series: ``{method: metrics}`` where metrics hold ``iou`` and ``dice`` dicts by class.
        path: PNG file to write.
    """
    named = [(name, m) for name, m in series.items() if m]
    classes = list(named[0][1]["iou"])[1:] if named else []
    labels = [f"{kind} {c}" for c in classes for kind in ("IoU", "Dice")]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 2), 3.6), constrained_layout=True)
    width = 0.8 / max(len(named), 1)
    for k, (name, m) in enumerate(named):
        values = [(m[kind.lower()].get(c) or 0.0) for c in classes for kind in ("IoU", "Dice")]
        ax.bar(np.arange(len(labels)) + (k - (len(named) - 1) / 2) * width, values, width=width, label=name)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20 if len(labels) > 4 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (pooled over images)")
    ax.set_title("per-class overlap")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
