"""Every demo dataset of ``data_catalog.yaml`` gets a report that renders in Chromium (slow).

Each dataset is ingested, a tiny model trained for one epoch, its test split predicted, scored
with the baseline and reported; the HTML must load without errors with every figure decoded,
2D and 3D (orthogonal planes) alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.pipeline import RunFolder, stages
from segpipe.pipeline.catalog import open_catalog
from segpipe.prediction.params import PredictParams
from segpipe.data.catalog import load_catalog
from segpipe.training.params import TrainParams

CATALOG = Path(__file__).resolve().parents[2] / "data_catalog.yaml"
DATASETS = load_catalog(CATALOG).names()


def tiny(ndim: int) -> TrainParams:
    return TrainParams(
        epochs=1, iterations_per_epoch=2, batch_size=2 if ndim == 2 else 1, patch_size=(64, 64) if ndim == 2 else (32, 32, 32),
        features=(8, 16, 32, 64, 128, 8) if ndim == 2 else (4, 8, 16, 32, 64, 4), val_every=1, max_minutes=None, device="cpu",
    )


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_demo_dataset_report_renders(tmp_path, chromium, dataset):
    output = tmp_path / "runs"
    ndim = load_catalog(CATALOG).entries[dataset].ndim
    folder = RunFolder.of(output, dataset)
    stages.ingest(open_catalog(CATALOG), dataset, folder)
    stages.train(folder, tiny(ndim), progress=False)
    stages.predict(folder, PredictParams(device="cpu"), progress=False)
    metrics = stages.score(folder)
    report = stages.report(folder)
    page = chromium(report.html_path)
    assert page.errors == []
    assert all(url.startswith(("file:", "data:")) for url in page.requests)
    assert len(page.images) == len(report.figures) >= (5 if metrics["instances"] else 3)
    assert all(i["decoded"] and i["width"] > 0 and i["height"] > 0 for i in page.images)
    images = "Best and worst images" if metrics["n_images"] > 1 else "The test image"
    for heading in ("Scores", images, "Training", "Model card", "Run time and device", "Classical baseline"):
        assert heading in page.text
    assert metrics["baseline"]["n_images"] == metrics["n_images"]  # the baseline scored the same images
    if ndim == 3:
        assert metrics["hd95"] is not None and "HD95" in page.text and "orthogonal planes" in page.text
    index = chromium(output / "index.html")
    assert index.errors == [] and index.links == [f"{dataset}/report.html"]
