"""The flow target's heat on a large volume: objects in groups against one pass over all of them.

:func:`segpipe.training.targets.centre_heat` diffuses each object's heat from its centre. One pass
over every object at once (the named baseline, ``group_pixels`` = the volume's size) holds work
arrays of about 1 kB per inside voxel; in groups (the default, ``HEAT_GROUP_PIXELS`` inside voxels
each, within the box around them) it holds one group's. Each way runs in its own process, on a
generated volume of touching nuclei, and the script prints the seconds and the peak resident
memory of each, their ratios, and whether the two results are the same to the bit; with
``--busy``, beside one process that keeps a core busy (a shared lab machine).

Run: ``python benchmarks/heat_memory.py [--shape 64 384 384] [--busy]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import resource
import time

import numpy as np


def volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Nuclei of 5-9 voxels' radius, squeezed along z, a fifth of the volume or more, touching."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    count = int(0.3 * np.prod(shape) / (4 / 3 * np.pi * 7**3 * 0.6))
    for i in range(count):
        c, r = rng.uniform((0, 0, 0), shape), rng.uniform(5, 9)
        box = tuple(slice(max(0, int(c[a] - r - 1)), int(c[a] + r + 2)) for a in range(3))
        inside = ((z[box[0]] - c[0]) / 0.6) ** 2 + (y[:, box[1]] - c[1]) ** 2 + (x[:, :, box[2]] - c[2]) ** 2 < r * r
        part = labels[box]
        part[inside & (part == 0)] = i + 1
    return labels


def measure(shape, group_pixels, queue) -> None:
    from segpipe.training.targets import centre_heat

    labels = volume(shape)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    heat = centre_heat(labels, group_pixels=group_pixels) if group_pixels else centre_heat(labels)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"seconds": seconds, "peak_mb": peak / 1024, "added_mb": (peak - before) / 1024,
               "inside": int((labels > 0).sum()), "objects": int(len(np.unique(labels)) - 1),
               "digest": hashlib.sha256(heat.tobytes()).hexdigest()})


def burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10000))


def run(shape, group_pixels) -> dict:
    queue = mp.Queue()
    process = mp.Process(target=measure, args=(shape, group_pixels, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 384, 384])
    parser.add_argument("--busy", action="store_true", help="beside one process that keeps a core busy")
    args = parser.parse_args()
    shape = tuple(args.shape)
    stop, burner = mp.Event(), None
    if args.busy:
        burner = mp.Process(target=burn, args=(stop,))
        burner.start()
    try:
        one_pass = run(shape, int(np.prod(shape)))
        grouped = run(shape, 0)
    finally:
        stop.set()
        if burner is not None:
            burner.join()
    same = one_pass.pop("digest") == grouped.pop("digest")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, volume {shape}, "
          f"{grouped['objects']} objects, {grouped['inside']} inside voxels{', beside one busy process' if args.busy else ''}")
    print(json.dumps({"one pass (baseline)": one_pass, "groups (default)": grouped,
                      "time ratio (groups / one pass)": round(grouped["seconds"] / one_pass["seconds"], 2),
                      "added memory ratio": round(grouped["added_mb"] / one_pass["added_mb"], 3), "same heat": same}))


if __name__ == "__main__":
    main()
