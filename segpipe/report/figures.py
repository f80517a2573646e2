"""The report's figures, drawn with matplotlib (Agg) into PNG files.

* :func:`overlay` -- ground-truth (green) and predicted (magenta) outlines on the image; 2D
  images get one row, 3D volumes three orthogonal planes (yx, zx, zy) drawn at their
  physical aspect ratio, cut through the densest plane of ground truth along each axis.
  Images with several channels are drawn as a colour composite (:func:`composite`), the
  outlines edged in black so they stay visible on any colour. For objects, the third panel
  also fills the objects in error (:data:`ERROR_COLOURS`): merges, splits, misses, false objects.
* :func:`training_curve` -- training loss and validation scores per epoch, the kept
  checkpoint's epoch marked by a dashed line.
* :func:`iou_histogram` -- distribution of the per-object IoU, model and baseline.
* :func:`matching_curve` -- F1, average precision and panoptic quality against the IoU threshold.
* :func:`class_scores` -- IoU and Dice of each foreground class, model and baseline.

Without ground truth (a segmentation run, :mod:`segpipe.report.segmentation`):

* :func:`outlines` -- predicted outlines on the image (2D, or orthogonal planes of 3D).
* :func:`object_counts` -- objects per image, the flagged images in another colour.
* :func:`object_sizes` -- box plots of each image's object sizes (a log axis when they span
  orders of magnitude).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from segpipe.inference.normalize import percentile_normalize  # noqa: E402
from segpipe.scoring.errors import ObjectErrors, object_errors  # noqa: E402

GT_COLOUR = (0.1, 0.9, 0.2)
PRED_COLOUR = (1.0, 0.2, 0.8)
EDGE_COLOUR = (0.0, 0.0, 0.0)
BEST_EPOCH_COLOUR = (1.0, 0.55, 0.0)
DPI = 90
# Objects in error (segpipe.scoring.errors), filled in Okabe-Ito colours, told apart by colour-blind readers:
# predicted objects for merged and false, ground-truth objects for split and missed.
ERROR_COLOURS = {
    "merged": ("orange", (0.90, 0.62, 0.0)), "split": ("sky blue", (0.34, 0.71, 0.91)),
    "missed": ("yellow", (0.94, 0.89, 0.26)), "false": ("purple", (0.80, 0.47, 0.65)),
}
ERROR_ALPHA = 0.6

# Composite colours as Fiji assigns them: red, green, blue, grey, cyan, magenta, yellow, repeated.
_FIJI = (
    ("red", (1.0, 0.0, 0.0)), ("green", (0.0, 1.0, 0.0)), ("blue", (0.0, 0.0, 1.0)), ("grey", (1.0, 1.0, 1.0)),
    ("cyan", (0.0, 1.0, 1.0)), ("magenta", (1.0, 0.0, 1.0)), ("yellow", (1.0, 1.0, 0.0)),
)


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


def channel_colours(n_channels: int) -> list[tuple[str, tuple[float, float, float]]]:
    """``(name, rgb)`` of each channel of a composite: grey for one channel; green and magenta
    for two (told apart by colour-blind readers too); red, green, blue for three; Fiji's order
    (then grey, cyan, magenta, yellow, repeated) for more."""
    if n_channels == 1:
        return [("grey", (1.0, 1.0, 1.0))]
    if n_channels == 2:
        return [("green", (0.0, 1.0, 0.0)), ("magenta", (1.0, 0.0, 1.0))]
    return [_FIJI[c % len(_FIJI)] for c in range(n_channels)]


def composite(channels: np.ndarray) -> np.ndarray:
    """An RGB picture of a ``(C, Y, X)`` plane: each channel scaled to its 1st-99.8th
    percentiles, clipped to [0, 1], tinted with its :func:`channel_colours` colour, and the
    tints added (clipped to 1).

    Returns:
        ``(Y, X, 3)`` float32 in [0, 1].
    """
    shown = np.clip(percentile_normalize(np.asarray(channels, np.float32)), 0, 1)
    colours = np.array([rgb for _, rgb in channel_colours(shown.shape[0])], np.float32)
    return np.clip(np.tensordot(shown, colours, axes=([0], [0])), 0, 1)


def _outlined(rgb: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None, *, edged: bool = False) -> np.ndarray:
    """Outlines drawn on a copy of ``rgb``; ``edged``: each with a black edge just outside it."""
    canvas = rgb.copy()
    outlines = [(labels, colour) for labels, colour in ((gt, GT_COLOUR), (pred, PRED_COLOUR)) if labels is not None]
    if edged:
        for labels, _ in outlines:
            canvas[find_boundaries(labels, mode="outer")] = EDGE_COLOUR
    for labels, colour in outlines:
        canvas[find_boundaries(labels, mode="inner")] = colour
    return canvas


def _errors_filled(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, errors: ObjectErrors) -> np.ndarray:
    """A copy of ``rgb`` with the objects in ``errors`` filled (:data:`ERROR_COLOURS`, blended at
    :data:`ERROR_ALPHA`): ``gt`` and ``pred`` are the plane's labels, ``errors`` the image's."""
    canvas = rgb.copy()
    for kind, labels in (("missed", gt), ("split", gt), ("false", pred), ("merged", pred)):
        where = np.isin(labels, getattr(errors, kind)) & (labels > 0)
        canvas[where] = (1 - ERROR_ALPHA) * canvas[where] + ERROR_ALPHA * np.array(ERROR_COLOURS[kind][1], np.float32)
    return canvas


def _error_title(errors: ObjectErrors) -> str:
    counts = errors.counts()
    named = [f"{counts[kind]} {kind}" for kind in ERROR_COLOURS if counts[kind]]
    return "both; filled: " + ", ".join(named) if named else "both (no object in error)"


def _panel_grid(rows: list[tuple[float, int]], *, columns: int, fig_w: float):
    """A figure of ``columns`` panels per row, each row as tall as its ``(height, width)`` plane
    (height already scaled by the aspect) asks, the whole between 3 and 16 inches tall."""
    heights = [h for h, _ in rows]
    width = max(w for _, w in rows)
    fig_h = min(max(fig_w / columns * sum(heights) / width + 0.8 + 0.3 * len(rows), 3.0), 16.0)
    return plt.subplots(
        len(rows), columns, figsize=(fig_w, fig_h), squeeze=False, constrained_layout=True,
        gridspec_kw={"height_ratios": heights},
    )

def _plane_rows(channels: np.ndarray, *labels: np.ndarray, planes: tuple[int, ...], spacing: Sequence[float] | None,
                named: Sequence[str] | None = None) -> list[tuple]:
    """``(name, channels, *labels, aspect)`` of each plane drawn: the image itself in 2D; the yx,
    zx and zy planes through ``planes`` (z, y, x) of a volume, each at its physical aspect ratio
    (``named``: what the three planes are, for a volume in an anatomical view)."""
    if channels.ndim == 3:
        return [("", channels, *labels, 1.0)]
    sz, sy, sx = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
    z, y, x = planes
    names = [f"{n} plane" for n in named] if named else [f"yx plane z={z}", f"zx plane y={y}", f"zy plane x={x}"]
    return [
        (names[0], channels[:, z], *(a[z] for a in labels), sy / sx),
        (names[1], channels[:, :, y], *(a[:, y] for a in labels), sz / sx),
        (names[2], channels[:, :, :, x], *(a[:, :, x] for a in labels), sz / sy),
    ]


def overlay(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    path: Path,
    *,
    title: str,
    spacing: Sequence[float] | None = None,
    planes: Sequence[str] | None = None,
    errors: bool = False,
    ignore: np.ndarray | None = None,
) -> Path:
    """Save outlines of ground truth and prediction on the image.

    Columns: ground truth, prediction, both (with ``errors``, the objects in error filled:
    :func:`segpipe.scoring.errors.object_errors`, counted over the whole image, drawn in the
    planes shown). 2D images give one row; 3D volumes three rows,
    the yx, zx and zy planes through :func:`cut_planes`, each at the aspect ratio of ``spacing``.
    One channel is drawn in grey; several as a :func:`composite`, with black-edged outlines.

    Args:
        image: The channels, ``(C, [Z,] Y, X)``; ``([Z,] Y, X)`` is one channel.
        gt: Ground-truth labels, ``([Z,] Y, X)``.
        pred: Predicted labels, same shape.
        path: PNG file to write.
        title: Figure title.
        spacing: Pixel size per spatial axis (3D aspect ratios).
        planes: What the three planes of a volume are (``orientation.PLANES`` for an anatomical view).
        errors: Fill the objects in error (label images of objects, not of classes).
        ignore: Pixels the ground truth does not annotate (the errors leave them out, as the scores do).

    Raises:
        ValueError: The image's spatial shape differs from the labels'.
    """
    image, gt, pred = np.asarray(image), np.asarray(gt), np.asarray(pred)
    channels = image if image.ndim == gt.ndim + 1 else image[np.newaxis]
    if channels.shape[1:] != gt.shape or pred.shape != gt.shape:
        raise ValueError(f"image {image.shape}, ground truth {gt.shape} and prediction {pred.shape} do not fit")
    rows = _plane_rows(channels, gt, pred, planes=cut_planes(gt) if gt.ndim == 3 else (), spacing=spacing, named=planes)
    n_gt, n_pred = _n_objects(gt), _n_objects(pred)
    wrong = object_errors(gt, pred, ignore=ignore) if errors else None
    edged = channels.shape[0] > 1
    fig, axes = _panel_grid([(r[2].shape[0] * r[4], r[2].shape[1]) for r in rows], columns=3, fig_w=12.0)
    for (label, plane, g, p, aspect), ax_row in zip(rows, axes, strict=True):
        rgb = composite(plane)
        panels = (
            (_outlined(rgb, g, None, edged=edged), f"ground truth ({n_gt} objects)"),
            (_outlined(rgb, None, p, edged=edged), f"prediction ({n_pred} objects)"),
            (_outlined(rgb if wrong is None else _errors_filled(rgb, g, p, wrong), g, p, edged=edged),
             "both" if wrong is None else _error_title(wrong)),
        )
        for ax, (canvas, name) in zip(ax_row, panels, strict=True):
            ax.imshow(canvas, interpolation="nearest", aspect=aspect)
            ax.set_title(f"{name}{', ' + label if label else ''}", fontsize=9)
            ax.axis("off")
    fig.suptitle(_wrapped(title))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def training_curve(history: list[dict], path: Path, *, best_epoch: int | None = None) -> Path:
    """Plot training loss and validation scores per epoch.

    Args:
        history: Rows of ``history.csv`` (``epoch``, ``train_loss``; ``val_op_csb``, ``val_seg``, ``val_dice`` where validated).
        path: PNG file to write.
        best_epoch: Epoch of the kept checkpoint, marked by a dashed vertical line
            (:data:`BEST_EPOCH_COLOUR`) labelled in the legend; ``None``: no mark.
    """
    fig, ax = plt.subplots(figsize=(7, 4.6), constrained_layout=True)
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], label="training loss", color="tab:blue",
            marker="o" if len(epochs) == 1 else None)  # one epoch: a point, not a line of no length
    if best_epoch is not None:
        ax.axvline(best_epoch, color=BEST_EPOCH_COLOUR, linestyle="--", linewidth=2,
                   label=f"kept checkpoint (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    val = [(row["epoch"], row) for row in history if row.get("val_score") not in (None, "")]
    if val:
        twin = ax.twinx()
        for key, colour, label in (("val_op_csb", "tab:purple", "validation OP_CSB (chooses the checkpoint)"),
                                   ("val_seg", "tab:red", "validation SEG"), ("val_dice", "tab:green", "validation Dice")):
            points = [(e, float(r[key])) for e, r in val if r.get(key) not in (None, "")]
            if points:
                twin.plot(*zip(*points), marker="o", color=colour, label=label)
        twin.set_ylabel("validation score")
        twin.set_ylim(0, 1)
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        # one legend under the axes: inside, it covered the curves' ends
        ax.legend(lines + more, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize="small")
    else:
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


# Okabe-Ito blue and vermillion: told apart by colour-blind readers too.
COUNT_COLOUR = (0.0, 0.45, 0.70)
FLAG_COLOUR = (0.84, 0.37, 0.0)
#: Image names are written under the bars and boxes up to this many images.
MAX_NAMED_IMAGES = 60


def outlines(image: np.ndarray, labels: np.ndarray, path: Path, *, title: str, spacing: Sequence[float] | None = None,
             planes: Sequence[str] | None = None, classes: bool = False) -> Path:
    """Save the image next to the outlines of its predicted objects (no ground truth).

    Columns: the image, the predicted outlines (magenta) on it. 2D images give one row; 3D
    volumes three rows, the yx, zx and zy planes through the planes holding the most predicted
    objects (:func:`cut_planes` of ``labels``), each at the aspect ratio of ``spacing``. One
    channel is drawn in grey; several as a :func:`composite`, with black-edged outlines.

    Args:
        image: The channels, ``(C, [Z,] Y, X)``; ``([Z,] Y, X)`` is one channel.
        labels: Predicted labels, ``([Z,] Y, X)``.
        path: PNG file to write.
        title: Figure title.
        spacing: Pixel size per spatial axis (3D aspect ratios).
        planes: What the three planes of a volume are (``orientation.PLANES`` for an anatomical view).
        classes: The labels are a class map (titled by class, not by counted objects).

    Raises:
        ValueError: The image's spatial shape differs from the labels'.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    channels = image if image.ndim == labels.ndim + 1 else image[np.newaxis]
    if labels.ndim not in (2, 3) or channels.shape[1:] != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} do not fit")
    rows = _plane_rows(channels, labels, planes=cut_planes(labels) if labels.ndim == 3 else (), spacing=spacing, named=planes)
    n = _n_objects(labels)
    edged = channels.shape[0] > 1
    fig, axes = _panel_grid([(r[2].shape[0] * r[3], r[2].shape[1]) for r in rows], columns=2, fig_w=9.0)
    for (label, plane, lab, aspect), ax_row in zip(rows, axes, strict=True):
        rgb = composite(plane)
        panels = ((rgb, "image"), (_outlined(rgb, None, lab, edged=edged), "predicted classes" if classes else f"predicted objects ({n})"))
        for ax, (canvas, name) in zip(ax_row, panels, strict=True):
            ax.imshow(canvas, interpolation="nearest", aspect=aspect)
            ax.set_title(f"{name}{', ' + label if label else ''}", fontsize=9)
            ax.axis("off")
    fig.suptitle(_wrapped(title))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


#: A figure title is wrapped at this many characters (a long one ran past both edges of the figure).
TITLE_WIDTH = 80


def _wrapped(title: str) -> str:
    return textwrap.fill(title, TITLE_WIDTH)  # a long file name is broken too


def _image_axis(ax, names: Sequence[str]) -> None:
    """Name the images along x (rotated), or just number them when they are too many to read."""
    if len(names) <= MAX_NAMED_IMAGES:
        ax.set_xticks(np.arange(len(names)), names, rotation=45 if len(names) > 3 else 0,
                      ha="right" if len(names) > 3 else "center", fontsize=8)
        ax.set_xlabel("image")
    else:
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{int(value) + 1}"))
        ax.set_xlabel(f"image (1 to {len(names)}, in the table's order)")
    ax.set_xlim(-0.6, len(names) - 0.4)


def _figure_width(n: int) -> float:
    return float(min(max(6.0, 0.35 * n + 2.0), 20.0))


def object_counts(
    names: Sequence[str],
    counts: Sequence[int],
    flagged: Sequence[bool],
    path: Path,
    *,
    median: float | None = None,
    high: float | None = None,
    low: float | None = None,
) -> Path:
    """Bar chart of the objects per image, flagged images in :data:`FLAG_COLOUR`.

    Args:
        names: Image names, in the order drawn.
        counts: Objects per image.
        flagged: Whether each image is an outlier.
        path: PNG file to write.
        median: The median count, drawn as a dashed line (``None``: none).
        high: Above this count an image is flagged (a dotted line; ``None``: none).
        low: Below this count an image is flagged (a dotted line; ``None``: none).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    counts = np.asarray(counts, np.float64)
    colours = [FLAG_COLOUR if f else COUNT_COLOUR for f in flagged]
    fig, ax = plt.subplots(figsize=(_figure_width(len(names)), 4.2), constrained_layout=True)
    x = np.arange(len(names))
    ax.bar(x, counts, color=colours, width=0.8)
    top = float(max(counts.max(initial=0), high or 0, 1))
    empty = [(i, c) for i, (n, c) in enumerate(zip(counts, colours, strict=True)) if n == 0]
    if empty:  # a bar of height 0 is invisible: mark it
        ax.scatter([i for i, _ in empty], [top * 0.015] * len(empty), marker="x", color=[c for _, c in empty], zorder=3)
    handles = [Patch(color=COUNT_COLOUR, label="image"), Patch(color=FLAG_COLOUR, label="flagged (outlier)")]
    if median is not None:
        ax.axhline(median, color="black", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"median ({median:g})"))
    for limit, what in ((high, "flagged above"), (low, "flagged below")):
        if limit is not None:
            ax.axhline(limit, color=FLAG_COLOUR, linestyle=":", linewidth=1.5)
            handles.append(Line2D([], [], color=FLAG_COLOUR, linestyle=":", label=f"{what} {limit:g}"))
    _image_axis(ax, names)
    ax.set_ylim(0, top * 1.08)
    ax.set_ylabel("objects")
    ax.set_title("objects per image")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def class_volumes(names: Sequence[str], volumes: dict[str, Sequence[float]], path: Path, *, label: str) -> Path:
    """Grouped bars of each class's size per image (a class-map model's run), one colour per class.

    Args:
        names: Image names, in the order drawn.
        volumes: ``{class: size per image}``.
        path: PNG file to write.
        label: The y axis's label (``volume (millimeter³)``).
    """
    fig, ax = plt.subplots(figsize=(_figure_width(len(names)), 4.2), constrained_layout=True)
    width = 0.8 / max(len(volumes), 1)
    x = np.arange(len(names))
    for k, (name, values) in enumerate(volumes.items()):
        ax.bar(x + (k - (len(volumes) - 1) / 2) * width, values, width=width, label=name)
    _image_axis(ax, names)
    ax.set_ylabel(label)
    ax.set_title("each class per image")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def needs_log_axis(values: Sequence[float], *, ratio: float = 100.0) -> bool:
    """Whether positive ``values`` span ``ratio`` or more (two orders of magnitude): then
    their distribution reads better on a log axis."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    return bool(values.size) and float(values.max() / values.min()) >= ratio


def object_sizes(
    names: Sequence[str],
    sizes: Sequence[Sequence[float]],
    flagged: Sequence[bool],
    path: Path,
    *,
    label: str,
) -> Path:
    """Box plots of the object sizes of each image, flagged images in :data:`FLAG_COLOUR`.

    Boxes span the quartiles, whiskers 1.5 times the interquartile range, points beyond them
    are drawn one by one. The axis is logarithmic when the sizes span two orders of magnitude
    or more (:func:`needs_log_axis`); images without objects are marked "none".

    Args:
        names: Image names, in the order drawn.
        sizes: Each image's object sizes.
        flagged: Whether each image is an outlier.
        path: PNG file to write.
        label: The axis label: the size and its unit, e.g. ``area (micrometer²)``.
    """
    fig, ax = plt.subplots(figsize=(_figure_width(len(names)), 4.4), constrained_layout=True)
    present = [i for i, s in enumerate(sizes) if len(s)]
    every = np.concatenate([np.asarray(sizes[i], np.float64) for i in present]) if present else np.zeros(0)
    log = needs_log_axis(every)
    if present:
        boxes = ax.boxplot(
            [np.asarray(sizes[i], np.float64) for i in present], positions=present, widths=0.6, patch_artist=True,
            flierprops={"marker": ".", "markersize": 3}, medianprops={"color": "black"},
        )
        for i, box in zip(present, boxes["boxes"], strict=True):
            box.set_facecolor((*(FLAG_COLOUR if flagged[i] else COUNT_COLOUR), 0.45))
            box.set_edgecolor(FLAG_COLOUR if flagged[i] else COUNT_COLOUR)
    if log:
        ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for i in sorted(set(range(len(names))) - set(present)):
        ax.annotate("none", (i, bottom), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7,
                    color=FLAG_COLOUR if flagged[i] else "black", rotation=90, va="bottom")
    _image_axis(ax, names)
    ax.set_ylabel(label + (", log scale" if log else ""))
    ax.set_title("object sizes per image")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
