"""New images in the corner of a zero-filled mosaic: ``segpipe segment`` on a field alone and in a mosaic.

A stitched tile scan, a registered or deskewed image, a crop pasted onto a canvas: the field
holds a small part of the image and the rest is fill, flat at 0. This takes the test images of a
``cellpose_styles.py`` run (TIFFs, labels beside them) and writes three variants of each:

- ``alone``: the field as it is;
- ``mosaic``: the field in the top-left corner of a canvas twice as high and wide, 0 elsewhere
  (three quarters fill);
- ``offset``: the same, with a camera offset of 100 added to the field only (uint16; a field
  whose darkest background is 100 beside fill at 0).

Each variant is segmented by ``segpipe segment --model MODEL`` (one process per variant, the
model's own settings) and the labels of the field's corner are scored against its ground truth
(SEG and F1@0.5 over all test cells, and SEG per image). ``--models`` takes several model
folders (for instance one card copy with ``skip_fill`` and one without: the named baseline).

Run: ``python benchmarks/mosaic.py --run /tmp/cs/data/cellpose-styles --models A B --output DIR``
(``--run`` is the dataset folder a ``cellpose_styles.py`` run wrote, with ``images/`` and
``labels/``; the images scored are its split's seven test images, or those ``--names`` gives).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from segpipe.scoring.instances import match_instances, seg_score

#: The seven styles' test images (one per style) of ``cellpose_styles.py``'s split.
TEST = (
    "Kc167-103", "cytomembrane-326", "macrophagocyte-121", "neurocyte-080", "style1-141", "style2-152", "style3-505",
)
VARIANTS = ("alone", "mosaic", "offset")
OFFSET = 100


def variant(image: np.ndarray, kind: str) -> np.ndarray:
    """The field ``(C, y, x)`` alone, or in the corner of a zero canvas twice its size (with an offset)."""
    if kind == "alone":
        return image
    c, h, w = image.shape
    canvas = np.zeros((c, 2 * h, 2 * w), np.uint16 if kind == "offset" else image.dtype)
    canvas[:, :h, :w] = image + OFFSET if kind == "offset" else image
    return canvas


def write_inputs(run: Path, names: list[str], output: Path) -> None:
    for kind in VARIANTS:
        folder = output / "inputs" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            image = tifffile.imread(run / "images" / f"{name}.tif")
            image = image.reshape(image.shape[-3:]).astype(np.uint16 if kind == "offset" else image.dtype)
            tifffile.imwrite(folder / f"{name}.tif", variant(image, kind), metadata={"axes": "CYX"})


def segment(model: Path, inputs: Path, output: Path) -> None:
    command = [str(Path(sys.executable).parent / "segpipe"), "segment", "--model", str(model), str(inputs), "--output", str(output)]
    with open(output.with_suffix(".log"), "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)


def score(run: Path, names: list[str], labels: Path) -> dict:
    """SEG per image, and SEG and F1@0.5 over all cells, of the field's corner of each label image."""
    per_image, jaccard, n_gt, tp, fp, fn = {}, 0.0, 0, 0, 0, 0
    for name in names:
        truth = tifffile.imread(run / "labels" / f"{name}.tif")
        truth = truth.reshape(truth.shape[-2:])
        predicted = tifffile.imread(labels / f"{name}_labels.tif")
        predicted = predicted.reshape(predicted.shape[-2:])[: truth.shape[0], : truth.shape[1]]
        seg, match = seg_score(truth, predicted), match_instances(truth, predicted, thresh=0.5)
        per_image[name] = round(seg.seg, 3)
        jaccard, n_gt = jaccard + seg.jaccard_sum, n_gt + seg.n_gt
        tp, fp, fn = tp + match.tp, fp + match.fp, fn + match.fn
    return {"seg": round(jaccard / n_gt, 3), "f1": round(2 * tp / (2 * tp + fp + fn), 3), "per_image": per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a cellpose_styles.py dataset folder (images/, labels/)")
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="model folders to compare")
    parser.add_argument("--names", nargs="+", default=list(TEST), help="test images (default: the seven styles' split)")
    parser.add_argument("--output", type=Path, default=Path("/tmp/segpipe-mosaic"))
    args = parser.parse_args()
    write_inputs(args.run, args.names, args.output)
    print("model | variant | SEG | F1@0.5 | " + " | ".join(args.names))
    for model in args.models:
        for kind in VARIANTS:
            out = args.output / f"{model.name}-{kind}"
            segment(model, args.output / "inputs" / kind, out)
            result = score(args.run, args.names, out / "labels")
            print(f"{model} | {kind} | {result['seg']} | {result['f1']} | "
                  + " | ".join(str(result["per_image"][n]) for n in args.names), flush=True)
            (out / "mosaic_score.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
