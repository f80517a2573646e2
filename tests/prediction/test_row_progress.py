"""Rows of a large image, over its frames, as one progress count."""

from __future__ import annotations

import logging

import numpy as np

from segpipe.data.store import StoredImage
from segpipe.prediction.predict import RowProgress


def test_rows_of_every_frame_add_up(caplog):
    image = StoredImage("movie", "test", np.zeros((1, 2, 50, 40), np.uint8), None, (1.0, 1.0), {})
    seen = []
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        with RowProgress(image, 2, enabled=True, then=lambda f, r: seen.append((f, r))) as rows:
            rows.bar.terminal, rows.bar.interval = False, 0.0
            for call in [((0,), 20), ((0,), 50), ((1,), 10), ((1,), 50)]:
                rows(*call)
            assert rows.bar.done == 100
    assert seen == [((0,), 20), ((0,), 50), ((1,), 10), ((1,), 50)]
    assert [r.getMessage().split(",")[0] for r in caplog.records][:4] == [
        "predict movie: 20/100 row (20%)", "predict movie: 50/100 row (50%)",
        "predict movie: 60/100 row (60%)", "predict movie: 100/100 row (100%)",
    ]


def test_a_resumed_prediction_counts_only_its_own_rows_in_the_rate(caplog, monkeypatch):
    """Resumed after frame 0 and 10 rows of frame 1 (60 of 100 rows): the bar starts there, and 40
    rows in 10 s are 4 rows a second (the 60 rows done before made it 10, and the ETA too short)."""
    import segpipe.progress

    now = [0.0]
    monkeypatch.setattr(segpipe.progress.time, "monotonic", lambda: now[0])
    image = StoredImage("movie", "test", np.zeros((1, 2, 50, 40), np.uint8), None, (1.0, 1.0), {})
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        rows = RowProgress(image, 2, enabled=True, done=(1, 10))
        rows.bar.terminal, rows.bar.interval = False, 0.0
        assert rows.bar.done == 60
        now[0] = 10.0
        rows((1,), 50)
    assert caplog.records[0].getMessage() == "predict movie: 100/100 row (100%), 4 row/s"
