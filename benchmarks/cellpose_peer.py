"""Cellpose, the peer tool, trained from scratch on a segpipe run's split and scored by segpipe.

For a run folder that ``segpipe run`` wrote (a 2D or 3D instance dataset), Cellpose 3 (its CPnet,
"cyto"-style two-channel input, no pretrained weights) is trained on the run's train images,
its ``flow_threshold`` and ``cellprob_threshold`` are chosen on the validation images (the
grid below, by SEG pooled over objects as segpipe pools it), and its test predictions are
scored by segpipe's own scorer (:func:`segpipe.scoring.external.score_prediction_folder`, what
``segpipe score --predictions`` runs). One JSON line gives Cellpose's test SEG and F1 at IoU
0.5, its epochs and training seconds, beside segpipe's from the run's ``metrics.json`` and the
classical baseline's (scored again with the same code on the same images).

Budget: by default Cellpose gets segpipe's training wall time (the model card's training
seconds, validation included; ``--seconds`` overrides). One epoch (each training image once, in
cellpose's batches of 8 crops of 224 px) is timed first, apart from each training call's fixed
cost of preparing the data (:func:`epoch_time`), the weights restored; then
``(seconds - fixed cost) // epoch`` epochs run with cellpose's own schedule (``train.train_seg``: AdamW, learning
rate 0.005 reached after a 10-epoch warm-up from 0, halved ten times at the end of runs over 100
epochs); the seconds they took are reported. Give both tools the same CPU threads
(``--threads``, default torch's) and a quiet machine: the timing is wall time.

Size: no size model and no rescaling. ``diam_mean`` is the median equivalent diameter of the
training objects, training runs with ``rescale=False`` (native size, cellpose's 0.5-1.5 zoom
augmentation) and prediction passes ``diameter=diam_mean``, so no image is resized, as segpipe
resizes none at unit spacing. Channels: 1 channel -> ``[0, 0]``; 2 or more -> ``[1, 2]``
(channel 0 cytoplasm, channel 1 nuclei; further channels unused).

3D: Cellpose's network is 2D; as its documentation advises, it trains on the xy planes of the
training volumes that hold objects, and predicts a volume in either of its two 3D modes, chosen
on the validation volumes with the thresholds: ``do_3D`` (the network run on the xy, zy and zx
planes of the volume resized to isotropic voxels, ``anisotropy`` = z step / pixel size, the
flows combined and followed in 3D; no flow threshold there) or per-plane masks stitched across z
by overlap (``stitch_threshold``); ``--mode`` tries one (``do_3D`` runs the network on every
plane of three orientations, 25 minutes per CHO volume on two cores). Masks come from Cellpose's own ``CellposeModel._compute_masks``,
what its ``eval`` calls, so the network runs once per volume and mode.

Three steps, so that Cellpose's environment never imports segpipe, and never sees test labels::

    .venv/bin/python benchmarks/cellpose_peer.py export RUN_FOLDER OUT
    /tmp/cpvenv/bin/python benchmarks/cellpose_peer.py train OUT [--seconds S] [--threads N]
    .venv/bin/python benchmarks/cellpose_peer.py score RUN_FOLDER OUT

``OUT`` gets ``export.json`` and ``train/``, ``validation/``, ``test/`` (one ``NAME.npz`` per
image: ``image`` (C, Y, X), ``labels`` except for test), then ``cellpose.json`` (settings,
timing, validation grid), ``models/`` and ``predictions/NAME.tif``, then ``metrics.json``
(segpipe's full scoring of the predictions). Cellpose's environment (the project's numpy pin
admits only cellpose 3.0.9, so only torch is pinned)::

    python3 -m venv /tmp/cpvenv && grep '^torch==' constraints.txt > /tmp/torchpin.txt
    /tmp/cpvenv/bin/pip install -c /tmp/torchpin.txt 'cellpose>=3,<4'
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")
EXPORTED, TRAINED = "export.json", "cellpose.json"
FLOW_THRESHOLDS = (0.2, 0.4, 0.6, 0.8)
CELLPROB_THRESHOLDS = (-1.0, 0.0, 1.0)
STITCH_THRESHOLDS = (0.25, 0.5, 0.75)
DEFAULTS = {"flow_threshold": 0.4, "cellprob_threshold": 0.0}  # cellpose's own, used when there is no validation split


# export: the project venv


def export(run_folder: Path, out: Path) -> dict:
    """Write the run's images (and train/validation labels) as ``.npz`` under ``out``."""
    from segpipe.data.store import ImageStore
    from segpipe.pipeline.run_folder import RunFolder

    run = RunFolder(run_folder)
    store = ImageStore.open(run.store)
    store.require_labels("train Cellpose on")
    if not store.instances:
        raise SystemExit(f"{run.root}: only instance datasets are benchmarked against Cellpose")
    names, channels, spacings = {}, None, set()
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        names[split] = []
        for item in store.images(split, labelled=True):
            arrays = {"image": np.asarray(item.image)}
            channels = arrays["image"].shape[0]
            spacings.add(tuple(float(s) for s in item.spacing))
            if split != "test":
                arrays["labels"] = np.asarray(item.labels)
                if item.ignore is not None:
                    print(f"{item.name}: sparse ground truth; Cellpose takes its unannotated pixels as background", file=sys.stderr)
            np.savez(out / split / f"{item.name}.npz", **arrays)
            names[split].append(item.name)
    if store.ndim == 3 and len(spacings) > 1:
        raise SystemExit(f"{run.store}: volumes of {len(spacings)} voxel sizes; one anisotropy per run is benchmarked")
    record = {"dataset": run.dataset, "run": str(run.root.resolve()), "fingerprint": store.record["fingerprint"], "channels": channels,
              "ndim": store.ndim, "spacing": list(min(spacings)), "segpipe_seconds": segpipe_seconds(run.model_dir), "images": names}
    (out / EXPORTED).write_text(json.dumps(record, indent=2) + "\n")
    return record


def segpipe_seconds(model_dir: Path) -> float | None:
    """segpipe's training seconds: the model card's, else the last ``history.csv`` row's (a run under way)."""
    card = model_dir / "model_card.json"
    if card.is_file() and (seconds := json.loads(card.read_text())["training"].get("seconds")) is not None:
        return float(seconds)
    history = model_dir / "history.csv"
    rows = list(csv.DictReader(history.open())) if history.is_file() else []
    return float(rows[-1]["seconds"]) if rows else None


# train: Cellpose's venv


def train(out: Path, *, seconds: float | None, threads: int | None, only: str | None = None) -> dict:
    """Train Cellpose for ``seconds`` (default segpipe's), tune on validation, write test predictions."""
    import torch
    from cellpose import dynamics, models, version
    from cellpose import train as cellpose_train

    if threads:
        torch.set_num_threads(threads)
    record = json.loads((out / EXPORTED).read_text())
    seconds = seconds or record["segpipe_seconds"]
    if not seconds:
        raise SystemExit(f"{out}: the run has no training time yet; give --seconds")
    channels = [0, 0] if record["channels"] == 1 else [1, 2]
    images, labels = load(out, "train", record)
    if record.get("ndim", 2) == 3:
        images, labels = xy_planes(images, labels)
    diameter = median_diameter(labels)
    model = models.CellposeModel(gpu=torch.cuda.is_available(), pretrained_model=False, model_type=None,
                                 diam_mean=diameter, nchan=2)
    model.net_ortho = None  # what a model with weights gets: its own net on zy and zx planes (unset without weights)
    flows = dynamics.labels_to_flows(labels, device=model.device)  # once, not in every train_seg call
    options = {"train_data": images, "train_labels": flows, "channels": channels, "channel_axis": 0,
               "rescale": False, "save_path": out, "model_name": "cellpose_peer"}
    initial = copy.deepcopy(model.net.state_dict())
    epoch, setup = epoch_time(lambda n: cellpose_train.train_seg(model.net, n_epochs=n, **options))
    model.net.load_state_dict(initial)  # the timing epochs (learning rate 0 in warm-up) still moved batch-norm statistics
    n_epochs = max(1, int((seconds - setup) // epoch))
    train_seconds = timed(lambda: cellpose_train.train_seg(model.net, n_epochs=n_epochs, **options))

    predict = {"channels": channels, "diameter": diameter}
    tried = [m for m in modes(record) if only in (None, m["mode"])]
    settings, grid = tune(model, *load(out, "validation", record), modes=tried, **predict)
    write_predictions(model, out, record, settings=settings, **predict)
    trained = {
        "cellpose": version, "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(model.device),
        "channels": channels, "diameter": diameter, "budget_seconds": seconds, "epoch_seconds": epoch, "setup_seconds": setup,
        "epochs": n_epochs, "train_seconds": train_seconds, **settings,
        "validation_grid": grid, "model": str(out / "models" / "cellpose_peer"),
    }
    (out / TRAINED).write_text(json.dumps(trained, indent=2) + "\n")
    return trained


def epoch_time(train_for) -> tuple[float, float]:
    """Seconds per epoch and per call of ``train_for(n_epochs)``: each call first prepares the data
    (normalization), so after one call to warm up, a call of one epoch against one of three tells
    the two apart; where the difference is not a plausible epoch (timing noise), the one-epoch
    call counts whole."""
    train_for(1)
    one, three = timed(lambda: train_for(1)), timed(lambda: train_for(3))
    epoch = (three - one) / 2
    return (epoch, one - epoch) if 0 < epoch <= one else (one, 0.0)


def load(out: Path, split: str, record: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images and labels of a split (labels empty for test)."""
    files = [np.load(out / split / f"{name}.npz") for name in record["images"][split]]
    return [f["image"] for f in files], [f["labels"] for f in files if "labels" in f]


def xy_planes(volumes: list[np.ndarray], labels: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The xy planes of (C, Z, Y, X) volumes that hold objects, and their labels: Cellpose's 3D training data."""
    planes = [(v[:, z], lab[z]) for v, lab in zip(volumes, labels) for z in range(lab.shape[0]) if lab[z].any()]
    return [p[0] for p in planes], [p[1] for p in planes]


def modes(record: dict) -> list[dict]:
    """Cellpose's ways to segment the run's images: 2D, or for volumes its 3D mode and stitched planes."""
    if record.get("ndim", 2) == 2:
        return [{"mode": "2D"}]
    z, y = record["spacing"][0], record["spacing"][1]
    return [{"mode": "3D", "anisotropy": z / y}] + [{"mode": "stitch", "stitch_threshold": t} for t in STITCH_THRESHOLDS]


def median_diameter(labels: list[np.ndarray]) -> float:
    """Median equivalent-circle diameter (Cellpose's measure) of all objects, in pixels."""
    areas = np.concatenate([np.unique(lab[lab > 0], return_counts=True)[1] for lab in labels])
    return float(np.median(2 * np.sqrt(areas / np.pi)))


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def outputs(model, images: list[np.ndarray], *, mode: dict, channels: list[int], diameter: float) -> list[tuple]:
    """The network's flows and cell probability per image, at native size, in ``mode``."""
    volume = {"3D": {"z_axis": 1, "do_3D": True, "anisotropy": mode.get("anisotropy")},
              "stitch": {"z_axis": 1, "stitch_threshold": mode.get("stitch_threshold")}}.get(mode["mode"], {})
    results = []
    for image in images:
        _, flows, _ = model.eval(image, channels=channels, channel_axis=0, diameter=diameter, compute_masks=False, **volume)
        results.append((flows[1], flows[2]))
    return results


def masks(model, results: list[tuple], *, mode: dict, flow_threshold: float, cellprob_threshold: float) -> list[np.ndarray]:
    """Cellpose's masks from flows, as ``model.eval`` computes them at native size."""
    from cellpose import dynamics

    if mode["mode"] == "2D":
        return [
            dynamics.resize_and_compute_masks(dp, prob, niter=200, flow_threshold=flow_threshold,
                                              cellprob_threshold=cellprob_threshold, device=model.device)
            for dp, prob in results
        ]
    return [
        model._compute_masks(prob.shape, dp, prob, flow_threshold=flow_threshold, cellprob_threshold=cellprob_threshold,
                             niter=200, do_3D=mode["mode"] == "3D", stitch_threshold=mode.get("stitch_threshold", 0.0))
        for dp, prob in results
    ]


def thresholds(mode: dict) -> list[dict]:
    """The flow and cell-probability thresholds tried in ``mode``: Cellpose's 3D mode has no flow
    check, and stitched planes keep its default one (each setting costs half a minute per CHO volume)."""
    flows = FLOW_THRESHOLDS if mode["mode"] == "2D" else (DEFAULTS["flow_threshold"],)
    return [{"flow_threshold": f, "cellprob_threshold": c} for f in flows for c in CELLPROB_THRESHOLDS]


def tune(model, images, labels, *, modes: list[dict], **predict) -> tuple[dict, list[dict]]:
    """The mode and thresholds of the best validation SEG, and the grid's scores."""
    if not images:
        return {"mode": modes[0], **DEFAULTS}, []
    grid = []
    for mode in modes:
        results = outputs(model, images, mode=mode, **predict)
        for t in thresholds(mode):
            grid.append({"mode": mode, **t, "seg": pooled_seg(labels, masks(model, results, mode=mode, **t))})
            print(json.dumps(grid[-1]), file=sys.stderr)
    best = max(grid, key=lambda row: row["seg"])
    return {k: v for k, v in best.items() if k != "seg"}, grid


def pooled_seg(truths: list[np.ndarray], predictions: list[np.ndarray]) -> float:
    """CTC SEG pooled over objects: each ground-truth object's Jaccard index with the predicted
    object covering more than half of it (0 without one), summed, over the ground-truth objects."""
    jaccard, n_gt = 0.0, 0
    for gt, pred in zip(truths, predictions):
        gt, pred = gt.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
        keys, overlap = np.unique(gt * (pred.max() + 1) + pred, return_counts=True)
        g, p = np.divmod(keys, pred.max() + 1)
        gt_area, pred_area = np.bincount(gt), np.bincount(pred)
        hit = (g > 0) & (p > 0) & (overlap > 0.5 * gt_area[g])
        jaccard += float(np.sum(overlap[hit] / (gt_area[g[hit]] + pred_area[p[hit]] - overlap[hit])))
        n_gt += int(np.count_nonzero(gt_area[1:]))
    return jaccard / n_gt if n_gt else float("nan")


def write_predictions(model, out: Path, record: dict, *, settings: dict, **predict) -> None:
    """The test images' masks as ``predictions/NAME.tif`` (the folder replaced)."""
    import tifffile

    folder = out / "predictions"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    images, _ = load(out, "test", record)
    mode, chosen = settings["mode"], {k: v for k, v in settings.items() if k != "mode"}
    for name, mask in zip(record["images"]["test"], masks(model, outputs(model, images, mode=mode, **predict), mode=mode, **chosen)):
        tifffile.imwrite(folder / f"{name}.tif", mask)


# score: the project venv


def score(run_folder: Path, out: Path) -> dict:
    """Score Cellpose's test predictions with segpipe's scorer; the comparison row."""
    from segpipe.data.store import ImageStore
    from segpipe.pipeline.run_folder import RunFolder
    from segpipe.scoring.external import score_prediction_folder, write_metrics

    run = RunFolder(run_folder)
    if ImageStore.open(run.store).record["fingerprint"] != json.loads((out / EXPORTED).read_text())["fingerprint"]:
        raise SystemExit(f"{run.store}: ingested again since the export; export and train again")
    trained = json.loads((out / TRAINED).read_text())
    metrics = score_prediction_folder(run.store, out / "predictions", dataset=run.dataset, split="test")
    write_metrics(out / "metrics.json", metrics)
    keys = ("cellpose", "epochs", "epoch_seconds", "train_seconds", "budget_seconds", "diameter",
            "mode", "flow_threshold", "cellprob_threshold", "threads")
    row = {
        "dataset": run.dataset, "test_images": metrics["n_images"], "objects": metrics["n_objects"],
        "cellpose": {**headline(metrics), **{k: trained[k] for k in keys}},
        "segpipe": None,
        "baseline": headline(metrics["baseline"]),
    }
    if run.metrics.is_file():
        row["segpipe"] = {**headline(json.loads(run.metrics.read_text())), "train_seconds": segpipe_seconds(run.model_dir)}
    else:
        print(f"{run.metrics}: not written yet (run under way); Cellpose's scores only", file=sys.stderr)
    return row


def headline(metrics: dict) -> dict:
    """SEG and F1 at IoU 0.5 of a ``metrics.json`` (or its ``baseline`` section)."""
    f1 = next((r["f1"] for r in metrics.get("matching", []) if r["thresh"] == 0.5), None)
    return {"seg": metrics.get("seg"), "f1_50": f1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("export", help="write the run's images (project venv)")
    step.add_argument("run", type=Path, help="a segpipe run folder (OUTPUT/DATASET)")
    step.add_argument("out", type=Path)
    step = steps.add_parser("train", help="train, tune and predict with Cellpose (Cellpose's venv)")
    step.add_argument("out", type=Path)
    step.add_argument("--seconds", type=float, default=None, help="training wall time (default: segpipe's)")
    step.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    step.add_argument("--mode", choices=("3D", "stitch"), default=None,
                      help="volumes: try only this Cellpose mode (default: both, chosen on validation)")
    step = steps.add_parser("score", help="score the predictions with segpipe (project venv)")
    step.add_argument("run", type=Path)
    step.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.step == "export":
        record = export(args.run, args.out)
        print(json.dumps({split: len(names) for split, names in record["images"].items()}))
    elif args.step == "train":
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("cellpose.dynamics").setLevel(logging.WARNING)  # one line per empty mask otherwise
        trained = train(args.out, seconds=args.seconds, threads=args.threads, only=args.mode)
        print(json.dumps({k: v for k, v in trained.items() if k != "validation_grid"}))
    else:
        print(json.dumps(score(args.run, args.out)))


if __name__ == "__main__":
    main()
