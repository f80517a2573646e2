"""Cache keys: what a cached result depends on changes its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.flows import caching


def _package(root: Path, name: str) -> Path:
    """A package ``name`` with a source, shipped weights and bytecode (each test its own name:
    an imported package stays in ``sys.modules``)."""
    package = root / name
    (package / "starts").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "__init__.py").write_text("WIDTH = 16\n")
    (package / "starts" / "model.pt").write_bytes(b"\x00\x01weights")
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"bytecode")
    return package


def test_code_digest_follows_sources_and_shipped_files_not_bytecode(tmp_path, monkeypatch):
    package = _package(tmp_path, "digested_pkg")
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = caching.code_digest.__wrapped__  # uncached: each call reads the files as they are
    first = digest("digested_pkg")
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"other bytecode")
    assert digest("digested_pkg") == first
    (package / "starts" / "model.pt").write_bytes(b"\x00\x01other weights")
    second = digest("digested_pkg")
    assert second != first
    (package / "__init__.py").write_text("WIDTH = 32\n")
    assert digest("digested_pkg") not in (first, second)


@pytest.fixture
def ingested(crop_catalog, tmp_path):
    from segpipe.pipeline import stages
    from segpipe.pipeline.catalog import open_catalog
    from segpipe.pipeline.run_folder import RunFolder

    run = RunFolder(tmp_path / "runs" / "crops")
    stages.ingest(open_catalog(crop_catalog), "crops", run)
    return run


def test_the_training_key_changes_with_the_training_code(ingested, tmp_path, monkeypatch):
    """An upgraded segpipe (other training code or starting weights) trains again: before, the
    key held the data and parameters only and a cached model of the old code was reused."""
    from segpipe.training.params import TrainParams

    package = _package(tmp_path, "training_pkg")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(caching, "TRAINING_CODE", (*caching.TRAINING_CODE, "training_pkg"))
    params = TrainParams(epochs=1)
    first = caching.train_key(ingested, params)
    assert caching.train_key(ingested, params) == first
    caching.code_digest.cache_clear()
    (package / "starts" / "model.pt").write_bytes(b"new weights")
    assert caching.train_key(ingested, params) != first
    assert caching.train_key(ingested, TrainParams(epochs=2)) != caching.train_key(ingested, params)


def _rewrite_keeping_stat(path: Path) -> None:
    """New bytes at the recorded size and modification time, as ``cp -p`` or ``rsync -t`` leave a replacement."""
    import os

    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def files_read(monkeypatch) -> list[Path]:
    """The files whose bytes are digested from now on (each call of the real digest, recorded)."""
    from segpipe.data.ingest import fingerprint

    read: list[Path] = []
    digest = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda path: read.append(Path(path)) or digest(path))
    return read


def test_the_ingest_key_reads_only_the_sources_whose_size_or_times_changed(ingested, crop_catalog, monkeypatch):
    """A repeated run checked the store against its sources by reading every source file (twice: the
    key and the freshness check); a source the store recorded with the same size and times is now
    taken at its recorded digest, as ingest itself takes it, and one whose times moved is read."""
    import os

    first = caching.ingest_key(str(crop_catalog), "crops", ingested)
    assert caching.ingest_current(str(crop_catalog), "crops", ingested)
    read = files_read(monkeypatch)
    assert caching.ingest_key(str(crop_catalog), "crops", ingested) == first and read == []  # nothing read
    source = sorted((crop_catalog.parent / "images").glob("*.tif"))[0]
    os.utime(source)  # its time moves: read, the same bytes
    assert caching.ingest_key(str(crop_catalog), "crops", ingested) == first and read == [source]


def test_a_replacement_copied_with_the_old_size_and_time_is_seen(ingested, crop_catalog, monkeypatch):
    """``cp -p`` of another image over a source (its size and modification time those recorded) kept
    the store, and every later stage, on the old image: the status-change time, which no copy sets,
    now tells it."""
    first = caching.ingest_key(str(crop_catalog), "crops", ingested)
    source = sorted((crop_catalog.parent / "images").glob("*.tif"))[0]
    read = files_read(monkeypatch)
    _rewrite_keeping_stat(source)
    assert caching.ingest_key(str(crop_catalog), "crops", ingested) != first and read == [source]
    assert not caching.ingest_current(str(crop_catalog), "crops", ingested)


def test_a_touched_source_is_read_once_then_its_time_remembered(ingested, crop_catalog, monkeypatch):
    """A copy or a touch moves a file's time, not its bytes: the file was read on every later run (the
    store kept its old time); the up-to-date ingest now records the new one."""
    import os

    from segpipe.pipeline import stages
    from segpipe.pipeline.catalog import open_catalog

    first = caching.ingest_key(str(crop_catalog), "crops", ingested)
    source = sorted((crop_catalog.parent / "images").glob("*.tif"))[0]
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))  # touched
    assert caching.ingest_key(str(crop_catalog), "crops", ingested) == first  # read: the same bytes
    stages.ingest(open_catalog(crop_catalog), "crops", ingested)  # up to date: the new time is kept
    read = files_read(monkeypatch)
    assert caching.ingest_key(str(crop_catalog), "crops", ingested) == first and read == []  # not read again
