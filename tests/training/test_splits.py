"""The in-memory splits training checks itself on: training images for tuning, cropped to a pixel budget."""

import numpy as np
import pytest

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.inference.normalize import NormalizationSpec, normalize
from segpipe.training.splits import load_split, tuning_training_set

SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)


@pytest.fixture
def store(crop_catalog, tmp_path):
    path = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), path, progress=False)
    return ImageStore.open(path)


@pytest.fixture
def card(model_card):
    return model_card(normalization=SPEC)


def test_tuning_takes_training_images_up_to_its_pixel_budget(store, card):
    train = store.images("train", labelled=True)
    both = tuning_training_set(store, card, pixels=2 * 160 * 160)
    assert [im.name for im, _, _, _ in both] == [im.name for im in train]
    one = tuning_training_set(store, card, pixels=2 * 160 * 160 - 1)
    assert [im.name for im, _, _, _ in one] == [train[0].name]
    np.testing.assert_array_equal(one[0][2], np.asarray(train[0].labels))
    np.testing.assert_allclose(one[0][1], normalize(np.asarray(train[0].image), SPEC))


def test_a_training_image_over_the_budget_gives_its_centre(store, card):
    (im, image, labels, ignored), = tuning_training_set(store, card, pixels=80 * 80)
    assert image.shape == (1, 80, 80) and labels.shape == (80, 80) and ignored is None
    np.testing.assert_array_equal(labels, np.asarray(im.labels)[40:120, 40:120])
    np.testing.assert_allclose(image, normalize(np.asarray(im.image)[:, 40:120, 40:120], SPEC))


def test_a_cropped_training_image_keeps_its_unannotated_pixels(tmp_path, card):
    import tifffile

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    labels = np.zeros((48, 48), np.uint16)
    labels[14:24, 14:24] = 1
    labels[26:34, 26:34] = 9  # 9: not annotated
    tifffile.imwrite(tmp_path / "img" / "a.tif", np.random.default_rng(0).integers(0, 999, (48, 48)).astype(np.uint16))
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    ignore_label: 9\n    split: {train: [a]}\n"
    )
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("d"), tmp_path / "d.zarr", progress=False)
    (_, image, crop, ignored), = tuning_training_set(ImageStore.open(tmp_path / "d.zarr"), card, pixels=24 * 24)
    assert image.shape == (1, 24, 24)
    np.testing.assert_array_equal(ignored, labels[12:36, 12:36] == 9)
    np.testing.assert_array_equal(crop > 0, labels[12:36, 12:36] == 1)


def test_a_split_at_another_pixel_size_comes_on_the_model_grid(store, model_card):
    """Images, labels (nearest pixel) and their sizes as scipy's zoom gives them on the model's coarser grid."""
    from scipy import ndimage

    card = model_card(normalization=SPEC, spacing=(2.5, 2.5))
    for im, image, labels, ignored in load_split(store, "train", card=card):
        native = np.asarray(im.labels)
        shape = tuple(int(np.floor(n / 2.5 + 0.5)) for n in native.shape)
        zoom = [m / n for m, n in zip(shape, native.shape)]
        assert labels.shape == shape and image.shape == (1, *shape) and ignored is None
        np.testing.assert_array_equal(labels, ndimage.zoom(native, zoom, order=0, grid_mode=True, mode="nearest"))
        expected = ndimage.zoom(normalize(np.asarray(im.image), SPEC)[0], zoom, order=1, grid_mode=True, mode="nearest")
        np.testing.assert_allclose(image[0], expected, atol=1e-5)


def test_predicting_a_split_without_flips_runs_each_window_once(store, card):
    import torch

    from segpipe.inference import predict_image
    from segpipe.models.model import network_from_card
    from segpipe.training.splits import predict_split

    torch.manual_seed(0)
    network, calls = network_from_card(card).eval(), []
    network.register_forward_hook(lambda *_: calls.append(1))
    split = load_split(store, "validation", card=card)
    flipped = predict_split(network, split, card, "cpu")
    with_flips = len(calls)
    once = predict_split(network, split, card, "cpu", flips=False)
    assert card.inference.flip_tta and with_flips == 3 * (len(calls) - with_flips) > 0  # identity, y and x flips in 2D
    plain = card.inference.model_copy(update={"flip_tta": False})
    for (_, image, _, _), (probabilities, labels, _), (averaged, _, _) in zip(split, once, flipped):
        expected = predict_image(network, image, roi_size=card.patch_size, n_classes=card.n_classes, params=plain)
        np.testing.assert_array_equal(probabilities, expected)
        assert not np.array_equal(probabilities, averaged)


def test_a_validation_image_is_predicted_as_background_where_it_is_blank(model_card):
    """Validation scores what prediction will store: zero fill is background, whatever the network says."""
    import torch

    from segpipe.training.splits import predict_split

    class Everywhere(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros((x.shape[0], 3, *x.shape[2:]))
            logits[:, 1] = 3.0
            return logits + 0 * x[:, :1]

    card = model_card(normalization=SPEC)
    image = np.zeros((1, 64, 96), np.uint16)
    image[0, :, :40] = np.random.default_rng(1).integers(10, 200, (64, 40))
    labels = np.zeros((64, 96), np.int32)
    ((probabilities, _, _),) = predict_split(Everywhere(), [(None, normalize(image, SPEC), labels, None)], card, "cpu")
    assert (probabilities[1][:, :40] > 0.9).all()
    np.testing.assert_allclose(probabilities[1][:, 43:], 0.0)
    np.testing.assert_allclose(probabilities[0][:, 43:], 1.0)


def test_a_validation_region_is_predicted_as_prediction_predicts_it(tmp_path, model_card):
    """A region of a split image: training's checks predict it inside its surroundings, as the predict
    stage does, so the checkpoint and the post-processing are chosen on what prediction will give."""
    import tifffile
    import torch
    from scipy import ndimage

    from segpipe.data.store import IMAGE_LEVEL
    from segpipe.inference import predict_image
    from segpipe.models.model import Model, network_from_card, save_model
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor
    from segpipe.prediction.predict import predict_split as predict_stage
    from segpipe.prediction.store import PredictionStore
    from segpipe.training.splits import predict_split

    rng = np.random.default_rng(6)
    field = ndimage.gaussian_filter(rng.random((300, 64)), 4)
    image = (200 + 800 * (field > np.percentile(field, 70)) + rng.normal(0, 20, field.shape)).clip(0, 4000).astype(np.uint16)
    for sub, data in (("img", image), ("lab", ndimage.label(field > np.percentile(field, 70))[0].astype(np.uint16))):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "v.tif", data)
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    classes: [background, nucleus]\n"
        "    split: {regions: {train: [[0, 150], [0, 64]], validation: [[150, 200], [0, 64]], test: [[200, 300], [0, 64]]}}\n")
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("d"), tmp_path / "data.zarr", progress=False)
    card = model_card(normalization=SPEC, patch_size=(32, 32))
    torch.manual_seed(0)
    network = network_from_card(card).eval()
    save_model(tmp_path / "model", network.state_dict(), card)
    store = ImageStore.open(tmp_path / "data.zarr")

    split = load_split(store, "validation", card=card)
    ((checked, _, _),) = predict_split(network, split, card, "cpu")
    predictor = Predictor.load(Model.open(tmp_path / "model"), PredictParams(device="cpu"))
    predict_stage(store, predictor, predictor.open_store(tmp_path / "p.zarr"), split="validation", progress=False)
    stored = np.asarray(PredictionStore.open(tmp_path / "p.zarr").group(split[0][0].name)[IMAGE_LEVEL], np.float32)
    np.testing.assert_allclose(checked, stored, atol=2e-3)  # float16 in the store
    alone = predict_image(network, split[0][1], roi_size=card.patch_size, n_classes=card.n_classes, params=card.inference)
    assert np.abs(alone - checked).max() > 0.01  # the region alone, padded at its edges, is predicted otherwise


def test_a_class_neither_labelled_nor_predicted_has_no_dice_and_leaves_the_mean_alone():
    """A declared class with no pixel in the validation labels counted as Dice 0 there (mean 0.62)
    while the test scores said n/a (mean 0.93): the two summaries of one model disagreed."""
    from segpipe.training.splits import class_dice, mean_dice

    labels = np.zeros((8, 8), np.int64)
    labels[:4], labels[4:, :4] = 1, 2  # classes 1 and 2; class 3 nowhere
    probs = np.zeros((4, 8, 8), np.float32)
    probs[1, :4], probs[2, 4:, :4], probs[0, 4:, 4:] = 1, 1, 1
    probs[1, 3, :] = 0
    probs[2, 3, :] = 1  # a row of class 1 predicted as 2
    dice = class_dice([(probs, labels, None)], 4, instances=False)
    np.testing.assert_allclose(dice[:2], [2 * 24 / (24 + 32), 2 * 16 / (24 + 16)])
    assert np.isnan(dice[2])
    assert mean_dice([(probs, labels, None)], 4, instances=False) == pytest.approx((dice[0] + dice[1]) / 2)
