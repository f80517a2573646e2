"""``segpipe models``: the listing, and export/import from the command line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segpipe.cli import app, main
from segpipe.models.card import ModelCard, TrainingRecord
from segpipe.models.model import Model, network_from_card, save_model


@pytest.fixture(scope="module")
def card(model_card):
    """The shared test card with what the listing shows made distinct."""

    def make(ndim: int, **fields) -> ModelCard:
        values = dict(
            name=f"demo{ndim}d",
            network_options={"features": [4, 4, 4, 4, 4, 4]},
            spacing=(0.65,) * ndim,
            training=TrainingRecord(dataset=f"set{ndim}d", epochs=7, ended_by="iterations", validation={"seg": 0.8125, "tuned_on": ["x"]}),
        )
        return model_card(ndim, **{**values, **fields})

    return make


def write(folder: Path, model_card: ModelCard) -> Model:
    torch.manual_seed(0)
    return save_model(folder, network_from_card(model_card).state_dict(), model_card)


@pytest.fixture
def runs(tmp_path, card) -> Path:
    """runs/a/model (2D instance U-Net) and runs/deep/b/model (3D semantic FCN), plus things to skip."""
    root = tmp_path / "runs"
    write(root / "a" / "model", card(2))
    write(
        root / "deep" / "b" / "model",
        card(
            3, name="tissue", network="fcn", network_options={"features": [4, 4, 4, 4, 4]}, in_channels=2,
            channel_names=["t1", "t2"], classes=["background", "grey", "white"], instances=False, spacing=(2.0, 1.0, 1.0),
            unit="millimeter", training=TrainingRecord(dataset="mni", epochs=5, ended_by="time budget"),
        ),
    )
    (root / "a" / "data.zarr" / "model").mkdir(parents=True)
    (root / "a" / "data.zarr" / "model" / "model.pt").write_bytes(b"not a model")  # inside a store: not searched
    (root / "broken").mkdir()
    (root / "broken" / "model.pt").write_bytes(b"garbage")
    # a good card beside damaged weights: listed as fine before, then segment failed on it
    shutil.copytree(root / "a" / "model", root / "damaged")
    (root / "damaged" / "model.pt").write_bytes(b"junk\n")
    # a card whose weights were lost: not listed at all before ("no trained models" when alone)
    shutil.copytree(root / "a" / "model", root / "weightless")
    (root / "weightless" / "model.pt").unlink()
    return root


def test_models_lists_every_model_under_the_folders(runs):
    result = CliRunner().invoke(app, ["models", str(runs)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["folder", "name", "network"]
    two_d = next(line for line in lines if str(runs / "a" / "model") in line)
    three_d = next(line for line in lines if str(runs / "deep" / "b" / "model") in line)
    for text in ("demo2d", "unet", "2D", "background,nucleus +instances", "0.65 x 0.65 micrometer", "set2d", "7", "iterations", "seg 0.812"):
        assert text in two_d, text
    for text in ("tissue", "fcn", "3D", "2 (t1,t2)", "background,grey,white", "2 x 1 x 1 millimeter", "mni", "time budget"):
        assert text in three_d, text
    assert not any("data.zarr" in line for line in lines)
    assert any(line.startswith(f"{runs / 'broken'}: unreadable") for line in lines)
    assert any(line.startswith(f"{runs / 'damaged'}: unreadable") and "model.pt: damaged" in line for line in lines)
    assert any(line.startswith(f"{runs / 'weightless'}: unreadable") and "model.pt is missing" in line for line in lines)
    assert sum(str(runs) in line and "unreadable" not in line for line in lines[1:]) == 2
    shipped = next(line for line in lines if line.startswith("cells-2d (shipped)"))
    for text in ("unet", "2D", "2", "background,object +instances", "each image's own"):
        assert text in shipped, text


def test_models_lists_the_shipped_models_when_no_folder_holds_one(tmp_path):
    result = CliRunner().invoke(app, ["models", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"no trained models under {tmp_path}"
    assert lines[1].split()[:3] == ["folder", "name", "network"] and lines[2].startswith("cells-2d (shipped)")
    # its scores are on its own generated kinds, tuned on them (it read "seg 0.909, det 0.998" as if they were anyone's)
    assert "on its own kinds of images, tuned on them (real images score lower: README): seg 0.909" in lines[2]


def test_models_defaults_to_runs_and_list_is_the_same(runs, monkeypatch):
    monkeypatch.chdir(runs.parent)
    plain = CliRunner().invoke(app, ["models"])
    listed = CliRunner().invoke(app, ["models", "list", "runs"])
    assert plain.exit_code == 0 and plain.output == listed.output
    assert "demo2d" in plain.output


def test_models_in_a_fresh_clone_lists_the_shipped_ones(tmp_path, monkeypatch):
    """Before, with no runs/ folder yet (a fresh clone), it said "runs: no such folder" and exit 2."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("no trained models: no folder runs or models here (segpipe run and train write theirs in "
                        "runs; the README imports shared ones into models)")
    assert lines[2].startswith("cells-2d (shipped)")
    assert not (tmp_path / "runs").exists()


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["segpipe", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_export_and_import_from_the_command_line(runs, tmp_path, monkeypatch, capsys):
    package = tmp_path / "demo.zip"
    code, out, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(package), "--no-test")
    assert code == 0, err
    assert package.is_file() and "not tested)" in out
    code, out, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(package), "--no-test")
    assert code == 0 and "not tested; it replaced the file that was there)" in out  # said, not done silently
    code, out, err = run_main(monkeypatch, capsys, "models", "import", str(package), "--to", str(tmp_path / "back"))
    assert code == 0, err
    assert Model.open(tmp_path / "back").card == Model.open(runs / "a" / "model").card


def test_a_shipped_model_exports_by_its_name(tmp_path, monkeypatch, capsys):
    """`segpipe models` tells users to give a shipped model's name; export said "no trained model here"."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "models", "export", "cells-2d", "--to", "c.zip", "--no-test")
    assert code == 0, err
    assert (tmp_path / "c.zip").is_file()
    assert "segpipe/models/starts/cells-2d (" in out


def test_command_line_errors_are_one_line(runs, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "models", "import", str(tmp_path / "nothing.zip"), "--to", str(tmp_path / "x"))
    assert code == 2 and err == f"error: {tmp_path / 'nothing.zip'}: no such file or folder\n"
    code, _, err = run_main(monkeypatch, capsys, "models", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("pixels", "message"),
    [("nan", "holds 2500 NaN or Inf values; a sample must be finite"), ("blank", "is 0.0 throughout; a sample needs objects")],
)
def test_a_sample_that_cannot_show_the_model_is_refused_in_one_line_naming_it(runs, tmp_path, monkeypatch, capsys, pixels, message):
    import numpy as np
    import tifffile

    image = np.random.default_rng(0).uniform(0, 200, (96, 96)).astype(np.float32)
    if pixels == "nan":
        image[:50, :50] = np.nan
    else:
        image[:] = 0
    tifffile.imwrite(tmp_path / "sample.tif", image)
    package = tmp_path / "demo.zip"
    code, _, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(package),
                            "--no-test", "--sample", str(tmp_path / "sample.tif"))
    assert code == 2 and err.startswith(f"error: {tmp_path / 'sample.tif'}: {message}"), err
    assert err.count("\n") == 1 and not package.exists()


def test_a_sample_with_more_channels_than_the_model_takes_is_refused_without_talk_of_a_catalog(runs, tmp_path, monkeypatch, capsys):
    import numpy as np
    from skimage.io import imsave

    imsave(tmp_path / "rgb.png", np.random.default_rng(0).integers(0, 255, (96, 96, 3)).astype(np.uint8), check_contrast=False)
    code, _, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(tmp_path / "x.zip"),
                            "--no-test", "--sample", str(tmp_path / "rgb.png"))
    assert code == 2 and err == f"error: {tmp_path / 'rgb.png'}: the sample has 3 channels; model 'demo2d' takes 1: give a one-channel image\n"


def test_a_stack_as_the_sample_of_a_2d_model_names_the_model_not_a_catalog(runs, tmp_path, monkeypatch, capsys):
    """It said "the catalog says 2D", though export reads no catalog."""
    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "stack.tif", np.random.default_rng(0).uniform(0, 200, (5, 64, 64)).astype(np.float32),
                     imagej=True, metadata={"axes": "ZYX"})
    code, _, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(tmp_path / "x.zip"),
                            "--no-test", "--sample", str(tmp_path / "stack.tif"))
    assert code == 2 and err == (f"error: {tmp_path / 'stack.tif'}: array has shape (1, 1, 5, 64, 64) (T, C, Z, Y, X); "
                                 "model 'demo2d' says 2D\n"), err


def test_a_one_channel_sample_for_a_two_channel_model_says_so(tmp_path, monkeypatch, capsys):
    """It said "no Y axis (shape (256, 256), axes 'CX')": the rows were read as channels."""
    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "grey.tif", np.random.default_rng(0).integers(0, 255, (96, 96)).astype(np.uint8))
    code, _, err = run_main(monkeypatch, capsys, "models", "export", "cells-2d", "--to", str(tmp_path / "x.zip"),
                            "--no-test", "--sample", str(tmp_path / "grey.tif"), "--author", "A", "--license", "MIT")
    assert code == 2 and err == (f"error: {tmp_path / 'grey.tif'}: the sample has 1 channel; model 'cells-2d' takes 2: give a "
                                 "2-channel image, channels on the first axis\n"), err


def test_models_given_a_file_says_it_is_a_file(tmp_path, monkeypatch, capsys):
    """Before, an existing file was "no such folder"."""
    image = tmp_path / "a.tif"
    image.write_bytes(b"II*\x00")
    code, _, err = run_main(monkeypatch, capsys, "models", "list", str(image))
    assert code == 2 and err.strip() == f"error: {image}: a file, not a folder (give the folder that holds the models)"
    code, _, err = run_main(monkeypatch, capsys, "models", "list", str(tmp_path / "none"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'none'}: no such folder"


def test_models_finds_imported_models_too(runs, tmp_path, monkeypatch, capsys):
    """A colleague who imported a package into models/ (as the README does) was told there were none."""
    package = tmp_path / "demo.zip"
    assert run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(package), "--no-test")[0] == 0
    colleague = tmp_path / "colleague"
    colleague.mkdir()
    monkeypatch.chdir(colleague)
    assert run_main(monkeypatch, capsys, "models", "import", str(package), "--to", "models/demo")[0] == 0
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and result.output.splitlines()[1].split()[:2] == ["models/demo", "demo2d"], result.output


def test_export_of_a_run_folder_warns_of_what_the_package_cannot_give(runs, tmp_path, monkeypatch, capsys, card, caplog):
    """A run folder (runs/NAME) was "no trained model here" though its model sits in model/; a
    model of guessed pixel size, and a package without author or license, were exported without a word."""
    import logging

    write(tmp_path / "runs2" / "guessed" / "model", card(2, spacing=(1.0, 1.0), spacing_guessed=True))
    for run, guessed in ((runs / "a", False), (tmp_path / "runs2" / "guessed", True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="segpipe.cli.models"):
            code, out, err = run_main(monkeypatch, capsys, "models", "export", str(run), "--to", str(tmp_path / f"{run.name}.zip"),
                                      "--no-test", "--license", "CC-BY-4.0")
        assert code == 0 and (tmp_path / f"{run.name}.zip").is_file(), err
        said = [r.getMessage() for r in caplog.records]
        assert any("the package names no author:" in m for m in said), said
        assert any("its pixel size is not known" in m for m in said) == guessed, said
        assert any(f"segpipe models pixel-size {run} SIZE --unit UNIT" in m for m in said) == guessed, said


def test_an_export_into_a_missing_or_wrong_folder_is_one_line_before_any_warning(runs, tmp_path, monkeypatch, capsys):
    """A mistyped --to made every missing folder (even under /), an existing folder gave the OS's bare
    "Is a directory", a folder that is a file read as "it already exists", and a .txt was refused
    after the warnings."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder.zip").mkdir()
    for to, said in [
        (tmp_path / "missing" / "sub" / "m.zip", f"{tmp_path / 'missing' / 'sub'}: no such folder (make it first, or give another --to)"),
        (tmp_path / "a_file" / "m.zip", f"{tmp_path / 'a_file'}: a file, not a folder (the package {tmp_path / 'a_file' / 'm.zip'} would go inside it)"),
        (tmp_path / "folder.zip", f"{tmp_path / 'folder.zip'}: a folder; give the package's file in it, such as {tmp_path / 'folder.zip' / 'model.zip'}"),
        (tmp_path / "m.txt", f"{tmp_path / 'm.txt'}: a BioImage Model Zoo package is a .zip file; name it like m.txt.zip"),
    ]:
        code, out, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a" / "model"), "--to", str(to), "--no-test")
        assert (code, out, err) == (2, "", f"error: {said}\n")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "m.txt").exists()
    assert not any((tmp_path / "folder.zip").iterdir()) and (tmp_path / "a_file").read_text() == "x"


@pytest.mark.parametrize(("given", "said"), [
    ("NOT-A-LICENSE", "license 'NOT-A-LICENSE': not an SPDX license identifier (e.g. CC-BY-4.0, MIT, BSD-3-Clause)"),
    ("cc-by-4.0", "license 'cc-by-4.0': not an SPDX license identifier (e.g. CC-BY-4.0, MIT, BSD-3-Clause); did you mean CC-BY-4.0?"),
])
def test_a_license_that_is_no_spdx_identifier_is_refused_in_one_short_line_before_any_work(runs, tmp_path, monkeypatch, capsys,
                                                                                        given, said):
    """The format's error listed all 600-odd identifiers in one line of 10 kB, named the model folder
    and ": :", and came after the pixel-size warning and the network's test output were made."""
    code, out, err = run_main(monkeypatch, capsys, "models", "export", str(runs / "a"), "--to", str(tmp_path / "a.zip"),
                              "--no-test", "--license", given, "--author", "A")
    assert code == 2 and err.strip().splitlines() == [f"error: {said}"] and not (tmp_path / "a.zip").exists(), err


def test_a_model_told_its_training_pixel_size_resamples_new_images_by_theirs(crops_model, tmp_path, segpipe_cli):
    """The BBBC007 crops model was trained on files without a pixel size. A field upsampled twice,
    its file saying 0.25 um, was taken at its own pixels (objects twice the size learnt); told
    that its training pixels were 0.5 um, the model resamples it to 0.5 um and finds what it finds
    on the field itself, and measures areas in square micrometres."""
    import csv

    import numpy as np
    import tifffile

    data = Path(__file__).resolve().parents[2] / "data"
    folder = tmp_path / "model"
    shutil.copytree(crops_model.folder, folder)
    assert crops_model.card.spacing_guessed and crops_model.card.spacing == (1.0, 1.0)
    field = tifffile.imread(data / "bbbc007" / "images" / "A9_p9d.tif")[:160, :160]
    (tmp_path / "own").mkdir()
    tifffile.imwrite(tmp_path / "own" / "field.tif", field)
    (tmp_path / "fine").mkdir()
    tifffile.imwrite(tmp_path / "fine" / "fine.ome.tif", np.kron(field, np.ones((2, 2), field.dtype)), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})

    def objects(name: str) -> tuple[int, list[float]]:
        run = segpipe_cli("segment", "--model", folder, tmp_path / name, "--output", tmp_path / f"out-{name}", "--device", "cpu")
        assert run.code == 0, run.err
        with open(tmp_path / f"out-{name}" / "measurements.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return len(rows), sorted(float(r["area"]) for r in rows)

    own, own_areas = objects("own")
    guessed, _ = objects("fine")
    told = segpipe_cli("models", "pixel-size", folder, "0.5", "--unit", "um")
    assert told.code == 0, told.err
    assert "pixel size 0.5 x 0.5 micrometer" in told.out
    card = Model.open(folder).card
    assert card.spacing == (0.5, 0.5) and card.unit == "micrometer" and not card.spacing_guessed
    assert torch.load(folder / "model.pt", weights_only=True)["card"]["spacing"] == [0.5, 0.5]
    for key, value in Model.open(crops_model.folder).state_dict().items():
        torch.testing.assert_close(Model.open(folder).state_dict()[key], value, rtol=0, atol=0)
    resampled, areas = objects("fine")  # into the same folder: segmented again, not kept as unchanged
    assert own > 10 and abs(resampled - own) <= max(2, own // 10) and abs(guessed - own) > abs(resampled - own)
    # the same nuclei, measured in um^2 (0.5 um pixels: a quarter of the pixel counts), within resampling's edge
    assert np.median(areas) == pytest.approx(np.median(own_areas) * 0.25, rel=0.15)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("0.5",), "it was trained at a known pixel size (0.5 x 0.5 micrometer)"),
        (("0.5,0.5,0.5",), "give one size per spatial axis (2 for a 2D model), got 0.5 x 0.5 x 0.5"),
        (("0,0.5",), "0 x 0.5 is not a pixel size: each size must be a positive number"),
        (("inf",), "inf x inf is not a pixel size"),
        (("1e400,1",), "inf x 1 is not a pixel size"),
        (("0.65", "--unit", "m"), "0.65 x 0.65 meter is no pixel size of a microscope or scanner image (0.1 nm to 10 cm)"),
        (("1e-30",), "1e-30 x 1e-30 micrometer is no pixel size"),
        (("a,b",), "'a,b' is not a pixel size; give numbers separated by commas"),
        (("0.5", "--unit", "px"), "'px' is not a length unit"),
    ],
)
def test_a_pixel_size_that_cannot_be_set_is_one_line_and_changes_nothing(crops_model, tmp_path, segpipe_cli, args, message):
    folder = tmp_path / "model"
    shutil.copytree(crops_model.folder, folder)
    if message.startswith("it was trained"):  # a card trained at a known pixel size
        card = Model.open(folder).card.model_copy(update={"spacing": (0.5, 0.5), "spacing_guessed": False})
        save_model(folder, Model.open(folder).state_dict(), card)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    run = segpipe_cli("models", "pixel-size", folder, *args)
    assert run.code == 2 and message in run.err and len(run.err.strip().splitlines()) == 1, run.err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_the_generalists_pixel_size_cannot_be_set(segpipe_cli):
    run = segpipe_cli("models", "pixel-size", "cells-2d", "0.5")
    assert run.code == 2 and "a generalist takes every image at its own pixels" in run.err


def test_a_pixel_size_set_after_training_can_be_corrected(crops_model, tmp_path, segpipe_cli):
    """0.5 typed for 0.65: set again, the card is what 0.65 alone gives; the report's row says it was set."""
    from segpipe.report.tables import card_table

    folder, once = tmp_path / "model", tmp_path / "once"
    shutil.copytree(crops_model.folder, folder)
    shutil.copytree(crops_model.folder, once)
    assert segpipe_cli("models", "pixel-size", folder, "0.5").code == 0
    again = segpipe_cli("models", "pixel-size", folder, "650", "--unit", "nm")
    assert again.code == 0 and "(was 0.5 x 0.5 micrometer, set with models pixel-size)" in again.out
    assert segpipe_cli("models", "pixel-size", once, "650", "--unit", "nm").code == 0
    corrected, direct = Model.open(folder).card, Model.open(once).card
    assert corrected.spacing == pytest.approx(direct.spacing) == (650.0, 650.0) and corrected.unit == "nanometer"
    assert corrected.pixel_size_set == (650.0, 650.0) and not corrected.spacing_guessed
    rows = dict((row[0], row[1]) for row in card_table(corrected).rows)
    assert "set after training with `segpipe models pixel-size`" in rows["pixel size trained at (others are resampled to it)"]
