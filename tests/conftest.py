"""Shared fixtures: the bundled data, small real crops of it, and a Prefect test server."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

# Prefect reads its settings at import; keep telemetry off and its files (the embedded server's
# SQLite database, profiles, result cache) out of the user's home, one folder per test process:
# pytest-xdist's workers each start an embedded server, and two on one database lock each other.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
if os.environ.get("PREFECT_HOME", "") in ("", os.environ.get("SEGPIPE_TESTS_PREFECT_HOME")):  # not the user's: this process's
    os.environ["PREFECT_HOME"] = os.environ["SEGPIPE_TESTS_PREFECT_HOME"] = tempfile.mkdtemp(prefix="segpipe-tests-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
# bioimageio.spec reads its cache folder at import; keep the packages it unpacks out of the user's home
# (one folder per xdist worker: two unpacking one package into one folder would meet).
_CACHE = Path(tempfile.gettempdir()) / "segpipe-tests-bioimageio-cache"
if os.environ.get("BIOIMAGEIO_CACHE_PATH", str(_CACHE)).startswith(str(_CACHE)):  # not the user's
    os.environ["BIOIMAGEIO_CACHE_PATH"] = f"{_CACHE}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
# pytest-xdist's workers share the cores: torch threads (segpipe.models.device.cpu_threads reads
# OMP_NUM_THREADS too) divided among them instead of each worker taking every core.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _SHARE = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _SHARE)))


_TEST_RUN = os.getpid()


def _interrupt(signum, frame) -> None:
    """SIGTERM stops the test run as Ctrl-C does (fixtures' teardown stops the servers they started);
    a forked child (a data loader's worker) ends as SIGTERM ends it by default."""
    if os.getpid() != _TEST_RUN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config) -> None:
    # In-process segpipe commands pass SIGTERM on to this handler (segpipe.cli.app.stop_on_sigterm).
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(items) -> None:
    """Tests marked slow (full training runs) get an hour, not the suite's 5 minutes (pyproject.toml)."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(3600))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data bundled with the project (see data/README.md)."""
    return DATA


def write_crop_dataset(folder: Path, names: list[str], *, size: int = 160) -> Path:
    """Copy crops of real BBBC007 fields (image and labels) into ``folder``; return a catalog."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        for sub in ("images", "labels"):
            array = tifffile.imread(DATA / "bbbc007" / sub / f"{name}.tif")[:size, :size]
            tifffile.imwrite(folder / sub / f"{name}.tif", np.ascontiguousarray(array))
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "datasets:\n"
        "  crops:\n"
        "    images: images/*.tif\n"
        "    labels: labels/*.tif\n"
        "    ndim: 2\n"
        "    classes: [background, nucleus]\n"
        "    ground_truth: silver standard (Voronoi-Otsu labeling)\n"
        "    split:\n"
        f"      train: [{names[0]}, {names[1]}]\n"
        f"      validation: [{names[2]}]\n"
        f"      test: [{names[3]}]\n"
        "    training: {patch_size: [64, 64], batch_size: 2, iterations_per_epoch: 2, val_every: 1,\n"
        "               features: [8, 16, 32, 64, 128, 8]}\n"
    )
    return catalog


CROP_NAMES = ["17P1_POS0006_D_1UL", "A9_p5d", "20P1_POS0007_D_1UL", "A9_p9d"]


@pytest.fixture
def crop_catalog(tmp_path: Path) -> Path:
    """A four-image catalog of 160x160 real crops (2 train, 1 validation, 1 test)."""
    return write_crop_dataset(tmp_path / "crops", CROP_NAMES)


@pytest.fixture(scope="session")
def make_crop_catalog(tmp_path_factory):
    """Write a four-crop catalog like ``crop_catalog`` into a new folder, for session or module fixtures."""

    def make(names: list[str] = CROP_NAMES) -> Path:
        return write_crop_dataset(tmp_path_factory.mktemp("crops"), names)

    return make


@pytest.fixture(scope="session")
def crops_model(make_crop_catalog, tmp_path_factory):
    """A U-Net with the planned 2D heads (distance and flow) trained three epochs on 160x160 crops
    of BBBC007: enough to find nuclei. Shared by the session: read it, do not change its folder."""
    from segpipe.data.catalog import load_catalog
    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.store import ImageStore
    from segpipe.training.loop import train_model
    from segpipe.training.params import TrainParams

    store = tmp_path_factory.mktemp("store") / "data.zarr"
    ingest_dataset(load_catalog(make_crop_catalog()).dataset("crops"), store, progress=False)
    config = TrainParams(
        epochs=3, iterations_per_epoch=4, batch_size=2, patch_size=(64, 64), val_every=3,
        features=(8, 16, 32, 64, 128, 8), device="cpu",
    )
    return train_model(ImageStore.open(store), tmp_path_factory.mktemp("model"), config, progress=False).model


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect database and API for flow tests (about 6 s, once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def model_card():
    """``model_card(ndim=2, **fields)``: a valid model card of a small instance U-Net."""
    from segpipe.inference.normalize import NormalizationSpec
    from segpipe.inference.postprocess import InstanceParams
    from segpipe.models.card import ModelCard, TrainingRecord

    def make(ndim: int = 2, **fields) -> ModelCard:
        values = dict(
            name="demo",
            network="unet",
            network_options={"features": [8, 16, 32, 64, 128, 8]},
            spatial_dims=ndim,
            in_channels=1,
            out_channels=3,
            classes=["background", "nucleus"],
            instances=True,
            patch_size=(64,) * ndim,
            spacing=(1.0,) * ndim,
            normalization=NormalizationSpec(method="percentile", low=1.0, high=99.8),
            postprocess=InstanceParams(),
            training=TrainingRecord(
                dataset="demo", config={"learning_rate": 0.002, "batch_size": 2, "seed": 0, "device": "cpu"},
                config_key="abc", epochs=3, best_epoch=3, seconds=12.5, validation={"seg": 0.5},
            ),
        )
        return ModelCard(**{**values, **fields})

    return make


@contextlib.contextmanager
def _logging_as_found():
    """Put back the root logger's handlers after a command: a flow run leaves Prefect's console
    handler there, bound to this test's captured stderr, which is closed by the next test (whose
    warnings then print a "Logging error" traceback)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@dataclass
class CliRun:
    """What ``segpipe ARGS`` did, run in this process: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        """The ``error:`` lines of stderr."""
        return [line for line in self.err.splitlines() if line.startswith("error:")]


@pytest.fixture
def segpipe_cli(monkeypatch, capsys):
    """``segpipe_cli(*args) -> CliRun``: the command line entry point, asserting that no traceback
    (nor torch's ``weights_only`` advice) reaches the user."""
    from segpipe.cli import main

    def run(*args) -> CliRun:
        monkeypatch.setattr(sys, "argv", ["segpipe", *map(str, args)])
        code = 0
        try:
            with _logging_as_found():
                main()
        except SystemExit as exit_info:
            code = exit_info.code if isinstance(exit_info.code, int) else 1
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "weights_only" not in captured.err, captured.err[-3000:]
        return CliRun(code, captured.out, captured.err)

    return run
