"""The scale a new image is predicted at, for a model trained on objects of one size."""

import numpy as np
import pytest
import torch
from skimage.draw import disk

from segpipe.data.store import StoredImage
from segpipe.inference.params import InferenceParams
from segpipe.models.model import Model
from segpipe.prediction.object_size import MAX_SCALE, estimate_scale
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor


class Thresholds(torch.nn.Module):
    """A network that finds bright objects: foreground, and a distance map that peaks inside them."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    def forward(self, x):
        fg = 20.0 * (x[:, :1] - 0.5)
        return torch.cat([-fg, fg, fg], dim=1) + 0 * self.anchor


def discs(diameter: int, shape=(256, 256), step=64) -> np.ndarray:
    image = np.zeros((1, *shape), np.float32)
    for y in range(step // 2, shape[0], step):
        for x in range(step // 2, shape[1], step):
            image[(0, *disk((y, x), diameter / 2, shape=shape))] = 1.0
    return image


def predictor(card, tmp_path) -> Predictor:
    return Predictor(Model(tmp_path, card), Thresholds().eval(), PredictParams(device="cpu"), InferenceParams(flip_tta=False))


@pytest.mark.parametrize("diameter, expected", [(20, 2.0), (40, 1.0), (60, 40 / 60)])
def test_the_scale_brings_the_objects_to_the_models_size(model_card, tmp_path, diameter, expected):
    card = model_card(patch_size=(64, 64), object_size=40.0)
    image = StoredImage("discs", "test", discs(diameter), None, (1.0, 1.0), {})
    assert estimate_scale(image, predictor(card, tmp_path), (1.0, 1.0)) == pytest.approx(expected, rel=0.06)
    # the same objects written at half the pixel size: the same physical size, the same scale on that size
    assert estimate_scale(image, predictor(card, tmp_path), (0.5, 0.5)) == pytest.approx(2 * expected, rel=0.06)


def test_no_scale_without_an_object_size_or_objects_and_never_beyond_the_bounds(model_card, tmp_path):
    empty = StoredImage("empty", "test", np.zeros((1, 128, 128), np.float32), None, (1.0, 1.0), {})
    tiny = StoredImage("tiny", "test", discs(4), None, (1.0, 1.0), {})
    sized = predictor(model_card(patch_size=(64, 64), object_size=40.0), tmp_path)
    assert estimate_scale(tiny, predictor(model_card(patch_size=(64, 64)), tmp_path), (1.0, 1.0)) == 1.0
    assert estimate_scale(empty, sized, (1.0, 1.0)) == 1.0
    assert estimate_scale(tiny, sized, (1.0, 1.0)) == MAX_SCALE  # 10 times too small: the bound


def test_a_field_in_the_corner_of_a_zero_filled_mosaic_gets_its_own_scale(model_card, tmp_path):
    """The estimate looks at the image's content, not at the fill at the centre of its canvas."""
    card = model_card(patch_size=(64, 64), object_size=40.0)
    rng = np.random.default_rng(0)
    field = discs(20) * 0.8 + 0.1 + rng.normal(0, 0.02, size=(1, 256, 256)).astype(np.float32)
    mosaic = np.zeros((1, 1024, 1024), np.float32)
    mosaic[:, :256, :256] = field
    alone = estimate_scale(StoredImage("field", "test", field, None, (1.0, 1.0), {}), predictor(card, tmp_path), (1.0, 1.0))
    assert alone == pytest.approx(2.0, rel=0.06)
    corner = StoredImage("mosaic", "test", mosaic, None, (1.0, 1.0), {})
    assert estimate_scale(corner, predictor(card, tmp_path), (1.0, 1.0)) == pytest.approx(alone, rel=0.02)
