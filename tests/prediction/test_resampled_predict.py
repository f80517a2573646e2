"""Prediction at the model's pixel size: resample the image, predict, resample the probabilities back.

The reference is the in-memory path with scipy's resampling: ``zoom(grid_mode=True, mode="nearest")``
of the normalized image to the model's grid, :func:`segpipe.inference.predict_image`, and ``zoom``
of the probabilities back to the image's grid.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from scipy import ndimage

from segpipe.data.store import StoredImage
from segpipe.inference import InferenceParams, predict_image
from segpipe.inference.blank import Blank, floors
from segpipe.inference.normalize import NormalizationSpec, normalize, stream_normalization
from segpipe.inference.postprocess import InstanceParams, instance_labels
from segpipe.models.model import Model, network_from_card, save_model
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor, predict_stored

SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)
TINY_NET = {"network_options": {"features": [4, 4, 4, 4, 4, 4]}}


@pytest.fixture(autouse=True)
def single_thread():
    """One thread, so the streamed and in-memory convolutions round alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(folder: Path, card, *, seed: int = 3) -> Model:
    torch.manual_seed(seed)
    save_model(folder, network_from_card(card).state_dict(), card)
    return Model.open(folder)


def stored(folder: Path, name: str, pixels: np.ndarray, spacing, *, chunks=None, source: str = "file") -> StoredImage:
    array = zarr.create_array(str(folder / f"{name}.zarr"), shape=pixels.shape, dtype=pixels.dtype, chunks=chunks or pixels.shape)
    array[...] = pixels
    info = {"name": name, "spacing": list(spacing), "unit": "micrometer", "spacing_source": source}
    return StoredImage(name, "test", array, None, tuple(spacing), info)


def zoom_to(array: np.ndarray, shape) -> np.ndarray:
    """scipy's linear resampling of ``array`` to ``shape``, pixel centres aligned."""
    out = ndimage.zoom(array, [b / a for a, b in zip(array.shape, shape)], order=1, mode="nearest", grid_mode=True)
    assert out.shape == tuple(shape)
    return out


def reference(network, pixels: np.ndarray, model_shape, *, card, params: InferenceParams) -> np.ndarray:
    """Normalize, resample to ``model_shape`` (spatial), predict in memory, resample back: ``(C, *spatial)``."""
    image = normalize(pixels, SPEC)
    small = zoom_to(image, (image.shape[0], *model_shape))
    probs = predict_image(network, small, roi_size=card.patch_size, n_classes=card.n_classes, params=params)
    return zoom_to(probs, (probs.shape[0], *pixels.shape[1:]))


def crop_2d(data_dir: Path) -> np.ndarray:
    """A 64x64 crop of a real BBBC007 field (nuclei), ``(1, 64, 64)``."""
    return np.ascontiguousarray(tifffile.imread(data_dir / "bbbc007" / "images" / "A9_p9d.tif")[:64, :64])[None]


@pytest.fixture
def model_2d(tmp_path, model_card) -> Model:
    """A random U-Net trained (so its card says) at 1 x 1 micrometer, 32x32 windows."""
    return tiny_model(tmp_path / "model", model_card(2, patch_size=(32, 32), spacing=(1.0, 1.0), **TINY_NET))


def predictor_for(model: Model, **params) -> Predictor:
    return Predictor.load(model, PredictParams(device="cpu", **params))


def test_a_finer_image_is_predicted_on_the_model_grid_and_back(tmp_path, data_dir, model_2d, caplog):
    pixels = crop_2d(data_dir)
    image = stored(tmp_path, "fine", pixels, (0.5, 0.5), chunks=(1, 24, 40))
    predictor = predictor_for(model_2d)
    with caplog.at_level(logging.INFO, logger="segpipe.prediction"):
        result = predict_stored(image, predictor, predictor.open_store(tmp_path / "predictions.zarr"))
    assert "predicting on the model's grid (64x64 -> 32x32)" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert result.stream.windows == 3  # one window on the 32x32 grid: as it is, flipped along y, along x

    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "fine"), mode="r")
    probs = group["s0"][...]
    assert probs.dtype == np.float16 and probs.shape == (3, 64, 64)
    assert group["labels/semantic/s0"].shape == group["labels/instances/s0"].shape == (64, 64)
    expected = reference(predictor.network, pixels, (32, 32), card=predictor.card, params=predictor.inference)
    np.testing.assert_allclose(probs.astype(np.float32), expected, rtol=0, atol=1e-3)

    tuned = InstanceParams()  # tuned at 1 um per pixel; the image has 0.5 um: 4x the pixels per object, 2x the width
    on_image_grid = InstanceParams(min_size=tuned.min_size * 4, smoothing=tuned.smoothing * 2)
    labels = instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), on_image_grid)
    np.testing.assert_array_equal(group["labels/instances/s0"][...], labels)
    np.testing.assert_array_equal(group["labels/semantic/s0"][...], (labels > 0).astype(np.uint8))  # the objects' foreground

    assert group.attrs["resampling"] == {
        "resampled": True, "image_spacing": [0.5, 0.5], "model_spacing": [1.0, 1.0], "unit": "micrometer",
        "image_shape": [64, 64], "model_shape": [32, 32], "order": 1, "spacing_guessed": False,
    }
    assert "resampled" not in group  # the scratch arrays are gone
    scale = group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 0.5, 0.5]  # the image's own grid


def test_resampling_off_predicts_the_image_as_it_is(tmp_path, data_dir, model_2d, caplog):
    pixels = crop_2d(data_dir)
    image = stored(tmp_path, "fine", pixels, (0.5, 0.5))
    predictor = predictor_for(model_2d, resample=False)
    with caplog.at_level(logging.INFO, logger="segpipe.prediction"):
        result = predict_stored(image, predictor, predictor.open_store(tmp_path / "predictions.zarr"))
    assert "the network sees the image at its own pixel size (0.5 x 0.5 micrometer; the model was trained at 1 x 1" in caplog.text
    assert result.stream.windows == 9 * 3  # 3x3 windows on the 64x64 image itself
    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "fine"), mode="r")
    plain = predict_image(
        predictor.network, normalize(pixels, SPEC), roi_size=(32, 32), n_classes=2, params=predictor.inference
    )
    blank = Blank.for_outputs(floors(stream_normalization(pixels, SPEC)), out_channels=3, n_classes=2)
    blank.apply(plain, pixels, (), (slice(0, 64), slice(0, 64)))  # the crop's clipped top edge is blank: background
    np.testing.assert_allclose(group["s0"][...].astype(np.float32), plain, rtol=0, atol=1e-3)
    assert group.attrs["resampling"]["resampled"] is False
    assert predictor.stamp(image) != predictor_for(model_2d).stamp(image)


def test_a_generalist_predicts_on_the_images_own_grid(tmp_path, data_dir, model_2d):
    from segpipe.prediction.resampled import plan_grids

    image = stored(tmp_path, "fine", crop_2d(data_dir), (0.5, 0.5))
    assert plan_grids(image, model_2d.card, resample=True).resample
    generalist = model_2d.card.model_copy(update={"generalist": True})
    grids = plan_grids(image, generalist, resample=True)
    assert not grids.resample and not grids.differs and grids.model_shape == grids.image_shape
    guessed = stored(tmp_path, "guess", crop_2d(data_dir), (1.0, 1.0), source="default")
    assert not plan_grids(guessed, generalist.model_copy(update={"spacing": (2.0, 2.0)}), resample=True).guessed


def test_a_model_whose_pixel_size_was_guessed_takes_every_image_at_one_per_pixel(tmp_path, data_dir, model_2d, caplog):
    """Its training images were taken at 1 per pixel: an image's own 0.5 um is not what the network
    learnt, 1 per pixel is; a coarser grid the model planned (2 per pixel: objects too large for its
    patch), or an object-size scale, still resamples."""
    from segpipe.prediction.resampled import plan_grids

    image = stored(tmp_path, "fine", crop_2d(data_dir), (0.5, 0.5))  # 64 x 64
    guessed = model_2d.card.model_copy(update={"spacing_guessed": True, "spacing": (1.0, 1.0)})
    grids = plan_grids(image, guessed, resample=True)
    assert not grids.resample and grids.model_shape == (64, 64) and not grids.guessed
    assert grids.unused_spacing == (0.5, 0.5)  # said per image (a catalog's predict has no run warning)
    import logging

    from segpipe.prediction.resampled import explain

    with caplog.at_level(logging.INFO, logger="segpipe.prediction"):
        explain("fine", grids)
    assert "fine: its file's pixel size, 0.5 x 0.5 micrometer, is not used: the model's own is not known" in caplog.text
    coarser = plan_grids(image, guessed.model_copy(update={"spacing": (2.0, 2.0)}), resample=True)
    assert coarser.resample and coarser.model_shape == (32, 32)  # by its own 0.5 it would be 16 x 16
    scaled = plan_grids(image, guessed.model_copy(update={"object_size": 10.0}), resample=True, scale=2.0)
    assert scaled.resample and scaled.model_shape == (128, 128)  # the scale kept (it was dropped)


def test_an_image_grown_many_times_on_the_models_grid_is_said_in_a_warning(tmp_path, data_dir, model_2d, caplog):
    """20 um pixels for a 1 um model grew a field 400 times without a word (over two minutes where
    seconds were expected); 4 times (0.5 um for 0.25 um) stays an info line."""
    import logging

    from segpipe.prediction.resampled import explain, plan_grids

    image = stored(tmp_path, "coarse", crop_2d(data_dir), (5.0, 5.0))  # 64 x 64
    for model_size, loud in ((1.0, True), (2.5, False)):
        grids = plan_grids(image, model_2d.card.model_copy(update={"spacing": (model_size, model_size)}), resample=True)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="segpipe.prediction"):
            explain("coarse", grids)
        (record,) = [r for r in caplog.records if "predicting on the model's grid" in r.getMessage()]
        assert (record.levelno == logging.WARNING) == loud, record.getMessage()
        assert ("25 times the pixels: if that pixel size or unit is wrong" in record.getMessage()) == loud


def test_a_pixel_size_that_would_grow_the_image_past_reason_is_refused(tmp_path, data_dir, model_2d):
    """A scan's 0.5 mm read as 0.5 um by a model trained at 1 mm (or the other way round) made a
    64 x 64 image 64,000 pixels a side on the model's grid: the run sat there for hours. Refused
    past 100 times the pixels and 2**26 of them, not for a model that finds each image's scale."""
    from segpipe.errors import InputError
    from segpipe.prediction.resampled import MAX_GROWTH, plan_grids

    image = stored(tmp_path, "scan", crop_2d(data_dir), (1000.0, 1000.0))
    with pytest.raises(InputError, match=r"^scan: its pixel size, 1000 x 1000 micrometer, is 1000 times the model's "
                                         r"\(1 x 1 micrometer\): on the model's grid it would grow from 64x64 to "
                                         r"64000x64000 pixels; check its pixel size and unit"):
        plan_grids(image, model_2d.card, resample=True)
    assert not plan_grids(image, model_2d.card, resample=False).resample  # --no-resample predicts it as it is
    at_most = stored(tmp_path, "fine", crop_2d(data_dir), (MAX_GROWTH**0.5, MAX_GROWTH**0.5))
    assert plan_grids(at_most, model_2d.card, resample=True).model_shape == (640, 640)
    small = stored(tmp_path, "small", crop_2d(data_dir)[:, :8, :8], (1000.0, 1000.0))  # 8000 x 8000: under 2**26 pixels
    assert plan_grids(small, model_2d.card, resample=True).model_shape == (8000, 8000)
    sized = model_2d.card.model_copy(update={"object_size": 20.0})  # finds each image's scale itself
    assert plan_grids(image, sized, resample=True).resample


def test_a_pixel_size_that_would_shrink_the_image_to_a_few_pixels_is_refused(tmp_path, data_dir, model_2d):
    """The other way round: 0.5 nm pixels for a model trained at 1 um made a 64 x 64 image one pixel on
    the model's grid, and the run reported no objects without a word. Refused past 100 times fewer
    pixels when an edge would be under 16 pixels; a large image made coarser is predicted."""
    from segpipe.errors import InputError
    from segpipe.prediction.resampled import plan_grids

    image = stored(tmp_path, "fine", crop_2d(data_dir), (0.0005, 0.0005))
    with pytest.raises(InputError, match=r"^fine: its pixel size, 0.0005 x 0.0005 micrometer, is 1/2000 of the model's "
                                         r"\(1 x 1 micrometer\): on the model's grid it would shrink from 64x64 to "
                                         r"1x1 pixels; check its pixel size and unit"):
        plan_grids(image, model_2d.card, resample=True)
    assert not plan_grids(image, model_2d.card, resample=False).resample
    coarser = stored(tmp_path, "coarser", crop_2d(data_dir), (0.1, 0.1))  # 100 times fewer pixels, 6 a side
    assert plan_grids(coarser, model_2d.card, resample=True).model_shape == (6, 6)
    large = stored(tmp_path, "large", np.zeros((1, 1600, 1600), np.float32), (0.05, 0.05))  # 400 times fewer, 80 a side
    assert plan_grids(large, model_2d.card, resample=True).model_shape == (80, 80)
    sized = model_2d.card.model_copy(update={"object_size": 20.0})
    assert plan_grids(image, sized, resample=True).resample
    mixed = stored(tmp_path, "mixed", crop_2d(data_dir), (0.0005, 1.0))  # the message names the axis most off
    with pytest.raises(InputError, match=r"is 1/2000 of the model's"):
        plan_grids(mixed, model_2d.card, resample=True)
    card_3d = model_2d.card.model_copy(update={"spatial_dims": 3, "spacing": (2.0, 0.5, 0.5)})
    stack = stored(tmp_path, "stack", np.zeros((1, 20, 1024, 1024), np.uint8), (0.5, 0.08, 0.08), chunks=(1, 20, 256, 256))
    assert plan_grids(stack, card_3d, resample=True).model_shape == (5, 164, 164)  # anisotropic, 156 times fewer: predicted


def test_the_stamp_follows_the_pixel_size_of_a_resampled_image(tmp_path, data_dir, model_2d):
    """Spacing lives in the store's record, not in the image's bytes: a new spacing is a new prediction."""
    pixels = crop_2d(data_dir)
    predictor = predictor_for(model_2d)
    half, quarter = stored(tmp_path, "a", pixels, (0.5, 0.5)), stored(tmp_path, "b", pixels, (0.25, 0.25))
    assert predictor.stamp(half) != predictor.stamp(quarter)
    same, near = stored(tmp_path, "c", pixels, (1.0, 1.0)), stored(tmp_path, "d", pixels, (1.005, 0.995))
    assert predictor.stamp(same) == predictor.stamp(near)  # within 1%: not resampled, the stamp as before


def test_an_unknown_pixel_size_is_resampled_with_one_warning(tmp_path, data_dir, model_card, caplog):
    """Ingest took 1 per pixel; the model says 2: the guess is resampled, and the log says how to set the truth."""
    model = tiny_model(tmp_path / "model", model_card(2, patch_size=(32, 32), spacing=(2.0, 2.0), **TINY_NET))
    image = stored(tmp_path, "guess", crop_2d(data_dir), (1.0, 1.0), source="default")
    predictor = predictor_for(model)
    with caplog.at_level(logging.INFO, logger="segpipe"):
        predict_stored(image, predictor, predictor.open_store(tmp_path / "predictions.zarr"))
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    message = warning.getMessage()
    assert "pixel size is not known" in message and "trained at 2 x 2 micrometer" in message
    assert "64x64 -> 32x32" in message and "spacing: [y, x]" in message and "--spacing" in message
    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "guess"), mode="r")
    assert group["s0"].shape == (3, 64, 64) and group.attrs["resampling"]["spacing_guessed"] is True


def test_an_anisotropic_volume(tmp_path, data_dir, model_card):
    """z at 2, y and x at 0.5 against a model at 1 x 1 x 1: z doubled, y and x halved, and back."""
    volume = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "image.tif")[:12, :40, :40]
    pixels = np.ascontiguousarray(volume)[None]
    card = model_card(3, patch_size=(32, 32, 32), spacing=(1.0, 1.0, 1.0), **TINY_NET)
    model = tiny_model(tmp_path / "model", card, seed=1)
    image = stored(tmp_path, "vol", pixels, (2.0, 0.5, 0.5), chunks=(1, 5, 16, 16))
    predictor = predictor_for(model, inference=InferenceParams(flip_tta=False))
    predict_stored(image, predictor, predictor.open_store(tmp_path / "predictions.zarr"))
    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "vol"), mode="r")
    assert group["s0"].shape == (3, 12, 40, 40)
    assert group["labels/semantic/s0"].shape == group["labels/instances/s0"].shape == (12, 40, 40)
    assert group.attrs["resampling"]["model_shape"] == [24, 20, 20]
    expected = reference(predictor.network, pixels, (24, 20, 20), card=card, params=predictor.inference)
    np.testing.assert_allclose(group["s0"][...].astype(np.float32), expected, rtol=0, atol=1e-3)


def test_a_time_lapse_is_resampled_frame_by_frame(tmp_path, model_2d):
    """(c, t, y, x) with a 2D model: frames resampled and predicted one by one; s0 stays (t, c, y, x)."""
    movie = np.random.default_rng(0).integers(0, 4000, size=(1, 2, 32, 40)).astype(np.uint16)
    image = stored(tmp_path, "movie", movie, (0.5, 0.5), chunks=(1, 1, 16, 16))
    predictor = predictor_for(model_2d)
    result = predict_stored(image, predictor, predictor.open_store(tmp_path / "predictions.zarr"))
    assert result.stream.frames == [0, 1]
    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "movie"), mode="r")
    assert group["s0"].shape == (2, 3, 32, 40) and group["labels/instances/s0"].shape == (2, 32, 40)
    whole = normalize(movie, SPEC)  # percentiles over the whole movie, as streamed
    small = zoom_to(whole, (1, 2, 16, 20))
    for t in range(2):
        probs = predict_image(predictor.network, small[:, t], roi_size=(32, 32), n_classes=2, params=predictor.inference)
        np.testing.assert_allclose(group["s0"][t].astype(np.float32), zoom_to(probs, (3, 32, 40)), rtol=0, atol=1e-3)


class Failing(torch.nn.Module):
    """The network, until it has run ``batches`` batches; then an error (a crash mid-prediction)."""

    def __init__(self, inner: torch.nn.Module, batches: int):
        super().__init__()
        self.inner, self.left = inner, batches

    def forward(self, x):
        if self.left == 0:
            raise RuntimeError("stopped")
        self.left -= 1
        return self.inner(x)


def test_an_interrupted_resampled_prediction_resumes_to_the_same_result(tmp_path, data_dir, model_2d):
    """A coarse image (2 against 1): 48x48 becomes 96x96, 5x5 windows; stopped after 8 batches of 4."""
    pixels = crop_2d(data_dir)[:, :48, :48]
    image = stored(tmp_path, "coarse", pixels, (2.0, 2.0))
    predictor = predictor_for(model_2d)
    failing = Predictor(predictor.model, Failing(predictor.network, 8).eval(), predictor.params, predictor.inference)
    out = tmp_path / "resumed.zarr"
    with pytest.raises(RuntimeError, match="stopped"):
        predict_stored(image, failing, failing.open_store(out))
    scratch = zarr.open_group(str(out / ".coarse.partial" / "resampled"), mode="r")
    assert scratch["input"].shape == (1, 96, 96)
    assert scratch.attrs["input_done"] and not scratch.attrs.get("output_done")
    assert scratch.attrs["progress"]["rows"] == 32  # rows under the first two rows of windows

    resumed = predict_stored(image, predictor, predictor.open_store(out))
    assert resumed.stream.windows < 25 * 3 and resumed.stream.rows_written == 96 - 32  # the batches touching rows 32 on
    fresh = predict_stored(image, predictor, predictor.open_store(tmp_path / "fresh.zarr"))
    assert fresh.stamp == resumed.stamp
    a = zarr.open_group(str(out / "coarse"), mode="r")
    b = zarr.open_group(str(tmp_path / "fresh.zarr" / "coarse"), mode="r")
    assert a["s0"].shape == (3, 48, 48)
    for key in ("s0", "labels/semantic/s0", "labels/instances/s0"):
        np.testing.assert_array_equal(a[key][...], b[key][...])
    assert "resampled" not in a


def test_post_processing_keeps_physical_sizes_on_the_image_grid():
    from segpipe.inference.postprocess import InstanceParams
    from segpipe.prediction.resampled import Grids

    grids = Grids(resample=True, image_spacing=(0.5, 0.5), model_spacing=(1.0, 1.0), unit="micrometer",
                  image_shape=(64, 64), model_shape=(32, 32), differs=True, guessed=False)
    converted = grids.post_processing(InstanceParams(min_size=8, smoothing=1.0))
    assert (converted.min_size, converted.smoothing, converted.sink_size) == (32, 2.0, 40)  # 4x the pixels, twice the width
    assert converted.grid == (2.0, 2.0) and "grid" not in converted.model_dump_json()  # never in a card
    assert converted.edge_min_size is None
    assert grids.post_processing(InstanceParams(min_size=22, edge_min_size=8)).model_dump(include={"min_size", "edge_min_size"}) == {
        "min_size": 88, "edge_min_size": 32}
    same = Grids(resample=False, image_spacing=(0.5, 0.5), model_spacing=(1.0, 1.0), unit="micrometer",
                 image_shape=(64, 64), model_shape=(32, 32), differs=True, guessed=False)
    assert same.post_processing(InstanceParams(min_size=8)).min_size == 8


def test_flow_objects_on_an_image_grid_twice_as_fine_are_the_models_objects(crops_model):
    """A trained flow model's probabilities resampled to a grid twice as fine (an image at half the
    model's pixel size): its paths' ends spread over twice the pixels, and grouped with the model
    grid's 5-pixel neighbourhoods and sink size a field of 26 nuclei gave 44 objects. With the
    post-processing of the image grid (:meth:`Grids.post_processing`) the objects are the model
    grid's, upsampled."""
    from segpipe.inference.postprocess import output_maps
    from segpipe.prediction.resampled import Grids
    from segpipe.scoring import overlap
    from segpipe.scoring.instances import seg_from_overlap

    card = crops_model.card
    params = card.instance_params()
    assert params.relief == "flow"
    field = tifffile.imread(Path(__file__).resolve().parents[2] / "data" / "bbbc007" / "images" / "A9_p9d.tif")[:160, :160]
    probs = predict_image(crops_model.load(), normalize(field[None], card.normalization), roi_size=card.patch_size, n_classes=2,
                          flow_channels=card.flow_channels, params=card.inference)
    foreground, distance, _, flow = output_maps(probs, 2)
    coarse = instance_labels(foreground, distance, params, flow=flow)
    fine = ndimage.zoom(probs, (1, 2, 2), order=1, grid_mode=True, mode="nearest")
    foreground, distance, _, flow = output_maps(fine, 2)
    grids = Grids(resample=True, image_spacing=(0.25, 0.25), model_spacing=(0.5, 0.5), unit="micrometer",
                  image_shape=(320, 320), model_shape=(160, 160), differs=True, guessed=False)
    labels = instance_labels(foreground, distance, grids.post_processing(params), flow=flow)
    # within an eighth of the model grid's count (1 to 3 objects apart over torch's thread counts); 44 for 26 before
    assert coarse.max() > 15 and abs(int(labels.max()) - int(coarse.max())) <= max(2, coarse.max() // 8)
    seg = seg_from_overlap(overlap(np.kron(coarse, np.ones((2, 2), coarse.dtype)), labels))
    assert seg.seg > 0.8


def test_on_a_coarser_grid_the_flows_neighbourhoods_stay_the_models():
    from segpipe.prediction.resampled import Grids

    grids = Grids(resample=True, image_spacing=(2.0, 1.0), model_spacing=(1.0, 1.0), unit="micrometer",
                  image_shape=(32, 64), model_shape=(64, 64), differs=True, guessed=False)
    converted = grids.post_processing(InstanceParams(min_size=8, sink_size=10))
    assert (converted.min_size, converted.sink_size, converted.grid) == (4, 10, (1.0, 1.0))
