"""Scoring speed and memory: segpipe vs py-ctcmetrics, side by side, in one run.

Two cases, as in issue 7: a 2048x2048 frame with about 2,000 objects and a 512x512x128 volume
with about 5,000. Ground truth is made of touching blob-shaped objects; the prediction is the
ground truth shifted by a few pixels with objects dropped, merged, split and false positives
added, relabelled 1..n (the fast path of the ``confusion_matrix`` inside py-ctcmetrics).
Both are written as CTC files (``man_seg000.tif``, ``mask000.tif``, uint16).

Variants, each run in its own fresh Python process (peak RSS = that process's ``VmHWM``,
imports included; time = from reading the files to the scores, imports excluded; the data is
made in another child process, so the driver stays small):

* ``ctcmetrics``: py-ctcmetrics' own file matcher (``utils.representations.match``, which reads
  both files) once, then its SEG and its DET (``count_acyclic_graph_correction_operations`` +
  ``metrics.det``) from that single match. ``evaluate_sequence`` would match the frame twice
  (SEG and TRA truth), so this is the cheaper way to get both from it.
* ``segpipe-seg-det``: read both files, :func:`segpipe.scoring.seg_score` and
  :func:`segpipe.scoring.det_score`.
* ``segpipe-all``: read both files, :func:`segpipe.scoring.score_instances`: SEG, DET, the
  matching at IoU 0.1..0.9, merges and splits, per-object IoU (more than py-ctcmetrics computes).

Usage::

    python benchmarks/scoring.py              # both cases, all variants, prints the table
    python benchmarks/scoring.py --cases 2d   # one case
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {
    "2d": {"shape": (2048, 2048), "objects": 2000, "radius": 24},
    "3d": {"shape": (128, 512, 512), "objects": 5000, "radius": 11},
}
VARIANTS = ("ctcmetrics", "segpipe-seg-det", "segpipe-all")
REPEATS = {"ctcmetrics": 1, "segpipe-seg-det": 3, "segpipe-all": 3}


# --- data -------------------------------------------------------------------------------------


def make_case(shape: tuple[int, ...], n_objects: int, radius: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of touching round objects and a flawed prediction of it (both uint16, ids 1..n)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels, relabel_sequential

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.uint16)
    coords = tuple(rng.integers(0, s, n_objects) for s in shape)
    seeds[coords] = np.arange(1, n_objects + 1, dtype=np.uint16)
    distance, nearest = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    gt = seeds[tuple(nearest)]
    gt[distance > radius] = 0
    del distance, nearest
    gt = relabel_sequential(gt)[0].astype(np.uint16)
    n = int(gt.max())

    lut = np.arange(n + 1, dtype=np.int64)
    ids = rng.permutation(np.arange(1, n + 1))
    n_drop, n_merge, n_split = n // 20, n // 30, n // 30
    lut[ids[:n_drop]] = 0  # missed objects
    grown = expand_labels(gt, 2)  # neighbours: touching after growing by 2 px
    a, b = gt[..., :-1].ravel(), grown[..., 1:].ravel()
    pairs = np.unique(np.stack([a, b], 1)[(a > 0) & (b > 0) & (a != b)], axis=0)
    used: set[int] = set(ids[:n_drop].tolist())
    merged = 0
    for x, y in pairs[rng.permutation(len(pairs))].tolist():
        if merged == n_merge:
            break
        if x not in used and y not in used:
            lut[y] = x
            used.update((x, y))
            merged += 1
    pred = lut[gt]
    split_ids = np.array([i for i in ids[n_drop:].tolist() if i not in used][:n_split])
    coord = np.indices(shape, dtype=np.int32)[-1]
    centre = np.bincount(gt.ravel(), coord.ravel(), minlength=n + 1) / np.maximum(np.bincount(gt.ravel(), minlength=n + 1), 1)
    is_split = np.zeros(n + 1, bool)
    is_split[split_ids] = True
    upper = is_split[gt] & (coord > centre[gt]) & (pred > 0)
    pred[upper] = pred[upper] + n + 1
    del coord, upper
    pred = np.roll(pred, (1,) * (len(shape) - 1) + (2,), axis=tuple(range(len(shape))))  # a small shift
    for _ in range(n // 40):  # false positives
        corner = [int(rng.integers(0, s - 6)) for s in shape]
        pred[tuple(slice(c, c + 6) for c in corner)] = 3 * n + 7
    pred = relabel_sequential(pred)[0]
    if pred.max() >= 2**16 - int(gt.max()) - 1:
        raise RuntimeError("prediction ids would overflow py-ctcmetrics' uint16 offset")
    return gt, pred.astype(np.uint16)


def write_case(folder: Path, case: str) -> None:
    import tifffile

    params = CASES[case]
    gt, pred = make_case(params["shape"], params["objects"], params["radius"])
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "man_seg000.tif", gt)
    tifffile.imwrite(folder / "mask000.tif", pred)
    info = {"shape": list(gt.shape), "gt_objects": int(len(np.unique(gt)) - 1), "pred_objects": int(len(np.unique(pred)) - 1)}
    (folder / "info.json").write_text(json.dumps(info))


# --- variants (run in a child process) -----------------------------------------------------


def run_variant(variant: str, folder: Path) -> dict:
    ref, comp = folder / "man_seg000.tif", folder / "mask000.tif"
    if variant == "ctcmetrics":
        from ctc_metrics.metrics import det, seg
        from ctc_metrics.utils.representations import count_acyclic_graph_correction_operations, match

        start = time.perf_counter()
        labels_ref, labels_comp, mapped_ref, mapped_comp, ious = match(str(ref), str(comp))
        seg_value = seg([labels_ref], [ious])
        ops = count_acyclic_graph_correction_operations(None, None, [labels_ref], [labels_comp], [mapped_ref], [mapped_comp])
        det_value = det(**ops)
        seconds = time.perf_counter() - start
    else:
        import tifffile

        from segpipe.scoring import det_score, score_instances, seg_score

        start = time.perf_counter()
        gt, pred = tifffile.imread(ref), tifffile.imread(comp)
        if variant == "segpipe-seg-det":
            seg_value, det_value = seg_score(gt, pred).seg, det_score(gt, pred).det
        else:
            scores = score_instances(gt, pred)
            seg_value, det_value = scores.seg.seg, scores.det.det
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "seg": float(seg_value), "det": float(det_value), "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's peak into a child across fork and exec, so
    a child of a large parent would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def child(variant: str, folder: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--folder", str(folder)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- driver -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--make", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.folder)))
        return
    if args.make:
        write_case(args.folder, args.make)
        return

    with tempfile.TemporaryDirectory(prefix="segpipe-bench-") as tmp:
        for case in args.cases:
            folder = Path(tmp) / case
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--make", case, "--folder", str(folder)], check=True)
            info = json.loads((folder / "info.json").read_text())
            print(f"\n## {case}: shape {info['shape']}, {info['gt_objects']} GT objects, "
                  f"{info['pred_objects']} predicted (data made in {time.perf_counter() - t0:.0f} s)")
            results = {}
            for variant in VARIANTS:
                runs = [child(variant, folder) for _ in range(REPEATS[variant])]
                best = min(runs, key=lambda r: r["seconds"])
                best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
                best["repeats"] = len(runs)
                results[variant] = best
            base = results["ctcmetrics"]
            print("| variant | time (s) | speed-up | peak RSS (MiB) | RSS ratio | SEG | DET |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for variant, r in results.items():
                print(
                    f"| {variant} (best of {r['repeats']}) | {r['seconds']:.3f} | {base['seconds'] / r['seconds']:.1f}x "
                    f"| {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / base['peak_rss_mib']:.2f} "
                    f"| {r['seg']:.12f} | {r['det']:.12f} |"
                )
            for variant, r in results.items():
                same = abs(r["seg"] - base["seg"]) <= 1e-12 and abs(r["det"] - base["det"]) <= 1e-12
                print(f"{variant}: SEG/DET {'identical to' if same else 'DIFFER FROM'} py-ctcmetrics "
                      f"(|dSEG| {abs(r['seg'] - base['seg']):.1e}, |dDET| {abs(r['det'] - base['det']):.1e})")


if __name__ == "__main__":
    main()
