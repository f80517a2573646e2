"""The benchmark scripts still run against today's pipeline, and their baselines compute the same thing.

Both scripts rotted once unnoticed (the training loop gained a flow output; the benchmarks did
not): the GPU machine they are run on is lent rarely and briefly, so they are checked here.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile


ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
DATA = ROOT / "data"


@pytest.mark.parametrize("loop", ["bare", "segpipe"])
def test_training_benchmark_loops_run(loop):
    """Each loop of benchmarks/train.py takes a step of the planned 2D instance training (distance and flow heads)."""
    command = [sys.executable, str(BENCHMARKS / "train.py"), "--child", loop, "--policy", "segpipe",
               "--iterations", "1", "--batch-size", "2", "--patch", "64", "--device", "cpu"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["samples_s"] > 0


def test_segment_benchmark_plain_loop_matches_segpipe(crops_model, tmp_path, monkeypatch):
    """benchmarks/segment.py's plain loop (MONAI's sliding window, the flips undone by hand) labels a
    field as ``segpipe segment`` does, label for label, with segpipe's noise rule off (the loop has
    none): it is a fair baseline only while it computes the same thing. The loop keeps its
    probabilities in float16 as segpipe's store does: in float32, pixels at the threshold went the
    other way (59 of 49,152 on the AMD EPYC sandbox, one object more)."""
    assert "flow" in crops_model.card.extra_outputs
    flow_model = crops_model.folder
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import segment as bench

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:192, :256]
    tifffile.imwrite(inbox / "field.tif", field)
    assert bench.plain(inbox, flow_model, tmp_path / "plain", tta=True) == 1
    assert bench.segpipe(inbox, flow_model, tmp_path / "segpipe", tta=True, amp=False, noise_only=0) == 1
    plain = tifffile.imread(tmp_path / "plain" / "field_labels.tif")
    ours = tifffile.imread(tmp_path / "segpipe" / "labels" / "field_labels.tif")
    assert plain.shape == ours.shape == field.shape
    assert plain.max() >= 5  # the model finds nuclei, so the comparison means something
    np.testing.assert_array_equal(plain, ours)


def test_input_keys_baseline_gives_the_flows_key(tmp_path, monkeypatch):
    """benchmarks/input_keys.py's baseline (every file read) gives the key the segment flow gives, for
    an input first seen and for one its store recorded: it times the same key."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import input_keys as bench

    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.inputs import find_inputs, input_dataset
    from segpipe.pipeline.segment_files import SegmentFolder, SegmentParams
    from segpipe.prediction.params import PredictParams

    tifffile.imwrite(tmp_path / "field.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64])
    (item,) = find_inputs([str(tmp_path / "field.tif")])
    out, read, predict = str(tmp_path / "out"), SegmentParams(), PredictParams()
    fresh = bench.stat_checked(item, out, read, predict)
    assert fresh == bench.read_every_file(item, out, read, predict)
    dataset = input_dataset(item, ndim=2, classes=["background", "cell"], instances=True)
    ingest_dataset(dataset, SegmentFolder(tmp_path / "out").images(item.name), progress=False, warn_spacing=False)
    assert bench.stat_checked(item, out, read, predict) == fresh == bench.read_every_file(item, out, read, predict)
