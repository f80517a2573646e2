"""Frames of nothing but noise (:mod:`segpipe.inference.noise`): the rule against no rule (``--noise-only 0``, the named baseline).

Prints JSON lines in four parts:

1. ``noise``: the highest structure over ``--seeds`` seeded fields of each kind of noise and side
   (white, Poisson of 0.3, 1, 2 and 40 counts, 8-bit, white noise under a gradient of 5 noise
   deviations per 1,024 pixels), against the threshold;
2. ``disc``: one disc on white noise, by radius and brightness (in noise deviations), and whether
   the frame would be judged noise;
3. ``real``: the lowest structure of every bundled image (a volume by its middle plane);
4. ``generalist``: the shipped ``cells-2d`` through ``segment`` on fields of noise and on the
   bundled bbbc007 images, with the rule and without: objects per input, whether the labels of
   the real images are the same both ways, and the seconds of each run;
5. ``cost``: ``stream_predict`` with the rule and without on a 1024 x 1024 field with cells and on
   the same size of pure noise (fastest of ``--repeats``), quiet and beside one competing process;
6. ``quiet``: the quiet parts of images with objects (:func:`segpipe.inference.noise.quiet`):
   every annotated cell of the bundled 2D sets (and of the seven whole-cell styles, with
   ``--sdist``), whether any of its pixels is quiet;
7. ``half``: the eleven bbbc007 fields with their right half replaced by noise as wide as their
   background's, through ``segment`` with the rule and without (``--noise-only 0``): objects in the
   noise half, and objects matched to the true cells of the other half (IoU >= 0.5, `match_instances`), for the
   generalist and each ``--model`` given.

Run: ``python benchmarks/noise_only.py`` (``--parts generalist,cost`` for some parts only)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import tifffile
import torch
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blank import SPEC, field, network  # noqa: E402
from conditions import CONDITIONS, under  # noqa: E402

from segpipe.inference import ArraySink, InferenceParams, activate, stream_normalization, stream_predict  # noqa: E402
from segpipe.inference.blank import Blank, floors  # noqa: E402
from segpipe.inference.noise import THRESHOLD, structure  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
NOISE = {
    "white": lambda rng, n: rng.normal(100, 10, (n, n)),
    "poisson-0.3": lambda rng, n: rng.poisson(0.3, (n, n)).astype(np.uint16),
    "poisson-1": lambda rng, n: rng.poisson(1.0, (n, n)).astype(np.uint16),
    "poisson-2": lambda rng, n: rng.poisson(2.0, (n, n)).astype(np.uint16),
    "poisson-40": lambda rng, n: rng.poisson(40.0, (n, n)).astype(np.uint16),
    "uint8": lambda rng, n: np.clip(rng.normal(20, 1, (n, n)), 0, 255).astype(np.uint8),
    "gradient": lambda rng, n: rng.normal(100, 10, (n, n)) + np.linspace(0, 50 * n / 1024, n)[None],
}


def noise_part(seeds: int) -> None:
    for kind, make in NOISE.items():
        for side in (64, 128, 256, 1024):
            scores = [structure(make(np.random.default_rng(seed), side)) for seed in range(seeds if side < 1024 else 3)]
            print(json.dumps({"part": "noise", "kind": kind, "side": side, "max": round(max(scores), 2),
                              "under threshold": max(scores) < THRESHOLD}), flush=True)


def disc_part() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    for radius in (3, 5, 10, 40):
        for bright in (0.5, 1.0, 2.0):
            image = rng.normal(100, 10, (512, 512))
            image[(yy - 200) ** 2 + (xx - 300) ** 2 < radius**2] += 10 * bright
            score = structure(image)
            print(json.dumps({"part": "disc", "radius": radius, "brightness (noise deviations)": bright,
                              "structure": round(score, 1), "judged noise": score < THRESHOLD}), flush=True)


def real_part() -> None:
    for folder in sorted(p for p in DATA.iterdir() if p.is_dir()):
        files = sorted((folder / "images").iterdir()) if (folder / "images").is_dir() else sorted(folder.glob("image.tif"))
        scores = []
        for path in files:
            if path.suffix not in (".tif", ".tiff", ".png"):
                continue
            image = tifffile.imread(path) if path.suffix != ".png" else __import__("imageio.v3").v3.imread(path)
            if image.ndim == 3 and image.shape[-1] <= 4:
                image = image[..., 0]
            if image.ndim == 3:
                image = image[image.shape[0] // 2]
            scores.append(structure(image))
        if scores:
            print(json.dumps({"part": "real", "dataset": folder.name, "images": len(scores), "lowest": round(min(scores), 1)}), flush=True)


def generalist_part(work: Path) -> None:
    from segpipe.models.shipped import CELLS_2D, shipped_model
    from segpipe.pipeline.segment import segment
    from segpipe.pipeline.segment_files import SegmentFolder
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor

    inbox = work / "inbox"
    inbox.mkdir()
    rng = np.random.default_rng(5)
    tifffile.imwrite(inbox / "noise-bright.tif", rng.poisson(40, (512, 512)).astype(np.uint16))
    tifffile.imwrite(inbox / "noise-dark.tif", rng.poisson(1.5, (300, 400)).astype(np.uint16))
    tifffile.imwrite(inbox / "noise-8bit.tif", np.clip(rng.normal(12, 2, (1024, 1024)), 0, 255).astype(np.uint8))
    real = sorted((DATA / "bbbc007" / "images").iterdir())
    for path in real:
        shutil.copy(path, inbox / path.name)
    warm = work / "warm"
    warm.mkdir()
    shutil.copy(real[0], warm / real[0].name)
    segment([str(warm)], Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu")), SegmentFolder(work / "warm-out"),
            progress=False)  # first-call costs (imports, kernels) out of the timed runs
    runs = {}
    for name, threshold in (("without (--noise-only 0)", 0.0), ("with", THRESHOLD)):
        model = shipped_model(CELLS_2D)
        predictor = Predictor.load(model, PredictParams(device="cpu", inference={"noise_only": threshold}))
        out = work / name.split()[0]
        started = time.perf_counter()
        results = segment([str(inbox)], predictor, SegmentFolder(out), progress=False)
        runs[name] = (out, {r.name: sum(r.objects.values()) for r in results}, time.perf_counter() - started)
    (out_a, objects_a, seconds_a), (out_b, objects_b, seconds_b) = runs.values()
    for name in sorted(objects_a):
        same = None
        if not name.startswith("noise"):
            same = bool(np.array_equal(tifffile.imread(out_a / "labels" / f"{name}_labels.tif"),
                                       tifffile.imread(out_b / "labels" / f"{name}_labels.tif")))
        print(json.dumps({"part": "generalist", "input": name, "objects without": objects_a[name],
                          "objects with": objects_b[name], "same labels": same}), flush=True)
    print(json.dumps({"part": "generalist", "seconds without": round(seconds_a, 1), "seconds with": round(seconds_b, 1)}), flush=True)


def predict_seconds(net, source, normalization, blank, threshold: float) -> float:
    sink = ArraySink(2, (), source.shape[1:])
    started = time.perf_counter()
    stream_predict(net, source, sink, roi_size=(128, 128), out_channels=2, normalization=normalization,
                   activation=partial(activate, n_classes=2), blank=blank,
                   params=InferenceParams(flip_tta=False, noise_only=threshold))
    return time.perf_counter() - started


def cost_part(repeats: int) -> None:
    images = {"cells": field((1024, 1024)),
              "noise": np.random.default_rng(1).poisson(40, (1, 1024, 1024)).astype(np.uint16)}
    net = network(2)
    for condition in CONDITIONS:
        with under(condition):
            for name, image in images.items():
                source = zarr.create_array(store={}, shape=image.shape, chunks=(1, 128, 128), dtype=image.dtype)
                source[...] = image
                normalization = stream_normalization(source, SPEC)
                blank = Blank.for_outputs(floors(normalization), out_channels=2, n_classes=2)
                predict_seconds(net, source, normalization, blank, 0.0)  # warm-up
                times = {"without": [], "with": []}
                for _ in range(repeats):
                    times["without"].append(predict_seconds(net, source, normalization, blank, 0.0))
                    times["with"].append(predict_seconds(net, source, normalization, blank, THRESHOLD))
                best = {k: min(v) for k, v in times.items()}
                print(json.dumps({"part": "cost", "condition": condition, "input": name, "without_s": round(best["without"], 2),
                                  "with_s": round(best["with"], 2), "with / without": round(best["with"] / best["without"], 3)}),
                      flush=True)


def cells_part(sdist: str | None) -> None:
    from segpipe.inference.noise import quiet

    sets = {"bbbc007": sorted((DATA / "bbbc007" / "images").glob("*.tif")),
            "c2c12-phase": sorted((DATA / "c2c12-phase" / "images").glob("*.tif")),
            "dsb2018-nuclei": [DATA / "dsb2018-nuclei-2d" / "image.tif"]}
    pairs = {name: [(tifffile.imread(path), tifffile.imread(_labels_of(path))) for path in paths] for name, paths in sets.items()}
    if sdist:
        from cellpose_styles import read_pairs

        pairs["cellpose-styles"] = [(image, labels) for style in read_pairs(Path(sdist), nuclei_first=True).values()
                                    for _, image, labels in style]
    for name, images in pairs.items():
        cells = touched = 0
        for image, labels in images:
            image = image[None] if image.ndim == 2 else image
            still = quiet(np.stack([c for c in image.astype(np.float32) if c.min() < c.max()]))
            ids = np.unique(labels[labels > 0])
            cells += ids.size
            touched += np.unique(labels[still & (labels > 0)]).size
        print(json.dumps({"part": "quiet", "dataset": name, "images": len(images), "cells": cells,
                          "cells with a quiet pixel": touched}), flush=True)


def _labels_of(path: Path) -> Path:
    return path.parent / "labels.tif" if path.name == "image.tif" else path.parent.parent / "labels" / path.name


def half_noise_part(work: Path, models: list[str]) -> None:
    from scipy import ndimage

    from segpipe.inference.noise import noise_sigma
    from segpipe.models.model import Model
    from segpipe.models.shipped import CELLS_2D, shipped_model
    from segpipe.pipeline.segment import segment
    from segpipe.pipeline.segment_files import SegmentFolder
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor
    from segpipe.scoring.instances import match_instances

    inbox, truths = work / "half", {}
    inbox.mkdir()
    rng = np.random.default_rng(0)
    for path in sorted((DATA / "bbbc007" / "images").glob("*.tif")):
        image, labels = tifffile.imread(path), tifffile.imread(_labels_of(path))
        middle = image.shape[1] // 2
        background = np.where(labels == 0, image, np.median(image[labels == 0])).astype(np.float32)
        noise = rng.normal(np.median(image[labels == 0]), noise_sigma(background), (image.shape[0], image.shape[1] - middle))
        image[:, middle:] = np.clip(np.round(noise), 0, 255).astype(image.dtype)
        tifffile.imwrite(inbox / path.name, image)
        keep = np.unique(labels[:, :middle])
        truths[path.stem] = (np.where(np.isin(labels, keep), labels, 0), middle)
    for model in ["cells-2d", *models]:
        for threshold in (0.0, THRESHOLD):
            predictor = Predictor.load(shipped_model(CELLS_2D) if model == "cells-2d" else Model.open(model),
                                       PredictParams(device="cpu", inference={"noise_only": threshold}))
            out = work / f"out-{len(list(work.iterdir()))}"
            started = time.perf_counter()
            segment([str(inbox)], predictor, SegmentFolder(out), progress=False)
            seconds = time.perf_counter() - started
            in_noise = matched = predicted = 0
            for name, (truth, middle) in truths.items():
                labels = tifffile.imread(out / "labels" / f"{name}_labels.tif").astype(np.int64)
                ids = np.unique(labels[labels > 0])
                centres = ndimage.center_of_mass(labels > 0, labels, ids) if ids.size else []
                in_noise += int(sum(x > middle + 15 for _, x in centres))
                predicted += ids.size
                matched += match_instances(truth, labels).tp
            print(json.dumps({"part": "half", "model": model, "noise_only": threshold, "objects": predicted,
                              "objects in the noise half": in_noise, "true cells matched": matched,
                              "true cells": int(sum(np.unique(t[t > 0]).size for t, _ in truths.values())),
                              "seconds": round(seconds, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="noise,disc,real,generalist,cost,quiet,half")
    parser.add_argument("--sdist", help="scellseg-0.1.8.tar.gz: the seven whole-cell styles in the quiet part")
    parser.add_argument("--model", action="append", default=[], help="a trained model folder for the half part (repeatable)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; threshold {THRESHOLD:g}")
    if "noise" in parts:
        noise_part(args.seeds)
    if "disc" in parts:
        disc_part()
    if "real" in parts:
        real_part()
    if "generalist" in parts:
        with tempfile.TemporaryDirectory() as work:
            generalist_part(Path(work))
    if "cost" in parts:
        cost_part(args.repeats)
    if "quiet" in parts:
        cells_part(args.sdist)
    if "half" in parts:
        with tempfile.TemporaryDirectory() as work:
            half_noise_part(Path(work), args.model)


if __name__ == "__main__":
    main()
