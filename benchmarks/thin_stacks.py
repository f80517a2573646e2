"""Thin stacks: a U-Net pooled per axis on the slices a stack has, against the plain U-Net on padding.

A stack of 5 slices (the Cell Tracking Challenge CHO nuclei, planned at 1 x 0.448 x 0.448 um)
used to train on 16 x 64 x 64 patches, 11 of the 16 slices zero padding, because MONAI's
``BasicUNet`` halves every axis four times. The plan now gives it 4 x 64 x 64 patches and pools z
twice (:func:`segpipe.training.plan.plan_pools`). Both networks have the 3D widths the plan
gives (8..128) and the instance outputs (2 classes, distance, boundary).

Measured per variant in a fresh process: training iterations (forward, backward, AdamW step;
batch 2, Dice + cross-entropy) and inference windows (no gradient, batch 4) per second, and the
process's peak memory; quiet and beside one competing CPU-bound process. The baseline is the
plain U-Net on the padded patch.

Run: ``python benchmarks/thin_stacks.py [--iterations 30] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conditions import CONDITIONS, under  # noqa: E402

VARIANTS = {
    "plain U-Net, 16 x 64 x 64 (11 slices padding)": {"patch": (16, 64, 64), "pools": None},
    "pooled per axis, 4 x 64 x 64": {"patch": (4, 64, 64), "pools": ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))},
}
BASELINE = next(iter(VARIANTS))
FEATURES = (8, 16, 32, 64, 128, 8)


def child(name: str, iterations: int) -> None:
    """Measure one variant in this process; print its figures as JSON."""
    import segpipe  # noqa: F401  (its OpenMP setting, before torch's runtime starts)
    import torch
    from monai.losses import DiceCELoss

    from segpipe.models import build_model
    from segpipe.models.device import use_cpu_threads

    use_cpu_threads()
    variant = VARIANTS[name]
    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=3, in_channels=1, out_channels=4, features=FEATURES, pools=variant["pools"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(2, 1, *variant["patch"])
    y = (torch.rand(2, 1, *variant["patch"]) > 0.5).long()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x)[:, :2], y).backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    train_it_s = iterations / (time.perf_counter() - start)
    model.eval()
    windows = torch.randn(4, 1, *variant["patch"])
    with torch.no_grad():
        model(windows)
        start = time.perf_counter()
        for _ in range(iterations):
            model(windows)
    infer_windows_s = 4 * iterations / (time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"train_it_s": train_it_s, "windows_s": infer_windows_s, "peak_mib": peak_mib}))


def measure(name: str, iterations: int) -> dict:
    command = [sys.executable, __file__, "--child", name, "--iterations", str(iterations)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from segpipe.report.runs import cpu_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30, help="measured iterations per run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each variant; the median is kept")
    parser.add_argument("--child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.iterations)
        return
    results: dict[tuple[str, str], list[dict]] = {}
    for condition in CONDITIONS:
        with under(condition):
            for _ in range(args.repeats):
                for name in VARIANTS:
                    results.setdefault((condition, name), []).append(measure(name, args.iterations))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; widths {FEATURES}, "
          f"{args.iterations} iterations a run, median of {args.repeats} alternating runs; baseline: {BASELINE}")
    print("| condition | network and patch | training it/s | vs baseline | inference windows/s | vs baseline | peak memory |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for condition, name in results:
        rows, base = results[(condition, name)], results[(condition, BASELINE)]
        value = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
        ref = {k: float(np.median([r[k] for r in base])) for k in base[0]}
        print(
            f"| {condition} | {name} | {value['train_it_s']:.2f} | {value['train_it_s'] / ref['train_it_s']:.2f}x "
            f"| {value['windows_s']:.1f} | {value['windows_s'] / ref['windows_s']:.2f}x | {value['peak_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
