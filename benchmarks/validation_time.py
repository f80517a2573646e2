"""Time of one validation during training: with test-time flips (the named baseline) against without.

Training scores its weights on the validation split every ``val_every`` epochs to keep the best
checkpoint. It predicted each image with the card's test-time flips (3 passes in 2D, 4 in 3D);
it now predicts each window once (:func:`segpipe.training.splits.predict_split` with
``flips=False``) and leaves the flips to the tuning and the prediction after training. This
script loads a finished run's model and validation split and times one validation each way,
quiet and beside one competing process, and prints both ways' scores (the ranking of
checkpoints is what validation is for; the scores themselves differ a little)::

    python benchmarks/validation_time.py RUN_FOLDER [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditions import CONDITIONS, under  # noqa: E402

from segpipe.data.store import ImageStore  # noqa: E402  (segpipe before torch: its OpenMP spin setting)
from segpipe.models.device import use_cpu_threads  # noqa: E402
from segpipe.models.model import Model  # noqa: E402
from segpipe.pipeline.run_folder import RunFolder  # noqa: E402
from segpipe.training.splits import load_split, predict_split  # noqa: E402
from segpipe.training.tuning import validation_scores  # noqa: E402

import torch  # noqa: E402


def validate(network, val_set, card, *, flips: bool) -> float:
    """One validation as training scores an instance model, with or without the flips; returns its OP_CSB."""
    predictions = predict_split(network, val_set, card, torch.device("cpu"), flips=flips)
    return validation_scores(predictions, card.instance_params(), card.n_classes).op_csb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a run folder (runs/<dataset>) with a trained instance model")
    parser.add_argument("--repeats", type=int, default=3, help="validations timed each way per condition (median kept)")
    args = parser.parse_args()
    run = RunFolder(args.folder)
    model = Model.open(run.model_dir)
    card = model.card.model_copy(update={"postprocess": None})  # validation scores with the default post-processing
    if not card.instances:
        raise SystemExit(f"{run.model_dir}: not an instance model")
    use_cpu_threads()
    network = model.load(torch.device("cpu"))
    val_set = load_split(ImageStore.open(run.store), "validation", card=card)
    for condition in CONDITIONS:
        with under(condition):
            seconds, scores = {}, {}
            for flips in (True, False) * args.repeats:
                started = time.perf_counter()
                scores[flips] = validate(network, val_set, card, flips=flips)
                seconds.setdefault(flips, []).append(time.perf_counter() - started)
        baseline, now = (sorted(seconds[f])[len(seconds[f]) // 2] for f in (True, False))
        print(json.dumps({
            "condition": condition, "images": len(val_set), "ndim": card.spatial_dims,
            "with flips (baseline) s": round(baseline, 2), "without s": round(now, 2), "ratio": round(baseline / now, 2),
            "op_csb with flips": round(scores[True], 4), "op_csb without": round(scores[False], 4),
        }), flush=True)


if __name__ == "__main__":
    main()
