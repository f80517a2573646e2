"""Training throughput: segpipe's training loop vs a bare MONAI/PyTorch loop, same patches and network.

The pipeline loop is :func:`segpipe.training.loop.train_epoch` (patch sampling with foreground
oversampling, MONAI augmentation, Dice + CE + distance loss, poly learning rate, AdamW). The
bare loop feeds pre-cut tensors of the same size from memory to the same network and loss:
the floor any pipeline overhead is measured against. On CUDA the GPU's busy share is sampled
with ``nvidia-smi`` during the pipeline loop.

Run: ``python benchmarks/train.py [--iterations 20] [--device auto]``
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from monai.data import Dataset
from monai.losses import DiceCELoss

from segpipe.training.params import TrainParams
from segpipe.models import build_model
from segpipe.models.device import resolve_device
from segpipe.training.loop import TrainClock, train_epoch
from segpipe.inference.normalize import percentile_normalize
from segpipe.training.augment import augmentation
from segpipe.training.targets import training_sample

DATA = Path(__file__).resolve().parents[1] / "data" / "bbbc007"


def load_samples() -> list[dict]:
    samples = []
    for path in sorted((DATA / "images").glob("*.tif"))[:7]:
        image = percentile_normalize(tifffile.imread(path)[np.newaxis])
        labels = tifffile.imread(DATA / "labels" / path.name)
        samples.append(training_sample(image, labels, instances=True))
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
    transform = augmentation(ndim=2, patch_size=config.patch_size, keys=["image", "label", "dist"], foreground_ratio=0.5)
    dataset = Dataset(data=samples, transform=transform)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    clock = TrainClock(0.0, None)
    train_epoch(model, dataset, transform, optimizer, loss, config, 0, _started(clock), 2, device)  # warm-up
    clock.stop()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_epoch(model, dataset, transform, optimizer, loss, config, epoch, _started(clock), 2, device)
        clock.stop()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _started(clock: TrainClock) -> TrainClock:
    clock.start()
    return clock


def bare_loop(model, batches, device, lr: float) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    model.train()

    def step(image, label, dist):
        image, label, dist = image.to(device), label.to(device), dist.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(image)
        logits = logits.float()
        loss = dice_ce(logits[:, :2], label) + torch.nn.functional.mse_loss(torch.sigmoid(logits[:, 2:]), dist)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(*batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cut_batches(samples, n: int, batch: int, patch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts = {"image": [], "label": [], "dist": []}
        for _ in range(batch):
            s = samples[rng.integers(len(samples))]
            y, x = (rng.integers(0, d - patch + 1) for d in s["image"].shape[1:])
            for key in parts:
                parts[key].append(torch.as_tensor(s[key][:, y : y + patch, x : x + patch]))
        out.append(tuple(torch.stack(parts[k]) for k in ("image", "label", "dist")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="iterations per measured loop")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    samples = load_samples()
    config = TrainParams(
        patch_size=(args.patch, args.patch), batch_size=args.batch_size, iterations_per_epoch=args.iterations,
        max_minutes=None, epochs=1000, features=(16, 32, 64, 128, 256, 16), device=args.device,
    )

    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=2, in_channels=1, out_channels=3).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    batches = cut_batches(samples, args.iterations, args.batch_size, args.patch)
    bare = bare_loop(model, batches, device, config.learning_rate)

    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=2, in_channels=1, out_channels=3).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    sampler = GpuSampler() if device.type == "cuda" else None
    if sampler:
        sampler.start()
    pipeline = pipeline_loop(model, samples, config, device, epochs=1)
    if sampler:
        sampler.running = False

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    n = args.iterations
    print(f"device: {name}; U-Net (16..256), batch {args.batch_size} x {args.patch}x{args.patch}, {n} iterations each")
    print(f"{'loop':<10} {'it/s':>8} {'samples/s':>10}")
    for label, seconds in (("bare", bare), ("segpipe", pipeline)):
        print(f"{label:<10} {n / seconds:>8.3f} {n * args.batch_size / seconds:>10.2f}")
    print(f"ratio segpipe/bare: {bare / pipeline:.3f} (goal >= 0.9)")
    if sampler and sampler.values:
        busy = np.mean(sampler.values)
        print(f"GPU busy during the segpipe loop: {busy:.0f}% (goal >= 85%)")


if __name__ == "__main__":
    main()
