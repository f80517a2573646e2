"""Post-processing chosen on validation alone (the named baseline) against validation and training images.

For each finished run folder of an instance dataset (``segpipe run`` or the other benchmarks
write them), the kept model predicts its validation, training and test images once; then the
post-processing grid of :mod:`segpipe.training.tuning` is searched twice, ranking settings by

- ``validation``: their validation OP_CSB (how segpipe tuned before);
- ``with-training``: the mean of their validation and training OP_CSB (how it tunes now,
  with the training images :func:`segpipe.training.splits.tuning_training_set` takes),

and the test SEG, DET and F1 at IoU 0.5 of each choice are printed side by side, with the best
test SEG any setting of the grid reaches (what a perfect choice would give). One JSON line per
run folder.

Run: ``python benchmarks/tuning.py RUN_FOLDER [RUN_FOLDER ...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from segpipe.data.store import ImageStore
from segpipe.inference.postprocess import InstanceParams
from segpipe.models.model import Model
from segpipe.pipeline import RunFolder
from segpipe.scoring import overlap
from segpipe.scoring.instances import match_from_overlap
from segpipe.training.sized import SizedStore
from segpipe.training.splits import load_split, predict_split, scorable, tuning_training_set
from segpipe.training.tuning import candidates, labelled_pairs, tune_instance_params, validation_scores


def predicted(folder: Path) -> tuple:
    """A run folder's model card and its model's predictions of the validation, tuning-training and test images (CPU).

    For a model of one object size (``card.object_size``) every image is predicted at the scale its
    true objects give, as training loads the validation split; ``segpipe predict`` and ``segment``
    estimate that scale from a first prediction instead, so test figures here can differ from the run's.
    """
    run = RunFolder(folder)
    model = Model.open(run.model_dir)
    card, device = model.card, torch.device("cpu")
    network = model.load(device)
    store = ImageStore.open(run.store)
    if card.object_size:  # as training loads them: each image at the size that makes its objects object_size across
        store = SizedStore(store, card.object_size)
    validation = predict_split(network, scorable(load_split(store, "validation", card=card)), card, device)
    training = predict_split(network, tuning_training_set(store, card), card, device)
    test = predict_split(network, load_split(store, "test", card=card), card, device)
    return card, validation, training, test


def compare(folder: Path) -> dict:
    """The test scores of the two tuning rules for one run folder."""
    card, validation, training, test = predicted(folder)
    rules = {
        "validation": tune_instance_params(validation, n_classes=card.n_classes)[0],
        "with-training": tune_instance_params(validation, n_classes=card.n_classes, training=training or None)[0],
    }
    row = {"run": str(folder), "test_objects": int(sum(len(np.unique(gt)) - 1 for _, gt, _ in test))}
    for rule, params in rules.items():
        scores = validation_scores(test, params, card.n_classes)
        row[rule] = {"seg": round(scores.seg, 4), "det": round(scores.det, 4), "f1_50": round(f1_at_half(test, params, card.n_classes), 4),
                     "params": params.model_dump(exclude={"min_size"})}
    row["best_test_seg_in_grid"] = round(best_seg(test, card.n_classes, min_size=card.postprocess.min_size), 4)
    return row


def f1_at_half(predictions: list, params: InstanceParams, n_classes: int) -> float:
    """F1 at IoU 0.5, pooled over the images' objects (unannotated pixels left out, as in scoring)."""
    tp = fp = fn = 0
    for gt, pred in labelled_pairs(predictions, params, n_classes):
        result = match_from_overlap(overlap(gt, pred), thresh=0.5)
        tp, fp, fn = tp + result.tp, fp + result.fp, fn + result.fn
    return 2 * tp / max(2 * tp + fp + fn, 1)


def best_seg(predictions: list, n_classes: int, *, min_size: int) -> float:
    """The highest test SEG of any setting in the tuning grid (the test split choosing: an upper bound)."""
    return max(validation_scores(predictions, params, n_classes).seg for params in candidates(predictions, n_classes=n_classes, min_size=min_size))


def each_run(compare, description: str) -> None:
    """Read run folders from the command line and print ``compare(folder)`` for each, one JSON line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (OUTPUT/DATASET) of instance datasets")
    for folder in parser.parse_args().runs:
        print(json.dumps(compare(folder)), flush=True)


def main() -> None:
    each_run(compare, __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
