"""Objects of a volume above the size labelled whole: the flow slab by slab against the whole frame
and against the distance relief (what such volumes got before the flow was followed in slabs).

A 3D flow model (its card's relief ``flow``) predicts a volume larger than
``InstanceTiling.whole_limit`` (2^24 voxels) made of tiles of ``benchmarks/nuclei3d.py``'s
crowded small nuclei, each tile another seed than the datasets' (nuclei the tiles' edges cut
stay cut). Its stored probabilities are then labelled three ways, each in a process of its own
(peak memory: its resident high-water mark, from the OS):

- ``whole``: the whole frame in memory (``whole_limit`` raised above the volume);
- ``slabs``: the default tiling, the flow followed and grouped slab by slab with a halo;
- ``distance``: the default tiling with the distance relief and the card's other parameters.

Printed: time, peak memory, objects, SEG and F1 at IoU 0.5 against the tiles' labels, and how many
of the whole frame's objects the slabs give back pixel for pixel. ``--busy`` labels beside one
competing process; ``--true-flow`` skips the network and stores the tiles' true flows with noise
(``--tiles 2 9 9``: a flat 48 x 720 x 720 volume, whose slabs run along y).

    python benchmarks/flow_slabs.py --model runs/nuclei3d-crowded-small/model --output /tmp/flow-slabs
    python benchmarks/flow_slabs.py --true-flow --tiles 2 9 9 --output /tmp/flow-slabs-flat
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
import nuclei3d

WAYS = ("whole", "slabs", "distance")
#: The competing process of ``--busy``: sorting on one core, as a lab machine's other user would.
BUSY = "import numpy as np\nx = np.random.default_rng(0).random(1 << 22)\nwhile True: np.sort(x)"


def make_volume(tiles: tuple[int, int, int], first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tiles of the crowded small nuclei, ``tiles`` along (z, y, x), seeds from ``first_seed``."""
    kind = next(v for v in nuclei3d.VARIANTS if v.name == "nuclei3d-crowded-small")
    images, labels, offset = {}, {}, 0
    for index, place in enumerate(np.ndindex(*tiles)):
        images[place], tile = nuclei3d.generate(dataclasses.replace(kind, seed=first_seed + index))
        labels[place] = np.where(tile > 0, tile.astype(np.uint32) + offset, 0)
        offset = int(labels[place].max()) or offset

    def nested(parts: dict) -> list:
        return [[[parts[z, y, x] for x in range(tiles[2])] for y in range(tiles[1])] for z in range(tiles[0])]

    return np.block(nested(images)), np.block(nested(labels))


def label(way: str, probabilities: str, card: str, out: str) -> None:
    """One way's labels of the stored probabilities, written to ``out`` (.npy) with its time."""
    import zarr

    from segpipe.inference.instances import stream_instance_labels
    from segpipe.inference.params import InstanceTiling
    from segpipe.inference.postprocess import InstanceParams

    stored = zarr.open_array(probabilities, mode="r")
    info = json.loads(Path(card).read_text())
    params = InstanceParams(**info["postprocess"])
    tiling = InstanceTiling(whole_limit=1 << 40) if way == "whole" else InstanceTiling()
    if way == "distance":
        params = params.model_copy(update={"relief": "distance"})
    scratch = zarr.open_group(out + ".zarr", mode="w")
    target = scratch.create_array("labels", shape=stored.shape[1:], dtype=np.uint32, chunks=(16, 128, 128))
    started = time.perf_counter()
    stats = stream_instance_labels(stored, target, ndim=3, n_classes=len(info["classes"]),
                                   params=params, tiling=tiling, scratch=scratch.require_group("scratch"))
    seconds = time.perf_counter() - started
    np.save(out, target[...])
    peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    Path(out + ".json").write_text(json.dumps({"seconds": seconds, "slabs": stats.slabs, "cut": stats.tall_components,
                                               "peak_mb": peak / 1024}))


def run_way(way: str, probabilities: Path, card: Path, folder: Path) -> dict:
    """:func:`label` in a child process; its time and peak resident memory (the child's own high-water
    mark, ``VmHWM``: the rusage of a child keeps the parent's resident size from the fork)."""
    out = folder / way
    subprocess.run([sys.executable, __file__, "--label", way, str(probabilities), str(card), str(out)], check=True)
    result = json.loads(Path(str(out) + ".json").read_text())
    result["labels"] = np.load(str(out) + ".npy")
    return result


def scores(truth: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from segpipe.scoring import overlap
    from segpipe.scoring.instances import match_from_overlap, seg_from_overlap

    table = overlap(truth, labels)
    return float(seg_from_overlap(table).seg), float(match_from_overlap(table, thresh=0.5).f1)


def same_as(reference: np.ndarray, labels: np.ndarray) -> int:
    """Objects of ``reference`` that ``labels`` holds pixel for pixel."""
    ids, inverse = np.unique(reference.ravel(), return_inverse=True)
    size = np.bincount(inverse)
    pairs, count = np.unique(np.stack([reference.ravel(), labels.ravel()]), axis=1, return_counts=True)
    other_size = dict(zip(*np.unique(labels, return_counts=True)))
    alike = [r for (r, l), c in zip(pairs.T, count) if r and l and c == size[np.searchsorted(ids, r)] == other_size[l]]
    return len(alike)


def predicted(model: Path, output: Path) -> tuple[Path, Path]:
    """The model's stored probabilities of ``output/volume.tif`` (``segpipe segment``; a second run
    in the same output finds the volume segmented and returns at once) and its card."""
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "segpipe"), "segment", "--model", str(model), str(output / "volume.tif"),
         "--spacing", "2", "--spacing", "1", "--spacing", "1", "--probabilities", "--output", str(output / "seg")],
        check=True, stdout=subprocess.DEVNULL,
    )
    print(f"segpipe segment (network and slab-wise labels): {time.perf_counter() - started:.0f} s")
    return output / "seg" / ".predictions" / "volume.zarr" / "volume" / "s0", model / "model_card.json"


def true_outputs(truth: np.ndarray, output: Path) -> tuple[Path, Path]:
    """Outputs a flow model would give if it were right, with noise on the flow (no network), stored
    as prediction stores them, and a card with the flow grouping."""
    import zarr

    from segpipe.training.targets import centre_heat, distance_target, flow_from_heat

    fg = (truth > 0).astype(np.float16)
    flow = (flow_from_heat(centre_heat(truth), truth > 0) + 1) / 2
    flow += np.random.default_rng(0).normal(0, 0.05, flow.shape).astype(np.float32)
    path = output / "true.zarr"
    stored = zarr.open_array(str(path), mode="w", shape=(7, *truth.shape), dtype=np.float16, chunks=(7, 16, 128, 128))
    for index, channel in enumerate((1 - fg, fg, distance_target(truth), np.zeros_like(fg), *flow)):
        stored[index] = channel.astype(np.float16)
    card = output / "true_card.json"
    card.write_text(json.dumps({"classes": ["background", "nucleus"],
                                "postprocess": {"relief": "flow", "sink_size": 10, "min_size": 8}}))
    print(f"true flows with noise stored (no network): {path}")
    return path, card


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--label":
        label(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a 3D flow model folder (nuclei of the crowded kind); or --true-flow")
    parser.add_argument("--tiles", type=int, nargs=3, default=(14, 3, 3), help="tiles of 24 x 80 x 80 along z, y, x (default: 336 x 240 x 240, 19.4 M voxels)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--busy", action="store_true", help="label beside one competing process")
    parser.add_argument("--true-flow", action="store_true", help="no network: the tiles' true flows with noise")
    args = parser.parse_args()
    if args.model is None and not args.true_flow:
        parser.error("give --model (a 3D flow model) or --true-flow")
    args.output.mkdir(parents=True, exist_ok=True)
    image, truth = make_volume(tuple(args.tiles), first_seed=100)
    tifffile.imwrite(args.output / "volume.tif", image)
    print(f"volume {image.shape} = {image.size:,} voxels, {int(truth.max()):,} nuclei (tiles of seeds 100..)")
    if args.true_flow:
        probabilities, card = true_outputs(truth, args.output)
    else:
        probabilities, card = predicted(args.model, args.output)
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.busy else None
    try:
        results = {way: run_way(way, probabilities, card, args.output) for way in WAYS}
    finally:
        if busy:
            busy.kill()
    print("beside one competing process (a numpy loop on one core)" if busy else "quiet machine")
    whole = results["whole"]
    print(f"{'way':9} {'time s':>7} {'x whole':>8} {'peak MB':>8} {'x whole':>8} {'objects':>8} {'SEG':>6} {'F1@0.5':>7}"
          f" {'as whole':>9} {'slabs':>6} {'cut':>5}")
    for way, result in results.items():
        seg, f1 = scores(truth, result["labels"])
        alike = same_as(whole["labels"], result["labels"])
        print(f"{way:9} {result['seconds']:7.1f} {result['seconds'] / whole['seconds']:8.2f} {result['peak_mb']:8.0f}"
              f" {result['peak_mb'] / whole['peak_mb']:8.2f} {int(result['labels'].max()):8,} {seg:6.3f} {f1:7.3f}"
              f" {alike:9,} {result['slabs']:6} {result['cut']:5}")


if __name__ == "__main__":
    main()
