"""Segmenting many new, unlabelled images: ``segpipe segment`` against a plain loop, side by side.

The plain loop is what a user would write: ``tifffile.imread``, percentile normalization, MONAI
``sliding_window_inference`` with the same model and windows (the same test-time passes as
segpipe: none, then each axis flipped; ``--no-tta``: none in either), the same post-processing
(``segpipe.inference.postprocess.instance_labels`` with the model card's settings) and
``tifffile.imwrite``; on the CPU in float32. ``segpipe segment`` does that and more: each input
is ingested into its own OME-Zarr with the labels under the image, exported, measured (one table
of every object), cached for re-runs, with the files of the inputs before and after the one in
the network handled in a second process; on CPUs with Intel AMX its network runs in bfloat16
(``InferenceParams.amp``), and there a third variant, ``plain-amp``, is the plain loop in that
precision too, so the table shows what the precision gives and what the pipeline does. The
model is the narrow U-Net below, trained once on the bundled BBBC007 fields (cached in
``_work``). Each variant runs in a fresh process; peak RSS is the process's ``VmHWM`` plus the
largest ``VmHWM`` among its children (segpipe's files process), sampled from ``/proc`` every
half second while it runs and also shown on its own.

``--no-amp`` runs segpipe's network in float32 too, as on CPUs without AMX.

Run: ``python benchmarks/segment.py [--images 1000] [--size 512] [--repeats 1] [--no-tta] [--no-amp] [--device cpu]``
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "segment"
FIELDS = ROOT / "data" / "bbbc007" / "images"
#: A narrow U-Net: the network's time is the same in both variants, so a small one shows the
#: pipeline's own cost (1,000 images through the default 16..256 U-Net take hours on 2 cores).
FEATURES = (4, 8, 16, 32, 64, 4)


def prepare(n_images: int, size: int) -> tuple[Path, Path]:
    """``n_images`` uint8 ``size`` x ``size`` fields (tiles of the BBBC007 images) and a trained model folder."""
    import tifffile

    base = WORK / f"{n_images}x{size}"
    inbox, model = base / "inbox", WORK / "model"
    if not (model / "model.pt").is_file():
        train_model(model)
    if (base / "ready").is_file():
        return inbox, model
    shutil.rmtree(base, ignore_errors=True)
    inbox.mkdir(parents=True)
    fields = [tifffile.imread(p) for p in sorted(FIELDS.glob("*.tif"))]
    rng = np.random.default_rng(0)
    for i in range(n_images):
        tiles = [np.rot90(fields[(i + k) % len(fields)], k) for k in range(4)]
        mosaic = np.block([[tiles[0][:256, :256], tiles[1][:256, :256]], [tiles[2][:256, :256], tiles[3][:256, :256]]])
        canvas = np.resize(mosaic, (size, size)) if size != 512 else mosaic
        tifffile.imwrite(inbox / f"field_{i:04d}.tif", np.roll(canvas, int(rng.integers(0, size)), axis=1))
    (base / "ready").write_text("")
    return inbox, model


def train_model(folder: Path, device: str = "cpu") -> None:
    """The benchmark's model: the narrow U-Net trained on bundled BBBC007 for 200 iterations (seeded), so it
    finds nuclei (a random network finds thousands of specks, which the measurements would then count)."""
    from segpipe.pipeline import RunFolder, stages
    from segpipe.pipeline.catalog import open_catalog, train_params
    from segpipe.training.params import TrainParams

    catalog = open_catalog(ROOT / "data_catalog.yaml")
    run = RunFolder.of(WORK / "training", "bbbc007")
    stages.ingest(catalog, "bbbc007", run)
    given = TrainParams(features=FEATURES, patch_size=(128, 128), epochs=4, iterations_per_epoch=50, device=device)
    trained = stages.train(run, train_params(catalog, "bbbc007", given), catalog=catalog, progress=False)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(trained.model.folder, folder)


def plain(inbox: Path, model_dir: Path, out: Path, *, tta: bool = True, device: str = "cpu", cpu_amp: bool = False) -> int:
    """The loop a user would write, with segpipe's test-time passes (none, then each axis flipped); returns the images done.

    On CUDA the network runs under segpipe's autocast; on the CPU in float32, as a user's loop
    does, unless ``cpu_amp`` (the ``plain-amp`` variant: segpipe's bfloat16 on CPUs with AMX).
    """
    import contextlib
    import tifffile
    import torch
    from monai.inferers import sliding_window_inference

    from segpipe.inference.memory import activate
    from segpipe.inference.precision import autocast
    from segpipe.inference.normalize import percentile_normalize
    from segpipe.inference.postprocess import instance_labels, output_maps
    from segpipe.inference.windows import unflip
    from segpipe.models.model import Model

    model = Model.open(model_dir)
    card, network = model.card, model.load(device)
    params = card.inference
    passes = [[], [0], [1]] if tta else [[]]  # spatial axes flipped in each pass
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(inbox.glob("*.tif"))
    with torch.no_grad():
        for path in files:
            spec = card.normalization
            image = percentile_normalize(tifffile.imread(path)[np.newaxis], low=spec.low, high=spec.high, min_range=spec.min_range)
            inputs = torch.from_numpy(image)[None].to(device)
            total = None
            for axes in passes:
                x = torch.flip(inputs, [2 + a for a in axes]) if axes else inputs
                precision = autocast(torch.device(device), params.amp) if device != "cpu" or cpu_amp else contextlib.nullcontext()
                with precision:
                    logits = sliding_window_inference(
                        x, roi_size=card.patch_size, sw_batch_size=params.batch_size, predictor=network,
                        overlap=params.overlap, mode=params.mode, sigma_scale=params.sigma_scale, padding_mode="reflect",
                    )
                logits = unflip(logits.float(), axes, channel_axis=1, flow_channels=card.flow_channels)
                probs = activate(logits, n_classes=card.n_classes)
                total = probs if total is None else total + probs
            probs = (total / len(passes))[0].cpu().numpy().astype(np.float16)  # the precision segpipe keeps them in
            foreground, distance, boundary, flow = output_maps(probs, card.n_classes)
            labels = instance_labels(foreground, distance, card.instance_params(), boundary=boundary, flow=flow)
            tifffile.imwrite(out / f"{path.stem}_labels.tif", labels)
    return len(files)


def segpipe(
    inbox: Path, model_dir: Path, out: Path, *, tta: bool = True, device: str = "cpu", amp: bool = True,
    noise_only: float | None = None,
) -> int:
    """``segpipe segment`` on ``inbox``; ``noise_only``: its noise rule's threshold (0: off, as the plain loop has
    no such rule), the model's own when ``None``."""
    from segpipe.models.model import Model
    from segpipe.pipeline.segment import SegmentFolder, segment
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor

    inference = {"flip_tta": tta, "amp": amp} | ({} if noise_only is None else {"noise_only": noise_only})
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device=device, inference=inference))
    results = segment([str(inbox)], predictor, SegmentFolder(out), progress=False)
    assert not [r for r in results if r.error], [r.error for r in results if r.error]
    return len(results)


class ChildMemory:
    """The largest peak resident memory (``VmHWM``) of this process's children, sampled every ``every`` seconds.

    Read from ``/proc``: ``getrusage(RUSAGE_CHILDREN)`` would count a spawned child's memory from
    before its ``exec`` (a copy of this process's pages), not what the child itself holds.
    """

    def __init__(self, every: float = 0.5):
        import threading

        self.peak, self.every, self._stop = 0, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import os

        me = str(os.getpid())
        while not self._stop.wait(self.every):
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                except OSError:
                    continue
                if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                    self.peak = max(self.peak, int(fields["VmHWM"].split()[0]) * 1024)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def own_peak_rss() -> int:
    """This process's peak resident memory (``VmHWM``), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child(args) -> None:
    if args.child == "segpipe":
        __import__("segpipe")  # as the CLI does: its OpenMP setting before torch's runtime starts
    import torch

    inbox, model = prepare(args.images, args.size)
    out = WORK / f"out-{args.child}"
    shutil.rmtree(out, ignore_errors=True)
    children = ChildMemory()
    start = time.perf_counter()
    run = {"plain": plain, "plain-amp": partial(plain, cpu_amp=True), "segpipe": partial(segpipe, amp=not args.no_amp)}[args.child]
    done = run(inbox, model, out, tta=not args.no_tta, device=args.device)
    seconds = time.perf_counter() - start
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    own, files = own_peak_rss(), children.stop()
    print(json.dumps({"images": done, "seconds": seconds, "peak_rss": own + files, "files_rss": files, "threads": torch.get_num_threads(), "device": where}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-tta", action="store_true", help="no test-time flips in either variant")
    parser.add_argument("--no-amp", action="store_true", help="segpipe's network in float32 too (as on CPUs without AMX)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each variant")
    parser.add_argument("--device", default="cpu", help="where both variants run the network: cpu, cuda or cuda:N")
    parser.add_argument("--child", choices=("plain", "plain-amp", "segpipe"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from segpipe.inference.precision import cpu_bfloat16  # here, not at the top: the plain child imports no segpipe first

    started = time.perf_counter()
    prepare(args.images, args.size)
    print(f"# model and {args.images} fields ready after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    runs: dict[str, list[dict]] = {"plain": [], "segpipe": []}
    if args.device == "cpu" and cpu_bfloat16() and not args.no_amp:  # segpipe runs the network in bfloat16 here: the loop so too, for comparison
        runs = {"plain": [], "plain-amp": [], "segpipe": []}
    for _ in range(args.repeats):
        for variant in runs:
            command = [sys.executable, __file__, "--child", variant, "--images", str(args.images), "--size", str(args.size)] + ["--device", args.device] + (["--no-tta"] if args.no_tta else []) + (["--no-amp"] if args.no_amp else [])
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{variant} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"# {variant}: {runs[variant][-1]['seconds']:.1f} s (at {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {runs['plain'][0]['threads']} torch threads, "
          f"network on {runs['plain'][0]['device']}; "
          f"{args.images} images of {args.size}x{args.size}, U-Net {FEATURES[0]}..{FEATURES[-2]}, 128x128 windows, "
          "overlap 0.5, " + ("no test-time flips" if args.no_tta else "flip TTA (3 passes)") + ("; segpipe in float32 (--no-amp)" if args.no_amp else ""))
    print("| variant | images/s | seconds | peak RSS (MiB) | of it, the files process | speed vs plain | RSS vs plain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    best = {v: min(r, key=lambda x: x["seconds"]) for v, r in runs.items()}
    for variant, run in best.items():
        rate = run["images"] / run["seconds"]
        base = best["plain"]["images"] / best["plain"]["seconds"]
        print(f"| {variant} | {rate:.2f} | {run['seconds']:.1f} | {run['peak_rss'] / 2**20:.0f} | {run['files_rss'] / 2**20:.0f} | {rate / base:.2f}x | "
              f"{run['peak_rss'] / best['plain']['peak_rss']:.2f} |")


if __name__ == "__main__":
    main()
