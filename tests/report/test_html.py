"""Reports rendered in real headless Chromium: no errors, every image decoded, the tables intact.

The inputs are real: BBBC007 fields and the synthetic 3D nuclei volume with their ground
truth, flawed predictions made from it, scored by the pipeline's own scorer (model and
baseline), a model card and a training history.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from segpipe.report import append_run, write_index, write_report
from segpipe.report.runs import new_run, run_entry
from segpipe.scoring.dataset import dataset_accumulator, dataset_metrics, score_image

HISTORY = [
    {"epoch": 1.0, "train_loss": 1.2, "val_score": None, "val_seg": None, "val_dice": None},
    {"epoch": 2.0, "train_loss": 0.9, "val_score": 0.5, "val_seg": 0.5, "val_dice": 0.7},
    {"epoch": 3.0, "train_loss": 0.7, "val_score": 0.6, "val_seg": 0.6, "val_dice": 0.75},
]


def flawed(gt: np.ndarray, k: int) -> np.ndarray:
    """Erode objects, merge some neighbours, shift: a plausible imperfect prediction."""
    pred = np.where(ndi.grey_erosion(gt, size=3) == ndi.grey_dilation(gt, size=3), gt, 0)
    pred = np.where(pred % 7 == k % 7, pred + 1, pred)  # fuse some ids with their successors
    return np.roll(pred, k + 1, axis=-1).astype(np.uint32)


def write_demo_report(
    run_dir: Path, images: list[tuple[str, np.ndarray, np.ndarray]], *, ndim: int, spacing, card, channels: int = 1
) -> tuple:
    """Score flawed predictions of the images and write the report; ``channels=2`` shows each
    image as the second of two channels, the first empty (a composite)."""
    record = {"classes": ["background", "nucleus"], "instances": True, "ndim": ndim, "unit": "micrometer",
              "description": "Demo nuclei.", "ground_truth": "Hand-made <labels> & more."}
    acc = dataset_accumulator(record)
    views = []
    for k, (name, image, gt) in enumerate(images):
        pred = flawed(gt, k)
        score_image(acc, name, image=image[np.newaxis], gt=gt, pred_instances=pred, pred_semantic=None, spacing=spacing)
        shown = image[np.newaxis] if channels == 1 else np.stack([np.zeros_like(image), image])
        views.append((name, shown, gt, pred))
    metrics = dataset_metrics(acc, dataset="demo", split="test")
    previous = {**metrics, "seg": 0.25}
    run_dir.mkdir(parents=True, exist_ok=True)
    append_run(run_dir, {**run_entry(previous, new_run(previous, card=card)), "run_id": "earlier"})
    metrics["run"] = new_run(metrics, card=card)
    append_run(run_dir, run_entry(metrics, metrics["run"]))
    from segpipe.report import read_runs

    report = write_report(run_dir, dataset="demo", record=record, metrics=metrics, card=card, history=HISTORY,
                          views=views, runs=read_runs(run_dir), spacing=spacing)
    return report, metrics


def check_page(page, report, metrics) -> None:
    assert page.errors == []
    # the warning is shown exactly when the model does not beat the baseline on SEG
    assert ("Warning: The model does not beat the classical baseline on SEG" in page.text) == (metrics["beats_baseline"] is False)
    assert all(url.startswith(("file:", "data:")) for url in page.requests), [u[:60] for u in page.requests]
    assert len(page.images) == len(report.figures) >= 4
    for image in page.images:
        assert image["scheme"] == "data" and image["complete"] and image["decoded"], image
        assert image["width"] > 100 and image["height"] > 100, image


@pytest.fixture(scope="module")
def bbbc007(data_dir):
    names = ["17P1_POS0013_D_1UL", "A9_p9d", "20P1_POS0005_D_1UL"]
    return [
        (name, tifffile.imread(data_dir / "bbbc007" / "images" / f"{name}.tif"),
         tifffile.imread(data_dir / "bbbc007" / "labels" / f"{name}.tif")) for name in names
    ]


def test_2d_report_in_chromium(tmp_path, bbbc007, chromium, model_card):
    report, metrics = write_demo_report(tmp_path / "demo", bbbc007, ndim=2, spacing=(1.0, 1.0), card=model_card(2))
    page = chromium(report.html_path, screenshot=True)
    check_page(page, report, metrics)
    assert page.screenshot[:4] == b"\x89PNG"
    assert page.title == "segpipe report: demo"
    for heading in ("Scores", "Per image", "Best and worst images", "Training", "Model card", "Run time and device",
                    "Previous runs", "Classical baseline", "per-object IoU", "Hand-made <labels> & more."):
        assert heading in page.text, heading
    # every table reads in the browser exactly as the Prefect table artifacts and the Markdown have it
    assert set(report.tables) == {"summary", "matching", "per-image", "model-card", "run", "runs", "baseline-matching"}
    for key, records in report.tables.items():
        header, *rows = page.tables[f"table-{key}"]
        assert header == list(records[0]) and rows == [list(r.values()) for r in records], key
        for row in rows:
            assert "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" in report.markdown
    summary = dict(page.tables["table-summary"][1:] and [(r[0], r[1]) for r in page.tables["table-summary"][1:]])
    seg, (low, high) = metrics["seg"], metrics["ci"]["seg"]
    assert summary[f"SEG (CTC; {metrics['n_objects']} objects)"] == f"{seg:.4f} [{low:.4f}, {high:.4f}]"
    assert f"bootstrap over {metrics['n_objects']} ground-truth objects (1000 resamples)" in page.text  # three images: objects
    assert page.tables["table-summary"][2][0].startswith("OP_CSB")
    assert [r[0] for r in page.tables["table-runs"][1:]] == [metrics["run"]["run_id"] + " (this run)", "earlier"]
    shown = [i["alt"].split(": ")[1].split(" image")[0] for i in page.images if i["alt"].startswith("demo /")]
    assert shown[0] == "best" and shown[-1] == "worst"
    # the index page of the output folder links the report and names its latest run
    index = chromium(write_index(tmp_path))
    assert index.errors == [] and index.links == ["demo/report.html"]
    assert (tmp_path / index.links[0]).is_file() and metrics["run"]["run_id"] in index.text


def test_3d_report_in_chromium(tmp_path, data_dir, chromium, model_card):
    image = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "image.tif")
    labels = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "labels.tif")
    halves = [("left", image[:, :, :28], labels[:, :, :28]), ("right", image[:, :, 28:], labels[:, :, 28:])]
    report, metrics = write_demo_report(
        tmp_path / "demo3d", halves, ndim=3, spacing=(2.0, 0.5, 0.5), card=model_card(3, spacing=(2.0, 0.5, 0.5)), channels=2
    )
    page = chromium(report.html_path)
    check_page(page, report, metrics)
    assert "The 2 channels are drawn as a colour composite" in page.text
    assert "HD95 nucleus (micrometer)" in page.text and "ASD nucleus (micrometer)" in page.text
    assert "orthogonal planes" in page.text
    # two volumes are too few to resample, and HD95 is an image-level score: no interval, and the table says why
    assert metrics["hd95"]["nucleus"] > 0 and metrics["ci"]["hd95"]["nucleus"] is None
    hd95 = next(row for row in page.tables["table-summary"] if row[0].startswith("HD95"))
    assert hd95[2] == "no interval: images are too few (2, fewer than 10) to resample"
