import numpy as np
import pytest
import torch

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.errors import ModelError
from segpipe.models.model import Model, network_from_card
from segpipe.models.shipped import CELLS_2D, shipped_model, shipped_names
from segpipe.training.loop import train_model
from segpipe.training.params import RANDOM, TrainParams
from segpipe.training.start import adapt_input, default_start, kind_problem, start_problem, started_card

#: One iteration that cannot move the weights: what the model holds is what it started from.
STILL = dict(
    epochs=1, iterations_per_epoch=1, batch_size=1, patch_size=(64, 64), val_every=1, device="cpu",
    learning_rate=1e-12, weight_decay=0.0,
)


@pytest.fixture
def store(crop_catalog, tmp_path):
    path = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), path, progress=False)
    return ImageStore.open(path)


@pytest.fixture(scope="module")
def generalist() -> Model:
    model = shipped_model(CELLS_2D)
    assert model is not None, f"the package ships {shipped_names()}, not {CELLS_2D}"
    return model


def test_the_shipped_generalist_is_a_two_channel_2d_instance_model(generalist):
    card = generalist.card
    assert card.generalist and card.spatial_dims == 2 and card.in_channels == 2 and card.instances
    assert (generalist.folder / "PROVENANCE.md").is_file()


def test_one_channel_sees_what_the_generalist_sees_with_a_blank_second_channel(generalist):
    """The first convolution keeps channel 0's filters: the same output as the two-channel network
    given the image and a channel of zeros (what a blank channel normalizes to)."""
    two = generalist.load("cpu")
    one_card = generalist.card.model_copy(update={"in_channels": 1})
    one = network_from_card(one_card)
    one.load_state_dict(adapt_input(generalist.state_dict(), generalist.card, 1))
    one.eval()
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(one(x), two(torch.cat([x, torch.zeros_like(x)], dim=1)), rtol=1e-4, atol=1e-5)


def test_the_plan_starts_2d_instance_datasets_of_its_channels_from_the_generalist(store, generalist):
    open_plan = TrainParams()
    assert default_start(store, {"channels": 1}, open_plan).folder == generalist.folder
    assert default_start(store, {"channels": 2}, open_plan) is not None
    assert default_start(store, {"channels": 3}, open_plan) is None
    assert default_start(store, {"channels": 1}, TrainParams(init=RANDOM)) is None
    assert default_start(store, {"channels": 1}, TrainParams(features=(8, 16, 32, 64, 128, 8))) is None
    assert default_start(store, {"channels": 1}, TrainParams(normalization="zscore")) is None
    assert default_start(store, {"channels": 1}, TrainParams(network="fcn")) is None
    other = "instance" if generalist.card.network_options.get("norm") == "batch" else "batch"
    assert default_start(store, {"channels": 1}, TrainParams(norm=other)) is None


def test_a_dataset_trained_with_the_plan_starts_from_the_generalist(store, tmp_path, generalist):
    model = train_model(store, tmp_path / "m", TrainParams(**STILL), progress=False).model
    card = model.card
    assert card.training.init == CELLS_2D and card.training.config["init"] == CELLS_2D
    assert card.network_options == generalist.card.network_options and card.in_channels == 1
    assert card.training.config["norm"] == generalist.card.network_options.get("norm", "instance")  # lent with the network
    assert card.patch_size == (64, 64) and card.spacing == tuple(store.images("train")[0].spacing)  # the dataset's plan
    assert len(card.normalization.min_range) == 1  # the crops' own intensity floor, not the generalist's two
    expected = adapt_input(generalist.state_dict(), generalist.card, 1)
    learnt = dict(network_from_card(card).named_parameters())  # batch statistics move without learning
    for name, weights in model.state_dict().items():
        if name in learnt:
            torch.testing.assert_close(weights, expected[name], rtol=1e-5, atol=1e-6)


def test_none_trains_from_random_weights(store, tmp_path, generalist):
    model = train_model(store, tmp_path / "m", TrainParams(**STILL, init=RANDOM), progress=False).model
    assert model.card.training.init is None
    first = "conv_0.conv_0.conv.weight"
    assert not np.allclose(model.state_dict()[first].numpy(), generalist.state_dict()[first][:, :1].numpy())


def test_a_plan_the_generalist_does_not_fit_trains_from_random_weights(store, tmp_path, caplog):
    caplog.set_level("INFO", logger="segpipe.training.loop")
    model = train_model(store, tmp_path / "m", TrainParams(**STILL, flow_weight=0), progress=False).model
    assert model.card.training.init is None and "flow" not in model.card.extra_outputs
    assert "not starting from cells-2d: it has the outputs ['distance', 'boundary', 'flow']" in caplog.text


def test_a_named_generalist_that_does_not_fit_is_refused(store, tmp_path, generalist):
    with pytest.raises(ModelError, match=r"training: init .*cells-2d: it has the outputs"):
        train_model(store, tmp_path / "m", TrainParams(**STILL, flow_weight=0, init=CELLS_2D), init=generalist, progress=False)
    assert not (tmp_path / "m").exists()


def test_only_a_generalist_lends_its_filters_to_fewer_channels(generalist):
    one = generalist.card.model_copy(update={"in_channels": 1})
    assert start_problem(one, generalist.card) is None
    specialist = generalist.card.model_copy(update={"generalist": False})
    assert start_problem(one, specialist) == "a 2D model of 2 channel(s) cannot start training on 2D images of 1 channel(s)"
    three = generalist.card.model_copy(update={"in_channels": 3})
    assert "cannot start training on 2D images of 3 channel(s)" in start_problem(three, generalist.card)


def test_a_shipped_name_in_the_config_is_the_start_and_an_unresolved_folder_is_refused(store, tmp_path, generalist):
    """Before, ``init`` naming a model in the config alone trained from random weights while the card said otherwise."""
    config = TrainParams(**STILL, init=CELLS_2D, features=None)
    model = train_model(store, tmp_path / "named", config, progress=False).model
    first = "conv_0.conv_0.conv.weight"
    torch.testing.assert_close(model.state_dict()[first], generalist.state_dict()[first][:, :1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="training: init runs/a/model: not a model shipped with segpipe"):
        train_model(store, tmp_path / "m", TrainParams(**STILL, init="runs/a/model"), progress=False)
    assert not (tmp_path / "m").exists()


def test_a_users_own_folder_named_like_a_shipped_model_is_recorded_by_its_full_path(tmp_path, monkeypatch, generalist, model_card):
    """The report calls a start shipped by its recorded name: a copy in the user's folder ``cells-2d``,
    given by relative path, must not be recorded as ``cells-2d``."""
    import shutil

    from segpipe.report.tables import training_start

    shutil.copytree(generalist.folder, tmp_path / CELLS_2D)
    monkeypatch.chdir(tmp_path)
    own = Model.open(CELLS_2D)
    record = started_card(model_card(), own).training
    assert record.init == str(tmp_path / CELLS_2D)
    assert "shipped" not in training_start(record)
    assert started_card(model_card(), generalist).training.init == CELLS_2D
    monkeypatch.chdir(generalist.folder.parent)  # the shipped folder itself, by relative path
    assert started_card(model_card(), Model.open(CELLS_2D)).training.init == CELLS_2D


def test_a_model_fine_tuned_from_a_sized_one_keeps_its_object_size_unless_set(store, tmp_path):
    sized = train_model(store, tmp_path / "sized", TrainParams(**STILL, init=RANDOM, object_size=20), progress=False).model
    assert sized.card.object_size == 20
    config = TrainParams(**STILL, init=str(sized.folder))
    tuned = train_model(store, tmp_path / "tuned", config, init=sized, progress=False).model
    assert tuned.card.training.init == str(sized.folder) and tuned.card.object_size == 20
    unsized = train_model(store, tmp_path / "unsized", config.model_copy(update={"object_size": 0}), init=sized, progress=False)
    assert unsized.model.card.object_size is None


@pytest.mark.parametrize(("guessed", "data_guessed", "lent"), [(False, False, True), (True, False, False), (True, True, True)])
def test_a_start_lends_a_guessed_pixel_size_only_to_data_without_one(model_card, tmp_path, guessed, data_guessed, lent):
    """A start trained on files without a pixel size (1 um a pixel taken) lent that guess as a physical
    scale: fine-tuned on 0.33 um images, they were resampled to "1 um", a third of their pixels. To
    data without a pixel size either, it is lent as before (both count in pixels)."""
    from segpipe.models.model import save_model
    from segpipe.training.start import start_config

    card = model_card(2).model_copy(update={"spacing": (2.0, 2.0), "spacing_guessed": guessed, "generalist": False})
    start = save_model(tmp_path / "start", network_from_card(card).state_dict(), card)
    config = start_config(TrainParams(), start, ndim=2, guessed=data_guessed)
    assert config.spacing == ((2.0, 2.0) if lent else None)
    assert config.patch_size == tuple(card.patch_size)  # the window its poolings were built for, either way


def test_a_network_setting_the_start_overrides_is_named_in_a_warning(model_card, tmp_path, caplog):
    """A catalog's ``norm: batch`` or ``features`` gave way to the start's network without a word."""
    from segpipe.models.model import save_model
    from segpipe.training.start import start_config

    card = model_card(2).model_copy(update={"generalist": False})
    start = save_model(tmp_path / "start", network_from_card(card).state_dict(), card)
    widths = tuple(card.network_options["features"])
    with caplog.at_level("WARNING", logger="segpipe.training.start"):
        kept = start_config(TrainParams(features=widths), start, ndim=2)
        assert not caplog.records  # set, but as the start has it
        config = start_config(TrainParams(norm="batch", features=(8, 8, 8, 8, 8, 8)), start, ndim=2)
    assert config.norm == "instance" and config.features == widths == kept.features
    (record,) = caplog.records
    assert record.getMessage().startswith(f"training: features: [8, 8, 8, 8, 8, 8], norm: batch not used: training starts from {card.name}")
    assert f"(features {list(widths)}, norm instance)" in record.getMessage()


def test_what_the_catalog_entry_alone_shows_a_start_cannot_train(generalist):
    card = generalist.card
    assert kind_problem(card, ndim=2, instances=True, classes=["background", "cell"]) is None
    assert kind_problem(card, ndim=3, instances=True, classes=["background", "nucleus"]) == (
        "a 2D model cannot start training on 3D images")
    assert kind_problem(card, ndim=2, instances=False, classes=["background", "grey", "white"]) == (
        "it separates objects; this dataset's labels are a class map (instances: false)")
    assert "class map" not in (kind_problem(card, ndim=2, instances=True, classes=["background", "nucleus"]) or "")
