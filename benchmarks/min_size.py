"""The smallest object kept: fixed at 8 pixels (the named baseline) against a share of the true objects' median size.

For each finished run folder of an instance dataset, the kept model predicts its validation,
training and test images once (on the model's grid, :func:`tuning.predicted`); then the
post-processing is tuned as training tunes it (validation and training OP_CSB) twice:

- ``fixed-8``: the grid alone, every object of 8 pixels or more kept (segpipe before this step);
- ``shares``: the grid, then the smallest size kept chosen among 8 and
  :data:`segpipe.training.tuning.MIN_SIZE_SHARES` of the median true object, objects on the
  frame's edge held to 8 (as segpipe tunes now).

One JSON line per run folder: the size each chose and its test SEG, DET, F1 at IoU 0.5 and
predicted objects.

Run: ``python benchmarks/min_size.py RUN_FOLDER [RUN_FOLDER ...]``
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
from tuning import each_run, f1_at_half, predicted

from segpipe.training import tuning
from segpipe.training.tuning import labelled_pairs, tune_instance_params, validation_scores


def compare(folder: Path) -> dict:
    """Test scores of each rule for one run folder's model."""
    card, validation, training, test = predicted(folder)
    training = training or None
    row = {"run": str(folder), "test_objects": int(sum(len(np.unique(gt)) - 1 for _, gt, _ in test))}
    for rule, shares in (("fixed-8", ()), ("shares", tuning.MIN_SIZE_SHARES)):
        with mock.patch.object(tuning, "MIN_SIZE_SHARES", shares):
            params = tune_instance_params(validation, n_classes=card.n_classes, training=training)[0]
            scores = validation_scores(test, params, card.n_classes)
            objects = sum(len(np.unique(pred)) - 1 for _, pred in labelled_pairs(test, params, card.n_classes))
            row[rule] = {"min_size": params.min_size, "edge_min_size": params.edge_min_size, "seg": round(scores.seg, 4), "det": round(scores.det, 4),
                         "f1_50": round(f1_at_half(test, params, card.n_classes), 4), "predicted_objects": objects}
    return row


def main() -> None:
    each_run(compare, __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
