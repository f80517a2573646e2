"""Sampling a training batch in memory: crop centres searched for every patch (the named baseline) against found once.

Training draws each patch from a whole image in memory with MONAI's ``RandCropByPosNegLabeld``,
which picks a foreground or background centre. Given no list of those pixels, it searches the
whole image for them on every patch; segpipe now finds them once per image
(:func:`segpipe.training.augment.with_crop_centres`). The patches are the same to the pixel
(``tests/training/test_augment.py``); this script times the augmentation of one batch (8 patches
of 128 x 128, the 2D plan) from one image of generated cells with the flow's targets, per image
size, both ways, quiet and beside one competing process. On the CPU the data loader runs in the
training process, so every millisecond saved here is one a training step no longer waits::

    python benchmarks/crop_centres.py [--repeats N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditions import CONDITIONS, under  # noqa: E402
from wholecells import LARGE, generate  # noqa: E402

from segpipe.training.augment import augmentation, with_crop_centres  # noqa: E402
from segpipe.training.targets import training_sample  # noqa: E402

import numpy as np  # noqa: E402

BATCH, PATCH = 8, (128, 128)
SIZES = (256, 512, 1024, 1536)
KEYS = ["image", "label", "dist", "boundary", "heat"]


def sample_of_size(size: int) -> dict:
    """A two-channel image of generated large cells, ``size`` pixels a side, with its training targets."""
    image, labels = generate(LARGE, seed=7, shape=(size, size))
    normalized = (image.astype(np.float32) - 100) / 1000
    return training_sample(normalized, labels, instances=True, boundary=True, flow=True)


def batch_seconds(sample: dict, *, repeats: int) -> float:
    """Median time of ``repeats`` batches of ``BATCH`` augmented patches of ``sample``."""
    transform = augmentation(ndim=2, patch_size=PATCH, keys=KEYS, foreground_ratio=0.5)
    transform.set_random_state(0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(BATCH):
            transform(dict(sample))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="batches timed per size, way and condition (median kept)")
    args = parser.parse_args()
    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}")
    print("| condition | image | searched per patch (baseline) | found once | ratio | finding them once |")
    print("| --- | --- | --- | --- | --- | --- |")
    samples = {size: sample_of_size(size) for size in SIZES}
    for condition in CONDITIONS:
        with under(condition):
            for size, sample in samples.items():
                started = time.perf_counter()
                found = with_crop_centres(sample, PATCH)
                once = time.perf_counter() - started
                before = batch_seconds(sample, repeats=args.repeats)
                after = batch_seconds(found, repeats=args.repeats)
                print(f"| {condition} | {size} x {size} | {1000 * before:.0f} ms | {1000 * after:.0f} ms | "
                      f"{before / after:.2f}x | {1000 * once:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
