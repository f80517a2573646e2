"""A Cell Tracking Challenge dataset in, a CTC result folder out: every frame, the sequence's own
numbering, accepted by py-ctcmetrics' evaluation (which wants as many masks as tracked frames)."""

from __future__ import annotations

import numpy as np
import tifffile
from ctc_metrics.scripts.evaluate import evaluate_sequence
from scipy import ndimage

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor, predict_split
from segpipe.training.loop import train_model
from segpipe.training.params import TrainParams


def _sequence(root, seq: str, n: int, seg_frames: list[int], seed: int) -> None:
    """Bright blobs moving a little; TRA masks for every frame, SEG for ``seg_frames``."""
    rng = np.random.default_rng(seed)
    for sub in (seq, f"{seq}_GT/SEG", f"{seq}_GT/TRA"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    centres = rng.integers(8, 40, size=(5, 2))
    lines = []
    for t in range(n):
        labels = np.zeros((48, 48), np.uint16)
        for k, (y, x) in enumerate(centres + t, start=1):
            yy, xx = np.ogrid[:48, :48]
            labels[(yy - y) ** 2 + (xx - x) ** 2 < 16] = k
        image = (40 + 150 * (labels > 0) + rng.normal(0, 10, labels.shape)).clip(0, 255).astype(np.uint8)
        tifffile.imwrite(root / seq / f"t{t:03d}.tif", ndimage.gaussian_filter(image, 1))
        tifffile.imwrite(root / f"{seq}_GT" / "TRA" / f"man_track{t:03d}.tif", labels)
        if t in seg_frames:
            tifffile.imwrite(root / f"{seq}_GT" / "SEG" / f"man_seg{t:03d}.tif", labels)
    lines = [f"{k} 0 {n - 1} 0" for k in range(1, 6)]
    (root / f"{seq}_GT" / "TRA" / "man_track.txt").write_text("\n".join(lines) + "\n")


def test_every_frame_is_predicted_and_the_folder_is_evaluated(tmp_path):
    data = tmp_path / "Fluo-Blobs"
    _sequence(data, "01", 4, [0, 2], seed=1)
    _sequence(data, "02", 3, [1], seed=2)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  blobs:\n    format: ctc\n    images: Fluo-Blobs/0[12]\n    classes: [background, cell]\n"
        "    split: {train: ['01'], test: ['02']}\n"
    )
    ingest_dataset(load_catalog(catalog).dataset("blobs"), tmp_path / "data.zarr", progress=False)
    store = ImageStore.open(tmp_path / "data.zarr")
    assert store.names("test") == ["02-t000", "02-t001", "02-t002"] and store.names("test", labelled=True) == ["02-t001"]
    config = TrainParams(epochs=2, iterations_per_epoch=3, batch_size=2, patch_size=(32, 32), val_every=2,
                         features=(8, 16, 32, 64, 128, 8), device="cpu")
    model = train_model(store, tmp_path / "model", config, progress=False).model
    predictor = Predictor.load(model, PredictParams(device="cpu", exports=("ctc",)))
    out = tmp_path / "predictions"
    predict_split(store, predictor, predictor.open_store(tmp_path / "p.zarr"), split="test", exports=out, progress=False)
    result = out / "ctc" / "02_RES"
    assert sorted(p.name for p in result.glob("mask*.tif")) == ["mask000.tif", "mask001.tif", "mask002.tif"]
    scores = evaluate_sequence(str(result), str(data / "02_GT"), metrics=["SEG", "DET"], threads=1)
    assert 0 <= scores["SEG"] <= 1 and 0 <= scores["DET"] <= 1
