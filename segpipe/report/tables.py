"""The report's tables, built from ``metrics.json``, the model card and the run history.

Cells are formatted strings (4 decimals; a 95% interval in brackets), so Markdown, HTML and the
Prefect table artifacts show exactly the same text. Next to every interval the report says
what it resampled and how many units (``metrics.json``: ``ci_method``; see
:mod:`segpipe.scoring.bootstrap`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from segpipe.models.card import ModelCard, TrainingRecord
from segpipe.models.shipped import shipped_names
from segpipe.report.document import Table
from segpipe.report.runs import HEADLINE
from segpipe.training.selection import MARGIN, CheckpointChoice

NA = "n/a"


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a cell: ``n/a`` for ``None``, integers as they are, floats rounded."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return NA if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def fmt_ci(value: Any, ci: list[float] | None, digits: int = 4) -> str:
    """``value [low, high]``, or just the value when there is no interval."""
    if value is None or ci is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _at(metrics: dict | None, thresh: float) -> dict:
    for row in (metrics or {}).get("matching") or []:
        if abs(row["thresh"] - thresh) < 1e-9:
            return row
    return {}


def _ci(metrics: dict | None, *path: str) -> list[float] | None:
    node: Any = (metrics or {}).get("ci") or {}
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, list) else None


def ci_method(metrics: dict | None, *path: str) -> dict | None:
    """``metrics["ci_method"]`` at ``path`` (``None`` when not recorded)."""
    node: Any = (metrics or {}).get("ci_method") or {}
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and "unit" in node else None


def ci_over(method: dict | None) -> str:
    """What an interval resampled, for a table cell: ``202 ground-truth objects``, ``12 images``."""
    if method is None:
        return "not recorded"
    if method["unit"] is None:
        return f"no interval: {_reason(method)}"
    return f"{method['n']} {method['what']}"


def ci_caption(method: dict | None) -> str:
    """One sentence on an interval: what it resampled, how many, and how far to trust it."""
    if method is None:
        return "What the intervals resampled was not recorded."
    level = f"{method['level']:.0%} CI"
    if method["unit"] is None:
        return f"No {level}: {_reason(method)}."
    text = f"{level}: bootstrap over {method['n']} {method['what']} ({method['resamples']} resamples)"
    if method["unit"] == "objects":
        text += (
            f"; images are too few ({method['n_images']}) to resample, and objects within an image are not "
            "independent, so the interval is optimistic"
        )
    return text + "."


def _reason(method: dict) -> str:
    if method.get("reason") == "too few images":
        return f"images are too few ({method['n_images']}, fewer than {method['min_images']}) to resample"
    return str(method.get("reason") or "none drawn")


def ci_policy(metrics: dict) -> str:
    """How the report's intervals were drawn, for table notes."""
    boot = metrics.get("bootstrap") or {}
    n = metrics.get("n_images")
    least = boot.get("min_images")
    text = f"Intervals: percentile bootstrap, {boot.get('n_resamples', '?')} resamples, seed {boot.get('seed', '?')}"
    if least is None:
        return text + "."
    if n is not None and n >= least:
        return text + f", over the {n} {scored_split(metrics)} images."
    if metrics.get("seg") is None:  # a class map: no object scores to resample instead
        return text + (f". The {n} {scored_split(metrics)} image{' is' if n == 1 else 's are'} too few to resample (fewer than {least}): "
                       "the pixel scores get no interval.")
    return text + (
        f". The {n} {scored_split(metrics)} image{' is' if n == 1 else 's are'} too few to resample (fewer than {least}): object-level scores "
        "resample objects instead (optimistic: objects within an image are not independent) and pixel scores get no interval."
    )


def summary_rows(metrics: dict, *, unit: str) -> list[tuple[str, str, list[str]]]:
    """``(label, how to read it, path)`` of each dataset-level score ``metrics`` holds."""
    rows: list[tuple[str, str, list[str]]] = []
    if metrics.get("seg") is not None or metrics.get("instances"):
        rows += [
            (f"SEG (CTC; {metrics.get('n_objects')} objects)", "seg", ["seg"]),
            ("OP_CSB = (SEG + DET) / 2 (CTC)", "seg", ["op_csb"]),
            ("DET (CTC, AOGM-D)", "det", ["det"]),
        ]
        for key, label in (
            ("f1", "F1"), ("ap", "AP = TP/(TP+FP+FN)"), ("panoptic_quality", "PQ"), ("precision", "precision"), ("recall", "recall"),
        ):
            rows.append((f"{label} @ IoU 0.5", "match", [key]))
        rows += [("merges (predicted objects covering 2+ GT objects)", "count", ["merges"]),
                 ("splits (GT objects covering 2+ predicted objects)", "count", ["splits"])]
    classes = list(metrics.get("iou") or {})
    for name in classes[1:]:
        rows.append((f"IoU {name}", "class", ["iou", name]))
        rows.append((f"Dice {name}", "class", ["dice", name]))
    if len(classes) > 2:
        rows += [("mean IoU (foreground classes)", "seg", ["mean_iou"]), ("mean Dice (foreground classes)", "seg", ["mean_dice"])]
    for key, label in (("hd95", "HD95"), ("asd", "ASD")):
        if metrics.get(key):
            for name in classes[1:]:
                rows.append((f"{label} {name} ({unit})", "class", [key, name]))
    return rows


def _value(metrics: dict | None, kind: str, path: list[str]) -> str:
    if not metrics:
        return NA
    if kind == "match":
        return fmt_ci(_at(metrics, 0.5).get(path[0]), _ci(metrics, "matching", "0.5", path[0]))
    if kind == "count":
        return fmt(metrics.get(path[0]))
    node: Any = metrics
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return fmt_ci(node, _ci(metrics, *path))


def _row_method(metrics: dict | None, kind: str, path: list[str]) -> dict | None:
    if kind == "match":
        return ci_method(metrics, "matching", "0.5")
    return ci_method(metrics, path[0])


def summary_table(metrics: dict, baseline: dict | None, *, unit: str) -> Table:
    """Dataset-level scores of the model next to the classical baseline's, with 95% intervals
    and what each interval resampled."""
    columns = ["measure", "model [95% CI]", "CI resamples"] + (["baseline [95% CI]"] if baseline else [])
    rows = []
    for label, kind, path in summary_rows(metrics, unit=unit):
        row = [label, _value(metrics, kind, path), "" if kind == "count" else ci_over(_row_method(metrics, kind, path))]
        if baseline:
            row.append(_value(baseline, kind, path))
        rows.append(row)
    note = (
        f"{scored_split(metrics).capitalize()} split, {metrics.get('n_images')} image{'' if metrics.get('n_images') == 1 else 's'}. Scores are pooled over images (objects or pixels "
        f"weighted, as the CTC and MONAI pool them). {ci_policy(metrics)} OP_CSB is the Cell Tracking Challenge's overall "
        "segmentation measure. The baseline's intervals are drawn the same way (its own unmatched predictions)."
    )
    if metrics.get("seg") is not None:
        note += " IoU and Dice score the foreground of the objects, the model's and the baseline's alike."
    return Table("summary", f"Scores on the {scored_split(metrics)} split", columns, rows, note)


def matching_table(metrics: dict, *, key: str = "matching", title: str = "Object matching by IoU threshold") -> Table:
    """Precision, recall, F1, AP and PQ at each IoU threshold (StarDist/Cellpose conventions)."""
    columns = ["IoU threshold", "TP", "FP", "FN", "precision", "recall", "F1 [95% CI]", "AP [95% CI]", "PQ [95% CI]", "CI resamples"]
    rows = []
    for row in metrics.get("matching") or []:
        t = f"{row['thresh']:g}"
        rows.append([
            t, fmt(row["tp"]), fmt(row["fp"]), fmt(row["fn"]), fmt(row["precision"]), fmt(row["recall"]),
            fmt_ci(row["f1"], _ci(metrics, "matching", t, "f1")),
            fmt_ci(row["ap"], _ci(metrics, "matching", t, "ap")),
            fmt_ci(row["panoptic_quality"], _ci(metrics, "matching", t, "panoptic_quality")),
            ci_over(ci_method(metrics, "matching", t)),
        ])
    note = (
        "One-to-one matching maximising the number of pairs, then their IoU sum. AP is TP/(TP+FP+FN) as "
        "StarDist and Cellpose report it; PQ = sum of matched IoU / (TP + FP/2 + FN/2). "
        f"{ci_policy(metrics)} Resampled objects at a threshold: its TP + FN ground-truth objects and FP unmatched predictions."
    )
    return Table(key, title, columns, rows, note)


def image_score(row: dict) -> float | None:
    """What ranks images best to worst: F1 at IoU 0.5 for instance rows (it counts false
    positives, which SEG ignores), else the mean foreground Dice."""
    if row.get("matching"):
        return _at({"matching": row["matching"]}, 0.5).get("f1")
    dice = [v for v in list((row.get("dice") or {}).values())[1:] if v is not None]
    return sum(dice) / len(dice) if dice else None


def scored_split(metrics: dict) -> str:
    """The split a ``metrics.json`` scores (``test`` for one that does not say)."""
    return str(metrics.get("split") or "test")


def image_score_label(metrics: dict) -> str:
    """Name of :func:`image_score` for a dataset's rows."""
    return "F1 @ IoU 0.5" if any(r.get("matching") for r in metrics.get("per_image", [])) else "mean Dice"


def per_image_table(metrics: dict, baseline: dict | None, *, unit: str) -> Table:
    """One row per scored image."""
    classes = list(metrics.get("iou") or {})[1:]
    instances = any(r.get("seg") is not None or "matching" in r for r in metrics.get("per_image", []))
    columns = ["image"]
    if instances:
        columns += ["objects", "predicted", "SEG", "OP_CSB", "DET", "F1 @ 0.5", "AP @ 0.5", "merges", "splits"]
    columns += [f"IoU {c}" for c in classes] + [f"Dice {c}" for c in classes]
    surface = any("hd95" in r for r in metrics.get("per_image", []))
    if surface:
        columns += [f"HD95 {c} ({unit})" for c in classes]
    if baseline:
        columns += ["baseline SEG", "baseline OP_CSB"] if instances else ["baseline mean Dice"]
    by_name = {r["name"]: r for r in (baseline or {}).get("per_image", [])}
    rows = []
    for row in metrics.get("per_image", []):
        cells = [row["name"]]
        if instances:
            half = _at({"matching": row.get("matching")}, 0.5)
            cells += [fmt(row.get("n_objects")), fmt(row.get("n_pred")), fmt(row.get("seg")), fmt(row.get("op_csb")), fmt(row.get("det")),
                      fmt(half.get("f1")), fmt(half.get("ap")), fmt(row.get("merges")), fmt(row.get("splits"))]
        cells += [fmt(row["iou"].get(c)) for c in classes] + [fmt(row["dice"].get(c)) for c in classes]
        if surface:
            cells += [fmt((row.get("hd95") or {}).get(c)) for c in classes]
        if baseline:
            other = by_name.get(row["name"], {})
            cells += [fmt(other.get("seg")), fmt(other.get("op_csb"))] if instances else [fmt(image_score(other))]
        rows.append(cells)
    return Table("per-image", f"Scores per {scored_split(metrics)} image", columns, rows)


def runs_table(runs: list[dict], current: str | None) -> Table:
    """The dataset's runs, newest first, with the change of SEG (or mean Dice) since the run before."""
    keys = [k for k in ("seg", "op_csb", "det", "f1_50", "mean_iou", "mean_dice") if any(r.get("scores", {}).get(k) is not None for r in runs)]
    main_key = keys[0] if keys else None
    base_keys = [k for k in keys if k in ("seg", "op_csb")] or keys[:1]
    columns = ["run", "scored at", "model", "epochs"] + [HEADLINE[k] for k in keys] + ["baseline " + HEADLINE[k] for k in base_keys]
    columns += ["change"] if keys else ["baseline", "change"]
    rows = []
    for i, run in enumerate(reversed(runs)):
        previous = runs[len(runs) - i - 2] if len(runs) - i - 2 >= 0 else None
        scores = run.get("scores", {})
        cells = [
            run.get("run_id", "?") + (" (this run)" if run.get("run_id") == current else ""),
            run.get("timestamp", "?"),
            str(run.get("model", "?")),
            fmt(run.get("epochs")),
        ]
        cells += [fmt_ci(scores.get(k), (scores.get("ci") or {}).get(k)) for k in keys]
        cells += [fmt((run.get("baseline") or {}).get(k)) for k in base_keys] if keys else [NA]
        change = NA
        if previous and main_key and scores.get(main_key) is not None and previous.get("scores", {}).get(main_key) is not None:
            change = f"{scores[main_key] - previous['scores'][main_key]:+.4f}"
            if data_changed(run, previous):
                change = f"data changed ({change})"
        cells.append(change)
        rows.append(cells)
    return Table("runs", "Runs of this dataset (newest first)", columns, rows,
                 f"Change: {HEADLINE.get(main_key, '')} minus that of the run before; \"data changed\" where the dataset's "
                 "files (images, ground truth) changed between the two, so they were not scored on the same data."
                 if main_key else "")


def data_changed(run: dict, previous: dict) -> bool:
    """Whether the dataset's store was made from other files for ``run`` than for ``previous``
    (unknown for runs recorded before the store's fingerprint was kept: not changed)."""
    now, before = run.get("data_fingerprint"), previous.get("data_fingerprint")
    return now is not None and before is not None and now != before


def _validation_scores(validation: dict) -> str:
    """``OP_CSB 0.7791, SEG 0.6915, DET 0.8667`` from a card's validation record (its numbers only)."""
    names = {"op_csb": "OP_CSB", "seg": "SEG", "det": "DET", "dice": "Dice"}
    scores = [(names.get(k, k), v) for k, v in validation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    scores.sort(key=lambda item: list(names.values()).index(item[0]) if item[0] in names.values() else len(names))
    said = ", ".join(f"{name} {fmt(value)}" for name, value in scores) or "none"
    by_class = validation.get("dice_by_class") or {}
    return said + (f" ({', '.join(f'{name} {fmt(value)}' for name, value in by_class.items())})" if len(by_class) > 1 else "")


#: What a pixel size row adds for a model told its pixel size after training (``card.pixel_size_set``).
SET_AFTER_TRAINING = ", set after training with `segpipe models pixel-size` (the training images' files gave none)"


def _pixel_size_row(card: ModelCard, *, guessed: bool) -> tuple[str, str]:
    """What the card's pixel size means for new images: resampled to it, or (a generalist, a model
    of one object size) not, where each image is taken at its own pixels or its objects' size."""
    size = f"{list(card.spacing)} {card.unit}"
    if card.spacing_guessed and not card.generalist and not card.object_size:
        return "pixel size", (f"not known: the training images' files gave none and 1 per pixel was taken ({size} in its "
                              "card); new images are taken at 1 per pixel too, as the training images were (set spacing: in the catalog "
                              "to train at a real one)")
    if card.generalist:
        return "pixel size", f"each image's own: a generalist takes images as they are ({size} in its card)"
    if card.object_size:
        return "pixel size", f"each image is rescaled by the size of its objects, not its pixel size ({size} in its card)"
    return "pixel size trained at (others are resampled to it)", size + (
        ", guessed: the training images' files gave none and 1 per pixel was taken (set spacing: in the catalog)"
        if guessed else SET_AFTER_TRAINING if card.pixel_size_set else "")


def card_table(card: ModelCard, *, guessed_spacing: bool = False) -> Table:
    """The model card's main fields; ``guessed_spacing``: the training images' files gave no pixel
    size (1 per pixel was taken), which the pixel size's row says."""
    training, config = card.training, card.training.config
    postprocess = card.postprocess.model_dump_json() if card.postprocess is not None else "argmax"
    tuned_on = _tuned_on(training.validation)
    optimistic = "validation with the tuned post-processing (tuned on it: optimistic)"
    if training.scored_on_training:
        optimistic = "training images with the tuned post-processing (no validation images; trained and tuned on them: optimistic)"
    elif card.generalist:
        optimistic = ("validation on the generalist's own kinds of images (those it was trained on), with the post-processing "
                      "tuned on them: optimistic, and no measure of how it does on yours")
    items = [
        ("model", card.name),
        ("network", f"{card.network} {json.dumps(card.network_options)}, {card.spatial_dims}D"),
        ("input channels", fmt(card.in_channels) + (f" ({', '.join(card.channel_names)})" if card.channel_names else "")),
        ("classes", ", ".join(card.classes)),
        ("instances", fmt(card.instances)),
        ("patch size", str(list(card.patch_size))),
        _pixel_size_row(card, guessed=guessed_spacing),
        *([("object size (every image rescaled so its objects measure it)", f"{card.object_size:g} {card.unit}")]
          if card.object_size else []),
        ("epochs trained (kept)", f"{fmt(training.epochs)} ({fmt(training.best_epoch)})"),
        ("training started from", training.init or "random weights"),
        ("training ended by", training.ended_by or "not recorded"),
        ("learning rate, batch", f"{config.get('learning_rate')}, {config.get('batch_size')}"),
        ("seed", str(config.get("seed"))),
        (f"post-processing (tuned on {tuned_on})" if card.instances else "post-processing", postprocess),
        ((optimistic if card.instances else "validation (the kept weights; Dice per class in brackets)"),
         _validation_scores(training.validation)),
        ("normalization", card.normalization.model_dump_json(exclude_none=True)),
        ("software", ", ".join(f"{k} {v}" for k, v in card.software.items())),
        ("config key", str(training.config_key)),
    ]
    return Table("model-card", "Model card", ["field", "value"], [[k, v] for k, v in items])


def _tuned_on(validation: dict) -> str:
    """What the post-processing was tuned on, as the card's ``validation`` records it."""
    if validation.get("tuned_with_training"):
        return "validation and training images" if validation.get("tuned_on") else "training images only: no validation images"
    return "validation" if validation.get("tuned_on") or validation.get("seg") is not None else "nothing: the defaults"


def training_start(training: TrainingRecord) -> str:
    """Where the weights started: random ones, the shipped generalist, or another model; and, when the
    dataset's channels fed the start's inputs in another order, which."""
    if not training.init:
        return "Training started from random weights."
    if training.init in shipped_names():
        said = (f"Training started from {training.init}, the generalist shipped with segpipe (trained on generated "
                "cells and nuclei only), not from random weights.")
    else:
        said = f"Training started from the model {training.init}, not from random weights."
    if training.init_inputs:
        fed = ", ".join(f"channel {j} its input {slot}" for j, slot in enumerate(training.init_inputs))
        said += (f" The dataset's channels fed its inputs in another order than the file's ({fed}): the order whose "
                 "predictions on the training images matched the labels best before training.")
    return said


def object_scale(card: ModelCard) -> str | None:
    """What a model trained on objects of one size (``card.object_size``) does to each image; None for others."""
    if not card.object_size:
        return None
    return (f"Every image was rescaled so its objects measure {card.object_size:g} {card.unit} across (the training "
            "images' typical object size): training and validation images by their labels' median object, "
            "the images predicted by the median object a first prediction finds (the scale is in each "
            "prediction's record, size_scale).")


def training_end(training: TrainingRecord) -> str:
    """How training ended (the card's ``ended_by``), with its epochs, iterations and minutes."""
    minutes = fmt(training.seconds / 60, 1) if training.seconds is not None else NA
    epochs = f"{fmt(training.epochs)} epoch{'' if training.epochs == 1 else 's'}"
    done = f"{epochs}, {fmt(training.iterations)} iterations, {minutes} minutes"
    if training.ended_by == "iterations":
        return f"Training ended when its schedule ran out: {done}.{_resumed(training)}"
    if training.ended_by == "time budget":
        budget = training.config.get("max_minutes")
        of = f" of {budget:g} minutes" if isinstance(budget, int | float) and not isinstance(budget, bool) else ""
        return (f"Training was stopped by the time budget{of}, before its schedule ran out: {fmt(training.iterations)} "
                f"iterations, in epoch {fmt(training.epochs)}, {minutes} minutes.{_resumed(training)}")
    return f"How training ended: not recorded ({done}).{_resumed(training)}"


def _resumed(training: TrainingRecord) -> str:
    """Where a stopped run was started again, said after how it ended; nothing for one run."""
    after = training.resumed_after
    if not after:
        return ""
    epochs = ", ".join(map(str, after))
    times = "once" if len(after) == 1 else f"{len(after)} times"
    return (f" It was stopped and started again {times}, going on from its state saved after epoch"
            f"{'s' if len(after) > 1 else ''} {epochs} (minutes count the runs' training time, not the pauses).")


def checkpoint_choice(history: list[dict], best_epoch: int | None) -> str | None:
    """Why the kept checkpoint is the one kept, from the validation checks in ``history``.

    The checks are replayed through the rule training keeps checkpoints by (the latest within
    ``MARGIN`` standard errors of the best, :mod:`segpipe.training.selection`), and the sentence
    says which case the run was: the last check also the best, the last within the noise of an
    earlier best, or an earlier check clearly better; or, for a model that another version of
    segpipe trained, that the rule would now keep another. None when nothing was validated or
    the kept epoch is not among the checks.
    """
    checks = [row for row in history if _number(row.get("val_score")) and row.get("epoch") is not None]
    kept = next((row for row in checks if best_epoch is not None and int(row["epoch"]) == best_epoch), None)
    if kept is None:
        return None
    name = "OP_CSB" if any(_number(row.get("val_op_csb")) for row in checks) else "mean foreground Dice"
    choice, replayed = CheckpointChoice(), None
    for row in checks:
        noise = row.get("val_seg_se")
        if choice.keeps(row["val_score"], noise=noise if _number(noise) else 0.0):
            replayed = row
    best = max(checks, key=lambda row: row["val_score"])
    last = checks[-1]

    def check(row: dict) -> str:
        noise = row.get("val_seg_se")
        error = f", its SEG's standard error {fmt(noise)}" if _number(noise) and noise > 0 else ""
        return f"epoch {int(row['epoch'])}: {fmt(row['val_score'])}{error}"

    if replayed is not kept:
        return (f"The weights of epoch {int(kept['epoch'])} were kept ({name}, {check(kept)}) by a segpipe that chose "
                f"checkpoints otherwise: the rule now, the latest check within {MARGIN:g} standard errors of the best, "
                f"keeps {check(replayed)}.")
    if kept is last and kept["val_score"] >= best["val_score"]:
        return f"The weights of the last validation check were kept; it was also the best ({name}, {check(kept)})."
    if kept is last:
        return (f"The weights of the last validation check were kept ({name}, {check(kept)}): it is within "
                f"{MARGIN:g} standard errors of the best check ({check(best)}), closer than a validation split "
                "of this size tells checkpoints apart, and it is the most trained.")
    below = "it" if kept is best else f"the best, {check(best)}"
    return (f"An earlier checkpoint was kept ({name}, {check(kept)}): the checks after it scored more than "
            f"{MARGIN:g} standard errors below {below}; the last, {check(last)}.")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def run_table(run: dict, card: ModelCard) -> Table:
    """When and where the run happened, and how long its stages took."""
    m = run.get("machine") or {}
    device = run.get("device") or "?"
    items = [
        ("run", str(run.get("run_id"))),
        ("scored at", str(run.get("timestamp"))),
        ("device", device + (f" ({m['gpu']})" if m.get("gpu") else "")),
        ("CPU", f"{m.get('cpu')} ({m.get('cpu_count')} cores)"),
        ("host, OS", f"{m.get('host')}, {m.get('platform')}"),
        ("training time", f"{fmt(card.training.seconds, 1)} s for {fmt(card.training.epochs)} epochs"),
        ("model written at", str(run.get("model_time"))),
        ("predictions written at", str(run.get("predictions_time"))),
        ("scoring time", f"{fmt(run.get('scoring_seconds'), 2)} s (model and baseline, {fmt(run.get('n_images'))} images)"),
    ]
    return Table("run", "Run time and device", ["item", "value"], [[k, v] for k, v in items])
