"""Writing N small files into one folder through ``segpipe.temporary.replacing``.

A CTC export writes a mask per frame and a segment run a table per input, all into one folder,
each through a temporary name that is renamed into place. What a killed writer left is removed
when the folder is first written to by a process (``replacing`` sweeps it once). Named baseline:
the rule it replaced, a listing of the folder for every file written (``per-write listing``),
which this script reproduces; a plain write-and-rename is the floor.

Run: ``python benchmarks/temporary_writes.py [--files 100 1000 5000]``; quiet and beside one
competing CPU-bound process (``conditions.py``). Prints one line per size and condition.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conditions import CONDITIONS, under  # noqa: E402

from segpipe import temporary  # noqa: E402

PAYLOAD = b"x" * 4096


def write_now(folder: Path, n: int) -> None:
    for i in range(n):
        with temporary.replacing(folder / f"mask{i:05d}.tif") as tmp:
            tmp.write_bytes(PAYLOAD)


def write_listing_each(folder: Path, n: int) -> None:
    """The baseline: the folder listed before each file is written."""
    for i in range(n):
        path = folder / f"mask{i:05d}.tif"
        for candidate in folder.glob(f".{path.stem}*.tmp-*"):
            found = temporary.parse(candidate)
            if found and found.path == path and not temporary.writer_alive(found.pid):
                candidate.unlink()
        tmp = temporary.temporary_path(path)
        tmp.write_bytes(PAYLOAD)
        os.replace(tmp, path)


def write_plain(folder: Path, n: int) -> None:
    for i in range(n):
        tmp = folder / f".mask{i:05d}.tif.part"
        tmp.write_bytes(PAYLOAD)
        os.replace(tmp, folder / f"mask{i:05d}.tif")


def timed(write, n: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="segpipe-writes-"))
    try:
        temporary._swept.clear()
        start = time.perf_counter()
        write(folder, n)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[100, 1000, 5000])
    args = parser.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}")
    for condition in CONDITIONS:
        with under(condition):
            for n in args.files:
                now, before, plain = (min(timed(w, n) for _ in range(3)) for w in (write_now, write_listing_each, write_plain))
                print(f"{condition:>22} | {n:>5} files | swept once (now) {now:7.3f} s | per-write listing {before:7.3f} s "
                      f"(x{before / now:.1f}) | plain rename {plain:7.3f} s (now x{now / plain:.2f})")


if __name__ == "__main__":
    main()
