import json

import numpy as np
import pytest

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.errors import InputError
from segpipe.inference import predict_image
from segpipe.inference.postprocess import InstanceParams
from segpipe.models.model import Model, network_from_card
from segpipe.training.loop import train_model
from segpipe.training.params import TrainParams

TINY = dict(
    epochs=2, max_minutes=None, iterations_per_epoch=2, batch_size=2, patch_size=(64, 64), val_every=1,
    features=(8, 16, 32, 64, 128, 8),
)


@pytest.fixture
def store(crop_catalog, tmp_path):
    path = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), path, progress=False)
    return ImageStore.open(path)


def test_training_writes_a_model_prediction_can_reload(store, tmp_path):
    result = train_model(store, tmp_path / "model", TrainParams(**TINY), progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(0 <= row["val_seg"] <= 1 for row in result.history)
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["patch_size"] == [64, 64] and card["out_channels"] == 6 and card["instances"]  # 2 classes, distance, boundary, flow y, x
    assert card["extra_outputs"] == ["distance", "boundary", "flow"]
    assert set(card["postprocess"]) == set(InstanceParams.model_fields) - {"grid"}  # grid: an image grid's, never stored
    assert card["training"]["epochs"] == 2 and card["training"]["dataset"] == "crops"
    assert card["training"]["validation"]["tuned_on"] == [im.name for im in store.images("validation")]
    assert card["training"]["validation"]["tuned_with_training"] == [im.name for im in store.images("train")]
    assert (tmp_path / "model" / "history.csv").read_text().startswith("epoch,train_loss")
    model = Model.open(tmp_path / "model")
    assert model.card.model_dump(mode="json") == card and model.card == result.model.card
    network = model.load("cpu")
    probs = predict_image(network, np.zeros((1, 50, 70), np.float32), roi_size=model.card.patch_size, n_classes=2)
    assert probs.shape == (6, 50, 70)
    np.testing.assert_allclose(probs[:2].sum(axis=0), 1.0, rtol=1e-5)


def test_same_seed_gives_the_same_numbers_on_cpu(store, tmp_path):
    config = TrainParams(**TINY, device="cpu")
    first = train_model(store, tmp_path / "a", config, progress=False).history
    second = train_model(store, tmp_path / "b", config, progress=False).history
    assert [r["train_loss"] for r in first] == [r["train_loss"] for r in second]
    other = train_model(store, tmp_path / "c", config.model_copy(update={"seed": 1}), progress=False).history
    assert [r["train_loss"] for r in other] != [r["train_loss"] for r in first]


def test_finished_run_is_not_retrained(store, tmp_path, caplog):
    config = TrainParams(**TINY, device="cpu")
    first = train_model(store, tmp_path / "m", config, progress=False)
    again = train_model(store, tmp_path / "m", config, progress=False)
    assert again.history == first.history


def test_a_larger_time_budget_continues_training(store, tmp_path, caplog):
    """A run that ran out of time resumes from last.pt with a larger budget, instead of starting over."""
    import logging

    short = TrainParams(**{**TINY, "epochs": 3, "max_minutes": 1e-5}, device="cpu")
    first = train_model(store, tmp_path / "m", short, progress=False)
    assert len(first.history) == 1 and first.history[-1]["last"] == 1
    longer = short.model_copy(update={"max_minutes": 60.0})
    with caplog.at_level(logging.INFO, logger="segpipe.training.loop"):
        second = train_model(store, tmp_path / "m", longer, progress=False)
    assert "resuming after epoch 1" in caplog.text
    assert [row["epoch"] for row in second.history] == [1, 2, 3]
    assert second.history[0]["train_loss"] == first.history[0]["train_loss"]
    assert second.model.card.training.epochs == 3


def test_killed_run_resumes_to_the_same_result(crop_catalog, tmp_path):
    """SIGKILL a real `segpipe train` after its first epoch, run it again: same history as one clean run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "out"
    args = ["--catalog", str(crop_catalog), "--output", str(output)]
    cli = [sys.executable, "-c", "from segpipe.cli import main; main()"]
    subprocess.run([*cli, "ingest", "crops", *args], check=True, capture_output=True)
    train = [*cli, "train", "crops", *args, "--epochs", "4", "--device", "cpu"]
    history = output / "crops" / "model" / "history.csv"
    proc = subprocess.Popen(train, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done_before = len(history.read_text().splitlines()) - 1
    assert 1 <= done_before < 4

    resumed = subprocess.run(train, capture_output=True, text=True, check=True)
    assert f"resuming after epoch {done_before}" in resumed.stderr

    clean = tmp_path / "clean"
    subprocess.run([*cli, "ingest", "crops", "--catalog", str(crop_catalog), "--output", str(clean)], check=True,
                   capture_output=True)
    subprocess.run([*cli, "train", "crops", "--catalog", str(crop_catalog), "--output", str(clean), "--epochs", "4",
                    "--device", "cpu"], check=True, capture_output=True)

    def losses(path):
        rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
        return [(int(r[0]), r[1]) for r in rows]

    assert losses(history) == losses(clean / "crops" / "model" / "history.csv")
    assert len(losses(history)) == 4

    def resumed_after(run):  # the card says where the run was started again, for the report
        return json.loads((run / "crops" / "model" / "model_card.json").read_text())["training"]["resumed_after"]

    assert resumed_after(output) == [done_before] and resumed_after(clean) == []


def test_zarr_patches_match_the_in_memory_path(store):
    """Patches read from zarr (large datasets) equal crops of the whole-image targets."""
    from segpipe.inference.normalize import normalize
    from segpipe.training.patches import ZarrPatchDataset
    from segpipe.training.plan import normalization_spec
    from segpipe.training.targets import training_sample

    images = store.images("train")
    spec = normalization_spec("percentile", {})
    data = ZarrPatchDataset(images, patch_size=(64, 64), spec=spec, instances=True, length=8, foreground_ratio=0.5)
    whole = training_sample(normalize(np.asarray(images[0].image), spec), np.asarray(images[0].labels), instances=True)
    sample = data.read(images[0], (80, 80), data.normalizations[0])
    window = (slice(None), slice(48, 112), slice(48, 112))
    np.testing.assert_allclose(sample["image"], whole["image"][window], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sample["label"], whole["label"][window])
    np.testing.assert_allclose(sample["dist"], whole["dist"][window], atol=1e-6)
    edge = data.read(images[0], (0, 159), data.normalizations[0])  # clipped to the image, still a full patch
    assert edge["image"].shape == (1, 64, 64)
    assert np.mean([data[i]["label"].any() for i in range(8)]) > 0


def test_zarr_patches_on_a_coarser_model_grid_match_the_resampled_image(store):
    """A model trained at twice the pixel size reads twice the extent and gets the whole image's resampled targets."""
    from segpipe.inference.normalize import normalize
    from segpipe.training.grid import to_grid
    from segpipe.training.patches import ZarrPatchDataset
    from segpipe.training.plan import normalization_spec
    from segpipe.training.targets import training_sample

    images = store.images("train")
    spec = normalization_spec("percentile", {})
    data = ZarrPatchDataset(
        images, patch_size=(32, 32), spec=spec, instances=True, length=8, foreground_ratio=0.5, spacing=(2.0, 2.0)
    )
    image, labels, _ = to_grid(
        normalize(np.asarray(images[0].image), spec), np.asarray(images[0].labels), None,
        spacing=images[0].spacing, target=(2.0, 2.0),
    )
    assert labels.shape == (80, 80)
    whole = training_sample(image, labels, instances=True, spacing=(2.0, 2.0))
    sample = data.read(images[0], (80, 80), data.normalizations[0])  # image pixels 48..112: model pixels 24..56
    window = (slice(None), slice(24, 56), slice(24, 56))
    np.testing.assert_allclose(sample["image"], whole["image"][window], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sample["label"], whole["label"][window])
    np.testing.assert_allclose(sample["dist"], whole["dist"][window], atol=1e-6)


def test_a_model_trained_at_a_coarser_pixel_size_validates_and_tunes_on_its_grid(store, tmp_path):
    """The card keeps the pixel size trained at; validation predicts on that grid, where the labels are resampled too."""
    config = TrainParams(**{**TINY, "patch_size": (32, 32)}, spacing=(2.0, 2.0), device="cpu")
    result = train_model(store, tmp_path / "m", config, progress=False)
    card = result.model.card
    assert card.spacing == (2.0, 2.0) and card.patch_size == (32, 32)
    assert np.isfinite(result.history[-1]["val_dice"]) and card.training.validation["tuned_on"]


def test_training_from_zarr_patches(store, tmp_path):
    result = train_model(store, tmp_path / "lazy", TrainParams(**TINY, memory_limit_gb=0), progress=False)
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["train_loss"])


def test_training_runs_its_planned_iterations_and_says_so(store, tmp_path):
    """Without a budget, training takes exactly epochs x iterations_per_epoch steps, ended by iterations."""
    result = train_model(store, tmp_path / "m", TrainParams(**TINY, device="cpu"), progress=False)
    training = result.model.card.training
    assert (training.ended_by, training.epochs, training.iterations) == ("iterations", 2, 4)
    assert [row["iteration"] for row in result.history] == [2, 4]


def test_the_time_budget_is_checked_after_every_iteration(store, tmp_path):
    """A budget spent by the first step stops the epoch there (not after 5 steps); validation still runs once."""
    config = TrainParams(**{**TINY, "iterations_per_epoch": 5, "max_minutes": 1e-5}, device="cpu")
    result = train_model(store, tmp_path / "m", config, progress=False)
    assert [row["iteration"] for row in result.history] == [1]
    assert "val_score" in result.history[0] and result.history[0]["ended_by"] == "time budget"
    assert result.model.card.training.ended_by == "time budget"


def test_fine_tuning_starts_from_the_given_model(store, tmp_path):
    """With a vanishing learning rate, a fine-tuned model keeps the weights it started from."""
    import torch

    first = train_model(store, tmp_path / "first", TrainParams(**TINY, device="cpu"), progress=False).model
    still = TrainParams(**{**TINY, "epochs": 1, "learning_rate": 1e-12, "weight_decay": 0.0}, device="cpu", init=str(first.folder))
    tuned = train_model(store, tmp_path / "tuned", still, init=first, progress=False).model
    assert tuned.card.training.init == str(first.folder)
    learnt = dict(network_from_card(first.card).named_parameters())  # batch statistics move without learning
    for name, weights in first.state_dict().items():
        if name in learnt:
            torch.testing.assert_close(tuned.state_dict()[name], weights, rtol=1e-5, atol=1e-6)
    scratch = train_model(store, tmp_path / "scratch", still.model_copy(update={"init": None}), progress=False).model
    assert any(
        not torch.equal(scratch.state_dict()[name], weights) for name, weights in first.state_dict().items()
    )


def test_fine_tuning_keeps_the_starting_models_pixel_size_unless_one_is_set(store, tmp_path):
    """The new data is resampled to the scale the starting model learned objects at."""
    config = TrainParams(**{**TINY, "epochs": 1, "patch_size": (32, 32)}, device="cpu")
    coarse = train_model(store, tmp_path / "coarse", config.model_copy(update={"spacing": (2.0, 2.0)}), progress=False).model
    tuned = train_model(store, tmp_path / "tuned", config, init=coarse, progress=False).model
    assert tuned.card.spacing == (2.0, 2.0)
    chosen = config.model_copy(update={"spacing": (1.5, 1.5)})
    assert train_model(store, tmp_path / "set", chosen, init=coarse, progress=False).model.card.spacing == (1.5, 1.5)


def test_a_unet_trained_with_batch_normalization_keeps_the_statistics_it_learnt(store, tmp_path):
    import torch

    config = TrainParams(**{**TINY, "epochs": 1}, device="cpu", norm="batch")
    model = train_model(store, tmp_path / "m", config, progress=False).model
    assert model.card.network_options["norm"] == "batch" and model.card.training.config["norm"] == "batch"
    layers = [m for m in model.load("cpu").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert layers and all(not m.training for m in layers)  # loaded for prediction
    assert not torch.equal(layers[0].running_mean, torch.zeros_like(layers[0].running_mean))  # learnt, saved, loaded


def test_a_patch_edge_that_is_no_multiple_of_16_gets_a_unet_pooled_to_fit_it(store, tmp_path):
    """An edge of 24 halves three times: that axis is pooled three times, and the model predicts at full size."""
    config = TrainParams(**{**TINY, "epochs": 1, "patch_size": (24, 64)}, device="cpu")
    model = train_model(store, tmp_path / "m", config, progress=False).model
    assert model.card.network_options["pools"] == [[2, 2], [2, 2], [2, 2], [1, 2]]
    reopened = Model.open(tmp_path / "m")
    image = np.asarray(store.images("test")[0].image, np.float32)
    probs = predict_image(reopened.load("cpu"), image, roi_size=reopened.card.patch_size, n_classes=2)
    assert probs.shape == (6, *image.shape[1:])


def test_fine_tuning_keeps_the_starting_models_window_and_refuses_one_its_pools_do_not_fit(store, tmp_path):
    from segpipe.errors import ModelError

    config = TrainParams(**{**TINY, "epochs": 1, "patch_size": (24, 64)}, device="cpu")
    start = train_model(store, tmp_path / "start", config, progress=False).model
    open_patch = config.model_copy(update={"patch_size": None})
    assert train_model(store, tmp_path / "tuned", open_patch, init=start, progress=False).model.card.patch_size == (24, 64)
    larger = train_model(store, tmp_path / "larger", config.model_copy(update={"patch_size": (32, 64)}), init=start, progress=False)
    assert larger.model.card.network_options == start.card.network_options  # 32 halves as often as its 3 pools
    with pytest.raises(ModelError, match=r"pooled to multiples of \[8, 16\] pixels, not the patch size \[20, 64\]"):
        train_model(store, tmp_path / "m", config.model_copy(update={"patch_size": (20, 64)}), init=start, progress=False)
    assert not (tmp_path / "m").exists()


def test_fine_tuning_at_a_coarser_spacing_keeps_the_starting_models_plain_network(store, tmp_path):
    """A new spacing can make the plan pool a coarse axis later; the starting network is kept and fits the window."""
    start = train_model(store, tmp_path / "start", TrainParams(**{**TINY, "epochs": 1}, spacing=(1.0, 1.0), device="cpu"), progress=False).model
    assert "pools" not in start.card.network_options
    anisotropic = TrainParams(**{**TINY, "epochs": 1}, spacing=(3.0, 1.0), device="cpu")
    tuned = train_model(store, tmp_path / "tuned", anisotropic, init=start, progress=False).model
    assert tuned.card.spacing == (3.0, 1.0) and tuned.card.network_options == start.card.network_options


def test_a_refused_plan_leaves_no_model_folder(store, tmp_path):
    with pytest.raises(InputError, match="spacing \\[1.0, 1.0, 1.0\\] has 3 axes, the data has 2"):
        train_model(store, tmp_path / "m", TrainParams(**TINY, spacing=(1.0, 1.0, 1.0), device="cpu"), progress=False)
    assert not (tmp_path / "m").exists()


def test_a_model_that_does_not_fit_cannot_be_fine_tuned(store, tmp_path, model_card):
    from segpipe.errors import ModelError
    from segpipe.models.model import network_from_card, save_model

    card = model_card(3)  # a 3D model; the crops are 2D
    save_model(tmp_path / "three", network_from_card(card).state_dict(), card)
    with pytest.raises(ModelError, match="a 3D model of 1 channel"):
        train_model(store, tmp_path / "m", TrainParams(**TINY, device="cpu"), init=Model.open(tmp_path / "three"), progress=False)


def test_a_validation_split_without_objects_still_keeps_a_model(crop_catalog, tmp_path, monkeypatch, caplog):
    """Ingest refuses such a store now; one made before (or by hand) trains and keeps the last checkpoint."""
    import logging

    import tifffile

    from segpipe.data.ingest import run as ingest_run

    validation = crop_catalog.parent / "labels" / "20P1_POS0007_D_1UL.tif"
    tifffile.imwrite(validation, np.zeros_like(tifffile.imread(validation)))
    monkeypatch.setattr(ingest_run, "check_objects", lambda infos: None)
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), tmp_path / "data.zarr", progress=False)
    store = ImageStore.open(tmp_path / "data.zarr")
    config = TrainParams(**{**TINY, "epochs": 1}, device="cpu")
    with caplog.at_level(logging.WARNING, logger="segpipe.training.loop"):
        result = train_model(store, tmp_path / "model", config, progress=False)
    assert "validation split has no object" in caplog.text and "keeping the last checkpoint" in caplog.text
    assert result.model.card.training.best_epoch == 1 and (tmp_path / "model" / "model.pt").is_file()

    # A run that finished without keeping a model (as this one did before) keeps its last checkpoint when run again.
    for name in ("model.pt", "model_card.json"):
        (tmp_path / "model" / name).unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segpipe.training.loop"):
        again = train_model(store, tmp_path / "model", config, progress=False)
    assert again.history == result.history and "keeping the last checkpoint" in caplog.text
    assert Model.open(tmp_path / "model").card.training.best_epoch == 1


@pytest.mark.parametrize(("spacing", "guessed"), [(None, True), ("[0.5, 0.5]", False)])
def test_the_card_says_whether_its_pixel_size_was_guessed(crop_catalog, tmp_path, spacing, guessed):
    """The training files give no pixel size (BBBC007 crops): 1 per pixel is the card's, recorded as a
    guess, so new images are not resampled to it; a catalog's spacing: is a real one."""
    from segpipe.training.loop import make_card
    from segpipe.training.plan import fingerprint_store, plan_training

    if spacing:
        crop_catalog.write_text(crop_catalog.read_text().replace("    ndim: 2\n", f"    ndim: 2\n    spacing: {spacing}\n"))
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), tmp_path / "data.zarr", progress=False)
    store = ImageStore.open(tmp_path / "data.zarr")
    fingerprint = fingerprint_store(store)
    card = make_card(store, fingerprint, plan_training(fingerprint, TrainParams(**TINY)))
    assert card.spacing_guessed is guessed and list(card.spacing) == ([1.0, 1.0] if guessed else [0.5, 0.5])


def test_a_run_without_validation_images_tunes_on_training_images_and_says_so(crop_catalog, tmp_path, caplog):
    """A catalog naming no validation images (a CTC dataset of two sequences, as the docs' example)
    kept the default post-processing while the report said it was tuned on validation: it is now
    tuned on the training images, the card says so, and a warning names what to add."""
    import logging
    import re

    text = crop_catalog.read_text()
    validation = re.search(r"validation: \[([^\]]*)\]", text).group(1)
    text = re.sub(r"\n\s*validation: \[[^\]]*\]", "", text).replace("train: [", f"train: [{validation}, ")
    crop_catalog.write_text(text)
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), tmp_path / "data.zarr", progress=False)
    store = ImageStore.open(tmp_path / "data.zarr")
    assert not store.images("validation")
    with caplog.at_level(logging.WARNING, logger="segpipe.training.loop"):
        result = train_model(store, tmp_path / "model", TrainParams(**{**TINY, "epochs": 1}, device="cpu"), progress=False)
    assert "no validation images" in caplog.text and "name validation images in split:" in caplog.text
    validation = result.model.card.training.validation
    assert validation["tuned_on"] == [] and validation["tuned_with_training"] == [im.name for im in store.images("train")]
    assert 0 <= validation["seg"] <= 1 and result.model.card.training.best_epoch == 1


def test_checkpoints_are_ranked_on_predictions_without_flips(store, tmp_path):
    """Validation during training predicts each window once; the tuning after it, as prediction does, with flips."""
    from segpipe.training.loop import _validate
    from segpipe.training.splits import load_split, predict_split

    model = train_model(store, tmp_path / "m", TrainParams(**TINY), progress=False).model
    network, calls = model.load("cpu"), []
    network.register_forward_hook(lambda *_: calls.append(1))
    val_set = load_split(store, "validation", card=model.card)
    row = _validate(network, val_set, model.card, "cpu")
    ranked = len(calls)
    predict_split(network, val_set, model.card, "cpu")
    assert model.card.inference.flip_tta and len(calls) - ranked == 3 * ranked > 0
    once = predict_split(network, val_set, model.card, "cpu", flips=False)
    inter = sum(np.sum((p[1] > p[0]) & (lab > 0)) for p, lab, _ in once)
    total = sum(np.sum(p[1] > p[0]) + np.sum(lab > 0) for p, lab, _ in once)
    assert row["val_dice"] == pytest.approx(2 * inter / total)


def test_the_latest_checkpoint_within_the_validation_noise_is_kept_across_a_resume(store, tmp_path, monkeypatch):
    """Scripted validation scores: epoch 2 is the best (0.55, standard error 0.1), epoch 3 scores 0.50,
    within that noise: epoch 3's weights are kept, also when the run stopped after epoch 2 and resumed."""
    import torch

    from segpipe.training import loop

    scores = iter([(0.40, 0.1), (0.55, 0.1), (0.50, 0.0)])

    def scripted(model, val_set, card, device):
        score, noise = next(scores)
        return {"val_dice": 0.0, "val_seg_se": noise, "val_score": score}

    monkeypatch.setattr(loop, "_validate", scripted)
    folder = tmp_path / "m"
    train_model(store, folder, TrainParams(**{**TINY, "epochs": 3}), progress=False)  # epochs 1-3 in one run
    assert Model.open(folder).card.training.best_epoch == 3
    last = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
    kept = Model.open(folder).state_dict()
    assert all(torch.equal(kept[k], v) for k, v in last["state_dict"].items())
    assert (last["best_score"], last["best_noise"]) == (0.55, 0.1)

    # The same run stopped after epoch 2 and resumed: the best score's noise comes back with it.
    scores = iter([(0.40, 0.1), (0.55, 0.1), (0.50, 0.0)])
    resumed = tmp_path / "r"
    config = TrainParams(**{**TINY, "epochs": 3})
    state = {}

    def stop_after_two(*args, **kwargs):
        state.setdefault("epochs", 0)
        state["epochs"] += 1
        if state["epochs"] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    real_epoch = loop.train_epoch
    monkeypatch.setattr(loop, "train_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_model(store, resumed, config, progress=False)
    assert Model.open(resumed).card.training.best_epoch == 2
    monkeypatch.setattr(loop, "train_epoch", real_epoch)
    train_model(store, resumed, config, progress=False)
    assert Model.open(resumed).card.training.best_epoch == 3


def test_a_class_map_model_records_its_validation_dice_per_class(crop_catalog, tmp_path):
    """Only instance models recorded validation scores: a tissue model's card held `{}` and
    `segpipe models` showed `-`. The recorded Dice is the kept weights' on the validation split."""
    import tifffile

    from segpipe.training.splits import class_dice, load_split, predict_split

    for path in (crop_catalog.parent / "labels").glob("*.tif"):
        tifffile.imwrite(path, (tifffile.imread(path) > 0).astype(np.uint8))
    crop_catalog.write_text(crop_catalog.read_text().replace("    ndim: 2\n", "    ndim: 2\n    instances: false\n"))
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), tmp_path / "data.zarr", progress=False)
    store = ImageStore.open(tmp_path / "data.zarr")
    model = train_model(store, tmp_path / "model", TrainParams(**TINY), progress=False).model
    validation = model.card.training.validation
    val_set = load_split(store, "validation", card=model.card)
    (expected,) = class_dice(predict_split(model.load("cpu"), val_set, model.card, "cpu"), 2, instances=False)
    assert not model.card.instances and validation["scored_on"] == [im.name for im in store.images("validation")]
    assert validation["dice_by_class"] == {"nucleus": round(float(expected), 4)} and validation["dice"] == round(float(expected), 4)
    assert 0 < validation["dice"] <= 1


def test_deep_supervision_resumes_with_its_heads_and_saves_a_plain_unet(store, tmp_path, monkeypatch):
    """Stopped after epoch 1 and resumed, a run with deep supervision gives the clean run's losses:
    its heads come back from last.pt; the model saved has the plain U-Net's weights only."""
    import torch

    from segpipe.training import loop

    config = TrainParams(**{**TINY, "epochs": 3}, device="cpu", deep_supervision=True)
    assert "deep_supervision" in config.trajectory() and "deep_supervision" not in TrainParams().trajectory()
    clean = train_model(store, tmp_path / "clean", config, progress=False).history
    calls = {"n": 0}
    real_epoch = loop.train_epoch

    def stop_after_one(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", stop_after_one)
    removed = []
    real_remove = loop.DeepSupervision.remove
    monkeypatch.setattr(loop.DeepSupervision, "remove", lambda self: removed.append(real_remove(self)))
    with pytest.raises(KeyboardInterrupt):
        train_model(store, tmp_path / "resumed", config, progress=False)
    assert len(removed) == 1  # the interrupted run took its hooks off the network
    monkeypatch.setattr(loop, "train_epoch", real_epoch)
    resumed = train_model(store, tmp_path / "resumed", config, progress=False).history
    assert [r["train_loss"] for r in resumed] == pytest.approx([r["train_loss"] for r in clean], rel=1e-6)
    last = torch.load(tmp_path / "resumed" / "last.pt", map_location="cpu", weights_only=True)
    assert set(last["deep_heads"]) == {"heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias"}
    plain = network_from_card(Model.open(tmp_path / "resumed").card)
    assert set(Model.open(tmp_path / "resumed").state_dict()) == set(plain.state_dict())
