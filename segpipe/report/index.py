"""``OUTPUT/index.html``: every dataset's latest run on one page, linking to its report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from segpipe.report.document import render_template
from segpipe.report.runs import HEADLINE, RUNS_FILE, read_runs
from segpipe.report.tables import fmt, fmt_ci
from segpipe.temporary import replacing

INDEX_FILE = "index.html"
KEYS = ("seg", "op_csb", "det", "f1_50", "mean_dice")


def index_rows(output: Path) -> list[dict]:
    """One row per dataset folder of ``output`` that has a run history, by dataset name."""
    rows = []
    for runs_file in sorted(Path(output).glob(f"*/{RUNS_FILE}")):
        folder = runs_file.parent
        runs = [r for r in read_runs(folder) if (r.get("split") or "test") == "test"]  # the index compares test scores
        if not runs:
            continue
        latest = runs[-1]
        scores = latest.get("scores", {})
        baseline = latest.get("baseline") or {}
        main = next((k for k in KEYS if scores.get(k) is not None), None)
        cells = [
            str(latest.get("timestamp", "?")),
            str(latest.get("run_id", "?")),
            str(latest.get("model", "?")),
            fmt(latest.get("n_images")),
            *[fmt_ci(scores.get(k), (scores.get("ci") or {}).get(k)) for k in KEYS],
            _baseline_cell(baseline, main),
            _beats_cell(scores, baseline, main),
            str(len(runs)),
        ]
        link = f"{folder.name}/report.html" if (folder / "report.html").is_file() else f"{folder.name}/{RUNS_FILE}"
        rows.append({"dataset": folder.name, "link": link, "cells": cells})
    return rows


def _baseline_cell(baseline: dict, main: str | None) -> str:
    """The baseline's headline score (SEG with its OP_CSB for instance datasets)."""
    if main is None:
        return "n/a"
    keys = ("seg", "op_csb") if main == "seg" else (main,)
    return ", ".join(f"{HEADLINE[k]} {fmt(baseline.get(k))}" for k in keys)


def _beats_cell(scores: dict, baseline: dict, main: str | None) -> str:
    """Whether the model beats the baseline on the headline score (SEG, or mean Dice for class maps)."""
    model, base = scores.get(main) if main else None, baseline.get(main) if main else None
    if model is None or base is None:
        return "n/a"
    return f"yes (+{model - base:.4f})" if model > base else f"NO: loses by {base - model:.4f}"


#: What the index says under its table: the baselines, and what an interval resamples.
NOTE = (
    "Baseline: Otsu threshold + distance-transform watershed for objects, multi-Otsu for class maps, scored the same "
    "way on the same images. Intervals: 95% bootstrap over the test images from 10 images on; with fewer, object "
    "scores resample the objects (optimistic: objects of one image are not independent) and pixel scores get none. "
    "Each report says which for its scores."
)


def write_index(output: str | Path) -> Path:
    """Rewrite ``OUTPUT/index.html`` from every dataset's ``runs.jsonl`` (atomically replaced)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    columns = ["dataset", "scored at", "run", "model", "test images", *[f"{HEADLINE[k]} [95% CI]" for k in KEYS], "baseline", "beats baseline", "runs"]
    html = render_template(
        "index.html.j2",
        columns=columns,
        rows=index_rows(output),
        updated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        note=NOTE,
    )
    path = output / INDEX_FILE
    with replacing(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path
