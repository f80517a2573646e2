"""Ingest in worker processes: same store as threads, same errors, and a safe fallback."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

from segpipe.data.catalog import load_catalog
from segpipe.errors import InputError
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.ingest.params import MANY_IMAGES
from segpipe.data.store import ImageStore, read_record

from ingest_helpers import assert_same_stores, write_random_pairs


def test_processes_write_the_same_store_as_threads(crop_catalog, tmp_path):
    dataset = load_catalog(crop_catalog).dataset("crops")
    ingest_dataset(dataset, tmp_path / "threads.zarr", progress=False, params=IngestParams(processes=1))
    ingest_dataset(dataset, tmp_path / "procs.zarr", progress=False, params=IngestParams(processes=2))
    assert_same_stores(tmp_path / "threads.zarr", tmp_path / "procs.zarr")
    assert read_record(tmp_path / "procs.zarr")["fingerprint"] == read_record(tmp_path / "threads.zarr")["fingerprint"]


def test_an_error_in_a_worker_names_the_file_and_leaves_nothing(crop_catalog, tmp_path):
    bad = crop_catalog.parent / "images" / "A9_p9d.tif"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    store = tmp_path / "out" / "data.zarr"
    with pytest.raises(InputError, match="A9_p9d.tif"):
        ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False,
                       params=IngestParams(processes=2))
    assert not store.parent.exists()  # the folder the ingest made is gone too


def test_processes_only_for_many_small_images():
    options = IngestParams()
    assert options.n_processes(MANY_IMAGES - 1, all_small=True) == 1
    assert options.n_processes(MANY_IMAGES, all_small=False) == 1
    assert IngestParams(processes=3).n_processes(2, all_small=False) == 2


UNGUARDED = """
import sys
from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset
print("script body ran")
ingest_dataset(load_catalog(sys.argv[1]).dataset("d"), sys.argv[2], progress=False,
               params=IngestParams(processes=2))
"""


def test_a_script_without_main_guard_falls_back_to_threads(tmp_path):
    catalog = write_random_pairs(tmp_path, [f"i{k}" for k in range(4)], size=32)
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    store = tmp_path / "out" / "data.zarr"
    run = subprocess.run([sys.executable, str(script), str(catalog), str(store)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "ingesting in threads instead" in run.stderr and "__main__" in run.stderr
    assert len(ImageStore.open(store).images()) == 4


KILLED = """
import sys
from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset

if __name__ == "__main__":
    ingest_dataset(load_catalog(sys.argv[1]).dataset("d"), sys.argv[2], progress=False,
                   params=IngestParams(processes=2))
"""


def test_killing_the_ingest_leaves_no_process_behind(tmp_path):
    """SIGKILL an ingest whose workers are busy: workers, fork server and resource tracker all go within seconds."""
    import os
    import signal
    import time

    import psutil

    catalog = write_random_pairs(tmp_path, [f"i{k:03d}" for k in range(300)], size=64)
    script = tmp_path / "ingest.py"
    script.write_text(KILLED)
    proc = subprocess.Popen([sys.executable, str(script), str(catalog), str(tmp_path / "out" / "data.zarr")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            children = parent.children(recursive=True)
            workers = [c for c in children if c.ppid() != proc.pid]  # forked by the fork server
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        assert len(children) >= 4, f"the workers never started: {children}"  # tracker, fork server, 2 workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [" ".join(p.cmdline())[:100] for p in alive]
    finally:  # never leave them behind, even when the test fails
        if proc.poll() is None:
            proc.kill()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
