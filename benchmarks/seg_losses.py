"""Where a run's test SEG goes: each ground-truth object's shortfall from 1, by kind.

The CTC SEG of an object is the Jaccard index of the predicted object covering more than half of
it, 0 when none does. ``1 - SEG`` is split here into

- ``outline``: objects matched with J > 0.5, their ``1 - J`` (boundaries);
- ``too large``: objects whose covering prediction has J <= 0.5 (merged with neighbours, or
  spilling far into the background), their ``1 - J``;
- ``split``: no prediction covers half of the object, predictions together do;
- ``missed``: predictions cover less than half of it.

and the outline's pixels into a prediction's extra pixels over the background or over other
objects, and an object's missing pixels left as background or given to other predictions.

    python benchmarks/seg_losses.py RUN_FOLDER   # runs/DATASET: data.zarr and predictions.zarr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import zarr

KINDS = ("outline", "too large", "split", "missed")
PIXELS = ("extra over background", "extra over other objects", "missing as background", "missing to other predictions")


def losses(truth: np.ndarray, predicted: np.ndarray) -> tuple[dict[str, float], np.ndarray, int]:
    """Summed shortfall per kind, the outline's pixel counts (``PIXELS``) and the number of objects."""
    from segpipe.scoring.instances import seg_score

    seg = seg_score(truth, predicted)
    sums = dict.fromkeys(KINDS, 0.0)
    pixels = np.zeros(len(PIXELS), dtype=np.int64)
    for gt_id, jaccard, pred_id in zip(seg.gt_ids, seg.jaccard, seg.matched_pred):
        mine = truth == gt_id
        if pred_id:
            sums["outline" if jaccard > 0.5 else "too large"] += 1.0 - jaccard
            if jaccard > 0.5:
                theirs = predicted == pred_id
                extra, missing = theirs & ~mine, mine & ~theirs
                pixels += [(extra & (truth == 0)).sum(), (extra & (truth > 0)).sum(),
                           (missing & (predicted == 0)).sum(), (missing & (predicted > 0)).sum()]
        else:
            sums["split" if (predicted[mine] > 0).mean() > 0.5 else "missed"] += 1.0
    return sums, pixels, seg.n_gt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a dataset's run folder (data.zarr with the ground truth, predictions.zarr)")
    args = parser.parse_args()
    data = zarr.open_group(str(args.run / "data.zarr"), mode="r")
    predictions = zarr.open_group(str(args.run / "predictions.zarr"), mode="r")
    total, pixels, objects = dict.fromkeys(KINDS, 0.0), np.zeros(len(PIXELS), dtype=np.int64), 0
    for name in sorted(predictions.group_keys()):
        if name not in data or "labels" not in data[name] or "gt" not in data[name]["labels"]:
            continue
        truth = np.asarray(data[name]["labels/gt/s0"]).squeeze()
        predicted = np.asarray(predictions[name]["labels/instances/s0"]).squeeze()
        sums, counts, n = losses(truth, predicted)
        print(json.dumps({"image": name, "objects": n, "seg": round(1 - sum(sums.values()) / n, 3),
                          **{k: round(v / n, 3) for k, v in sums.items()}}))
        for k in KINDS:
            total[k] += sums[k]
        pixels += counts
        objects += n
    share = pixels / max(pixels.sum(), 1)
    print(json.dumps({"image": "all", "objects": objects, "seg": round(1 - sum(total.values()) / objects, 3),
                      **{k: round(v / objects, 3) for k, v in total.items()},
                      "outline pixels": {k: round(float(v), 3) for k, v in zip(PIXELS, share)}}))


if __name__ == "__main__":
    main()
