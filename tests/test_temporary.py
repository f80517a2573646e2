"""Temporary names: made in one place, read back to the file meant, replaced in one rename."""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest

from segpipe.temporary import KINDS, STALE_AFTER, meant, parse, remove_stale, replacing, temporary_path, writer_alive

PACKAGE = Path(__file__).resolve().parents[1] / "segpipe"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, keep_suffix", [("model.pt", False), ("data.zarr", False), ("cells.zip", True),
                                               ("a.b.c", False), ("metrics.json", True)])
def test_a_temporary_name_reads_back_to_its_file_kind_and_writer(tmp_path, name, keep_suffix, kind):
    path = tmp_path / name
    tmp = temporary_path(path, kind=kind, keep_suffix=keep_suffix)
    assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name != path.name
    assert tmp.name.endswith(path.suffix) == keep_suffix or not path.suffix
    found = parse(tmp)
    assert found is not None and (found.path, found.kind, found.pid) == (path, kind, os.getpid())
    assert meant(str(tmp)) == str(path)


def test_two_writers_of_one_file_in_one_process_get_two_names(tmp_path):
    """``metrics.json`` was written under ``.metrics.json.tmp``, the same name for every scorer."""
    names = {temporary_path(tmp_path / "metrics.json") for _ in range(100)}
    assert len(names) == 100


@pytest.mark.parametrize("name", ["plain.csv", ".hidden", ".metrics.json.tmp", ".x.tmp-12-zz", "..tmp-1-0123abcd",
                                  "...tmp-1-0123abcd", "....tmp-1-0123abcd", ".x.tmp-1-0123abcd\n"])
def test_other_names_are_not_taken_for_temporary_ones(name):
    assert parse(name) is None and meant(name) == name


def test_an_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        temporary_path(tmp_path / "x", kind="partial-old")


def test_replacing_moves_the_new_content_into_place_in_one_rename(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with replacing(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"  # the reader sees the old file until the block ends
    assert path.read_text() == "new" and sorted(tmp_path.iterdir()) == [path]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_dead_writer_is_told_from_a_live_one():
    assert writer_alive(os.getpid()) and writer_alive(1) and not writer_alive(_dead_pid())


@pytest.mark.parametrize("keep_suffix", [False, True])
def test_what_killed_writers_left_is_removed_by_the_next_writer_in_that_folder(tmp_path, keep_suffix):
    """Names are new each run, so a killed writer's half-written copies would pile up (each a model's size)."""
    path, dead = tmp_path / "model.pt", _dead_pid()
    suffix = ".pt" if keep_suffix else ""
    left = [tmp_path / (f".model.tmp-{dead}-0123abcd{suffix}" if keep_suffix else f".model.pt.tmp-{dead}-0123abcd"),
            tmp_path / f".other.pt.tmp-{dead}-0123abcd"]
    kept = [tmp_path / f".model.pt.tmp-{os.getpid()}-0123abcd{suffix}",  # a live writer's (this process's)
            tmp_path / f".model.pt.partial-{dead}-0123abcd",  # a store's: data.ingest.atomic decides
            tmp_path / f".model.pt.tmp-{dead}-0123abcd.d"]  # a folder, not a file segpipe writes
    for name in (*left, *kept[:2]):
        name.write_bytes(b"half")
        os.utime(name, (time.time() - 2 * STALE_AFTER,) * 2)  # killed long ago
    kept[2].mkdir()
    recent = tmp_path / f".model.pt.tmp-{dead}-89abcdef"  # another machine's writer, its pid unknown here: still written to
    recent.write_bytes(b"being written")
    kept.append(recent)
    with replacing(path, keep_suffix=keep_suffix) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole" and not any(p.exists() for p in left) and all(p.exists() for p in kept)


def test_a_folder_is_swept_once_per_process(tmp_path):
    """Writing N files into one folder lists it once, not N times (quadratic in a long CTC export)."""
    with replacing(tmp_path / "a.csv") as tmp:
        tmp.write_text("a")
    later = tmp_path / f".b.csv.tmp-{_dead_pid()}-0123abcd"
    later.write_text("half")
    os.utime(later, (time.time() - 2 * STALE_AFTER,) * 2)
    with replacing(tmp_path / "b.csv") as tmp:
        tmp.write_text("b")
    assert later.exists() and remove_stale(tmp_path) == [later] and not later.exists()


#: Temporary names made elsewhere on purpose: the group a prediction streams into inside its zarr
#: store keeps a fixed name, so a stopped run resumes it.
MADE_ELSEWHERE = {"prediction/complete.py"}
MARKS = (".tmp", ".partial", ".old", ".part")


def _hand_made_names(path: Path) -> list[int]:
    """Lines building a hidden temporary-looking name by hand: ``with_name(f".…")``, or a string or
    f-string that starts with a dot and holds ``.tmp``, ``.partial``, ``.old`` or ``.part``."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_name"
                and node.args and isinstance(node.args[0], ast.JoinedStr) and node.args[0].values
                and isinstance(node.args[0].values[0], ast.Constant) and str(node.args[0].values[0].value).startswith(".")):
            lines.add(node.lineno)
            continue
        if isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            starts = bool(node.values) and isinstance(node.values[0], ast.Constant) and str(node.values[0].value).startswith(".")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts, starts = [node.value], node.value.startswith(".") and "\n" not in node.value
        else:
            continue
        if starts and any(mark in part for part in parts for mark in MARKS):
            lines.add(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_writer_makes_a_temporary_name_by_hand(path):
    """Eleven modules made their own names (``.NAME.PID.tmp``, ``.NAME.tmp``, ``.NAME.partial``...): an
    error on one named a file the user never asked for, and two scorers shared ``.metrics.json.tmp``."""
    if path.name == "temporary.py" or str(path.relative_to(PACKAGE)) in MADE_ELSEWHERE:
        return
    assert _hand_made_names(path) == []
