"""Training throughput: segpipe's training loop vs a bare MONAI/PyTorch loop, same patches and network.

The pipeline loop is :func:`segpipe.training.loop.train_epoch` as planned training runs it on 2D
instances (patch sampling with foreground oversampling, MONAI augmentation, the flow target made
after each spatial step, Dice + CE + distance + flow loss, poly learning rate, AdamW). The bare
loop feeds pre-cut tensors of the same size from memory to the same network and the same loss
(:class:`segpipe.training.losses.SegmentationLoss`): the floor any pipeline overhead is measured
against. On CUDA the GPU's busy share is sampled
with ``nvidia-smi`` during the pipeline loop.

Each loop runs in a fresh process, quiet and beside one competing CPU-bound process, under two
thread policies: torch's defaults (libgomp's long spin, torch's own thread count) and segpipe's (a short
spin, threads from the CPUs the process may use).

Run: ``python benchmarks/train.py [--iterations 20] [--repeats 2] [--device auto]``
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from monai.data import Dataset

from segpipe import OPENMP_SPINCOUNT
from segpipe.training.params import TrainParams
from segpipe.models import build_model
from segpipe.models.card import extra_channels
from segpipe.models.device import resolve_device
from segpipe.training.losses import SegmentationLoss
from segpipe.training.loop import TrainClock, train_epoch
from segpipe.inference.normalize import percentile_normalize
from segpipe.training.augment import augmentation, with_crop_centres
from segpipe.training.plan import DISTANCE_LOSS, FLOW_WEIGHT
from segpipe.training.targets import flow_from_heat, training_sample

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditions import COMPETING, QUIET, under  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "bbbc007"


#: What the 2D plan trains on instances: two class scores, then the distance map and the flow (two axes).
OUT_CHANNELS = 2 + extra_channels(("distance", "flow"), 2)
KEYS = ("image", "label", "dist", "heat")


def load_samples() -> list[dict]:
    samples = []
    for path in sorted((DATA / "images").glob("*.tif"))[:7]:
        image = percentile_normalize(tifffile.imread(path)[np.newaxis])
        labels = tifffile.imread(DATA / "labels" / path.name)
        samples.append(training_sample(image, labels, instances=True, flow=True))
    return samples


class GpuSampler(threading.Thread):
    """Polls ``nvidia-smi`` for GPU utilisation while a loop runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.values: list[int] = []
        self.running = True

    def run(self):
        while self.running:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True,
            )
            if out.returncode == 0:
                self.values.append(int(out.stdout.split()[0]))
            time.sleep(0.2)


def pipeline_loop(model, samples, config, device, epochs: int) -> float:
    transform = augmentation(ndim=2, patch_size=config.patch_size, keys=list(KEYS), foreground_ratio=config.foreground_ratio)
    dataset = Dataset(data=[with_crop_centres(s, config.patch_size) for s in samples], transform=transform)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    loss = SegmentationLoss.for_config(config, n_classes=2)
    clock = TrainClock(0.0, None)
    train_epoch(model, dataset, transform, optimizer, loss, config, 0, _started(clock), device)  # warm-up
    clock.stop()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_epoch(model, dataset, transform, optimizer, loss, config, epoch, _started(clock), device)
        clock.stop()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _started(clock: TrainClock) -> TrainClock:
    clock.start()
    return clock


def bare_loop(model, batches, device, config) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    loss_fn = SegmentationLoss.for_config(config, n_classes=2)
    model.train()

    def step(batch):
        image = batch["image"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(image)
        loss = loss_fn(logits.float(), batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cut_batches(samples, n: int, batch: int, patch: int, seed: int = 0) -> list[dict]:
    """``n`` batches of random ``patch`` crops, the flow made once per image beforehand."""
    rng = np.random.default_rng(seed)
    whole = [{**s, "flow": flow_from_heat(s["heat"][0], s["label"][0] > 0)} for s in samples]
    out = []
    for _ in range(n):
        parts = {"image": [], "label": [], "dist": [], "flow": []}
        for _ in range(batch):
            s = whole[rng.integers(len(whole))]
            y, x = (rng.integers(0, d - patch + 1) for d in s["image"].shape[1:])
            for key in parts:
                parts[key].append(torch.as_tensor(s[key][:, y : y + patch, x : x + patch]))
        out.append({k: torch.stack(v) for k, v in parts.items()})
    return out


POLICIES = {
    # libgomp's default spin (300,000 when OMP_WAIT_POLICY is unset) and torch's own thread count
    "torch-default": {"GOMP_SPINCOUNT": "300000"},
    # what segpipe sets (segpipe/__init__.py) and the threads it picks (segpipe.models.device)
    "segpipe": {"GOMP_SPINCOUNT": OPENMP_SPINCOUNT},
}


def child(args) -> None:
    """One loop, measured in this process; prints samples/s as JSON."""
    import json

    import segpipe  # noqa: F401  (its OpenMP setting, before torch's runtime starts)
    from segpipe.models.device import use_cpu_threads

    device = resolve_device(args.device)
    if args.policy == "segpipe" and device.type == "cpu":
        use_cpu_threads()
    samples = load_samples()
    config = TrainParams(
        patch_size=(args.patch, args.patch), batch_size=args.batch_size, iterations_per_epoch=args.iterations,
        epochs=1000, features=(16, 32, 64, 128, 256, 16), device=args.device, distance_loss=DISTANCE_LOSS[2],
        flow_weight=FLOW_WEIGHT[2],
    )
    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=2, in_channels=1, out_channels=OUT_CHANNELS).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    sampler = None
    if args.child == "bare":
        seconds = bare_loop(model, cut_batches(samples, args.iterations, args.batch_size, args.patch), device, config)
    else:
        sampler = GpuSampler() if device.type == "cuda" else None
        if sampler:
            sampler.start()
        seconds = pipeline_loop(model, samples, config, device, epochs=1)
        if sampler:
            sampler.running = False
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    print(json.dumps({
        "samples_s": args.iterations * args.batch_size / seconds, "threads": torch.get_num_threads(), "device": name,
        "gpu_busy": float(np.mean(sampler.values)) if sampler and sampler.values else None,
    }))


def measure(loop: str, policy: str, args) -> dict:
    """Run ``loop`` under ``policy`` in a fresh process (the OpenMP setting is read at start)."""
    import json
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(POLICIES[policy])
    command = [sys.executable, __file__, "--child", loop, "--policy", policy, "--iterations", str(args.iterations),
               "--batch-size", str(args.batch_size), "--patch", str(args.patch), "--device", args.device]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{loop} loop ({policy}) failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="iterations per measured loop")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each variant; the median is kept")
    parser.add_argument("--no-competitor", action="store_true", help="measure the quiet machine only")
    parser.add_argument("--child", choices=("bare", "segpipe"), help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=tuple(POLICIES), default="segpipe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    conditions = [QUIET] + ([] if args.no_competitor else [COMPETING])
    variants = [(loop, policy) for policy in POLICIES for loop in ("bare", "segpipe")]
    results: dict[tuple, list[float]] = {}
    info = {}
    for condition in conditions:
        with under(condition):
            for _ in range(args.repeats):
                for loop, policy in variants:
                    out = measure(loop, policy, args)
                    info = out
                    results.setdefault((condition, loop, policy), []).append(out["samples_s"])
    print(f"device: {info['device']}, {os.cpu_count()} CPUs; U-Net (16..256), batch {args.batch_size} x "
          f"{args.patch}x{args.patch}, {args.iterations} iterations a run, median of {args.repeats} alternating runs")
    print("| condition | loop | threads policy | samples/s | vs bare (same policy) | vs own quiet |")
    print("| --- | --- | --- | --- | --- | --- |")
    median = {key: float(np.median(values)) for key, values in results.items()}
    for condition, loop, policy in results:
        value = median[(condition, loop, policy)]
        bare = median[(condition, "bare", policy)]
        quiet = median[("quiet", loop, policy)]
        print(f"| {condition} | {loop} | {policy} | {value:.2f} | {value / bare:.2f}x | {value / quiet:.2f}x |")
    if info.get("gpu_busy") is not None:
        print(f"GPU busy during the segpipe loop: {info['gpu_busy']:.0f}% (goal >= 85%)")


if __name__ == "__main__":
    main()
