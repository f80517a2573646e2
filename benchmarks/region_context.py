"""A region split's test regions predicted alone (each edge padded, the named baseline) and inside the image around them.

A catalog that splits one image by region (``split: {regions: ...}``) gives a test region whose
edges are cuts through the image, not its end. Since a1faf3e ingest keeps up to 128 pixels of the
image around each region (``context``) and prediction runs the network on them, so the windows
at a region's edges see what lies beyond it; before, the region was predicted alone and its edges
were padded by replicating the edge rows. This predicts the test regions of a run both ways with
the run's own model and post-processing and prints the Cell Tracking Challenge SEG, F1@0.5 and
the object counts (segpipe's scoring; a class model: each class's Dice) side by side: the same network weights, only the input
around the region differs. Training (which since 8698741 also predicts its validation regions in
context, so its checkpoint and tuning can differ) is not part of this comparison; the pipeline's
figures with and without the change are in ``benchmarks/RESULTS.md``.

Run: ``python benchmarks/region_context.py RUN`` (a run folder of ``segpipe run DATASET`` on a region
split, ingested by segpipe at a1faf3e or later so that its store keeps the context).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from segpipe.data.store import ImageStore
from segpipe.models.model import Model
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor, run_network
from segpipe.prediction.store import PredictionStore
from segpipe.scoring.instances import match_instances, seg_score
from segpipe.scoring.semantic import semantic_scores


def predicted_labels(image, predictor: Predictor, folder: Path) -> np.ndarray:
    """The instance map (or, of a class model, the class map) the pipeline makes of ``image`` (a
    :class:`StoredImage`), written under ``folder``."""
    made = run_network(image, predictor, predictor.open_store(folder / "predictions.zarr"))
    made.complete(attach=False)
    prediction = PredictionStore.open(folder / "predictions.zarr").read(image.name)
    return prediction.instances if prediction.instances is not None else prediction.semantic


def scores(truth: np.ndarray, labels: np.ndarray, classes: list[str] | None) -> dict:
    """SEG, F1@0.5 and counts of an instance map; the Dice of each foreground class of a class map."""
    if classes:
        dice = semantic_scores(truth, labels, n_classes=len(classes)).dice
        return {f"dice {name}": round(dice[c], 4) for c, name in enumerate(classes) if c}
    match = match_instances(truth, labels)
    return {"seg": round(float(seg_score(truth, labels).seg), 4), "f1@0.5": round(match.f1, 3), "true": match.n_true,
            "predicted": match.n_pred, "matched": match.tp}


def compare(run: Path) -> list[dict]:
    store = ImageStore.open(run / "data.zarr")
    predictor = Predictor.load(Model.open(run / "model"), PredictParams(device="cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for image in store.images("test", labelled=True):
            if image.context is None:
                print(f"# {image.name}: no context in the store (not a region, or ingested before a1faf3e)")
                continue
            truth = np.asarray(image.labels)
            classes = None if predictor.card.instances else list(predictor.card.classes)
            for way, seen in (("alone", dataclasses.replace(image, context=None)), ("in context", image)):
                labels = predicted_labels(seen, predictor, Path(scratch) / way.replace(" ", "-") / image.name)
                rows.append({"image": image.name, "way": way, **scores(truth, labels, classes)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (RUNS/DATASET) of region splits")
    args = parser.parse_args()
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for run in args.runs:
        rows = compare(run)
        by_way = {way: [r for r in rows if r["way"] == way] for way in ("alone", "in context")}
        if by_way["alone"]:
            keys = [k for k in by_way["alone"][0] if k not in ("image", "way")]
            print(f"{run.name}: " + " | ".join(
                f"{way}: " + ", ".join(f"{k} {np.mean([r[k] for r in got]):.4g}" for k in keys) for way, got in by_way.items()))


if __name__ == "__main__":
    main()
