"""Objects of a flow model on images at another pixel size than its own: the grouping's widths scaled to the image's grid against the model grid's (the named baseline).

An image at another pixel size is resampled to the model's grid, predicted there, and its
probabilities resampled back; the objects are made on the image's grid. The flow's paths then
end spread over as many more pixels as the image's grid is finer, and grouping them with the
model grid's neighbourhoods (5 and 3 pixels) and sink size splits objects. Since ffc1138
(:meth:`segpipe.prediction.resampled.Grids.post_processing`) those widths, the flow's steps and
the sink size grow with a finer grid, as the smallest object's size and the smoothing follow any
grid; on a coarser grid they stay the model grid's (scaled down, they split objects too).

The bbbc007 test fields (the catalog's split) go through ``segment`` three times: at the model's
pixel size, upsampled twice (``scipy.ndimage.zoom``, order 1, the file saying half the pixel size)
and downsampled twice (every other pixel's 2 x 2 mean, twice the pixel size); the ground truth
is repeated (order 0) or read every other pixel. From the probabilities ``segment`` keeps, the
objects are made both ways with the flow's grouping (whatever relief the model's tuning chose);
SEG and F1@0.5 (segpipe's scoring) over the fields' objects are printed side by side, with the
objects the written label files hold (the tuned post-processing, scaled to the grid: where it
is the flow's, they agree with the scaled way).

A model trained on files without a pixel size (bbbc007's) is copied and told its training pixels
were 1 micrometre (``segpipe models pixel-size``), which is what ingest took them for.

Run: ``python benchmarks/instance_resolution.py MODEL`` (a bbbc007 model: ``segpipe train bbbc007``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch
import zarr
from scipy import ndimage

from segpipe.inference.postprocess import instance_labels, output_maps
from segpipe.models.model import Model, save_model
from segpipe.pipeline.segment import segment
from segpipe.pipeline.segment_files import SegmentFolder, SegmentParams
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor
from segpipe.prediction.resampled import Grids
from segpipe.scoring import overlap
from segpipe.scoring.instances import match_from_overlap, seg_from_overlap

DATA = Path(__file__).resolve().parents[1] / "data" / "bbbc007"
TEST = ("17P1_POS0013_D_1UL", "A9_p9d")
SCALES = {"model's pixel size": 1.0, "upsampled x2 (0.5 um)": 2.0, "downsampled x2 (2 um)": 0.5}


def resized(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    if factor == 1.0:
        return image, labels
    if factor > 1:
        up = int(factor)
        return (ndimage.zoom(image.astype(np.float32), up, order=1, grid_mode=True, mode="nearest").round().astype(image.dtype),
                np.kron(labels, np.ones((up, up), labels.dtype)))
    down = int(round(1 / factor))
    h, w = (n // down * down for n in image.shape)
    mean = image[:h, :w].astype(np.float32).reshape(h // down, down, w // down, down).mean(axis=(1, 3))
    return mean.round().astype(image.dtype), labels[:h:down, :w:down]


def model_grid_params(grids: Grids, params):
    """The baseline: the smallest object and the smoothing scaled to the image's grid, the flow's grouping not."""
    scaled = grids.post_processing(params)
    return params.model_copy(update={"min_size": scaled.min_size, "edge_min_size": scaled.edge_min_size,
                                     "smoothing": scaled.smoothing})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    args = parser.parse_args()
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; model {args.model}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model = Model.open(args.model)
        if model.card.spacing_guessed:
            shutil.copytree(model.folder, work / "model")
            model = save_model(work / "model", model.state_dict(), model.card.at_pixel_size((1.0, 1.0), "micrometer"))
        spacing = model.card.spacing[0]
        tuned = model.card.instance_params()
        assert "flow" in (model.card.extra_outputs or ()), "a model with a flow output is what this measures"
        params = tuned.model_copy(update={"relief": "flow"})
        print(f"# post-processing tuned: {tuned.relief} relief; measured here with the flow's (the written labels: the tuned)")
        predictor = Predictor.load(model, PredictParams(device="cpu"))
        for name, factor in SCALES.items():
            inbox = work / f"in-{factor}"
            inbox.mkdir()
            truth = {}
            for field in TEST:
                image, labels = resized(tifffile.imread(DATA / "images" / f"{field}.tif"), tifffile.imread(DATA / "labels" / f"{field}.tif"), factor)
                tifffile.imwrite(inbox / f"{field}.tif", image)
                truth[field] = labels
            out = SegmentFolder(work / f"out-{factor}")
            segment([str(inbox)], predictor, out, SegmentParams(spacing=[spacing / factor] * 2, unit=model.card.unit), progress=False)
            totals = {way: {"seg": [], "tp": 0, "n_true": 0, "n_pred": 0} for way in ("model grid's widths", "scaled (default)", "written")}
            for field, gt in truth.items():
                group = zarr.open_group(str(out.predictions(field) / field), mode="r")
                probs = group["s0"][...].astype(np.float32)
                record = group.attrs["resampling"]
                grids = Grids(resample=record["resampled"], image_spacing=tuple(record["image_spacing"]),
                              model_spacing=tuple(record["model_spacing"]), unit=record["unit"],
                              image_shape=tuple(record["image_shape"]), model_shape=tuple(record.get("model_shape", record["image_shape"])),
                              differs=record["resampled"], guessed=record["spacing_guessed"])
                foreground, distance, boundary, flow = output_maps(probs, 2)
                made = {
                    "model grid's widths": instance_labels(foreground, distance, model_grid_params(grids, params), boundary, flow),
                    "scaled (default)": instance_labels(foreground, distance, grids.post_processing(params), boundary, flow),
                    "written": tifffile.imread(out.labels / f"{field}_labels.tif"),
                }
                for way, pred in made.items():
                    ov = overlap(gt, pred)
                    seg, match = seg_from_overlap(ov), match_from_overlap(ov, thresh=0.5)
                    totals[way]["seg"].extend(seg.jaccard.tolist())
                    totals[way]["tp"] += match.tp
                    totals[way]["n_true"] += match.n_true
                    totals[way]["n_pred"] += match.n_pred
            row = {"scale": name, "true objects": totals["written"]["n_true"]}
            for way, t in totals.items():
                row[way] = {"SEG": round(float(np.mean(t["seg"])), 3), "F1@0.5": round(2 * t["tp"] / (t["n_true"] + t["n_pred"]), 3),
                            "objects": t["n_pred"]}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
