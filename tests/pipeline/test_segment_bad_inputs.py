"""``segpipe segment`` against the whole bad-input list: each bad file is listed as failed with its own
message, the good ones are segmented; a model that cannot be used stops everything before a file is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from segpipe.models.model import network_from_card, save_model
from segpipe.temporary import parse

DATA = Path(__file__).resolve().parents[2] / "data"

#: file name -> what its error must say, the path being the summary's key (each is a bad input of
#: tests/data/ingest/test_ingest_bad_inputs.py)
BAD = {
    "truncated.tif": "^InputError: (not a readable TIFF|TIFF data cannot be read)",
    "bad_header.tif": "^InputError: not a readable TIFF",
    "empty.tif": r"^InputError: file is empty \(0 bytes\)",
    "png_inside.tif": "^InputError: not a TIFF file",
    "bad_magic.nii": "^InputError: not a readable NIfTI file",
    "cut_header.nii": "^InputError: not a readable NIfTI file",
    "negative_dim.nii": r"^InputError: not a readable NIfTI file \(damaged header: dimension 2 is -5\)",
    "nan.tif": r"^InputError: image holds 1 NaN or Inf values",
    "ambiguous.tif": r"^InputError: cannot tell what axis 0.*\(segpipe segment: --axes\)",  # not only the catalog's key
}


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :128]
    tifffile.imwrite(folder / "good.tif", field)
    tifffile.imwrite(folder / "good_too.tif", np.ascontiguousarray(field[::-1]))
    tifffile.imwrite(folder / "truncated.tif", field)
    (folder / "truncated.tif").write_bytes((folder / "truncated.tif").read_bytes()[:300])
    raw = bytearray((folder / "good.tif").read_bytes())
    raw[4:8] = (2**31).to_bytes(4, "little")
    (folder / "bad_header.tif").write_bytes(bytes(raw))
    (folder / "empty.tif").write_bytes(b"")
    (folder / "png_inside.tif").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    volume = nib.Nifti1Image(field.T[:, :, None].astype(np.float32), np.eye(4))
    for name in ("bad_magic", "cut_header", "negative_dim"):
        nib.save(volume, str(folder / f"{name}.nii"))
    for name, damage in (("bad_magic", lambda r: r[:344] + b"xxxx" + r[348:]), ("cut_header", lambda r: r[:200]),
                         ("negative_dim", lambda r: r[:44] + (-5).to_bytes(2, "little", signed=True) + r[46:])):
        path = folder / f"{name}.nii"
        path.write_bytes(damage(path.read_bytes()))
    nan = field.astype(np.float32)
    nan[5, 6] = np.nan
    tifffile.imwrite(folder / "nan.tif", nan)
    tifffile.imwrite(folder / "ambiguous.tif", np.ones((5, 96, 128), np.uint8), photometric="minisblack")
    return folder


@pytest.fixture
def model(tmp_path, model_card):
    card = model_card()
    return save_model(tmp_path / "model", network_from_card(card).state_dict(), card)


def test_every_bad_input_is_listed_and_the_others_segmented(inputs, model, tmp_path, segpipe_cli):
    import re

    output = tmp_path / "out"
    result = segpipe_cli("segment", "--model", model.folder, inputs, "--output", output,
                         "--device", "cpu")
    code, out, errors = result.code, result.out, result.errors
    assert code == 1 and errors == []  # exit 1: some inputs failed (listed), the run itself went through
    summary = json.loads(out[out.index("{"):])
    assert summary["segmented"] == 2
    failed = {Path(path).name: error for path, error in summary["failed"].items()}
    assert set(failed) == set(BAD)
    for name, pattern in BAD.items():
        assert re.search(pattern, failed[name]), (name, failed[name])
        assert "\n" not in failed[name]
    assert (output / "labels" / "good_labels.tif").is_file() and (output / "labels" / "good_too_labels.tif").is_file()
    recorded = json.loads((output / "segment.json").read_text())
    assert sorted(Path(p).name for p in recorded["failed"]) == sorted(BAD)
    leftovers = [p for p in output.rglob(".*") if parse(p) is not None]
    assert leftovers == []


def test_when_every_input_fails_one_line_says_why_and_nothing_is_written(inputs, model, tmp_path, segpipe_cli):
    """Before: exit 2, a JSON dump, and a folder of tables and a report about no image; into an
    earlier run's folder, its tables were replaced by the failures."""
    output = tmp_path / "out"
    args = ["--output", output, "--device", "cpu"]
    result = segpipe_cli("segment", "--model", model.folder, inputs / "empty.tif", inputs / "nan.tif", *args)
    assert result.code == 2 and result.out.strip() == ""
    assert result.errors == [f"error: {inputs / 'empty.tif'}: file is empty (0 bytes) (and the 1 other input(s), which failed too)"]
    assert not output.exists()
    assert segpipe_cli("segment", "--model", model.folder, inputs / "good.tif", *args).code == 0
    before = (output / "counts.csv").read_text()
    result = segpipe_cli("segment", "--model", model.folder, inputs / "empty.tif", *args)
    assert result.code == 2 and result.errors == [f"error: {inputs / 'empty.tif'}: file is empty (0 bytes)"]
    assert (output / "counts.csv").read_text() == before


def test_an_unreadable_input_among_many_fails_alone_then_is_retried(inputs, model, tmp_path, segpipe_cli):
    """A failed input does not spoil the run's tables; fixed, it is segmented on the next run, the others kept."""
    output = tmp_path / "out"
    args = ["segment", "--model", model.folder, inputs / "good.tif", inputs / "good_too.tif", inputs / "empty.tif",
            "--output", output, "--device", "cpu"]
    result = segpipe_cli(*args)
    code, out = result.code, result.out
    assert code == 1 and json.loads(out[out.index("{"):])["segmented"] == 2
    tifffile.imwrite(inputs / "empty.tif", tifffile.imread(inputs / "good.tif")[:64, :64])
    result = segpipe_cli(*args)
    code, out = result.code, result.out
    summary = json.loads(out[out.index("{"):])
    assert code == 0 and summary["segmented"] == 1 and summary["unchanged"] == 2 and summary["failed"] == {}
    with open(output / "counts.csv", newline="") as handle:
        statuses = {Path(row["input"]).name: row["status"] for row in csv.DictReader(handle)}
    assert statuses == {"good.tif": "unchanged", "good_too.tif": "unchanged", "empty.tif": "segmented"}


@pytest.mark.parametrize("damage", ["no card, no weights", "corrupt card", "weights of another network", "3 channels",
                                    "3D model"])
def test_a_model_that_cannot_be_used_writes_nothing(inputs, model, tmp_path, segpipe_cli, damage):
    card_file = model.folder / "model_card.json"
    if damage == "no card, no weights":
        card_file.unlink()
        model.weights.unlink()
        expected = "no trained model here"
    elif damage == "corrupt card":
        card_file.write_text("[1, 2")
        expected = "model_card.json: cannot read the model card"
    elif damage == "weights of another network":
        card_file.write_text(model.card.model_copy(update={"in_channels": 2}).to_json())
        expected = ("model.pt: the weights do not fit the card's network: size mismatch for conv_0.conv_0.conv.weight: "
                    "copying a param with shape torch.Size([8, 1, 3, 3]) from checkpoint")
    elif damage == "3 channels":
        other = model.card.model_copy(update={"in_channels": 3})
        save_model(model.folder, network_from_card(other).state_dict(), other)
        expected = "takes 3 channel(s), this image has 1; choose them with --channels"
    else:
        other = model.card.model_copy(update={"spatial_dims": 3, "patch_size": (16, 64, 64), "spacing": (1.0, 1.0, 1.0)})
        save_model(model.folder, network_from_card(other).state_dict(), other)
        expected = "segments 3D volumes; this is a single 2D plane"
    output = tmp_path / "out"
    result = segpipe_cli("segment", "--model", model.folder, inputs / "good.tif",
                         inputs / "empty.tif", "--output", output, "--device", "cpu")
    code, errors = result.code, result.errors
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors
    assert not output.exists()


def test_a_stack_for_a_2d_model_names_how_to_segment_each_plane(inputs, crops_model, tmp_path, segpipe_cli):
    """A 2D model refuses a z-stack and says how to segment its planes one by one; doing so labels every
    plane. (A trained model: an untrained one's weights, drawn from the session's random state, found
    objects in the field or not depending on which tests ran before.)"""
    model = crops_model
    field = tifffile.imread(inputs / "good.tif")
    tifffile.imwrite(inputs / "stack.tif", np.stack([field] * 3), photometric="minisblack", metadata={"axes": "ZYX"})
    output = tmp_path / "out"
    args = ["segment", "--model", model.folder, inputs / "stack.tif", "--output", output, "--device", "cpu"]
    refused = segpipe_cli(*args)
    assert refused.code == 2 and not output.exists()
    assert refused.errors == [f"error: {inputs / 'stack.tif'}: model {model.card.name!r} segments 2D images; this is a 3D "
                              "stack of 3 planes: use a 3D model, or segment each plane on its own with --axes naming "
                              "the planes T (--axes TYX, this file's axes ZYX in its own order)"]
    assert segpipe_cli(*args, "--axes", "TYX").code == 0
    assert segpipe_cli("segment", "--model", model.folder, inputs / "good.tif", "--output", output, "--device", "cpu").code == 0
    planes, alone = (tifffile.imread(output / "labels" / name) for name in ("stack_labels.tif", "good_labels.tif"))
    assert planes.shape == (3, 96, 128) and alone.max() > 0
    assert all(np.array_equal(plane, alone) for plane in planes)  # each plane as the field segmented on its own


def test_a_time_series_of_stacks_for_a_2d_model_is_not_told_to_name_its_planes_t(inputs, crops_model, tmp_path, segpipe_cli):
    """A TZYX file already has its T: the advice to name the planes T led to "more than one axis is T"."""
    field = tifffile.imread(inputs / "good.tif")
    tifffile.imwrite(inputs / "series.tif", np.stack([np.stack([field] * 3)] * 2), photometric="minisblack",
                     imagej=True, metadata={"axes": "TZYX"})
    refused = segpipe_cli("segment", "--model", crops_model.folder, inputs / "series.tif", "--output", tmp_path / "out",
                          "--device", "cpu")
    assert refused.code == 2 and not (tmp_path / "out").exists()
    assert len(refused.errors) == 1 and "this is a time series of 2 3D stacks of 3 planes: use a 3D model, or write each " \
        "time point to a file of its own" in refused.errors[0], refused.errors


@pytest.mark.parametrize("channel", ["-1", "-3"])
def test_a_negative_channel_is_refused_before_anything_is_written(inputs, model, tmp_path, segpipe_cli, channel):
    """``--channels -3`` on a two-channel file raised an IndexError with a traceback; -1 silently took the last."""
    output = tmp_path / "out"
    run = segpipe_cli("segment", "--model", model.folder, inputs / "good.tif", "--channels", channel, "--output", output, "--device", "cpu")
    assert run.code == 2 and run.err.strip() == "error: --channels: channels are counted from 0; a negative number is none"
    assert not output.exists()


def test_channels_the_model_cannot_take_are_named_as_chosen(inputs, model, tmp_path, segpipe_cli):
    """--channels 1,0 on a two-channel file for a one-channel model: the message names the choice,
    not "this image has 2; choose them with --channels" (which the user just did)."""
    field = tifffile.imread(inputs / "good.tif")
    tifffile.imwrite(inputs / "two.tif", np.stack([field, field]), imagej=True, metadata={"axes": "CYX"})
    run = segpipe_cli("segment", "--model", model.folder, inputs / "two.tif", "--channels", "1,0", "--output", tmp_path / "out",
                      "--device", "cpu")
    assert run.code == 2 and "takes 1 channel(s), --channels 1,0 selects 2" in run.err and "choose them" not in run.err
    assert not (tmp_path / "out").exists()


def test_a_run_whose_every_input_fails_exits_2(inputs, model, tmp_path, segpipe_cli):
    """One bad input alone is bad input (exit 2, one error line naming it); beside a good one the run went through (exit 1)."""
    alone = segpipe_cli("segment", "--model", model.folder, inputs / "empty.tif", "--output", tmp_path / "alone",
                        "--device", "cpu")
    assert alone.code == 2 and alone.errors == [f"error: {inputs / 'empty.tif'}: file is empty (0 bytes)"]
    assert not (tmp_path / "alone").exists()
    beside = segpipe_cli("segment", "--model", model.folder, inputs / "empty.tif", inputs / "good.tif",
                         "--output", tmp_path / "beside", "--device", "cpu")
    assert beside.code == 1



def test_a_run_of_one_bad_input_says_its_error_once(inputs, model, tmp_path, segpipe_cli, caplog):
    """The error line ended the run after a warning with the same words; beside other inputs the
    warning is what names the failure as it happens, and stays."""
    import logging

    with caplog.at_level(logging.WARNING, logger="segpipe"):
        alone = segpipe_cli("segment", "--model", model.folder, inputs / "empty.tif", "--output", tmp_path / "alone")
    assert alone.errors == [f"error: {inputs / 'empty.tif'}: file is empty (0 bytes)"]
    assert [r.getMessage() for r in caplog.records if "file is empty" in r.getMessage()] == []
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        segpipe_cli("segment", "--model", model.folder, inputs / "empty.tif", inputs / "good.tif", "--output", tmp_path / "two")
    assert [r.getMessage() for r in caplog.records if "file is empty" in r.getMessage()] == [
        f"{inputs / 'empty.tif'}: failed: file is empty (0 bytes)"
    ]


def test_the_progress_counts_inputs_the_model_does_not_take(inputs, model, tmp_path, segpipe_cli, caplog):
    """A two-channel file for a one-channel model fails before the network: the progress line said
    2/2 inputs, failed 1, for three inputs of which two failed."""
    import logging

    field = tifffile.imread(inputs / "good.tif")
    tifffile.imwrite(inputs / "two.tif", np.stack([field, field]), imagej=True, metadata={"axes": "CYX"})
    with caplog.at_level(logging.INFO, logger="segpipe.progress"):
        run = segpipe_cli("segment", "--model", model.folder, inputs / "good.tif", inputs / "two.tif", inputs / "empty.tif",
                          "--output", tmp_path / "out")
    assert run.code == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "segpipe.progress"]
    assert lines and lines[-1].startswith("segment: 3/3 input") and lines[-1].endswith("failed 2"), lines


def test_a_cut_imagej_tiff_is_one_line_without_tifffiles_own(inputs, model, tmp_path, segpipe_cli, caplog):
    """A truncated ImageJ TIFF printed tifffile's "ImageJ series metadata invalid" twice before segpipe's line."""
    field = tifffile.imread(inputs / "good.tif")
    cut = tmp_path / "cut.tif"
    tifffile.imwrite(cut, np.stack([field] * 4), imagej=True, metadata={"axes": "TYX"})
    cut.write_bytes(cut.read_bytes()[:3000])
    result = segpipe_cli("segment", "--model", model.folder, cut, "--output", tmp_path / "out", "--device", "cpu")
    assert result.code == 2 and len(result.errors) == 1 and str(cut) in result.errors[0], result.err
    assert not [r for r in caplog.records if r.name == "tifffile"], [r.getMessage() for r in caplog.records]


def test_a_nifti_volume_for_a_2d_model_is_told_its_own_axes(inputs, crops_model, tmp_path, segpipe_cli):
    """A NIfTI volume stores x, y, z: the advice "TYX (for a ZYX stack)" made 40 frames of 30 x 6
    slices of a 40 x 30 x 6 volume; it now names the file's own order, XYT."""
    import nibabel as nib

    field = tifffile.imread(inputs / "good.tif")[:40, :30]
    nib.save(nib.Nifti1Image(np.stack([field.T] * 6, axis=-1).astype(np.int16), np.eye(4)), inputs / "vol.nii.gz")  # x, y, z
    args = ["segment", "--model", crops_model.folder, inputs / "vol.nii.gz", "--device", "cpu"]
    refused = segpipe_cli(*args, "--output", tmp_path / "refused")
    assert refused.code == 2 and len(refused.errors) == 1 and "(--axes XYT, this file's axes XYZ in its own order)" in refused.errors[0]
    assert segpipe_cli(*args, "--axes", "XYT", "--output", tmp_path / "out").code == 0
    labels = nib.load(tmp_path / "out" / "labels" / "vol_labels.nii.gz")
    assert labels.shape[:2] == (30, 40) and 6 in labels.shape, labels.shape  # the planes kept their x, y
