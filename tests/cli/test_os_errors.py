"""Operating-system errors from the command line: one ``error:`` line naming the path, exit code 2,
nothing half-written left behind (an output that is a file, a read-only folder, a full disk)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from segpipe.data.catalog import load_catalog
from segpipe.data.store import ImageStore
from segpipe.pipeline import RunFolder, stages
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams

TINY = TrainParams(
    epochs=1, iterations_per_epoch=2, batch_size=2, patch_size=(64, 64), val_every=1,
    features=(8, 16, 32, 64, 128, 8), device="cpu",
)


@pytest.fixture(scope="module")
def trained(make_crop_catalog, tmp_path_factory) -> Path:
    """A run folder of the crops: ingested, trained one epoch, predicted; returns the catalog."""
    catalog = make_crop_catalog()
    run = RunFolder.of(catalog.parent / "runs", "crops")
    stages.ingest(load_catalog(catalog), "crops", run)
    stages.train(run, TINY, progress=False)
    stages.predict(run, PredictParams(device="cpu"), progress=False)
    return catalog


def mount(folder: Path, *options: str, source: str = "tmpfs") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    kind = ["-t", "tmpfs"] if source == "tmpfs" else ["--bind"]
    result = subprocess.run(["mount", *kind, *(["-o", ",".join(options)] if options else []), source, str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here (root and mount(8) needed): {result.stderr.strip()}")


@contextlib.contextmanager
def mounted(folder: Path, *options: str, source: str = "tmpfs"):
    mount(folder, *options, source=source)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def read_only_copy(source: Path, target: Path):
    """``target``: a read-only view of a copy of ``source`` (a bind mount remounted read-only)."""
    copy = target.with_name(target.name + "-src")
    shutil.copytree(source, copy)
    with mounted(target, source=str(copy)):
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        yield target


@contextlib.contextmanager
def full_copy(source: Path | None, target: Path, *, spare_kib: int = 0):
    """``target``: a small tmpfs holding a copy of ``source`` (if any), then filled up to ``spare_kib`` KiB."""
    with mounted(target, "size=16m"):
        if source is not None:
            shutil.copytree(source, target, dirs_exist_ok=True)
        free = shutil.disk_usage(target).free - spare_kib * 1024
        with open(target / "filler", "wb") as handle:
            with contextlib.suppress(OSError):
                handle.write(b"\0" * max(free, 0))
        yield target


def leftovers(folder: Path) -> list[str]:
    """Temporary files and stores a failed command may not leave (names :mod:`segpipe.temporary` makes)."""
    from segpipe.temporary import parse

    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if parse(p) is not None)


def _commands(catalog: Path, output: Path, model: Path) -> dict[str, list]:
    image = catalog.parent / "images" / "A9_p9d.tif"
    return {
        "ingest": ["ingest", "crops", "--catalog", catalog, "--output", output, "--force"],
        "train": ["train", "crops", "--catalog", catalog, "--output", output, "--epochs", "2", "--device", "cpu"],
        "predict": ["predict", "crops", "--catalog", catalog, "--output", output, "--overlap", "0.3", "--device", "cpu"],
        "score": ["score", "crops", "--output", output],
        "segment": ["segment", "--model", model, image, "--output", output / "segmented", "--device", "cpu"],
    }


@pytest.mark.parametrize("command", ["ingest", "train", "predict", "segment"])
def test_output_that_is_a_file(trained, tmp_path, segpipe_cli, command):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    args = _commands(trained, afile, trained.parent / "runs" / "crops" / "model")[command]
    result = segpipe_cli(*args)
    code, errors = result.code, result.errors
    assert code == 2 and len(errors) == 1, errors
    assert str(afile) in errors[0] and "is a file, not a folder" in errors[0], errors


@pytest.mark.parametrize("command", ["ingest", "train", "predict", "score", "segment"])
def test_read_only_output(trained, tmp_path, segpipe_cli, command):
    with read_only_copy(trained.parent / "runs", tmp_path / "ro") as output:
        args = _commands(trained, output, trained.parent / "runs" / "crops" / "model")[command]
        result = segpipe_cli(*args)
        code, errors = result.code, result.errors
    assert code == 2 and len(errors) == 1, errors
    assert str(tmp_path / "ro") in errors[0] and "read-only" in errors[0], errors


@pytest.mark.parametrize("command", ["ingest", "train", "predict", "score", "segment"])
def test_full_disk(trained, tmp_path, segpipe_cli, command):
    with full_copy(trained.parent / "runs", tmp_path / "full") as output:
        before = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file() and p.name != "filler"}
        args = _commands(trained, output, trained.parent / "runs" / "crops" / "model")[command]
        result = segpipe_cli(*args)
        code, errors = result.code, result.errors
        assert code == 2 and len(errors) == 1, errors
        assert str(output) in errors[0] and "the disk is full" in errors[0], errors
        assert leftovers(output) == []
        assert ImageStore.open(output / "crops" / "data.zarr").names()  # the last complete store is kept
        changed = [p for p, t in before.items() if p.exists() and p.stat().st_mtime_ns != t and p.suffix != ".csv"]
        assert not [p for p in changed if p.name in ("model.pt", "metrics.json")], changed


def test_a_disk_that_fills_as_training_writes_its_weights_is_one_line(trained, tmp_path, segpipe_cli):
    """Room for the run's small files, not for the weights: torch's zip writer hid the full disk in a
    RuntimeError, a 60-line traceback and exit 1."""
    with full_copy(trained.parent / "runs", tmp_path / "full", spare_kib=512) as output:
        result = segpipe_cli(*_commands(trained, output, trained.parent / "runs" / "crops" / "model")["train"])
        assert result.code == 2 and len(result.errors) == 1, result.errors
        assert str(output) in result.errors[0] and "the disk is full" in result.errors[0], result.errors
        assert leftovers(output) == []


def test_full_disk_on_a_first_ingest_leaves_nothing(tmp_path, segpipe_cli, make_crop_catalog):
    catalog = make_crop_catalog()
    with full_copy(None, tmp_path / "full", spare_kib=64) as output:
        result = segpipe_cli("ingest", "crops", "--catalog", catalog, "--output", output)
        code, errors = result.code, result.errors
        assert code == 2 and len(errors) == 1 and str(output) in errors[0] and "disk is full" in errors[0], errors
        assert not (output / "crops").exists()  # not even the folder the ingest made


def test_read_only_output_for_a_whole_run(prefect_harness, make_crop_catalog, tmp_path, segpipe_cli):
    """Inside the Prefect flow the error is the same one line (not the flow's traceback, not exit 1)."""
    catalog = make_crop_catalog()
    with mounted(tmp_path / "ro", "ro", "size=1m") as output:
        result = segpipe_cli("run", "crops", "--catalog", catalog, "--output", output, "--epochs", "1")
        code, errors = result.code, result.errors
    assert code == 2 and errors == [f"error: {output}/crops: the file system is read-only; write somewhere else"]


def test_os_errors_that_will_not_pass_are_not_retried():
    """A full disk or a read-only folder is not a network hiccup: the flows fail at once."""
    import errno

    from segpipe.flows.tasks import transient

    class State:
        def __init__(self, error):
            self.error = error

        def result(self, raise_on_failure=False):
            return self.error

    assert transient(None, None, State(OSError(errno.EIO, "I/O error")))
    assert transient(None, None, State(FileNotFoundError(errno.ENOENT, "gone", "x")))
    for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENOTDIR, errno.EDQUOT):
        assert not transient(None, None, State(OSError(code, os.strerror(code), "x")))


def test_permission_denied_on_an_existing_file_does_not_blame_the_output_folder(tmp_path):
    """EACCES on a file that exists (an unreadable input, a program that cannot be started) says to
    check that file; on a path to be made, to choose a folder one can write to."""
    import errno

    from segpipe.cli.app import os_error_line

    there = tmp_path / "input.tif"
    there.write_bytes(b"x")
    line = os_error_line(PermissionError(errno.EACCES, "Permission denied", str(there)))
    assert line == f"{there}: permission denied (this user may not use it: check its permissions)"
    line = os_error_line(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out" / "new")))
    assert line == f"{tmp_path / 'out' / 'new'}: permission denied; choose a folder you can write to"


@pytest.mark.parametrize(
    "written, named",
    [
        (".model.zip.tmp-4242-0a1b2c3d", "model.zip"),  # segpipe's temporary names: the file the user asked for
        (".cells.tmp-4242-0a1b2c3d.zip", "cells.zip"),
        (".data.zarr.partial-4242-0a1b2c3d", "data.zarr"),
        (".data.zarr.old-4242-0a1b2c3d", "data.zarr"),
        (".metrics.json.tmp", ".metrics.json.tmp"),  # not a name segpipe makes
        ("plain.csv", "plain.csv"),
        (".hidden", ".hidden"),
    ],
)
def test_an_os_error_names_the_file_asked_for_and_no_option_of_another_command(written, named):
    """`models export --to` and `models import --to` were told to "choose another --output" on a
    read-only or full disk, naming a temporary file; the line names the file meant and no option."""
    import errno

    from segpipe.cli.app import os_error_line

    for code, advice in ((errno.EROFS, "the file system is read-only; write somewhere else"),
                         (errno.ENOSPC, "the disk is full; free space or write somewhere else")):
        line = os_error_line(OSError(code, "x", f"/out/{written}"))
        assert line == f"/out/{named}: {advice}"
