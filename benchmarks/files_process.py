"""Start-up time and memory of ``segpipe segment``'s files process: torch-free against the network's imports.

``segpipe segment`` with several inputs hands ingest, labels, exports and measurements to a
spawned process (:mod:`segpipe.pipeline.files_process`); beside a GPU, up to four. That process
imports the module its work lives in before it counts as started:

    baseline  ``segpipe.pipeline.segment`` (the network's side: torch, MONAI, the networks), what
              the process imported until the files' steps moved to a module of their own;
    segpipe   ``segpipe.pipeline.segment_files`` (zarr, tifffile, scikit-image; no torch).

Each measurement runs in a fresh interpreter (so nothing is imported beforehand or cached in
it): it starts one files process with :func:`~segpipe.pipeline.files_process.files_worker`,
times how long until the process is up, and reads the process's peak resident memory
(``VmHWM`` of ``/proc/self/status``, read by the process itself; ``ru_maxrss`` would also count
the copy of the parent's pages a spawned process holds before its ``exec``). Quiet and beside one competing CPU-bound process; the variants
alternate and the median of ``--repeats`` runs is printed, with the ratio to the baseline.

Usage::

    python benchmarks/files_process.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditions import CONDITIONS, under  # noqa: E402

VARIANTS = {"baseline": "segpipe.pipeline.segment", "segpipe": "segpipe.pipeline.segment_files"}

CHILD = """
import json, sys, time
from pathlib import Path
from segpipe.pipeline.files_process import files_worker
start = time.perf_counter()
with files_worker(processes=1, preload=(sys.argv[1],)) as worker:
    worker.started.result()
    seconds = time.perf_counter() - start
    status = worker.submit(Path.read_text, Path("/proc/self/status")).result()  # read in the worker: its own
peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
print(json.dumps({"start_s": seconds, "peak_mib": peak / 1024}))
"""


def measure(module: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, module], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from segpipe.report.runs import cpu_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each variant; the median is kept")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict]] = {}
    for condition in CONDITIONS:
        with under(condition):
            for _ in range(args.repeats):
                for name, module in VARIANTS.items():
                    results.setdefault((condition, name), []).append(measure(module))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; median of {args.repeats} alternating runs; baseline: "
          f"the process importing {VARIANTS['baseline']}")
    print("| condition | files process imports | start-up | vs baseline | peak memory | vs baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (condition, name), rows in results.items():
        base = results[(condition, "baseline")]
        value = {k: statistics.median(r[k] for r in rows) for k in ("start_s", "peak_mib")}
        ref = {k: statistics.median(r[k] for r in base) for k in ("start_s", "peak_mib")}
        print(f"| {condition} | {VARIANTS[name]} | {value['start_s']:.2f} s | {value['start_s'] / ref['start_s']:.2f}x "
              f"| {value['peak_mib']:.0f} MiB | {value['peak_mib'] / ref['peak_mib']:.2f}x |")


if __name__ == "__main__":
    main()
