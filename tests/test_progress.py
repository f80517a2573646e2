"""Progress: log lines at an interval without a terminal, with rate, ETA and the caller's numbers."""

from __future__ import annotations

import logging

from segpipe.progress import Progress


def test_without_a_terminal_it_logs_lines_with_eta(caplog):
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        bar = Progress(10, desc="train", unit="it", interval=0.0, terminal=False)
        bar.update(1, loss=0.5)
        bar.update(4, loss=0.25)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("train: 1/10 it (10%)") and "loss 0.5" in lines[0] and "ETA" in lines[0]
    assert lines[1].startswith("train: 5/10 it (50%)") and "loss 0.25" in lines[1]
    assert lines[-1].startswith("train: 5/10 it (50%)")


def test_lines_are_spaced_by_the_interval_and_resumed_counts_start_where_they_were(caplog):
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        bar = Progress(100, desc="predict", unit="row", done=40, interval=3600.0, terminal=False)
        for _ in range(10):
            bar.update(1)
        assert not caplog.records  # no line before the interval has passed
        bar.close()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["predict: 50/100 row (50%)"]


def test_disabled_progress_says_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        with Progress(3, desc="x", enabled=False, interval=0.0, terminal=False) as bar:
            bar.update(3)
    assert not caplog.records


def test_a_terminal_that_reports_no_width_still_gets_a_bar():
    """A pseudo-terminal whose size was never set (``script``, some ``docker exec -t``) reports 0
    columns; tqdm sized by it drew nothing at all."""
    import os
    import pty
    import subprocess
    import sys

    code = ("from segpipe.progress import Progress, bar_size\nfrom tqdm import tqdm\n"
            "bar = Progress(5, desc='work')\nbar.update(5)\nbar.close()\n"
            "with tqdm(total=3, desc='ingest', **bar_size()) as plain:\n    plain.update(3)\n")
    leader, follower = pty.openpty()
    assert os.get_terminal_size(follower).columns == 0
    child = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert child.wait(timeout=60) == 0
    assert b"work: 100%" in out and b"5/5" in out
    assert b"ingest: 100%" in out and b"3/3" in out  # a bar made with tqdm itself, as ingest's


def test_a_time_budget_that_ends_the_work_first_gives_the_eta(caplog):
    """`train --minutes 3` showed the ETA of every planned iteration (7 min 43 s) and stopped at 3 min."""
    import time

    left = {"s": 5.0}
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        bar = Progress(1000, desc="train", unit="it", interval=0.0, terminal=False, time_left=lambda: left["s"])
        time.sleep(0.01)
        bar.update(1)  # 999 iterations left at about 100 a second or less: about 10 s or more
        left["s"] = 1e6  # a budget longer than the work: the work's own ETA
        bar.update(1)
    first, second = (r.getMessage() for r in caplog.records)
    assert "ETA 5 s (time budget)" in first
    assert "ETA" in second and "time budget" not in second


def test_the_bar_on_a_terminal_gives_the_time_budgets_eta(capsys):
    """On a terminal tqdm's own ETA still counted every planned iteration (the log line and a note
    beside the bar gave the budget's end): the bar's ETA is now the budget's."""
    import time

    left = {"s": 65.0}
    bar = Progress(100_000, desc="train", unit="it", terminal=True, time_left=lambda: left["s"])
    time.sleep(0.05)
    bar.update(1)  # 99,999 iterations left at 20 a second or less: over an hour by tqdm's count
    bar.close()
    drawn = capsys.readouterr().err.split("\r")[-1]
    assert "<01:05," in drawn and "ETA=time budget" in drawn, drawn
    left["s"] = 1e9  # a budget longer than the work: tqdm's own ETA, no note
    bar = Progress(10, desc="train", unit="it", terminal=True, time_left=lambda: left["s"])
    time.sleep(0.05)
    bar.update(5)
    bar.close()
    drawn = capsys.readouterr().err.split("\r")[-1]
    assert "time budget" not in drawn and "5/10" in drawn and "<00:0" in drawn, drawn
