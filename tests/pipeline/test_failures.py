"""Failures told from the earlier run's: the same error and the same files keep their first date."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from segpipe.data.inputs import files_now
from segpipe.pipeline.failures import dated, earlier_failures, new_failures
from segpipe.pipeline.segment_files import InputResult

THEN = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)


def failed(path: str, error: str, files: str | None) -> InputResult:
    return InputResult("x", path, "image", error=error, failed_files=files)


def test_files_now_stamps_a_file_or_a_folders_files_by_size_and_times(tmp_path):
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "t000.tif").write_bytes(b"12345")
    (tmp_path / "seq" / "t001.tif").write_bytes(b"1")
    stamp = files_now(tmp_path / "seq")
    assert stamp.startswith("2 file(s), ") and len(stamp) == len("2 file(s), ") + 16 and files_now(tmp_path / "seq") == stamp
    assert files_now(tmp_path / "seq" / "t001.tif").startswith("1 file(s), ")
    os.utime(tmp_path / "seq" / "t001.tif", ns=(7, 1_000_000_123))  # a time moved: another stamp
    assert files_now(tmp_path / "seq") != stamp
    before = files_now(tmp_path / "seq")
    time.sleep(0.05)  # file times tick at the kernel's clock (a few ms)
    (tmp_path / "seq" / "t001.tif").write_bytes(b"2")  # the same size, its time put back: its status-change time moved
    os.utime(tmp_path / "seq" / "t001.tif", ns=(7, 1_000_000_123))
    assert files_now(tmp_path / "seq") != before
    assert files_now(tmp_path / "gone.tif") == ""


def test_a_failure_as_before_keeps_its_date_and_any_change_dates_it_now():
    files = "1 file(s), 0123456789abcdef"
    earlier = {"/in/a.tif": {"path": "/in/a.tif", "error": "InputError: not a TIFF", "failed_files": files,
                             "failing_since": THEN.isoformat(timespec="seconds")}}
    results = [
        failed("/in/a.tif", "InputError: not a TIFF", files),  # the same: known
        InputResult("y", "/in/b.tif", "image", images=["b"]),  # segmented: untouched
    ]
    again = dated(results, earlier, now=NOW)
    assert again[0].failed_before and again[0].failing_since == "2026-12-01T09:30:00+00:00"
    assert again[1] == results[1] and new_failures(again) == []

    for changed in (failed("/in/a.tif", "InputError: not a TIFF", "1 file(s), 1123456789abcdef"),  # rewritten
                    failed("/in/a.tif", "InputError: not a TIFF", "1 file(s), 2123456789abcdef"),  # replaced by a copy with its time
                    failed("/in/a.tif", "OSError: permission denied", files),  # another error
                    failed("/in/c.tif", "InputError: not a TIFF", files)):  # another input
        [result] = dated([changed], earlier, now=NOW)
        assert not result.failed_before and result.failing_since == "2026-12-07T18:00:00+00:00"
        assert new_failures([result]) == [result]


def test_an_earlier_summary_without_dates_or_unreadable_makes_every_failure_new(tmp_path):
    summary = tmp_path / "segment.json"
    summary.write_text('{"inputs": [{"path": "/in/a.tif", "error": "InputError: not a TIFF"}], "failed": ["/in/a.tif"]}')
    earlier = earlier_failures(summary)
    assert list(earlier) == ["/in/a.tif"]
    [result] = dated([failed("/in/a.tif", "InputError: not a TIFF", None)], earlier, now=NOW)
    assert not result.failed_before  # an older segpipe's summary has no date to carry
    summary.write_text("{half")
    assert earlier_failures(summary) == {} and earlier_failures(tmp_path / "none.json") == {}
