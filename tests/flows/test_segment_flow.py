"""The segment flow: one task per input, cached on the input, the model and the settings; failures alone."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.training.loop import train_model
from segpipe.training.params import TrainParams

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def model_folder(make_crop_catalog, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store") / "data.zarr"
    ingest_dataset(load_catalog(make_crop_catalog()).dataset("crops"), store, progress=False)
    config = TrainParams(epochs=2, iterations_per_epoch=3, batch_size=2, patch_size=(64, 64), val_every=2,
                         features=(8, 16, 32, 64, 128, 8), device="cpu")
    return train_model(ImageStore.open(store), tmp_path_factory.mktemp("model"), config, progress=False).model.folder


def task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state.name for run in runs if run.name.startswith("segment-")}


def test_inputs_are_tasks_cached_and_failing_alone(prefect_harness, model_folder, tmp_path):
    from prefect.client.orchestration import get_client

    from segpipe.flows.segment import segpipe_segment
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("A9_p9d", "A9_p7d"):
        tifffile.imwrite(inbox / f"{name}.tif", tifffile.imread(DATA / "bbbc007" / "images" / f"{name}.tif")[:128, :128])
    (inbox / "broken.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    kwargs = dict(inputs=[str(inbox / "*.tif")], model=str(model_folder), output=str(out), predict=PredictParams(device="cpu"))
    state = segpipe_segment(**kwargs, return_state=True)
    assert state.is_failed() and state.message.count("broken.tif") == 1 and "A9_p9d" not in state.message, state.message
    first = task_states(state.state_details.flow_run_id)
    assert first == {"segment-A9_p7d": "Completed", "segment-A9_p9d": "Completed", "segment-broken": "Failed"}
    assert (out / "labels" / "A9_p9d_labels.tif").is_file() and (out / "measurements.csv").is_file()
    assert json.loads((out / "segment.json").read_text())["failed"] == [str(inbox / "broken.tif")]

    (inbox / "broken.tif").unlink()
    shutil.copy(inbox / "A9_p9d.tif", inbox / "copy.tif")  # a new input
    state = segpipe_segment(**kwargs, return_state=True)
    assert state.is_completed(), state.message
    again = task_states(state.state_details.flow_run_id)
    assert again == {"segment-A9_p7d": "Cached", "segment-A9_p9d": "Cached", "segment-copy": "Completed"}
    # what a cached task gave is unchanged, not segmented again (every tick said "segmented" for all)
    with open(out / "counts.csv", newline="") as handle:
        statuses = {row["image"]: row["status"] for row in csv.DictReader(handle)}
    assert statuses == {"A9_p7d": "unchanged", "A9_p9d": "unchanged", "copy": "segmented"}, statuses
    np.testing.assert_array_equal(tifffile.imread(out / "labels" / "copy_labels.tif"), tifffile.imread(out / "labels" / "A9_p9d_labels.tif"))

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    table = next(a for a in artifacts if a.key == "out-segmented" and a.flow_run_id == state.state_details.flow_run_id)
    assert "copy.tif" in table.data


def test_a_bad_file_left_in_the_inbox_fails_one_run_not_every_run(prefect_harness, model_folder, tmp_path):
    """A scheduled inbox run failed for ever over one bad file, and a new bad file looked like the old one."""
    from segpipe.flows.segment import segpipe_segment
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    tifffile.imwrite(inbox / "good.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:128, :128])
    (inbox / "broken.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    kwargs = dict(inputs=[str(inbox / "*.tif")], model=str(model_folder), output=str(out), predict=PredictParams(device="cpu"))
    assert segpipe_segment(**kwargs, return_state=True).is_failed()
    since = json.loads((out / "segment.json").read_text())["inputs"][0]["failing_since"]

    state = segpipe_segment(**kwargs, return_state=True)  # nothing changed
    assert state.is_completed() and f"1 input(s) fail as they have since {since}" in state.message, state.message
    assert "broken.tif" in state.message and list(state.result()["failed"]) == [str(inbox / "broken.tif")]
    [row] = [row for row in json.loads((out / "segment.json").read_text())["inputs"] if row["error"]]
    assert row["failed_before"] and row["failing_since"] == since
    assert "broken.tif" in (out / "counts.csv").read_text()  # still listed as failed

    (inbox / "worse.tif").write_bytes(b"nor is this")  # a new bad file fails the run, the old one named apart
    state = segpipe_segment(**kwargs, return_state=True)
    assert state.is_failed() and state.message.startswith("1 of 3 input(s) failed: "), state.message
    assert "worse.tif" in state.message and "broken.tif" not in state.message and "1 more fail as before" in state.message

    (inbox / "broken.tif").write_bytes(b"still not a tiff, copied again")  # replaced: tried and failed anew
    state = segpipe_segment(**kwargs, return_state=True)
    assert state.is_failed() and "broken.tif" in state.message and "worse.tif" not in state.message, state.message


def test_an_inbox_of_only_bad_files_fails_one_run_not_every_run(prefect_harness, model_folder, tmp_path):
    """Every input of an inbox failing: the run records them (as any inbox run does), so the next run
    over the same files knows them and ends Completed (a run that wrote nothing failed every tick)."""
    from segpipe.flows.segment import segpipe_segment

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "broken.tif").write_bytes(b"not a tiff at all")
    kwargs = dict(inputs=[str(inbox)], model=str(model_folder), output=str(tmp_path / "out"), predict={"device": "cpu"})
    assert segpipe_segment(**kwargs, return_state=True).is_failed()
    state = segpipe_segment(**kwargs, return_state=True)
    assert state.is_completed() and "1 input(s) fail as they have since" in state.message, state.message


def test_a_stack_in_the_inbox_is_read_as_frames_by_the_deployments_read_parameter(prefect_harness, model_folder, tmp_path):
    """deploy/README tells users to give ``read: {axes: TYX}`` where a message says ``--axes TYX``:
    the flow takes it as a deployment passes it, a plain mapping."""
    from segpipe.flows.segment import segpipe_segment

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:128, :128]
    tifffile.imwrite(inbox / "stack.tif", np.stack([field] * 4), photometric="minisblack", metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    state = segpipe_segment(inputs=[str(inbox)], model=str(model_folder), output=str(out), return_state=True)
    assert state.is_failed() and "--axes" in state.message, state.message  # a 2D model is given planes
    state = segpipe_segment(inputs=[str(inbox)], model=str(model_folder), output=str(out), read={"axes": "TYX"},
                            predict={"device": "cpu"}, return_state=True)
    assert state.is_completed(), state.message
    labels = tifffile.imread(out / "labels" / "stack_labels.tif")
    assert labels.shape == (4, 128, 128) and labels.max() > 0
    np.testing.assert_array_equal(labels[0] > 0, labels[3] > 0)  # the same plane four times, each segmented alike


def test_an_empty_inbox_is_a_run_with_nothing_to_do(prefect_harness, model_folder, tmp_path):
    from segpipe.flows.segment import segpipe_segment

    summary = segpipe_segment(inputs=[str(tmp_path / "inbox" / "*.tif")], model=str(model_folder), output=str(tmp_path / "out"))
    assert summary["segmented"] == 0 and not (tmp_path / "out").exists()


def test_an_unreadable_names_file_fails_the_run_instead_of_an_empty_inbox(prefect_harness, model_folder, tmp_path):
    """The names file was read where a missing input means "nothing to segment yet": a damaged one
    made every scheduled run a success with nothing done."""
    from segpipe.errors import InputError
    from segpipe.flows.segment import segpipe_segment

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "names.json").write_text("{not json")
    with pytest.raises(InputError, match=r"names.json: not the names file segpipe writes"):
        segpipe_segment(inputs=[str(tmp_path / "inbox" / "*.tif")], model=str(model_folder), output=str(tmp_path / "out"))


def test_a_catalog_dataset_without_labels_is_segmented_by_its_model(prefect_harness, model_folder, tmp_path):
    """``segpipe run`` on an entry with no labels and a model: key predicts it and reports counts."""
    from segpipe.flows.pipeline import segpipe_pipeline

    (tmp_path / "new").mkdir()
    for name in ("A9_p9d", "A9_p7d", "A9_p5d"):
        tifffile.imwrite(tmp_path / "new" / f"{name}.tif", tifffile.imread(DATA / "bbbc007" / "images" / f"{name}.tif")[:128, :128])
    shutil.copytree(model_folder, tmp_path / "model")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  arrivals:\n    images: new/*.tif\n    classes: [background, nucleus]\n    model: model\n")
    summary = segpipe_pipeline(dataset="arrivals", catalog=str(catalog), output=str(tmp_path / "runs"))
    run = tmp_path / "runs" / "arrivals"
    assert summary["model"] == str((tmp_path / "model").resolve()) and summary["failed"] == []
    assert not (run / "metrics.json").exists() and (run / "report.html").is_file()
    assert sorted(p.name for p in (run / "predictions").glob("*_instances.tif")) == [
        "A9_p5d_instances.tif", "A9_p7d_instances.tif", "A9_p9d_instances.tif"
    ]
    assert "A9_p7d" in (run / "counts.csv").read_text()
    report = (run / "report.md").read_text()  # the files give no pixel size: 1 per pixel, marked as guessed
    assert report.count("| 1 × 1 micrometer (y, x), guessed |") == 3 and "A guessed pixel size" in report


def test_an_input_the_model_cannot_take_fails_alone_in_the_flow(prefect_harness, model_folder, tmp_path):
    """An RGB PNG in the inbox of a one-channel model: listed as failed, the TIFF beside it segmented
    (it stopped every scheduled run before anything was written)."""
    from skimage.io import imsave

    from segpipe.flows.segment import segpipe_segment
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:128, :128]
    tifffile.imwrite(inbox / "grey.tif", field)
    imsave(inbox / "colour.png", np.stack([field, field[::-1], np.zeros_like(field)], axis=-1), check_contrast=False)
    out = tmp_path / "out"
    state = segpipe_segment(inputs=[str(inbox)], model=str(model_folder), output=str(out),
                            predict=PredictParams(device="cpu"), return_state=True)
    assert state.is_failed() and "colour.png" in state.message and "grey" not in state.message.replace(str(inbox), "")
    assert (out / "labels" / "grey_labels.tif").is_file()
    summary = json.loads((out / "segment.json").read_text())
    assert summary["failed"] == [str(inbox / "colour.png")]


def test_each_position_of_an_ome_tiff_is_a_task_of_its_own(prefect_harness, model_folder, tmp_path):
    """Two positions in one OME-TIFF: two tasks, each reading its own series (the second's labels
    are the labels of that field saved alone, not of the first position)."""
    from segpipe.flows.segment import segpipe_segment
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    fields = [tifffile.imread(DATA / "bbbc007" / "images" / f"{name}.tif")[:128, :128] for name in ("A9_p9d", "A9_p7d")]
    with tifffile.TiffWriter(inbox / "plate.ome.tif", ome=True) as tif:
        for field in fields:
            tif.write(field, metadata={"axes": "YX"})
    tifffile.imwrite(inbox / "second.tif", fields[1])
    out = tmp_path / "out"
    state = segpipe_segment(inputs=[str(inbox)], model=str(model_folder), output=str(out),
                            predict=PredictParams(device="cpu"), return_state=True)
    assert state.is_completed(), state.message
    assert task_states(state.state_details.flow_run_id) == {
        "segment-plate_s0": "Completed", "segment-plate_s1": "Completed", "segment-second": "Completed"}
    labels = {name: tifffile.imread(out / "labels" / f"{name}_labels.tif") for name in ("plate_s0", "plate_s1", "second")}
    np.testing.assert_array_equal(labels["plate_s1"], labels["second"])
    assert labels["plate_s0"].max() > 3 and not np.array_equal(labels["plate_s0"], labels["plate_s1"])


def test_the_flow_reads_a_generalists_channels_in_the_order_given(prefect_harness, tmp_path):
    """--channels 1,0 on a (cytoplasm, nuclei) file sends the nuclei to the generalist's cytoplasm
    input, in the flow as in the command (the flow chose the order again, undoing the user's)."""
    from skimage.segmentation import expand_labels
    from typer.testing import CliRunner

    from segpipe.cli import app
    from segpipe.flows.segment import segpipe_segment
    from segpipe.pipeline.segment_files import SegmentParams
    from segpipe.prediction.params import PredictParams

    field = "17P1_POS0006_D_1UL"
    nuclei = tifffile.imread(DATA / "bbbc007" / "images" / f"{field}.tif")[:128, :128]
    cells = expand_labels(tifffile.imread(DATA / "bbbc007" / "labels" / f"{field}.tif")[:128, :128], 8)
    cytoplasm = (np.where(cells > 0, 120.0, 20.0) + np.random.default_rng(0).normal(0, 5, cells.shape)).clip(0, 255)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    tifffile.imwrite(inbox / "pair.tif", np.stack([cytoplasm.astype(np.uint8), nuclei]), metadata={"axes": "CYX"})
    predict = PredictParams(device="cpu")
    predict = predict.model_copy(update={"inference": predict.inference.model_copy(update={"flip_tta": False})})
    for name, read in (("given", SegmentParams(channels=[1, 0])), ("chosen", SegmentParams())):
        segpipe_segment(inputs=[str(inbox)], model="cells-2d", output=str(tmp_path / name), read=read, predict=predict)
    command = CliRunner().invoke(app, ["segment", "-m", "cells-2d", str(inbox), "--channels", "1,0", "--no-tta",
                                       "--device", "cpu", "-o", str(tmp_path / "command")])
    assert command.exit_code == 0, command.output
    given, chosen, by_command = (tifffile.imread(tmp_path / n / "labels" / "pair_labels.tif") for n in ("given", "chosen", "command"))
    np.testing.assert_array_equal(given, by_command)
    assert chosen.max() > 3 and ((given > 0) != (chosen > 0)).sum() > 500


def test_a_run_that_finds_the_folder_being_written_leaves_it_be(prefect_harness, model_folder, tmp_path):
    """A run that finds another still writing the output folder segments nothing and writes nothing
    there, and ends Cancelled naming the folder: it ended Completed, so a triggered run with other
    inputs looked done (``--watch`` exit 0) with its inputs never segmented."""
    from segpipe.flows.segment import segpipe_segment
    from segpipe.pipeline.segment_files import SegmentFolder
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    tifffile.imwrite(inbox / "field.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:96, :96])
    out = SegmentFolder(tmp_path / "out")
    with out.writing():
        state = segpipe_segment(inputs=[str(inbox)], model=str(model_folder), output=str(out.root),
                                predict=PredictParams(device="cpu"), return_state=True)
    assert state.is_cancelled() and state.message.startswith(f"{out.root}: another segpipe segment is writing here")
    assert state.message.endswith("; this run segmented nothing")
    assert sorted(p.name for p in out.root.iterdir()) == [".segment.lock"]


def test_an_inbox_passes_over_what_is_not_an_image_and_waits_for_files_being_copied(prefect_harness, model_folder, tmp_path):
    """A notes file in the inbox made every scheduled run "nothing to segment" (an image beside it
    was never segmented); a file still being copied in was segmented half-written."""
    import os
    import time

    from segpipe.flows.segment import segpipe_segment
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:128, :128]
    tifffile.imwrite(inbox / "done.tif", field)
    (inbox / "acquisition_notes.txt").write_text("objective 20x")
    (inbox / "arriving.tif.filepart").write_bytes(b"II*\x00")  # a copy tool's partial file
    old = time.time() - 600
    for path in inbox.iterdir():
        os.utime(path, (old, old))
    tifffile.imwrite(inbox / "arriving.tif", field)  # changed just now: still being copied in
    kwargs = dict(inputs=[str(inbox / "*")], model=str(model_folder), output=str(tmp_path / "out"),
                  predict=PredictParams(device="cpu"), settled=60.0)
    import logging

    class Kept(logging.Handler):  # on the emitting logger: Prefect's forwarding decides what propagates
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    kept = Kept()
    logging.getLogger("segpipe.pipeline.segment").addHandler(kept)
    try:
        summary = segpipe_segment(**kwargs)
    finally:
        logging.getLogger("segpipe.pipeline.segment").removeHandler(kept)
    assert (summary["segmented"], summary["failed"]) == (1, {}) and (tmp_path / "out" / "labels" / "done_labels.tif").is_file()
    # the run's one line about files without a pixel size, as segment says it (the flow said nothing)
    assert sum("1 of 1 input(s) have no pixel size in their file" in line for line in kept.lines) == 1
    assert not (tmp_path / "out" / "labels" / "arriving_labels.tif").exists()
    os.utime(inbox / "arriving.tif", (old, old))  # the copy has ended
    summary = segpipe_segment(**kwargs)
    assert (summary["segmented"], summary["unchanged"]) == (1, 1), summary


def test_a_scheduled_run_reads_only_the_inputs_whose_size_or_times_changed(prefect_harness, model_folder, tmp_path, monkeypatch):
    """Every run read every input in full for its cache key (an inbox of large stacks was read
    again each tick); an input whose size and times are what its store in the output folder
    recorded is now taken at the recorded digest, and one whose time moved is read again, as is a
    replacement copied with the old size and modification time (``cp -p``: it kept the old labels)."""
    import os

    from segpipe.data.ingest import fingerprint
    from segpipe.flows.segment import segpipe_segment
    from segpipe.prediction.params import PredictParams

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    field = inbox / "field.tif"
    tifffile.imwrite(field, tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:96, :96])
    kwargs = dict(inputs=[str(inbox)], model=str(model_folder), output=str(tmp_path / "out"), predict=PredictParams(device="cpu"))
    assert segpipe_segment(**kwargs)["segmented"] == 1
    read: list[Path] = []
    digest = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda path: read.append(Path(path)) or digest(path))
    state = segpipe_segment(**kwargs, return_state=True)
    assert task_states(state.state_details.flow_run_id) == {"segment-field": "Cached"} and field not in read  # not read
    before = field.stat()
    data = bytearray(field.read_bytes())
    data[-1] ^= 0xFF
    field.write_bytes(bytes(data))
    os.utime(field, ns=(before.st_atime_ns, before.st_mtime_ns))  # new bytes, the recorded size and time
    state = segpipe_segment(**kwargs, return_state=True)
    assert task_states(state.state_details.flow_run_id) == {"segment-field": "Completed"}
    # touched, its bytes the same: read once (cached), its new time then remembered (it was
    # read on every later run: a cached task never ingests, so the store kept the old time)
    os.utime(field, ns=(field.stat().st_atime_ns, field.stat().st_mtime_ns + 10**9))
    read.clear()
    state = segpipe_segment(**kwargs, return_state=True)
    assert task_states(state.state_details.flow_run_id) == {"segment-field": "Cached"} and field in read
    read.clear()
    state = segpipe_segment(**kwargs, return_state=True)
    assert task_states(state.state_details.flow_run_id) == {"segment-field": "Cached"} and field not in read


def test_segment_on_dask_into_a_folder_being_written_is_one_line(model_folder, tmp_path, segpipe_cli, monkeypatch):
    """The flow's Cancelled state (another run writes the folder) is the command's one line and exit 2."""
    from segpipe.pipeline.segment_files import SegmentFolder

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    (tmp_path / "inbox").mkdir()
    tifffile.imwrite(tmp_path / "inbox" / "field.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:96, :96])
    out = SegmentFolder(tmp_path / "out")
    with out.writing():
        result = segpipe_cli("segment", "--model", model_folder, tmp_path / "inbox", "--output", out.root, "--device", "cpu",
                             "--runner", "dask", "--workers", "1")
    assert result.code == 2 and len(result.errors) == 1, result.errors
    assert result.errors[0].startswith(f"error: {out.root}: another segpipe segment is writing here (process ")
    assert sorted(p.name for p in out.root.iterdir()) == [".segment.lock"]


def test_segment_on_a_local_dask_cluster_writes_what_segment_here_writes(model_folder, tmp_path, segpipe_cli, monkeypatch):
    """`segpipe segment` had no Dask option: a batch for a cluster needed a catalog entry and
    `segpipe run`, which writes another layout. `--runner dask` sends each input to the cluster and
    writes the folder segment writes here, the same labels and tables."""
    import psutil

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")
    for k, corner in enumerate((0, 96)):
        tifffile.imwrite(inbox / f"field{k}.tif", field[corner:corner + 96, :128])
    (inbox / "broken.tif").write_bytes(b"not a tiff")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    here = segpipe_cli("segment", "--model", model_folder, inbox, "--output", tmp_path / "here", "--device", "cpu")
    dask = segpipe_cli("segment", "--model", model_folder, inbox, "--output", tmp_path / "dask", "--device", "cpu",
                       "--runner", "dask", "--workers", "1")
    assert here.code == dask.code == 1, dask.errors  # the broken file fails alone
    for name in ("field0", "field1"):
        ours = tifffile.imread(tmp_path / "dask" / "labels" / f"{name}_labels.tif")
        assert ours.max() > 3
        np.testing.assert_array_equal(ours, tifffile.imread(tmp_path / "here" / "labels" / f"{name}_labels.tif"))
    assert (tmp_path / "dask" / "measurements.csv").read_text() == (tmp_path / "here" / "measurements.csv").read_text()
    counts = {}
    for run in ("dask", "here"):
        with open(tmp_path / run / "counts.csv", newline="") as handle:  # failing_since: when each run failed
            counts[run] = [{k: v for k, v in row.items() if k != "failing_since"} for row in csv.DictReader(handle)]
    assert counts["dask"] == counts["here"] and len(counts["here"]) == 3
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.is_running() and "spawn_main" in " ".join(p.cmdline())]
    assert not left, [" ".join(p.cmdline())[:80] for p in left]  # the cluster's workers ended with the run
    assert not (tmp_path / "dask" / ".dask-scratch").exists()  # the workers' scratch space went with them
    # (the embedded Prefect server this test process started stays for the process, as for any flow run here)


def test_segment_on_dask_where_every_input_fails_is_one_line_and_keeps_the_earlier_tables(model_folder, tmp_path, segpipe_cli,
                                                                                            monkeypatch):
    """With --runner dask a folder of only bad files printed the JSON summary and wrote empty tables and
    a report over the earlier run's; segment here says the first error in one line and writes nothing."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    (tmp_path / "good").mkdir()
    tifffile.imwrite(tmp_path / "good" / "a.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:96, :96])
    out = tmp_path / "out"
    assert segpipe_cli("segment", "--model", model_folder, tmp_path / "good", "--output", out, "--device", "cpu").code == 0
    earlier = {name: (out / name).read_bytes() for name in ("counts.csv", "measurements.csv", "segment.json", "report.md")}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.tif").write_bytes(b"not a tiff")
    for folder in (out, tmp_path / "new"):
        result = segpipe_cli("segment", "--model", model_folder, tmp_path / "bad", "--output", folder, "--device", "cpu",
                             "--runner", "dask", "--workers", "1")
        assert result.code == 2 and len(result.errors) == 1, result.errors
        assert result.errors[0].startswith(f"error: {tmp_path / 'bad' / 'broken.tif'}: not a TIFF file"), result.errors
        assert '"segmented"' not in result.out
    assert {name: (out / name).read_bytes() for name in earlier} == earlier
    assert not (tmp_path / "new").exists()


def test_segment_on_dask_never_reports_an_earlier_runs_tables(model_folder, tmp_path, segpipe_cli, monkeypatch):
    """A flow that crashed before writing its tables printed the earlier run's segment.json as its own
    (exit 0, "segmented": 3); --workers without --runner dask was ignored without a word."""
    import segpipe.flows.segment as flow_module

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    (tmp_path / "inbox").mkdir()
    tifffile.imwrite(tmp_path / "inbox" / "a.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p9d.tif")[:96, :96])
    args = ["segment", "--model", model_folder, tmp_path / "inbox", "--output", tmp_path / "out", "--device", "cpu"]
    assert segpipe_cli(*args).code == 0  # an earlier run's tables
    ignored = segpipe_cli(*args, "--workers", "4")
    assert ignored.code == 2 and "--workers sizes a Dask cluster: --runner dask --workers N" in " ".join(ignored.err.split())

    def broken(*_, **__):
        raise RuntimeError("the cluster could not start")

    monkeypatch.setattr(flow_module, "fan_out", broken)
    from typer.testing import CliRunner

    from segpipe.cli import app

    crashed = CliRunner().invoke(app, [str(a) for a in args] + ["--runner", "dask"])  # a bug: Prefect logs its traceback
    assert crashed.exit_code == 1 and "the segment flow failed before it wrote" in crashed.output
    assert '"segmented"' not in crashed.output
