"""Score and report stages on a real run: crops of BBBC007 fields, a tiny model trained one epoch.

Checks the run folder (metrics with baseline and intervals, run history, reports, index),
renders the report in Chromium, scores the run's own predictions again through every
``--predictions`` folder layout (same numbers), and publishes the report as Prefect artifacts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from segpipe.pipeline import RunFolder, stages
from segpipe.pipeline.catalog import open_catalog
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams
from segpipe.errors import InputError
from segpipe.scoring.external import external_metrics_path, score_prediction_folder

TRAIN, VALIDATION, TEST_IMAGES = ["17P1_POS0006_D_1UL", "A9_p5d"], ["20P1_POS0007_D_1UL"], ["17P1_POS0013_D_1UL", "A9_p9d"]
TINY = TrainParams(
    epochs=1, iterations_per_epoch=2, batch_size=2, patch_size=(64, 64), features=(8, 16, 32, 64, 128, 8),
    val_every=1, max_minutes=None, device="cpu",
)
SCORE_KEYS = ("seg", "det", "op_csb", "det_counts", "n_objects", "n_pred", "iou", "dice", "mean_iou", "mean_dice", "matching",
              "merges", "merged_gt", "splits", "split_pred", "iou_histogram", "ci", "ci_method", "per_image", "baseline",
              "beats_baseline", "baseline_comparison")


def write_catalog(folder: Path, data: Path, size: int = 160) -> Path:
    """Crops of five BBBC007 fields and a catalog of them named ``bbbc007`` (two test images)."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
        for name in TRAIN + VALIDATION + TEST_IMAGES:
            array = tifffile.imread(data / "bbbc007" / sub / f"{name}.tif")[:size, :size]
            tifffile.imwrite(folder / sub / f"{name}.tif", np.ascontiguousarray(array))
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  bbbc007:\n    images: images/*.tif\n    labels: labels/*.tif\n"
        "    classes: [background, nucleus]\n    ground_truth: silver standard (Voronoi-Otsu labeling)\n"
        f"    split: {{train: {TRAIN}, validation: {VALIDATION}, test: {TEST_IMAGES}}}\n".replace("'", "")
    )
    return catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, data_dir):
    return write_catalog(tmp_path_factory.mktemp("crops"), data_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory, catalog):
    """``OUTPUT`` after ingest, tiny training, prediction, two scorings and a report."""
    output = tmp_path_factory.mktemp("runs")
    folder = RunFolder.of(output, "bbbc007")
    stages.ingest(open_catalog(catalog), "bbbc007", folder)
    stages.train(folder, TINY, progress=False)
    stages.predict(folder, PredictParams(device="cpu"), progress=False)
    first = stages.score(folder)
    second = stages.score(folder)
    report = stages.report(folder)
    return output, first, second, report


def test_run_folder(run):
    output, first, metrics, report = run
    folder = output / "bbbc007"
    stored = json.loads((folder / "metrics.json").read_text())
    # scored twice, nothing changed between: one run, one line in the history
    assert stored["run"]["run_id"] == metrics["run"]["run_id"] == first["run"]["run_id"]
    assert [r["name"] for r in stored["per_image"]] == TEST_IMAGES
    assert stored["baseline"]["method"].startswith("Otsu") and stored["baseline"]["seg"] is not None
    assert stored["ci"]["seg"] is not None and stored["ci"]["seg"][0] <= stored["seg"] <= stored["ci"]["seg"][1]
    # two test images: SEG's interval resamples the ground-truth objects, Dice gets none
    assert (stored["ci_method"]["seg"]["unit"], stored["ci_method"]["seg"]["n"]) == ("objects", stored["n_objects"])
    assert stored["ci"]["dice"]["nucleus"] is None and stored["ci_method"]["dice"]["reason"] == "too few images"
    assert stored["op_csb"] == (stored["seg"] + stored["det"]) / 2
    assert stored["beats_baseline"] == (stored["seg"] > stored["baseline"]["seg"])
    assert stored["baseline_comparison"]["measure"] == "seg"
    assert len(stored["matching"]) == 9 and stored["det"] is not None
    runs = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    assert [r["run_id"] for r in runs] == [first["run"]["run_id"]]
    assert runs[-1]["scores"]["seg"] == stored["seg"] and runs[-1]["epochs"] == 1
    assert (folder / "reports" / f"{metrics['run']['run_id']}.html").read_bytes() == report.html_path.read_bytes()
    names = {p.name for p in report.figures}
    assert {f"overlay_{n}.png" for n in TEST_IMAGES} <= names  # best and worst of two images
    assert {"training_curve.png", "iou_histogram.png", "matching_curve.png"} <= names
    assert (output / "index.html").is_file()


def test_report_and_index_render_in_chromium(run, chromium):
    output, _, metrics, report = run
    page = chromium(report.html_path)
    assert page.errors == []
    assert all(url.startswith(("file:", "data:")) for url in page.requests)
    assert len(page.images) == len(report.figures) and all(i["decoded"] and i["width"] > 0 for i in page.images)
    assert "Previous runs" in page.text and "Classical baseline" in page.text
    index = chromium(output / "index.html")
    assert index.errors == [] and index.links == ["bbbc007/report.html"]
    assert metrics["run"]["run_id"] in index.text


def test_another_splits_scores_and_report_keep_the_test_ones_and_say_their_split(run, tmp_path):
    """`score --split validation` overwrote metrics.json, and its report called the validation image a test image."""
    output, _, metrics, _ = run
    shutil.copytree(output / "bbbc007", tmp_path / "bbbc007")
    folder = RunFolder.of(tmp_path, "bbbc007")
    test_scores = folder.metrics.read_text()
    stages.predict(folder, PredictParams(device="cpu"), split="validation", progress=False)
    validation = stages.score(folder, split="validation")
    report = stages.report(folder, split="validation")
    assert folder.metrics.read_text() == test_scores
    stored = json.loads((folder.root / "metrics-validation.json").read_text())
    assert stored["split"] == "validation" and [r["name"] for r in stored["per_image"]] == VALIDATION
    assert report.path == folder.root / "validation" / "report.md"
    text = report.path.read_text()
    assert "Scores on the validation split" in text and "Scores per validation image" in text
    assert "test image" not in text and "test split" not in text
    assert metrics["run"]["run_id"] not in text  # its previous runs are the validation split's only
    assert validation["run"]["run_id"] in text
    index = (tmp_path / "index.html").read_text()
    assert metrics["run"]["run_id"] in index and validation["run"]["run_id"] not in index  # the index compares test scores


def scores(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in SCORE_KEYS}


def test_prediction_folders_score_the_same(run, tmp_path):
    output, _, metrics, _ = run
    folder, store = output / "bbbc007", output / "bbbc007" / "data.zarr"
    # the run's TIFF exports (instances and semantic maps) and its zarr store: identical numbers
    for predictions in (folder / "predictions", folder / "predictions.zarr"):
        external = score_prediction_folder(store, predictions, dataset="bbbc007")
        assert scores(external) == scores(metrics), predictions.name
    # CTC layout: instance masks only, so the semantic maps are the objects (labels > 0)
    ctc = tmp_path / "01_RES"
    ctc.mkdir()
    for t, name in enumerate(TEST_IMAGES):
        shutil.copyfile(folder / "predictions" / f"{name}_instances.tif", ctc / f"mask{t:03d}.tif")
    external = score_prediction_folder(store, ctc, dataset="bbbc007")
    assert external["predictions"]["layout"] == "ctc"
    for key in ("seg", "det", "matching", "merges", "splits", "iou_histogram"):
        assert external[key] == metrics[key], key
    # plain files named after the images (e.g. another tool's output)
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in TEST_IMAGES:
        labels = tifffile.imread(folder / "predictions" / f"{name}_instances.tif")
        tifffile.imwrite(plain / f"{name}_masks.tif", labels.astype(np.uint16))
    assert score_prediction_folder(store, plain, dataset="bbbc007")["seg"] == metrics["seg"]


def test_missing_prediction_is_named(run, tmp_path):
    output, *_ = run
    store = output / "bbbc007" / "data.zarr"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: no prediction for image '17P1_POS0013_D_1UL'"):
        score_prediction_folder(store, empty, dataset="bbbc007")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    tifffile.imwrite(wrong / "17P1_POS0013_D_1UL.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(InputError, match=r"17P1_POS0013_D_1UL.tif: prediction has shape \(10, 10\)"):
        score_prediction_folder(store, wrong, dataset="bbbc007")


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``segpipe ARGS`` in this process through its entry point (errors become exit code 2)."""
    from segpipe.cli import main

    monkeypatch.setattr(sys, "argv", ["segpipe", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_cli_scores_a_folder(run, catalog, monkeypatch, capsys, tmp_path):
    output, _, metrics, _ = run
    command = ["score", "bbbc007", "--catalog", str(catalog), "--output", str(output), "--predictions"]
    code, out, err = cli(monkeypatch, capsys, *command, str(output / "bbbc007" / "predictions"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["seg"] == metrics["seg"] and summary["baseline"]["seg"] == metrics["baseline"]["seg"]
    assert summary["ci"]["seg"] == metrics["ci"]["seg"]
    assert summary["op_csb"] == metrics["op_csb"] and summary["beats_baseline"] == metrics["beats_baseline"]
    written = external_metrics_path(output / "bbbc007", output / "bbbc007" / "predictions")
    assert summary["metrics"] == str(written) and json.loads(written.read_text())["seg"] == metrics["seg"]
    code, out, err = cli(monkeypatch, capsys, *command, str(tmp_path / "nothing-here"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nothing-here'}: no such prediction folder"


def test_prefect_artifacts(run, prefect_harness, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from segpipe.flows.tasks import report_task

    output, _, metrics, report = run

    @flow
    def publish() -> str:
        return report_task(RunFolder.of(output, "bbbc007"), metrics)

    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage"}):
        publish()

    async def artifacts():
        async with get_client() as client:
            return {a.key: a for a in await client.read_artifacts() if a.key and a.key.startswith("bbbc007-")}

    found = asyncio.run(artifacts())
    assert {"bbbc007-report", "bbbc007-metrics", "bbbc007-headline", "bbbc007-summary", "bbbc007-matching",
            "bbbc007-runs", "bbbc007-model-card", "bbbc007-run", "bbbc007-baseline-matching"} <= set(found)
    assert found["bbbc007-headline"].type == "markdown" and found["bbbc007-report"].type == "markdown"
    assert found["bbbc007-headline"].data == report.summary and "SEG" in report.summary
    for key in ("summary", "matching", "runs"):
        artifact = found[f"bbbc007-{key}"]
        assert artifact.type == "table"
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        assert rows == report.tables[key], key


def test_report_stage_draws_every_channel(run, monkeypatch):
    """The stage hands the overlays the whole ``(C, Y, X)`` image, not its first channel."""
    from segpipe.report import figures

    output, *_ = run
    drawn = {}
    original = figures.overlay

    def spy(image, gt, pred, path, **kwargs):
        drawn[path.name] = (np.shape(image), np.shape(gt))
        return original(image, gt, pred, path, **kwargs)

    monkeypatch.setattr(figures, "overlay", spy)
    stages.report(RunFolder.of(output, "bbbc007"))
    assert sorted(drawn) == sorted(f"overlay_{n}.png" for n in TEST_IMAGES)
    assert all(image == (1, *gt) for image, gt in drawn.values())  # one channel, kept as a channel axis


def test_a_test_image_of_only_noise_is_named_in_the_scores_and_the_report(tmp_path, data_dir):
    """A test field the camera gave only noise (its ground truth kept): it is not predicted, so its
    nuclei count as missed; metrics.json and the report say why, where before they only showed the loss."""
    catalog = write_catalog(tmp_path / "crops", data_dir, size=96)
    noisy = tmp_path / "crops" / "images" / f"{TEST_IMAGES[1]}.tif"
    field = tifffile.imread(noisy)
    tifffile.imwrite(noisy, np.random.default_rng(3).poisson(40, field.shape).astype(field.dtype))
    folder = RunFolder.of(tmp_path / "runs", "bbbc007")
    stages.ingest(open_catalog(catalog), "bbbc007", folder)
    stages.train(folder, TINY.model_copy(update={"patch_size": (48, 48)}), progress=False)
    stages.predict(folder, PredictParams(device="cpu"), progress=False)
    metrics = stages.score(folder)
    assert metrics["noise_only"] == {TEST_IMAGES[1]: 1}
    per_image = {row["name"]: row for row in metrics["per_image"]}
    assert per_image[TEST_IMAGES[1]]["n_pred"] == 0 and per_image[TEST_IMAGES[1]]["n_objects"] > 0
    intro = stages.report(folder).markdown.split("## ")[0]
    assert f"Held only noise, so not predicted (background: any ground-truth object there counts as missed; `--noise-only 0` " \
           f"predicts them): {TEST_IMAGES[1]} (1 frame)." in intro
    assert TEST_IMAGES[0] not in intro
