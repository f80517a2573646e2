"""What a scheduled run over an inbox of already segmented files costs before it segments anything.

Each input is a task cached on its bytes (``segpipe.flows.segment.input_key``). The key takes a
file at the digest its store in the output folder recorded when the file's size and modification
time are still those, as ingest does; the named baseline, the rule it replaced, read every file
in full on every run (``read every file``, reproduced here). The inputs are uint16 TIFFs, each
ingested once into an output folder as ``segpipe segment`` leaves it; the model is the shipped
start ``cells-2d``. Timed with the page cache warm (files just written or read) and, when the
process may drop it (root on Linux), cold: files that arrived hours ago.

Run: ``python benchmarks/input_keys.py [--files 32] [--megabytes 32]``; quiet and beside one
competing CPU-bound process (``conditions.py``). Prints one line per condition and cache state.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conditions import CONDITIONS, under  # noqa: E402

from segpipe.data.ingest import file_digest, ingest_dataset  # noqa: E402
from segpipe.data.inputs import find_inputs, input_dataset  # noqa: E402
from segpipe.flows.caching import keyed  # noqa: E402
from segpipe.flows.segment import input_key  # noqa: E402
from segpipe.models.model import Model  # noqa: E402
from segpipe.pipeline.models import assumed_spacing  # noqa: E402
from segpipe.pipeline.segment_files import SegmentFolder, SegmentParams  # noqa: E402
from segpipe.prediction.params import PredictParams  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "segpipe" / "models" / "starts" / "cells-2d"


def read_every_file(item, output: str, read: SegmentParams, predict: PredictParams) -> str:
    """The baseline: every file of the input read and digested, then the same key parts."""
    source = item.path
    digests = [[str(p.relative_to(source.parent)), file_digest(p)] for p in [source]]
    settings = [read.model_dump(mode="json"), predict.model_dump(mode="json", exclude={"device"})]
    opened = Model.open(MODEL)
    assumed = assumed_spacing(opened.card)
    return keyed("segment-input", output, item.name, item.kind, digests, opened.id, settings,
                 *([] if assumed is None else [["assumed-spacing", list(assumed[0]), assumed[1]]]))


def stat_checked(item, output: str, read: SegmentParams, predict: PredictParams) -> str:
    return input_key(str(item.path), item.name, item.kind, str(MODEL), output, read, predict)


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def tick(key, items, output, read, predict, *, cold: bool) -> float:
    if cold:
        drop_page_cache()
    start = time.perf_counter()
    for item in items:
        key(item, output, read, predict)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--megabytes", type=int, default=32, help="size of each input")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="segpipe-inbox-"))
    try:
        inbox, output = root / "inbox", root / "out"
        inbox.mkdir()
        side = int(np.sqrt(args.megabytes * 2**20 / 2))
        rng = np.random.default_rng(0)
        for i in range(args.files):
            tifffile.imwrite(inbox / f"field{i:03d}.tif", rng.integers(0, 4096, (side, side), dtype=np.uint16))
        items = find_inputs([str(inbox)])
        card = Model.open(MODEL).card
        for item in items:  # what the first run leaves: each input's store with its sources' digests
            dataset = input_dataset(item, ndim=2, classes=card.classes, instances=True)
            ingest_dataset(dataset, SegmentFolder(output).images(item.name), progress=False, warn_spacing=False)
        read, predict = SegmentParams(), PredictParams()
        out = str(output.resolve())
        assert [stat_checked(i, out, read, predict) for i in items] == [read_every_file(i, out, read, predict) for i in items]
        can_drop = drop_page_cache()
        total = args.files * args.megabytes
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"{args.files} inputs of {args.megabytes} MB ({total / 1024:.1f} GB), already segmented")
        for condition in CONDITIONS:
            with under(condition):
                for cold in ([False, True] if can_drop else [False]):
                    now = min(tick(stat_checked, items, out, read, predict, cold=cold) for _ in range(3))
                    before = min(tick(read_every_file, items, out, read, predict, cold=cold) for _ in range(3))
                    cache = "cold page cache" if cold else "warm page cache"
                    print(f"{condition:>22} | {cache} | size and time checked (now) {now:7.3f} s | "
                          f"read every file {before:7.3f} s (x{before / now:.0f})")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
