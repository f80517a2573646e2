"""Run history (runs.jsonl), headline scores, best/worst ranking and the index page."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from segpipe.errors import InputError
from segpipe.report import append_run, headline, rank_images, read_runs, write_index
from segpipe.report.runs import new_run, run_entry

METRICS = {
    "dataset": "cells",
    "split": "test",
    "n_images": 3,
    "seg": 0.7,
    "det": 0.9,
    "op_csb": 0.8,
    "mean_iou": 0.8,
    "mean_dice": 0.85,
    "scoring_seconds": 1.5,
    "matching": [
        {"thresh": 0.1, "f1": 0.95, "ap": 0.9, "panoptic_quality": 0.7},
        {"thresh": 0.5, "f1": 0.8, "ap": 0.66, "panoptic_quality": 0.6},
    ],
    "ci": {"seg": [0.6, 0.8], "matching": {"0.5": {"f1": [0.7, 0.9], "ap": None, "panoptic_quality": None}}},
    "baseline": {"seg": 0.5, "det": 0.7, "op_csb": 0.6, "matching": [{"thresh": 0.5, "f1": 0.6, "ap": 0.4, "panoptic_quality": 0.4}]},
    "per_image": [
        {"name": "a", "seg": 0.9, "dice": {"bg": 1.0, "fg": 0.9}, "matching": [{"thresh": 0.5, "f1": 0.9}]},
        {"name": "b", "seg": 0.2, "dice": {"bg": 1.0, "fg": 0.3}, "matching": [{"thresh": 0.5, "f1": 0.2}]},
        {"name": "c", "seg": 0.5, "dice": {"bg": 1.0, "fg": 0.6}, "matching": [{"thresh": 0.5, "f1": 0.9}]},  # ties a: lower SEG
        {"name": "d", "seg": None, "dice": {"bg": 1.0, "fg": 0.7}, "matching": [{"thresh": 0.5, "f1": None}]},  # no objects
        {"name": "e", "seg": 0.6, "dice": {"bg": 1.0, "fg": 0.95}, "matching": [{"thresh": 0.5, "f1": 0.95}]},
    ],
}


def test_headline_reads_iou_half():
    h = headline(METRICS)
    assert (h["seg"], h["op_csb"], h["det"], h["f1_50"], h["ap_50"], h["pq_50"]) == (0.7, 0.8, 0.9, 0.8, 0.66, 0.6)
    assert h["ci"]["seg"] == [0.6, 0.8] and h["ci"]["f1_50"] == [0.7, 0.9] and h["ci"]["det"] is None
    assert headline({"mean_dice": 0.5})["seg"] is None


def test_rank_images_best_then_worst():
    # by F1 at IoU 0.5, ties by SEG, undefined last: e .95, a .9 (SEG .9), c .9 (SEG .5), b .2, d None
    assert rank_images(METRICS, n=2) == [("e", "best", 0.95), ("a", "best", 0.9), ("b", "worst", 0.2), ("d", "worst", None)]
    one = {"per_image": [{"name": "x", "seg": 0.4, "matching": [{"thresh": 0.5, "f1": 0.7}]}]}
    assert rank_images(one) == [("x", "only", 0.7)]  # listed once, as the only one (it was called the best)
    # semantic rows (no matching): mean foreground Dice
    semantic = {"per_image": [{"name": "p", "seg": None, "dice": {"bg": 1.0, "a": 0.2, "b": 0.4}},
                              {"name": "q", "seg": None, "dice": {"bg": 0.5, "a": 0.9, "b": None}}]}
    assert rank_images(semantic, n=1) == [("q", "best", 0.9), ("p", "worst", pytest.approx(0.3))]


def test_a_scoring_of_the_same_model_and_predictions_with_the_same_scores_is_the_same_run(model_card):
    from segpipe.report.runs import same_run

    entry = run_entry(METRICS, new_run(METRICS, card=model_card()))
    again = {**entry, "run_id": "later", "timestamp": "2030-01-01T00:00:00+00:00", "scoring_seconds": 9.0, "host": "other"}
    assert same_run(again, entry) and not same_run(entry, None)
    for key, value in (("predictions_time", "2030-01-01T00:00:00+00:00"), ("model_time", "2030-01-01T00:00:00+00:00"),
                       ("split", "validation"), ("scores", {**entry["scores"], "seg": 0.71})):
        assert not same_run({**again, key: value}, entry), key
    # other files scored with the same scores: another run; a run recorded before the fingerprint was kept: the same
    assert not same_run({**again, "data_fingerprint": "b"}, {**entry, "data_fingerprint": "a"})
    assert same_run({**again, "data_fingerprint": "b"}, entry)


def test_run_history_round_trip(tmp_path, model_card):
    assert read_runs(tmp_path) == []
    run = new_run(METRICS, card=model_card())
    assert run["device"] == "cpu" and run["scoring_seconds"] == 1.5 and run["machine"]["cpu_count"] >= 1
    entry = run_entry(METRICS, run)
    append_run(tmp_path, entry)
    append_run(tmp_path, {**entry, "run_id": "second"})
    runs = read_runs(tmp_path)
    assert [r["run_id"] for r in runs] == [run["run_id"], "second"]
    assert runs[0]["scores"]["seg"] == 0.7 and runs[0]["baseline"]["seg"] == 0.5 and runs[0]["baseline"]["f1_50"] == 0.6
    assert "machine" not in runs[0] and runs[0]["host"]


def test_bad_history_line_is_named(tmp_path):
    (tmp_path / "runs.jsonl").write_text('{"run_id": "a"}\n{oops\n')
    with pytest.raises(InputError, match=r"runs.jsonl: line 2 is not valid JSON"):
        read_runs(tmp_path)
    (tmp_path / "runs.jsonl").write_text("[1, 2]\n")
    with pytest.raises(InputError, match="line 1 is not a JSON object"):
        read_runs(tmp_path)


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.links, self._row = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
            self.rows.append(self._row)
        if tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def test_index_lists_each_datasets_latest_run(tmp_path):
    for dataset, seg_values in (("zebra", [0.5, 0.75]), ("alpha", [0.25])):
        folder = tmp_path / dataset
        folder.mkdir()
        for k, seg in enumerate(seg_values):
            metrics = {**METRICS, "dataset": dataset, "seg": seg}
            append_run(folder, {**run_entry(metrics, new_run(metrics, card=None)), "run_id": f"{dataset}-{k}"})
        (folder / "report.html").write_text("<html></html>")
    (tmp_path / "no-runs").mkdir()  # a folder without history is not listed
    path = write_index(tmp_path)
    parser = Cells()
    parser.feed(path.read_text())
    header, *rows = parser.rows
    assert header[:3] == ["dataset", "scored at", "run"] and header[5:7] == ["SEG [95% CI]", "OP_CSB [95% CI]"]
    assert [r[0] for r in rows] == ["alpha", "zebra"]
    assert rows[1][2] == "zebra-1" and "0.7500 [0.6000, 0.8000]" in rows[1]  # the latest run, with its CI
    assert rows[1][-1] == "2" and rows[0][-1] == "1"  # how many runs each has
    assert rows[1][-3] == "SEG 0.5000, OP_CSB 0.6000"  # the baseline's
    # the index did not say which models lose to the baseline, nor what its intervals resample
    assert rows[1][-2] == "yes (+0.2500)" and rows[0][-2] == "NO: loses by 0.2500"
    assert "object scores resample the objects (optimistic" in path.read_text() and "multi-Otsu for class maps" in path.read_text()
    assert parser.links == ["alpha/report.html", "zebra/report.html"]
    assert json.loads((tmp_path / "zebra" / "runs.jsonl").read_text().splitlines()[0])["run_id"] == "zebra-0"
