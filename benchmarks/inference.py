"""Sliding-window inference: segpipe zarr-to-zarr vs MONAI ``sliding_window_inference`` in memory.

(a) Throughput, same network, same input, same windows (roi, overlap, batch, Gaussian blending),
    for two networks: ``tiny``, a two-layer convolution (3x3x3 to 2 channels, ReLU, 1x1x1 to 2
    classes) so cheap that reading, normalizing and writing weigh as much as the network (the
    worst case for streaming), and ``unet``, segpipe's 3D U-Net with widths 4..64 (still far
    smaller than a trained one):
    monai    the input already normalized in memory as one float32 tensor, one
             ``sliding_window_inference`` call, output left in memory (logits);
    segpipe  :func:`segpipe.inference.stream_predict` from the uint8 zarr input to a zarr output:
             percentiles from the store, windows read and normalized by a prefetch thread,
             blended in a band, softmax, float16 probabilities and the class map compressed and
             written by a writer thread. Everything counted.
    A third variant writes the class map only (``--no-probabilities``). Each runs ``--repeats``
    times, alternating, and the fastest run of each is kept (the machine is shared).
    The maximum difference of the two outputs (after softmax) is printed as a check.
(b) Peak memory: segpipe predicting a large uint8 volume (default 1024^3, 4 GiB as float32)
    into zarr, in a subprocess, whose ``ru_maxrss`` is its peak RSS. MONAI cannot stream: it
    needs the whole input and output in memory, which is printed for comparison.

Inputs are written under ``benchmarks/_work/inference`` (git-ignored) and deleted at the end
unless ``--keep``. Networks are seeded; (b) uses the tiny one, so the large volume takes minutes
on a CPU.

Usage::

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/inference.py              # both parts
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/inference.py --big 512    # a quicker (b)
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/inference.py --big 0      # (a) only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segpipe.inference.normalize import NormalizationSpec

if TYPE_CHECKING:
    import zarr

WORK = Path(__file__).resolve().parent / "_work" / "inference"
ROI = (32, 128, 128)
OVERLAP = 0.25
BATCH = 4
SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)


DEVICE = "cpu"  # set by --device


def network(kind: str = "tiny"):
    import torch

    torch.manual_seed(0)
    if kind == "unet":
        from segpipe.models import build_model

        net = build_model("unet", spatial_dims=3, in_channels=1, out_channels=2, features=(4, 8, 16, 32, 64, 4))
    else:
        net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(2, 2, 1))
    return net.eval().to(DEVICE)


def synchronize() -> None:
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def make_volume(path: Path, shape: tuple[int, int, int]) -> zarr.Array:
    """A uint8 ``(1, *shape)`` zarr image in the store's chunks (64^3): smooth ramps plus noise."""
    import zarr

    from segpipe.data.store import COMPRESSOR

    array = zarr.create_array(
        str(path), shape=(1, *shape), dtype=np.uint8, chunks=(1, 64, 64, 64), compressors=COMPRESSOR, overwrite=True
    )
    rng = np.random.default_rng(0)
    y, x = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    plane = (60 * (np.sin(y / 37.0) + np.cos(x / 23.0)) + 128).astype(np.int16)
    for z in range(0, shape[0], 64):
        depth = min(64, shape[0] - z)
        noise = rng.integers(-40, 40, (depth, *shape[1:]), dtype=np.int16)
        slab = np.clip(plane[None] + noise + np.arange(z, z + depth)[:, None, None] % 50, 0, 255)
        array[0, z : z + depth] = slab.astype(np.uint8)
    return array


def predict_zarr(source, out: Path, kind: str = "tiny", *, probabilities: bool = True):
    """segpipe's path: percentiles, then zarr to zarr; returns the run's statistics.

    ``probabilities=False`` writes the class map only (``segpipe predict --no-probabilities``).
    """
    import zarr

    from segpipe.inference import InferenceParams, activate, stream_normalization, stream_predict
    from segpipe.inference.zarr_sink import ZarrSink, prediction_chunks
    from segpipe.data.store import COMPRESSOR

    spatial = tuple(source.shape[1:])
    group = zarr.open_group(str(out), mode="w")
    options = {"compressors": COMPRESSOR}
    probs = group.create_array(
        "s0", shape=(2, *spatial), dtype=np.float16,
        chunks=prediction_chunks((2, *spatial), ndim=3, channels=True, roi0=ROI[0], overlap=OVERLAP), **options,
    )
    semantic = group.create_array(
        "semantic", shape=spatial, dtype=np.uint8,
        chunks=prediction_chunks(spatial, ndim=3, channels=False, roi0=ROI[0], overlap=OVERLAP), **options,
    )
    sink = ZarrSink(group, ndim=3, n_classes=2, probabilities=probs if probabilities else None, semantic=semantic)
    params = InferenceParams(overlap=OVERLAP, batch_size=BATCH, flip_tta=False)
    return stream_predict(
        network(kind), source, sink, roi_size=ROI, out_channels=2, params=params,
        normalization=stream_normalization(source, SPEC), activation=partial(activate, n_classes=2), device=DEVICE,
    )


def predict_monai(tensor, kind: str = "tiny"):
    import torch
    from monai.inferers import sliding_window_inference

    from segpipe.inference import padding_mode
    from segpipe.inference.precision import autocast

    # the same autocast as segpipe's (CUDA; bfloat16 on CPUs with AMX), so both run the same arithmetic
    with torch.no_grad(), autocast(torch.device(DEVICE), True):
        logits = sliding_window_inference(
            tensor, roi_size=ROI, sw_batch_size=BATCH, predictor=network(kind), overlap=OVERLAP, mode="gaussian",
            padding_mode=padding_mode(tensor.shape[2:], ROI),
        )
    synchronize()
    return logits.float()


@contextlib.contextmanager
def timed(runs: list):
    """Append ``(wall seconds, CPU seconds of all threads)`` of the block to ``runs``."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    yield
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    runs.append((time.perf_counter() - started, cpu))


def throughput(kind: str, shape: tuple[int, int, int], repeats: int = 2) -> dict:
    import torch
    import zarr

    from segpipe.inference.normalize import normalize

    source = make_volume(WORK / "small_in.zarr", shape)
    tensor = torch.from_numpy(normalize(np.asarray(source[...]), SPEC))[None].to(DEVICE)  # MONAI starts on the device
    predict_monai(tensor[..., :32, :128, :128], kind)  # warm-up: first calls allocate
    ours, labels_only, theirs = [], [], []
    for _ in range(repeats):
        with timed(theirs):
            logits = predict_monai(tensor, kind)
        with timed(labels_only):
            predict_zarr(source, WORK / "labels_out.zarr", kind, probabilities=False)
        with timed(ours):
            predict_zarr(source, WORK / "small_out.zarr", kind)
    reference = torch.softmax(logits, dim=1)[0].cpu().numpy()
    written = zarr.open_group(str(WORK / "small_out.zarr"), mode="r")["s0"][...].astype(np.float32)
    voxels = int(np.prod(shape))
    best = {name: min(runs) for name, runs in (("monai", theirs), ("segpipe", ours), ("labels", labels_only))}
    return {
        "kind": kind,
        "shape": shape,
        **{f"{name}_s": wall for name, (wall, _) in best.items()},
        **{f"{name}_cpu": cpu for name, (_, cpu) in best.items()},
        **{f"{name}_mvox_s": voxels / wall / 1e6 for name, (wall, _) in best.items()},
        "max_abs_diff": float(np.abs(written - reference).max()),
    }


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``VmHWM``).

    Not ``ru_maxrss``: Linux carries a parent's peak into its child across fork and exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover - not Linux


def child_big() -> None:
    """Run in a subprocess: predict the large volume, print statistics and peak RSS as JSON."""
    import zarr

    import segpipe.inference.zarr_sink  # noqa: F401  (imports before the baseline figure)

    baseline = peak_rss()
    source = zarr.open_array(str(WORK / "big_in.zarr"), mode="r")
    started = time.perf_counter()
    stats = predict_zarr(source, WORK / "big_out.zarr")
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "windows": stats.windows, "band_bytes": stats.band_bytes, "peak_rss": peak_rss()}
    print(json.dumps(figures | {"imports_rss": baseline}))


def big_volume(shape: tuple[int, int, int]) -> dict:
    make_volume(WORK / "big_in.zarr", shape)
    command = [sys.executable, __file__, "--child-big", "--device", DEVICE]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    import zarr

    progress = zarr.open_group(str(WORK / "big_out.zarr"), mode="r").attrs["progress"]
    if progress != {"frames": 1, "rows": 0}:
        raise RuntimeError(f"the large prediction did not finish: {progress}")
    return figures


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", type=int, nargs=3, default=(256, 256, 256), help="volume for the tiny network")
    parser.add_argument("--unet", type=int, nargs=3, default=(96, 192, 192), help="volume for the U-Net (0 0 0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the fastest is kept")
    parser.add_argument("--big", type=int, nargs=3, default=(1024, 1024, 1024), help="large volume (0 0 0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and outputs under benchmarks/_work")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both variants run there)")
    parser.add_argument("--child-big", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.child_big:
        child_big()
        return

    import torch

    WORK.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, running on "
          f"{torch.cuda.get_device_name(DEVICE) if DEVICE.startswith('cuda') else 'the CPU'}")
    print(f"windows: roi {ROI}, overlap {OVERLAP}, batch {BATCH}, gaussian blending, no test-time flips")
    try:
        for kind, shape in (("tiny", tuple(args.tiny)), ("unet", tuple(args.unet))):
            if not all(shape):
                continue
            a = throughput(kind, shape, repeats=args.repeats)
            print(f"\n(a) throughput, {kind} network, {'x'.join(map(str, shape))} uint8 volume")
            print(f"    monai   in memory    {a['monai_mvox_s']:7.2f} Mvox/s  ({a['monai_s']:.1f} s, CPU {a['monai_cpu']:.1f} s)")
            print(f"    segpipe zarr->zarr   {a['segpipe_mvox_s']:7.2f} Mvox/s  ({a['segpipe_s']:.1f} s, CPU {a['segpipe_cpu']:.1f} s)"
                  f"   ratio {a['segpipe_mvox_s'] / a['monai_mvox_s']:.2f}x   float16 probabilities + class map")
            print(f"    segpipe zarr->zarr   {a['labels_mvox_s']:7.2f} Mvox/s  ({a['labels_s']:.1f} s, CPU {a['labels_cpu']:.1f} s)"
                  f"   ratio {a['labels_mvox_s'] / a['monai_mvox_s']:.2f}x   class map only (--no-probabilities)")
            print(f"    max |difference| of probabilities vs MONAI: {a['max_abs_diff']:.1e} (float16 storage)")
        if all(args.big):
            shape = tuple(args.big)
            b = big_volume(shape)
            voxels = int(np.prod(shape))
            monai_needs = voxels * 4 * (1 + 2 + 1)  # float32 input, 2-channel output, weight map
            print(f"\n(b) peak memory, {'x'.join(map(str, shape))} uint8 volume ({gib(voxels * 4)} as float32)")
            print(f"    segpipe zarr->zarr   peak RSS {gib(b['peak_rss'])} (of which {gib(b['imports_rss'])} after imports; "
                  f"{b['seconds']:.0f} s, {voxels / b['seconds'] / 1e6:.2f} Mvox/s, {b['windows']} windows, "
                  f"blending band {gib(b['band_bytes'])})")
            print(f"    monai   in memory    needs at least {gib(monai_needs)} (input, output and weight map "
                  f"as float32), before the network's own memory")
            print(f"    ratio                {b['peak_rss'] / monai_needs:.3f} of MONAI's minimum")
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
