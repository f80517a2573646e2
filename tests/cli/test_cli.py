import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _segpipe(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-c", "from segpipe.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def test_help_lists_every_stage():
    result = _segpipe("--help")
    assert result.returncode == 0
    for command in ("run", "ingest", "train", "predict", "score", "report", "catalog", "models"):
        assert command in result.stdout


def test_catalog_command_lists_bundled_datasets():
    result = _segpipe("catalog")
    assert result.returncode == 0, result.stderr
    assert "bbbc007: 2D" in result.stdout and "dsb2018-nuclei" in result.stdout


def test_bad_input_exits_nonzero_with_the_file_named(crop_catalog, tmp_path):
    bad = crop_catalog.parent / "labels" / "A9_p5d.tif"
    bad.write_bytes(b"")
    result = _segpipe("ingest", "crops", "--catalog", str(crop_catalog), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "A9_p5d.tif: file is empty (0 bytes)" in result.stderr
    assert "Traceback" not in result.stderr
