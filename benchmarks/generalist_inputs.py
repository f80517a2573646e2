"""The shipped generalist on real whole cells without training: which channel feeds which input.

``segpipe segment --model cells-2d`` on the 35 images of the seven real imaging styles
(``benchmarks/cellpose_styles.py``: scellseg 0.1.8's sample of the Cellpose dataset, read from its
source distribution, not vendored), written three ways: two channels cytoplasm first, two channels
nuclei first, and the cytoplasm alone (one channel). Each layout is segmented with the inputs
chosen per image (the default, ``PredictParams.input_order="choose"``) and as stored (channel j
feeds input j, what ``--channels`` gives), and scored against the manual masks (CTC SEG, F1 at
IoU 0.5, pooled over the objects). Prints one row per condition and how often each style's
images had their cytoplasm sent to the first input.

    pip download --no-deps scellseg==0.1.8 -d /tmp/scell
    python benchmarks/generalist_inputs.py --sdist /tmp/scell/scellseg-0.1.8.tar.gz
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cellpose_styles import read_pairs  # noqa: E402

LAYOUTS = {"cytoplasm, nuclei": (0, 1), "nuclei, cytoplasm": (1, 0), "cytoplasm alone": (0,)}
CHOICE = re.compile(r"(\S+): channels \[[0-9, ]+\] feed the generalist's inputs \[([0-9, None]+)\]")


def write_layout(pairs: dict, folder: Path, channels: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Each image with ``channels`` of (cytoplasm, nuclei), as CYX TIFFs; returns the labels by name."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for style_pairs in pairs.values():
        for stem, image, mask in style_pairs:
            tifffile.imwrite(folder / f"{stem}.tif", image[list(channels)], metadata={"axes": "CYX"})
            labels[stem] = mask
    return labels


def score(output: Path, labels: dict[str, np.ndarray]) -> dict:
    """SEG and F1@0.5 pooled over the objects of every image, and per style."""
    import tifffile

    from segpipe.scoring.instances import match_instances, seg_score

    pooled: dict[str, list[float]] = {}
    for stem, truth in labels.items():
        predicted = tifffile.imread(output / "labels" / f"{stem}_labels.tif")
        seg = seg_score(truth, predicted)
        match = match_instances(truth, predicted, thresh=0.5)
        for key in ("all", stem.split("-")[0]):
            sums = pooled.setdefault(key, [0.0, 0, 0, 0])
            sums[0] += seg.jaccard_sum
            sums[1] += seg.n_gt
            sums[2] += 2 * match.tp
            sums[3] += match.n_true + match.n_pred
    return {key: (round(s[0] / s[1], 3), round(s[2] / max(s[3], 1), 3)) for key, s in pooled.items()}


def run(images: Path, output: Path, order: str, log_file: Path, model: str) -> None:
    from segpipe.models.model import Model
    from segpipe.models.shipped import shipped_model
    from segpipe.pipeline.segment import segment
    from segpipe.pipeline.segment_files import SegmentFolder
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor

    handler = logging.FileHandler(log_file, mode="w")
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("segpipe.prediction.predict")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        predictor = Predictor.load(shipped_model(model) or Model.open(model), PredictParams(input_order=order))
        segment([str(images)], predictor, SegmentFolder(output), progress=False)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def choices(log_file: Path, layout: tuple[int, ...]) -> dict[str, str]:
    """Per style, how many images had the cytoplasm sent to the generalist's first input."""
    cytoplasm = layout.index(0)
    counts: dict[str, list[int]] = {}
    for name, slots in CHOICE.findall(log_file.read_text()):
        first = slots.split(",")[cytoplasm].strip() == "0"
        counts.setdefault(name.split("-")[0], [0, 0])[0] += first
        counts[name.split("-")[0]][1] += 1
    return {style: f"{n}/{total}" for style, (n, total) in sorted(counts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sdist", type=Path, required=True, help="scellseg-0.1.8.tar.gz (pip download --no-deps scellseg==0.1.8)")
    parser.add_argument("--output", type=Path, default=Path("/tmp/segpipe-generalist-inputs"))
    parser.add_argument("--model", default="cells-2d", help="the generalist: a shipped name or a model folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pairs = read_pairs(args.sdist)
    for layout_name, layout in LAYOUTS.items():
        images = args.output / "images" / layout_name.replace(", ", "-").replace(" ", "-")
        labels = write_layout(pairs, images, layout)
        for order in ("choose", "stored"):
            if len(layout) == 1 and order == "stored":
                continue  # one channel: both feed the first input
            out = args.output / f"{images.name}-{order}"
            log_file = args.output / f"{images.name}-{order}.log"
            run(images, out, order, log_file, args.model)
            scores = score(out, labels)
            row = {"layout": layout_name, "inputs": order, "seg": scores["all"][0], "f1": scores["all"][1],
                   "per_style": {k: v for k, v in scores.items() if k != "all"}}
            if order == "choose":
                row["cytoplasm_first"] = choices(log_file, layout)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
