"""``segpipe segment``'s measurements table against scikit-image's ``regionprops_table``.

The model is applied to the bundled DSB2018 field (``data/dsb2018-nuclei-2d/image.tif``, a file
without a pixel size) with ``--spacing 0.5 0.5``; then ``regionprops_table`` is computed on the
label file ``segment`` wrote and the input image, with the same pixel size, and the largest
absolute difference per column is printed (areas in square micrometres, centroids in
micrometres, bounding boxes in pixels, mean intensity in the image's units).

Run: ``python benchmarks/measurements.py MODEL_FOLDER`` (a 2D single-channel model, e.g. one
trained on bbbc007).
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "measurements"
FIELD = ROOT / "data" / "dsb2018-nuclei-2d" / "image.tif"
SPACING = (0.5, 0.5)
#: Our column and regionprops_table's.
COLUMNS = {
    "area": "area", "centroid-y": "centroid-0", "centroid-x": "centroid-1", "bbox-y-min": "bbox-0",
    "bbox-x-min": "bbox-1", "bbox-y-max": "bbox-2", "bbox-x-max": "bbox-3", "mean_intensity-0": "intensity_mean",
}


def main() -> None:
    from skimage.measure import regionprops_table

    from segpipe.models.model import Model
    from segpipe.pipeline.segment import SegmentFolder, SegmentParams, segment
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a 2D single-channel model folder")
    args = parser.parse_args()
    out = SegmentFolder(WORK / "out")
    shutil.rmtree(out.root, ignore_errors=True)
    predictor = Predictor.load(Model.open(args.model), PredictParams(device="cpu"))
    (result,) = segment([str(FIELD)], predictor, out, SegmentParams(spacing=list(SPACING), unit="micrometer"), progress=False)
    assert result.error is None, result.error
    labels = tifffile.imread(out.labels / f"{FIELD.stem}_labels.tif")
    reference = regionprops_table(
        labels, tifffile.imread(FIELD), properties=("label", "area", "centroid", "bbox", "intensity_mean"), spacing=SPACING
    )
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    same_labels = [int(r["label"]) for r in rows] == [int(v) for v in reference["label"]]
    print(f"model {args.model}; {FIELD.name} at {SPACING[0]} um; {len(rows)} objects; labels identical: {same_labels}")
    print("| column | max abs difference | largest value |")
    print("| --- | --- | --- |")
    for ours, theirs in COLUMNS.items():
        mine = np.asarray([float(r[ours]) for r in rows])
        diff = float(np.max(np.abs(mine - reference[theirs]), initial=0.0))
        print(f"| {ours} | {diff:.3g} | {float(np.max(np.abs(mine), initial=0.0)):.6g} |")


if __name__ == "__main__":
    main()
