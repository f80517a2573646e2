"""Objects with their holes filled against objects as the foreground leaves them (the named baseline).

For each finished run folder of an instance dataset, the kept model predicts its validation,
training and test images once (on the model's grid); then, for each variant, the
post-processing is tuned as training tunes it (validation and training OP_CSB) and the test
split is scored:

- ``holes-kept``: :func:`segpipe.inference.postprocess.instance_labels` without
  :func:`~segpipe.inference.postprocess.fill_holes` (segpipe before hole filling);
- ``holes-filled``: as segpipe labels objects now.

One JSON line per run folder: test SEG, DET and F1 at IoU 0.5 of each, and the share of
predicted object pixels that filling added.

Run: ``python benchmarks/holes.py RUN_FOLDER [RUN_FOLDER ...]``
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from tuning import each_run, f1_at_half, predicted

from segpipe.inference import postprocess
from segpipe.training.tuning import labelled_pairs, tune_instance_params, validation_scores


@contextlib.contextmanager
def holes_kept():
    """Label objects without filling their holes."""
    filling = postprocess.fill_holes
    postprocess.fill_holes = lambda labels: labels
    try:
        yield
    finally:
        postprocess.fill_holes = filling


def compare(folder: Path) -> dict:
    """Test scores with holes kept and filled, for one run folder's model."""
    card, validation, training, test = predicted(folder)
    training = training or None
    row = {"run": str(folder), "test_objects": int(sum(len(np.unique(gt)) - 1 for _, gt, _ in test))}
    for variant, context in (("holes-kept", holes_kept()), ("holes-filled", contextlib.nullcontext())):
        with context:
            params = tune_instance_params(validation, n_classes=card.n_classes, training=training)[0]
            scores = validation_scores(test, params, card.n_classes)
            pixels = sum(int(np.count_nonzero(pred)) for _, pred in labelled_pairs(test, params, card.n_classes))
            row[variant] = {"seg": round(scores.seg, 4), "det": round(scores.det, 4),
                            "f1_50": round(f1_at_half(test, params, card.n_classes), 4), "object_pixels": pixels,
                            "params": params.model_dump(exclude={"min_size"})}
    return row


def main() -> None:
    each_run(compare, __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
