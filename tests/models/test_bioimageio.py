"""BioImage Model Zoo packages: export, bioimageio.core's own model test, import back, refusals."""

from __future__ import annotations

import io
import logging
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from segpipe.errors import ModelError
from segpipe.inference.memory import activate
from segpipe.inference.normalize import NormalizationSpec, normalize, percentile_normalize
from segpipe.inference.postprocess import InstanceParams
from segpipe.models import available_models, register_model
from segpipe.models.bioimageio import export_model, import_model
from segpipe.models.card import ModelCard, TrainingRecord
from segpipe.models.model import Model, network_from_card, save_model

def instance_card_2d() -> ModelCard:
    return ModelCard(
        name="nuclei",
        network="unet",
        network_options={"features": [4, 4, 4, 4, 4, 4]},
        spatial_dims=2,
        in_channels=1,
        channel_names=["dapi"],
        out_channels=4,
        extra_outputs=("distance", "boundary"),  # what training gives instance models by default
        classes=["background", "nucleus"],
        instances=True,
        patch_size=(64, 64),
        spacing=(0.65, 0.65),
        # as training plans it: percentiles outside the fill, values below the low one floored, a range floor
        normalization=NormalizationSpec(method="percentile", low=1.0, high=99.8, min_range=(40.0,), skip_fill=True),
        postprocess=InstanceParams(seed_threshold=0.6, min_size=12),
        training=TrainingRecord(
            dataset="nuclei-crops", epochs=3, best_epoch=2, ended_by="iterations",
            validation={"seg": 0.812, "tuned_on": ["img04"]}, config={"learning_rate": 0.002, "seed": 0},
        ),
        software={"segpipe": "test"},
    )


def semantic_card_3d() -> ModelCard:
    return ModelCard(
        name="tissue 3d/v1.2",  # characters the zoo refuses in names
        network="fcn",
        network_options={"features": [4, 4, 4, 4, 4], "variant": "8s"},
        spatial_dims=3,
        in_channels=2,
        out_channels=3,
        classes=["background", "grey matter", "white matter"],
        instances=False,
        patch_size=(32, 48, 48),
        spacing=(2.0, 1.0, 1.0),
        unit="millimeter",
        normalization=NormalizationSpec(method="zscore", low=0.5, high=99.5),
        training=TrainingRecord(dataset="mni152-tissue", epochs=5, ended_by="time budget"),
    )


def write_model(folder: Path, card: ModelCard, *, seed: int = 0) -> Model:
    """A seeded random-init network saved with its card, as training would."""
    torch.manual_seed(seed)
    return save_model(folder, network_from_card(card).state_dict(), card)


@pytest.fixture(scope="module")
def exported_2d(tmp_path_factory):
    """A 2D instance U-Net and its package, tested by bioimageio.core during the export."""
    root = tmp_path_factory.mktemp("bioimageio-2d")
    model = write_model(root / "model", instance_card_2d())
    return model, export_model(model, root / "nuclei.zip")


def members(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(package: Path, target: Path, **changes: bytes | None) -> Path:
    """A copy of ``package`` with members replaced (bytes) or left out (``None``)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members(package).items():
            data = changes.get(name, data)
            if data is not None:
                out.writestr(name, data)
    return target


def rdf_name(package: Path) -> str:
    return next(n for n in members(package) if n in ("rdf.yaml", "bioimageio.yaml"))


def same_outputs(a: Model, b: Model, shape) -> bool:
    x = torch.from_numpy(np.random.default_rng(7).normal(size=shape).astype(np.float32))
    with torch.no_grad():
        return torch.equal(a.load()(x), b.load()(x))


def load_torchscript(data: bytes):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def test_a_2d_instance_unet_passes_the_zoo_test_and_comes_back_unchanged(exported_2d, tmp_path):
    model, package = exported_2d
    files = members(package)
    assert {"weights.pt", "weights_torchscript.pt", "segpipe_architecture.py", "README.md", "test_input.npy"} <= set(files)
    rdf = yaml.safe_load(files[rdf_name(package)])
    assert rdf["format_version"] == "0.5.12" and rdf["name"] == "nuclei unet 2D"
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["background", "nucleus", "distance", "boundary"]
    assert rdf["inputs"][0]["axes"][1]["channel_names"] == ["dapi"]
    assert rdf["inputs"][0]["axes"][2]["scale"] == 0.65 and rdf["inputs"][0]["axes"][2]["unit"] == "micrometer"
    assert [p["id"] for p in rdf["inputs"][0]["preprocessing"]] == ["ensure_dtype", "scale_range", "ensure_dtype"]
    readme = files["README.md"].decode()
    for text in ("watershed on the distance channel", "config.segpipe.postprocess", "0.65 x 0.65 micrometer",
                 "seg: 0.812", "percentiles 1 and 99.8", "nuclei-crops", "ended by: iterations", "deepImageJ",
                 "`boundary`: the probability that a pixel lies on a border"):
        assert text in readme, text

    imported = import_model(package, tmp_path / "imported")
    assert imported.card == model.card
    assert Model.open(tmp_path / "imported").card == model.card
    assert same_outputs(model, imported, (1, 1, 80, 96))


def test_the_packaged_torchscript_gives_the_networks_output(exported_2d):
    model, package = exported_2d
    files = members(package)
    scripted = load_torchscript(files["weights_torchscript.pt"])
    raw = np.load(io.BytesIO(files["test_input.npy"]))
    norm = model.card.normalization  # the package's scale_range: every pixel, no floors
    x = torch.from_numpy(percentile_normalize(raw[0], low=norm.low, high=norm.high)[None])
    with torch.no_grad():
        ours = activate(model.load()(x), n_classes=model.card.n_classes)
        theirs = scripted(x)
    assert torch.equal(ours, theirs)
    assert np.array_equal(theirs.numpy(), np.load(io.BytesIO(files["test_output.npy"])))


def test_a_3d_semantic_fcn_comes_back_and_both_weight_formats_give_its_output(tmp_path):
    """Without the zoo test (slow in 3D: see the next test): the card, the weights and the two formats."""
    model = write_model(tmp_path / "model", semantic_card_3d(), seed=1)
    package = export_model(model, tmp_path / "out" / "tissue.zip", test=False, authors=["Ada Lovelace"], license="CC-BY-4.0")
    files = members(package)
    rdf = yaml.safe_load(files[rdf_name(package)])
    assert rdf["name"] == "tissue 3d-v1-2 fcn 3D" and rdf["license"] == "CC-BY-4.0"
    assert [p["id"] for p in rdf["inputs"][0]["preprocessing"]] == ["ensure_dtype", "clip", "zero_mean_unit_variance", "ensure_dtype"]
    assert rdf["inputs"][0]["axes"][2]["size"] == {"min": 48, "step": 16}
    assert "only an approximation" in files["README.md"].decode()
    imported = import_model(package, tmp_path / "imported")
    assert imported.card == model.card
    assert same_outputs(model, imported, (1, 2, 48, 48, 64))

    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 2, 48, 40, 64)).astype(np.float32))
    with torch.no_grad():
        expected = activate(model.load()(x), n_classes=3)
        assert torch.equal(load_torchscript(files["weights_torchscript.pt"])(x), expected)
        architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
        namespace: dict = {}
        exec(compile(files[architecture["source"]], architecture["source"], "exec"), namespace)
        packaged = namespace[architecture["callable"]](**architecture["kwargs"]).eval()
        packaged.load_state_dict(torch.load(io.BytesIO(files["weights.pt"]), weights_only=True))
        assert torch.equal(packaged(x), expected)


def thin_stack_card() -> ModelCard:
    """A 3D instance U-Net for stacks of a few slices: z pooled twice, y and x four times."""
    pools = [[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    options = {"features": [4, 4, 4, 4, 4, 4], "pools": pools}
    return instance_card_2d().model_copy(
        update={"name": "cho", "network_options": options, "spatial_dims": 3, "patch_size": (4, 64, 64), "spacing": (1.0, 0.45, 0.45)}
    )


def test_a_unet_pooled_per_axis_declares_its_sizes_per_axis_and_its_architecture_rebuilds_it(tmp_path):
    model = write_model(tmp_path / "model", thin_stack_card(), seed=2)
    package = export_model(model, tmp_path / "cho.zip", test=False)
    files = members(package)
    rdf = yaml.safe_load(files[rdf_name(package)])
    sizes = [axis["size"] for axis in rdf["inputs"][0]["axes"][2:]]
    assert sizes == [{"min": 4, "step": 4}, {"min": 32, "step": 16}, {"min": 32, "step": 16}]
    assert [axis.get("halo", 0) for axis in rdf["outputs"][0]["axes"][2:]] == [0, 8, 8]  # one window spans the stack
    assert "z: 4 + n x 4, crop 0" in files["README.md"].decode()
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    namespace: dict = {}
    exec(compile(files[architecture["source"]], architecture["source"], "exec"), namespace)
    packaged = namespace[architecture["callable"]](**architecture["kwargs"]).eval()
    packaged.load_state_dict(torch.load(io.BytesIO(files["weights.pt"]), weights_only=True))
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 1, 8, 48, 32)).astype(np.float32))
    with torch.no_grad():
        expected = activate(model.load()(x), n_classes=2)
        assert torch.equal(packaged(x), expected)
        assert torch.equal(load_torchscript(files["weights_torchscript.pt"])(x), expected)
    assert import_model(package, tmp_path / "imported").card == model.card


def test_a_unet_with_batch_normalization_is_packaged_with_its_kept_statistics(tmp_path):
    """Batch normalization predicts with the statistics training kept (buffers of the state dict):
    the architecture rebuilds those layers, the weights carry the statistics, both formats agree."""
    card = instance_card_2d()
    card = card.model_copy(update={"network_options": {**card.network_options, "norm": "batch"}})
    torch.manual_seed(4)
    state = network_from_card(card).state_dict()
    generator = torch.Generator().manual_seed(5)
    for name, values in state.items():
        if name.endswith(("running_mean", "running_var")):  # as a training would have left them
            values.copy_(torch.rand(values.shape, generator=generator) + 0.5)
    model = save_model(tmp_path / "model", state, card)
    package = export_model(model, tmp_path / "bn.zip", test=False)
    files = members(package)
    architecture = yaml.safe_load(files[rdf_name(package)])["weights"]["pytorch_state_dict"]["architecture"]
    assert architecture["kwargs"]["norm"] == "batch"
    namespace: dict = {}
    exec(compile(files[architecture["source"]], architecture["source"], "exec"), namespace)
    packaged = namespace[architecture["callable"]](**architecture["kwargs"]).eval()
    packaged.load_state_dict(torch.load(io.BytesIO(files["weights.pt"]), weights_only=True))
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 1, 64, 48)).astype(np.float32))
    with torch.no_grad():
        expected = activate(model.load()(x), n_classes=2)
        assert torch.equal(packaged(x), expected)
        assert torch.equal(load_torchscript(files["weights_torchscript.pt"])(x), expected)
    assert import_model(package, tmp_path / "imported").card == model.card


def test_a_sample_is_cropped_where_it_has_objects_and_the_range_floor_is_said(tmp_path):
    """A centre crop of a field with one cluster of nuclei in a corner would test the package on noise alone."""
    card = thin_stack_card()
    card = card.model_copy(update={"normalization": card.normalization.model_copy(update={"min_range": (40.0,)})})
    model = write_model(tmp_path / "model", card, seed=2)
    rng = np.random.default_rng(0)
    sample = rng.normal(100, 3, size=(1, 5, 200, 160)).astype(np.float32)
    sample[0, :, 150:190, 10:40] += 500  # the only objects, far from the centre
    package = export_model(model, tmp_path / "cho.zip", test=False, sample=sample)
    files = members(package)
    test_input = np.load(io.BytesIO(files["test_input.npy"]))
    assert test_input.shape == (1, 1, 4, 64, 64)  # 4 of the 5 slices (z steps by 4), 64 x 64 in y and x
    assert np.count_nonzero(test_input > 400) == 4 * 40 * 30  # the bright block, whole in y and x
    assert "never divides by less than 40" in files["README.md"].decode()


@pytest.mark.slow
def test_a_unet_pooled_per_axis_passes_the_zoo_test(tmp_path):
    model = write_model(tmp_path / "model", thin_stack_card(), seed=2)
    assert export_model(model, tmp_path / "cho.zip").is_file()  # a failing test raises ModelError


@pytest.mark.slow
def test_a_3d_semantic_fcn_with_zscore_passes_the_zoo_test(tmp_path):
    """About 25 s on two busy cores: bioimageio.core runs each weight format on six input sizes."""
    model = write_model(tmp_path / "model", semantic_card_3d(), seed=1)
    assert export_model(model, tmp_path / "tissue.zip").is_file()  # a failing test raises ModelError


def test_a_failing_zoo_test_names_the_check_and_writes_nothing(tmp_path, monkeypatch, tiny_card):
    from segpipe.models.bioimageio import export

    model = write_model(tmp_path / "model", tiny_card)  # TorchScript only: one weight format to test, quicker
    monkeypatch.setattr(export, "preprocess", lambda raw, spec: normalize(raw, spec) * 3)  # not what the package says
    with pytest.raises(ModelError) as caught:
        export_model(model, tmp_path / "bad.zip")
    message = str(caught.value)
    assert "failed at 'Reproduce test outputs from test inputs (torchscript)'" in message and "not written" in message
    assert "\n" not in message
    assert not (tmp_path / "bad.zip").exists() and not list(tmp_path.glob(".*.zip"))


def test_a_package_without_a_segpipe_card_is_refused_in_one_line(exported_2d, tmp_path):
    _, package = exported_2d
    name = rdf_name(package)
    rdf = yaml.safe_load(members(package)[name])
    del rdf["config"]["segpipe"]
    foreign = rezip(package, tmp_path / "foreign.zip", **{name: yaml.safe_dump(rdf).encode()})
    with pytest.raises(ModelError, match="not made by segpipe") as caught:
        import_model(foreign, tmp_path / "imported")
    assert "only packages from `segpipe models export`" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "imported" / "model.pt").exists()


def test_damaged_packages_are_refused_in_one_line_naming_the_file(exported_2d, tmp_path):
    model, package = exported_2d
    data = package.read_bytes()
    cases = {}
    cases["truncated"] = tmp_path / "truncated.zip"
    cases["truncated"].write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(package) as archive:  # flip bytes inside the weights' compressed data
        info = archive.getinfo("weights.pt")
    flipped = bytearray(data)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    flipped[start : start + 8] = bytes(b ^ 0xFF for b in flipped[start : start + 8])
    cases["flipped"] = tmp_path / "flipped.zip"
    cases["flipped"].write_bytes(bytes(flipped))
    other = {k: v + 1 for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(other, buffer)
    cases["hash"] = rezip(package, tmp_path / "hash.zip", **{"weights.pt": buffer.getvalue()})
    cases["missing"] = rezip(package, tmp_path / "missing.zip", **{"test_output.npy": None})
    expected = {
        "truncated": "not a readable zip file",
        "flipped": "damaged zip file: weights.pt",
        "hash": "weights.pt",
        "missing": "test_output.npy: missing from the package",
    }
    messages = {}
    for case, path in cases.items():
        with pytest.raises(ModelError) as caught:
            import_model(path, tmp_path / f"imported-{case}")
        messages[case] = str(caught.value)
        assert expected[case] in messages[case] and str(path) in messages[case], (case, messages[case])
        assert "\n" not in messages[case], (case, messages[case])
    assert "SHA256 mismatch for weights.pt" in messages["hash"]


def test_importing_into_a_folder_with_a_model_is_refused(exported_2d):
    model, package = exported_2d
    with pytest.raises(ModelError, match="already holds a model"):
        import_model(package, model.folder)


def test_importing_into_a_folder_of_other_files_is_refused(exported_2d, tmp_path):
    """`models import PACKAGE --to DATA_FOLDER` dropped model.pt and model_card.json among the data."""
    _, package = exported_2d
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.tif").write_bytes(b"x")
    with pytest.raises(ModelError, match="a folder with other files in it; import into a new"):
        import_model(package, tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a.tif"]
    (tmp_path / "empty").mkdir()
    assert import_model(package, tmp_path / "empty").card == import_model(package, tmp_path / "new").card


@pytest.fixture(scope="module")
def tiny_card() -> ModelCard:
    """The 2D card with a network registered here, which segpipe has no architecture file for."""
    if "tiny-test-net" not in available_models():

        @register_model("tiny-test-net")
        def tiny(*, spatial_dims: int, in_channels: int, out_channels: int) -> torch.nn.Module:
            return torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

    return instance_card_2d().model_copy(update={"network": "tiny-test-net", "network_options": {}, "name": "tiny"})


def test_another_registered_network_gets_torchscript_only_with_a_warning(tmp_path, caplog, tiny_card):
    model = write_model(tmp_path / "model", tiny_card)
    with caplog.at_level(logging.WARNING, logger="segpipe.models.bioimageio"):
        package = export_model(model, tmp_path / "tiny.zip")
    assert "TorchScript weights only" in caplog.text
    rdf = yaml.safe_load(members(package)[rdf_name(package)])
    assert {name for name, entry in rdf["weights"].items() if entry} == {"torchscript"}
    with pytest.raises(ModelError, match="TorchScript weights only"):
        import_model(package, tmp_path / "imported")


def test_without_the_extra_the_error_says_what_to_install(tmp_path, monkeypatch):
    model = write_model(tmp_path / "model", instance_card_2d())
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    with pytest.raises(ModelError, match=r"pip install -c constraints.txt 'segpipe\[bioimageio\]'"):
        export_model(model, tmp_path / "x.zip")



def test_scores_on_training_images_are_not_called_validation_scores(tiny_card):
    """A run without validation images records its tuning's scores on training images: the package's
    README and `segpipe models` called them validation scores."""
    from segpipe.cli.models import model_row
    from segpipe.models.bioimageio import package_readme

    training = tiny_card.training.model_copy(update={"validation": {"seg": 0.91, "tuned_on": [], "tuned_with_training": ["a"]}})
    card = tiny_card.model_copy(update={"training": training})
    assert "Scores on the training images (from the model card; the run had no validation images" in package_readme(card)
    assert "Validation scores" not in package_readme(card)
    assert model_row("m", card)[-1] == "on training images: seg 0.910"
    validated = tiny_card.model_copy(update={"training": training.model_copy(update={"validation": {"seg": 0.91, "tuned_on": ["v"]}})})
    assert "Validation scores (from the model card):" in package_readme(validated) and model_row("m", validated)[-1] == "seg 0.910"


def test_a_package_unzipped_or_zipped_again_in_a_folder_is_imported(exported_2d, tmp_path):
    """A package a Mac unzipped (a folder, the package at its top or one folder down) was "no such
    file"; zipped again from that folder, its rdf.yaml one folder down made bioimageio's
    "No rdf.yaml found" error. All three now import as the zip does."""
    model, package = exported_2d
    files = members(package)
    for name, data in files.items():
        (tmp_path / "unzipped" / "nuclei" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "unzipped" / "nuclei" / name).write_bytes(data)
    again = tmp_path / "again.zip"
    with zipfile.ZipFile(again, "w") as out:
        for name, data in files.items():
            out.writestr(f"nuclei/{name}", data)
        out.writestr("__MACOSX/nuclei/._rdf.yaml", b"\x00")
    for number, source in enumerate([tmp_path / "unzipped" / "nuclei", tmp_path / "unzipped", again]):
        imported = import_model(source, tmp_path / f"imported{number}")
        assert same_outputs(model, imported, (1, 1, 64, 64)), source
    with pytest.raises(ModelError, match=r"empty: a folder without a BioImage Model Zoo package \(bioimageio.yaml or rdf.yaml\)$"):
        (tmp_path / "empty").mkdir()
        import_model(tmp_path / "empty", tmp_path / "never")
