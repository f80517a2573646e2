"""A catalog's predict stage with a model whose training pixel size was a guess says, once, that
images giving their own pixel size are taken at 1 per pixel (segment said so; predict did not)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.pipeline import RunFolder, stages
from segpipe.prediction.params import PredictParams

DATA = Path(__file__).resolve().parents[2] / "data"
SAID = "trained at is not known"


def test_predict_warns_once_when_images_give_a_pixel_size_the_model_never_had(crops_model, tmp_path, caplog):
    assert crops_model.card.spacing_guessed
    (tmp_path / "img").mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "img" / f"{name}.ome.tif", field, ome=True,
                         metadata={"axes": "YX", "PhysicalSizeX": 0.33, "PhysicalSizeY": 0.33})
    tifffile.imwrite(tmp_path / "img" / "c.ome.tif", np.ascontiguousarray(field[::-1]), ome=True, metadata={"axes": "YX"})
    (tmp_path / "catalog.yaml").write_text("datasets:\n  d:\n    images: img/*.ome.tif\n    split: {test: [a, b, c]}\n")
    run = RunFolder.of(tmp_path / "runs", "d")
    run.root.mkdir(parents=True)
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("d"), run.store, progress=False)
    with caplog.at_level(logging.WARNING, logger="segpipe.prediction.fit"):
        results = stages.predict(run, PredictParams(device="cpu"), model=crops_model.folder, progress=False)
    assert len(results) == 3
    said = [r.getMessage() for r in caplog.records if SAID in r.getMessage()]
    assert len(said) == 1 and "2 image(s) with a pixel size (first: a)" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segpipe.prediction.fit"):
        stages.prepare_predictions(run, model=crops_model.folder)  # the flows' per-image fan-out
    assert sum(SAID in r.getMessage() for r in caplog.records) == 1
