"""A bad ``--model`` or ``--device`` on the command line: one ``error:`` line, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from segpipe.data.catalog import load_catalog
from segpipe.models.model import network_from_card, save_model
from segpipe.pipeline import RunFolder, stages


@pytest.fixture(scope="module")
def setup(make_crop_catalog, model_card, tmp_path_factory):
    """An ingested crops run (no predictions) and an untrained model that fits it."""
    catalog = make_crop_catalog()
    stages.ingest(load_catalog(catalog), "crops", RunFolder.of(catalog.parent / "runs", "crops"))
    card = model_card()
    model = save_model(tmp_path_factory.mktemp("models") / "good", network_from_card(card).state_dict(), card)
    return catalog, model


def _bad_model(model, folder, kind: str):
    shutil.copytree(model.folder, folder)
    weights, card = folder / "model.pt", folder / "model_card.json"
    if kind == "pickle payload":
        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {folder / 'PWNED'}",))

        torch.save({**torch.load(weights, weights_only=True), "extra": Payload()}, weights)
    elif kind == "truncated zip":
        weights.write_bytes(weights.read_bytes()[:2000])
    elif kind == "garbage":
        weights.write_bytes(b"hello, not a model")
    elif kind == "unknown card option":
        data = json.loads(card.read_text())
        data["inference"] = {**data.get("inference", {}), "sharpen": True}
        card.write_text(json.dumps(data))
    elif kind == "corrupt card":
        card.write_text('{"name": ')
    elif kind == "no weights":
        weights.unlink()
    elif kind == "3D model":
        from segpipe.models.card import ModelCard

        wrong = ModelCard.model_validate({**json.loads(card.read_text()), "spatial_dims": 3, "patch_size": [16, 64, 64],
                                          "spacing": [1.0, 1.0, 1.0]})
        save_model(folder, network_from_card(wrong).state_dict(), wrong)
    return folder


KINDS = ["pickle payload", "truncated zip", "garbage", "unknown card option", "corrupt card", "no weights", "3D model"]
EXPECTED = {
    "pickle payload": "model.pt: refused: the file holds Python objects other than tensors",
    "truncated zip": "model.pt: damaged or not a model file",
    "garbage": "model.pt: damaged or not a model file",
    "unknown card option": "model_card.json: not a valid model card: inference.sharpen: unknown field",
    "corrupt card": "model_card.json: cannot read the model card",
    "no weights": "no trained model here (model.pt is missing)",
    "3D model": "segments 3D volumes",
}


@pytest.mark.parametrize("kind", KINDS)
def test_predict_with_a_bad_model(setup, tmp_path, segpipe_cli, kind):
    catalog, model = setup
    bad = _bad_model(model, tmp_path / "bad", kind)
    output = catalog.parent / "runs"
    result = segpipe_cli("predict", "crops", "--catalog", catalog, "--output", output, "--model", bad,
                         "--device", "cpu")
    code, errors = result.code, result.errors
    expected = "model 'demo' segments 3D images, these are 2D" if kind == "3D model" else EXPECTED[kind]
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors
    assert str(bad) in errors[0] or (kind == "3D model" and "data.zarr" in errors[0]), errors
    assert not (output / "crops" / "predictions.zarr").exists()
    assert not (bad / "PWNED").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_segment_with_a_bad_model(setup, tmp_path, segpipe_cli, kind):
    catalog, model = setup
    bad = _bad_model(model, tmp_path / "bad", kind)
    image = catalog.parent / "images" / "A9_p9d.tif"
    output = tmp_path / "segmented"
    result = segpipe_cli("segment", "--model", bad, image, "--output", output, "--device", "cpu")
    code, errors = result.code, result.errors
    assert code == 2 and len(errors) == 1, errors
    assert EXPECTED[kind] in errors[0] and (str(bad) in errors[0] or str(image) in errors[0]), errors
    assert not output.exists()
    assert not (bad / "PWNED").exists()


@pytest.mark.parametrize("command", ["predict", "segment", "train", "run"])
def test_an_unknown_device_fails_at_once(setup, tmp_path, segpipe_cli, command):
    """Checked with the options, before a model, a store or a server is looked for."""
    catalog, _ = setup
    nowhere = tmp_path / "nowhere"
    args = {
        "predict": ["predict", "crops", "--output", nowhere],
        "segment": ["segment", "--model", nowhere / "model", nowhere / "x.tif", "--output", nowhere],
        "train": ["train", "crops", "--catalog", catalog, "--output", nowhere],
        "run": ["run", "crops", "--catalog", catalog, "--output", nowhere],
    }[command]
    result = segpipe_cli(*args, "--device", "gpu")
    code, errors = result.code, result.errors
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: --device: "), errors
    assert "'gpu'" in errors[0] and "cpu" in errors[0] and "Value error" not in errors[0], errors
    assert not nowhere.exists()


@pytest.mark.parametrize("command", ["predict", "segment"])
def test_a_model_that_does_not_exist(setup, tmp_path, segpipe_cli, command):
    catalog, _ = setup
    output = tmp_path / "out"
    args = {
        "predict": ["predict", "crops", "--catalog", catalog, "--output", catalog.parent / "runs"],
        "segment": ["segment", catalog.parent / "images" / "A9_p9d.tif", "--catalog", catalog, "--output", output],
    }[command]
    result = segpipe_cli(*args, "--model", "no-such-model")
    code, errors = result.code, result.errors
    assert code == 2 and errors == ["error: no-such-model: no model folder no-such-model, no catalog dataset named "
                                    "'no-such-model' and no shipped model of that name (cells-2d)"], errors
    assert not output.exists()


def test_a_model_package_given_as_the_model_says_to_import_it(setup, tmp_path, segpipe_cli):
    """A colleague's exported .zip passed to --model was "no model folder" with no way forward."""
    catalog, _ = setup
    package = tmp_path / "shared.zip"
    package.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: where it is, not what it holds, matters here
    result = segpipe_cli("segment", catalog.parent / "images" / "A9_p9d.tif", "--model", package, "--output", tmp_path / "out")
    assert result.code == 2 and len(result.errors) == 1, result.err
    assert result.errors[0].endswith(f"; a model package is imported first: segpipe models import {package} --to FOLDER, "
                                     "then --model FOLDER"), result.errors


def test_any_file_of_a_model_folder_names_the_folder_and_a_package_folder_says_to_import_it(setup, tmp_path, segpipe_cli):
    """--model .../model_card.json (or history.csv) was "no model folder"; an unzipped package was "no
    trained model here ... train one", the wrong advice for a colleague's model."""
    catalog, model = setup
    image = catalog.parent / "images" / "A9_p9d.tif"
    for name in ("model_card.json", "model.pt"):
        result = segpipe_cli("segment", image, "--model", model.folder / name, "--output", tmp_path / name, "--device", "cpu")
        assert result.code == 0 and (tmp_path / name / "labels" / "A9_p9d_labels.tif").is_file(), result.err
    unzipped = tmp_path / "unzipped"
    unzipped.mkdir()
    (unzipped / "rdf.yaml").write_text("type: model\n")
    for ref in (unzipped, unzipped / "rdf.yaml"):
        result = segpipe_cli("segment", image, "--model", ref, "--output", tmp_path / "out")
        assert result.code == 2 and len(result.errors) == 1, result.err
        assert f"segpipe models import {unzipped} --to FOLDER, then --model FOLDER" in result.errors[0], result.errors
    assert not (tmp_path / "out").exists()
