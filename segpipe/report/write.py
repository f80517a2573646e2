"""Assemble and write a dataset's report: ``report.md``, ``report.html`` and ``figures/``.

The report opens with a warning when the model does not beat the classical baseline on the
headline measure (SEG, or mean foreground Dice for semantic datasets), says what each
confidence interval resampled, ranks the shown images by a measure that counts false
positives, marks the kept checkpoint on the training curve and says how training ended.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segpipe.models.card import ModelCard
from segpipe.report import figures as fig
from segpipe.report.document import Details, Document, Figure, Notice, Section, Table, Text, to_html, to_markdown
from segpipe.report.orientation import PLANES
from segpipe.report.runs import HEADLINE, headline
from segpipe.report.tables import (
    card_table,
    checkpoint_choice,
    ci_caption,
    ci_method,
    fmt,
    fmt_ci,
    image_score,
    image_score_label,
    matching_table,
    per_image_table,
    run_table,
    runs_table,
    scored_split,
    summary_table,
    training_end,
    object_scale,
    training_start,
)
from segpipe.scoring.dataset import baseline_comparison
from segpipe.temporary import replacing

REPORTS_DIR = "reports"


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` produced.

    Attributes:
        markdown: The Markdown text (also in ``path``).
        path: ``report.md``.
        figures: The PNG files under ``figures/``.
        html_path: ``report.html``, self-contained.
        tables: Every table as Prefect-style records, by key (``summary``, ``per-image``, ...).
        summary: One paragraph with the headline scores (:func:`headline_text`), led by the
            warning when the model does not beat the baseline.
    """

    markdown: str
    path: Path
    figures: list[Path]
    html_path: Path | None = None
    tables: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    summary: str = ""


def _atomic_write(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def rank_images(metrics: dict, *, n: int = 2) -> list[tuple[str, str, float | None]]:
    """The ``n`` best and ``n`` worst images as ``(name, "best"|"worst", score)``, best first; a
    single image as ``(name, "only", score)``.

    Images are ranked by :func:`segpipe.report.tables.image_score` (F1 at IoU 0.5 for instance
    datasets, so false positives count; mean foreground Dice for semantic ones), ties broken by
    SEG, then by name; images without a score come last. With few images the two lists
    overlap and each image is listed once (as best when it is in both).
    """
    scored = [(r["name"], image_score(r), r.get("seg")) for r in metrics.get("per_image", [])]
    ordered = sorted(scored, key=lambda item: (_descending(item[1]), _descending(item[2]), item[0]))
    if len(ordered) == 1:  # nothing to rank it against
        return [(ordered[0][0], "only", ordered[0][1])]
    chosen: list[tuple[str, str, float | None]] = [(name, "best", s) for name, s, _ in ordered[:n]]
    taken = {name for name, _, _ in chosen}
    worst = [(name, "worst", s) for name, s, _ in reversed(ordered) if name not in taken][:n]
    return chosen + worst[::-1]


def _descending(value: float | None) -> float:
    return -value if value is not None else np.inf


def terms(*, instances: bool, distances: bool) -> str:
    """What the scores' names mean, for a reader who has not met them."""
    parts = []
    if instances:
        parts += [
            "SEG (the Cell Tracking Challenge's segmentation measure): each ground-truth object's IoU with the predicted "
            "object covering more than half of it, 0 when none does, averaged over the objects",
            "DET: 1 minus the cost of correcting the detection (AOGM-D: a missed object, a false object or a split each "
            "cost), relative to detecting nothing",
            "OP_CSB: their mean",
            "F1, AP and PQ count a predicted object as found when its IoU with a ground-truth object is at least the threshold "
            "(PQ also weighs how well the found ones overlap)",
        ]
    parts.append("IoU and Dice compare the pixels of each class, pooled over the images")
    if distances:
        parts.append("HD95 and ASD: the 95th percentile and the mean of the distances between the predicted and the true "
                     "boundaries, in the unit shown (lower is better)")
    return "Terms: " + "; ".join(parts) + "."


def baseline_notice(metrics: dict) -> str | None:
    """The warning when the model does not beat the classical baseline on the headline measure
    (``None`` when it does, or when there is nothing to compare)."""
    comparison = metrics.get("baseline_comparison") or baseline_comparison(metrics)
    if not comparison or comparison["beats"] is not False:
        return None
    difference = comparison["difference"]
    by = "the same score" if difference == 0 else f"{fmt(-difference)} lower"
    return (
        f"The model does not beat the classical baseline on {comparison['label']}, "
        f"the headline measure: {fmt(comparison['model'])} against the baseline's {fmt(comparison['baseline'])} ({by}). "
        f"A method that learns nothing from the training data does as well or better on these {scored_split(metrics)} images."
    )


def headline_text(metrics: dict) -> str:
    """The headline scores of the model and the baseline and what the intervals resampled,
    preceded by the warning when the model does not beat the baseline (:func:`baseline_notice`)."""
    notice = baseline_notice(metrics)
    return f"WARNING: {notice} {scores_text(metrics)}" if notice else scores_text(metrics)


def scores_text(metrics: dict) -> str:
    """The headline scores of the model and the baseline, and what the headline interval resampled."""
    ours, base = headline(metrics), headline(metrics.get("baseline") or {})
    parts = []
    for key in ("seg", "op_csb", "det", "f1_50", "mean_dice"):
        if ours.get(key) is not None:
            text = f"{HEADLINE[key]} {fmt_ci(ours[key], ours['ci'].get(key))}"
            if base.get(key) is not None:
                text += f" (baseline {fmt(base[key])})"
            parts.append(text)
    if not parts:
        return "No scores."
    n = metrics.get("n_images")
    text = f"On {n} {scored_split(metrics)} image{'s' if n != 1 else ''}: " + "; ".join(parts) + "."
    main = "seg" if ours.get("seg") is not None else "mean_dice"
    if metrics.get("ci_method"):
        text += f" {HEADLINE[main]}: {ci_caption(ci_method(metrics, main))}"
    return text


def left_out_text(metrics: dict, record: dict) -> str | None:
    """What the scores leave out: test images without ground truth (predicted, not scored), and
    the pixels marked not annotated with the predicted objects lying mostly in them."""
    parts = []
    split = metrics.get("split") or "test"
    unlabelled = [im for im in record.get("images") or [] if im.get("split") == split and not im.get("labels_source")]
    if unlabelled:
        parts.append(f"{len(unlabelled)} {split} image(s) without ground truth were predicted, not scored")
    pixels, objects = metrics.get("ignored_pixels") or 0, metrics.get("ignored_pred") or 0
    if pixels and metrics.get("seg") is None:  # a class map: no objects, no SEG
        parts.append(f"{pixels} pixel(s) marked not annotated were left out of IoU and Dice")
    elif pixels:
        parts.append(
            f"{pixels} pixel(s) marked not annotated were left out: {objects} predicted object(s) lying mostly in them are "
            "not counted, and SEG leaves those pixels out of each object's union (the Cell Tracking Challenge's own SEG, "
            "which has no such areas, counts them: it can be a little lower)")
    return ("Left out of the scores: " + "; ".join(parts) + ".") if parts else None


def noise_only_text(metrics: dict) -> str | None:
    """The scored images that held only noise in some frames, which were therefore not predicted
    (background there: their ground truth's objects in them count as missed)."""
    noise = metrics.get("noise_only") or {}
    if not noise:
        return None
    names = ", ".join(f"{name} ({frames} frame{'s' if frames > 1 else ''})" for name, frames in sorted(noise.items()))
    return (f"Held only noise, so not predicted (background: any ground-truth object there counts as missed; "
            f"`--noise-only 0` predicts them): {names}.")


def _image_scores(row: dict, label: str, score: float | None) -> str:
    """An overlay's scores: the ranking measure, SEG next to it, and the object counts."""
    text = f"{label} {fmt(score)}"
    if row.get("seg") is not None or row.get("n_objects") is not None:
        text += f", SEG {fmt(row.get('seg'))}; {fmt(row.get('n_pred'))} predicted / {fmt(row.get('n_objects'))} true objects"
        if row.get("ignored_pred"):
            text += f" ({row['ignored_pred']} more predicted in areas not annotated, not scored)"
    return text


def _n_channels(image: np.ndarray, gt: np.ndarray) -> int:
    image = np.asarray(image)
    return image.shape[0] if image.ndim == np.ndim(gt) + 1 else 1


def _overlay_legend(metrics: dict, views: list, card: ModelCard, ndim: int) -> str:
    """What the overlays show: outline colours, the ranking, channel colours, 3D planes."""
    label = image_score_label(metrics)
    text = "Green: ground-truth outlines; magenta: predicted outlines. "
    if card.instances:
        c = {kind: name for kind, (name, _) in fig.ERROR_COLOURS.items()}
        text += (f"The third panel fills the objects in error: {c['merged']}, a predicted object covering more than half of "
                 f"two or more true ones (merged); {c['split']}, a true object covering more than half of two or more predicted "
                 f"ones (split); {c['missed']}, a true object no prediction matches at IoU 0.5 (missed); {c['false']}, a "
                 "predicted object matching no true one at IoU 0.5 (false). ")
    text += (
        f"Images ranked by {label} (it counts false positives, which SEG ignores), ties by SEG."
        if label.startswith("F1") else f"Images ranked by {label}."
    )
    n_channels = max((_n_channels(image, gt) for _, image, gt, *_ in views), default=1)
    if n_channels > 1:
        names = card.channel_names if card.channel_names and len(card.channel_names) == n_channels else None
        colours = ", ".join(
            f"{names[c] if names else f'channel {c + 1}'} {colour}" for c, (colour, _) in enumerate(fig.channel_colours(n_channels))
        )
        text += (f" The {n_channels} channels are drawn as a colour composite ({colours}), each scaled to its 1st-99.8th "
                 "percentiles; outlines are edged in black.")
    if ndim == 3:
        text += " 3D volumes: orthogonal planes through the densest ground-truth planes."
    return text


def distance_unit(record: dict, metrics: dict) -> str:
    """The unit of HD95 and ASD: the store's, or ``px`` where every scored image's file gave no
    pixel size and 1 per pixel was taken (a distance in micrometres would then be a guess)."""
    scored = {row.get("name") for row in metrics.get("per_image") or []}
    images = [im for im in record.get("images") or [] if im.get("name") in scored]
    if images and all(im.get("spacing_source") == "default" for im in images):
        return "px"
    return record.get("unit") or "px"


def write_report(
    run_dir: Path,
    *,
    dataset: str,
    record: dict,
    metrics: dict,
    card: ModelCard,
    history: list[dict],
    views: list[tuple],
    runs: list[dict] | None = None,
    spacing: tuple[float, ...] | None = None,
    anatomical: Mapping[str, tuple[float, ...]] | None = None,
) -> Report:
    """Write ``report.md``, ``report.html`` (and a copy under ``reports/RUN.html``) and figures.

    Args:
        run_dir: The dataset's run folder.
        dataset: Dataset name.
        record: The store's ``segpipe`` record (description, ground-truth note, unit).
        metrics: The scores (``metrics.json``: model, ``baseline`` and ``run`` sections).
        card: The model card.
        history: Training history rows.
        views: ``(name, image, gt, pred)`` or ``(name, image, gt, pred, ignore)`` of the images to
            show, e.g. the best and worst (:func:`rank_images`): the image with all its channels,
            ``(C, [Z,] Y, X)``, labels ``([Z,] Y, X)``, 2D planes or volumes, and the pixels the ground
            truth does not annotate (``None`` or left out: it annotates all).
        runs: The dataset's run history (``runs.jsonl``), oldest first.
        spacing: Pixel size per axis, for 3D aspect ratios.
        anatomical: The views turned to the anatomical orientation (:mod:`segpipe.report.orientation`),
            with the pixel size along each one's axes (used for it instead of ``spacing``).

    Returns:
        The written report; ``tables`` hold the same tables for Prefect artifacts.
    """
    run_dir = Path(run_dir)
    figures_dir = run_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    ndim = card.spatial_dims
    unit = distance_unit(record, metrics)
    baseline = metrics.get("baseline")
    run = metrics.get("run") or {}
    instances = bool(metrics.get("instances", metrics.get("seg") is not None))
    rank = {name: (kind, score) for name, kind, score in rank_images(metrics, n=max(1, (len(views) + 1) // 2))}

    intro: list = []
    notice = baseline_notice(metrics)
    if notice:
        intro.append(Notice(notice))
    if record.get("description"):
        intro.append(Text(record["description"].strip()))
    if record.get("ground_truth"):
        intro.append(Text(f"Ground truth: {record['ground_truth'].strip()}"))
    intro.append(Text(scores_text(metrics)))  # the warning, if any, is the notice above
    for text in (left_out_text(metrics, record), noise_only_text(metrics)):
        if text:
            intro.append(Text(text))

    score_blocks: list = [summary_table(metrics, baseline, unit=unit), Text(terms(instances=instances, distances=bool(metrics.get("hd95"))))]
    score_blocks.append(Figure(fig.class_scores({"model": metrics, "baseline": baseline}, figures_dir / "class_scores.png"),
                               f"IoU and Dice of each foreground class, pooled over the {scored_split(metrics)} images, model and baseline."))
    if instances:
        score_blocks.append(matching_table(metrics))
        curves = {"model": metrics.get("matching") or []}
        hists = {"model": metrics.get("iou_histogram")}
        if baseline:
            curves["baseline"] = baseline.get("matching") or []
            hists["baseline"] = baseline.get("iou_histogram")
        score_blocks.append(Figure(fig.matching_curve(curves, figures_dir / "matching_curve.png"),
                                   "F1, AP and PQ against the IoU threshold, model and baseline."))
        if metrics.get("iou_histogram"):
            score_blocks.append(Figure(fig.iou_histogram(hists, figures_dir / "iou_histogram.png"),
                                       "Distribution of per-object IoU: each ground-truth object's IoU with its best-overlapping "
                                       "predicted object (0: missed)."))
    sections = [Section("Scores", score_blocks), Section("Per image", [per_image_table(metrics, baseline, unit=unit)])]
    failed = metrics.get("failed") or []
    if failed:
        rows = [[row["name"], (row.get("error") or "").strip().splitlines()[0] if row.get("error") else ""] for row in failed]
        sections.append(Section("Images that failed", [
            Table("failed", "Images that could not be predicted or scored", ["image", "error"], rows,
                  "Left out of every score and table above."),
        ]))

    per_image = {row["name"]: row for row in metrics.get("per_image", [])}
    overlay_blocks: list = [Text(_overlay_legend(metrics, views, card, ndim))]
    for name, image, gt, pred, *ignore in views:
        kind, score = rank.get(name, ("shown", None))
        title = f"{dataset} / {name}: {kind} image ({_image_scores(per_image.get(name, {}), image_score_label(metrics), score)})"
        turned = (anatomical or {}).get(name)
        path = fig.overlay(image, gt, pred, figures_dir / f"overlay_{name}.png", title=title, spacing=turned or spacing,
                           planes=PLANES if turned else None, errors=card.instances, ignore=ignore[0] if ignore else None)
        overlay_blocks.append(Figure(path, title))
    sections.append(Section("Best and worst images" if len(per_image) > 1 else f"The {scored_split(metrics)} image", overlay_blocks))

    training_blocks: list = [Text(f"{training_start(card.training)} {training_end(card.training)}")]
    if object_scale(card):
        training_blocks.append(Text(object_scale(card)))
    if history:
        best = card.training.best_epoch
        choice = checkpoint_choice(history, best)
        validated = any(row.get("val_score") is not None for row in history)
        if not validated and best is not None and best == int(history[-1].get("epoch") or 0):
            choice = "No validation images: the last epoch's weights were kept, whatever their quality."
        elif choice and card.instances:  # two scores of one model: say which is which
            choice += (" These checks predict each window once, without test-time flips, with the post-processing "
                       "training started with; the model card's validation row scores the kept weights after the "
                       "post-processing was tuned, so it differs.")
        if choice:
            training_blocks.append(Text(choice))
        caption = ("Training loss and validation scores per epoch" if validated else "Training loss per epoch (no validation images)") + (
            f"; the dashed line marks epoch {best}, whose weights were kept." if best is not None else "."
        )
        training_blocks.append(Figure(fig.training_curve(history, figures_dir / "training_curve.png", best_epoch=best), caption))
    sections.append(Section("Training", training_blocks))
    trained = [im for im in record.get("images") or [] if im.get("split") == "train"]
    guessed = bool(trained) and all(im.get("spacing_source") == "default" for im in trained)
    sections.append(Section("Model card", [card_table(card, guessed_spacing=guessed), Details("full model card (JSON)", card.to_json())]))
    sections.append(Section("Run time and device", [run_table(run, card)]))
    runs = [r for r in runs or [] if (r.get("split") or "test") == scored_split(metrics)]  # a split's runs beside its own
    if runs:
        sections.append(Section("Previous runs", [runs_table(runs, run.get("run_id"))]))
    if baseline:
        blocks: list = [Text(f"Classical baseline, scored the same way on the same {scored_split(metrics)} images: {baseline.get('method', '')} "
                             f"with {json.dumps(baseline.get('params', {}))}. It learns nothing from the training data, "
                             "so it is the floor a trained model should clear.")]
        if instances:
            blocks.append(matching_table(baseline, key="baseline-matching", title="Baseline: object matching by IoU threshold"))
    else:
        blocks = [Text("No classical baseline was scored for this run.")]
    sections.append(Section("Classical baseline", blocks))

    doc = Document(f"segpipe report: {dataset}", intro, sections)
    markdown = to_markdown(doc)
    path = run_dir / "report.md"
    _atomic_write(path, markdown)
    html_path = run_dir / "report.html"
    _atomic_write(html_path, to_html(doc))
    if run.get("run_id"):
        (run_dir / REPORTS_DIR).mkdir(exist_ok=True)
        shutil.copyfile(html_path, run_dir / REPORTS_DIR / f"{run['run_id']}.html")
    tables = {t.key: t.records() for t in doc.tables()}
    return Report(markdown, path, [f.path for f in doc.figures()], html_path, tables, headline_text(metrics))

