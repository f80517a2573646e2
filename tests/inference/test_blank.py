"""Blank pixels: one value at the floor over a neighbourhood, in every channel; background in the prediction."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import zarr

from segpipe.inference import ArraySink, InferenceParams, activate, stream_predict
from segpipe.inference.blank import NO_FLOW, RADIUS, Blank, floors, normalized_floors
from segpipe.inference.normalize import Normalization, NormalizationSpec, normalize, stream_normalization


def rule(*floor: float) -> Blank:
    return Blank.for_outputs(floor, out_channels=2, n_classes=2)


def test_a_constant_image_is_blank_and_noise_is_not():
    rng = np.random.default_rng(0)
    assert rule(5.0).mask(np.full((1, 20, 30), 5, np.uint16)).all()
    noise = rng.poisson(3.0, (1, 40, 40)).astype(np.uint16)  # a dark field: many pixels at the floor, never a whole neighbourhood
    assert not rule(float(np.percentile(noise, 1))).mask(noise).any()


def test_zero_fill_is_blank_from_a_neighbourhood_away_from_the_image():
    """Blank where the 7 x 7 neighbourhood is all fill: the fill less a margin of RADIUS pixels."""
    rng = np.random.default_rng(1)
    block = np.zeros((1, 30, 40), np.uint16)
    block[0, :, :20] = rng.integers(1, 50, (30, 20))
    mask = rule(0.0).mask(block)
    expected = np.zeros((30, 40), bool)
    expected[:, 20 + RADIUS :] = True
    np.testing.assert_array_equal(mask, expected)


def test_flat_above_the_floor_is_not_blank():
    """A saturated object is flat at the top; an evenly filled synthetic disk is flat above the floor."""
    block = np.zeros((1, 40, 40), np.uint8)
    block[0, 5:35, 5:35] = 255
    mask = rule(0.0).mask(block)
    assert not mask[5:35, 5:35].any() and mask[0, 0] and not mask[5 - RADIUS, 20]


def test_every_channel_must_be_blank():
    """A nuclear channel blank where the cytoplasm channel has cells: not blank there."""
    rng = np.random.default_rng(2)
    block = np.zeros((2, 30, 30), np.float32)
    block[0, :15] = rng.random((15, 30)) + 1  # cytoplasm in the top half
    np.testing.assert_array_equal(rule(0.0, 0.0).mask(block), rule(0.0).mask(block[:1]))
    assert rule(0.0, 0.0).mask(block)[15 + RADIUS :].all() and not rule(0.0, 0.0).mask(block)[:15].any()


def test_background_is_class_zero_and_no_flow():
    blank = Blank.for_outputs((0.0,), out_channels=6, n_classes=2, flow_channels=(4, 5))
    assert blank.background == (1.0, 0.0, 0.0, 0.0, NO_FLOW, NO_FLOW)
    values = np.full((6, 20, 20), 0.9, np.float32)
    source = np.zeros((1, 3, 40, 20), np.uint8)  # (C, t, y, x): frame 1, rows 10..30
    source[0, 1, :18] = np.arange(18 * 20).reshape(18, 20) % 7 + 1
    blank.apply(values, source, (1,), (slice(10, 30), slice(0, 20)))
    np.testing.assert_array_equal(values[:, 11:], np.broadcast_to(np.asarray(blank.background, np.float32)[:, None, None], (6, 9, 20)))
    assert (values[:, : 18 + RADIUS - 10] == 0.9).all()  # within RADIUS of the content, rows 18..20, not blank


def test_floors_are_where_the_normalization_bottoms_out():
    percentile = Normalization(shift=(3.0, 10.0), divisor=(2.0, 5.0))
    assert floors(percentile) == (3.0, 10.0) and floors(percentile, normalized=True) == (0.0, 0.0)
    zscore = Normalization(shift=(50.0,), divisor=(10.0,), clip_low=(20.0,), clip_high=(90.0,))
    assert floors(zscore) == (20.0,) and floors(zscore, normalized=True) == pytest.approx((-3.0,))


def test_a_network_that_sees_shapes_everywhere_predicts_background_where_the_image_is_blank():
    """A network answering foreground everywhere, on an image whose right half is zero fill: the
    stored probabilities are background in the fill (less the margin) and the network's elsewhere."""

    class Everywhere(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros((x.shape[0], 4, *x.shape[2:]))
            logits[:, 1] = 3.0  # foreground
            return logits + 0 * x[:, :1]

    rng = np.random.default_rng(3)
    image = np.zeros((1, 64, 96), np.uint16)
    image[0, :, :40] = rng.integers(10, 200, (64, 40))
    source = zarr.create_array(store={}, shape=image.shape, chunks=(1, 16, 96), dtype=image.dtype)
    source[...] = image
    normalization = stream_normalization(source, NormalizationSpec(method="percentile", low=1.0, high=99.8))
    blank = Blank.for_outputs(floors(normalization), out_channels=4, n_classes=2, flow_channels=(3,))
    sink = ArraySink(4, (), (64, 96))
    stream_predict(
        Everywhere(), source, sink, roi_size=(32, 32), out_channels=4, normalization=normalization,
        activation=partial(activate, n_classes=2), params=InferenceParams(flip_tta=False, amp=False), blank=blank,
    )
    values = sink.values
    fill = np.zeros((64, 96), bool)
    fill[:, 40 + RADIUS :] = True
    np.testing.assert_allclose(values[1][fill], 0.0)
    np.testing.assert_allclose(values[3][fill], NO_FLOW)
    assert (values[1][~fill] > 0.9).all()  # softmax(0, 3) where there is an image


class Everywhere(torch.nn.Module):
    """Answers foreground (and some flow) for every pixel, whatever it is shown."""

    def forward(self, x):
        logits = torch.zeros((x.shape[0], 4, *x.shape[2:]))
        logits[:, 1] = 3.0
        logits[:, 3] = 2.0
        return logits + 0 * x[:, :1]


def test_normalized_floors_are_the_values_the_normalizations_bottom_out_at():
    rng = np.random.default_rng(0)
    image = np.zeros((2, 40, 50), np.float32)
    image[:, :, 25:] = rng.integers(5, 100, (2, 40, 25))  # half the pixels 0: at the 0.5th percentile
    assert normalized_floors(normalize(image, NormalizationSpec(method="percentile", low=1.0, high=99.8)),
                             NormalizationSpec(method="percentile", low=1.0, high=99.8)) == (0.0, 0.0)
    spec = NormalizationSpec(method="zscore", low=0.5, high=99.5)
    normalized = normalize(image, spec)
    for c, floor in enumerate(normalized_floors(normalized, spec)):
        clipped = np.clip(image[c], 0.0, np.percentile(image[c], 99.5))  # the low clip is 0, the fill's value
        assert floor == pytest.approx((0.0 - clipped.mean()) / clipped.std(), rel=1e-5)
        assert (normalized[c][:, :25] == floor).all()
    ct = NormalizationSpec(method="ct", window=(-100.0, 300.0), mean=40.0, std=80.0)
    assert normalized_floors(normalize(image, ct), ct) == pytest.approx(((-100.0 - 40.0) / 80.0,) * 2)


@pytest.mark.parametrize("rule", [True, False])
def test_an_image_predicted_in_memory_is_background_where_it_is_blank(rule):
    """What validation, the tuning, a generalist's input choice and the object-size estimate see:
    the same background in blank pixels as prediction stores."""
    from segpipe.inference import predict_image

    rng = np.random.default_rng(3)
    image = np.zeros((1, 64, 96), np.uint16)
    image[0, :, :40] = rng.integers(10, 200, (64, 40))
    spec = NormalizationSpec(method="percentile", low=1.0, high=99.8)
    normalized = normalize(image, spec)
    blank = Blank.for_outputs(normalized_floors(normalized, spec), out_channels=4, n_classes=2, flow_channels=(3,))
    values = predict_image(Everywhere(), normalized, roi_size=(32, 32), n_classes=2, flow_channels=(3,),
                           params=InferenceParams(flip_tta=False, amp=False), blank=blank if rule else None)
    fill = np.zeros((64, 96), bool)
    fill[:, 40 + RADIUS :] = True
    assert (values[1][~fill] > 0.9).all()
    if rule:
        np.testing.assert_allclose(values[1][fill], 0.0)
        np.testing.assert_allclose(values[3][fill], NO_FLOW)
    else:
        assert (values[1][fill] > 0.9).all()


def test_an_image_of_only_noise_is_background_without_running_the_network():
    """In memory (validation, tuning, the object-size estimate) as in prediction: the whole image."""
    from segpipe.inference import predict_image

    calls = []
    network = Everywhere()
    network.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    spec = NormalizationSpec(method="percentile", low=1.0, high=99.8)
    noise = normalize(np.random.default_rng(7).poisson(30, (1, 64, 96)).astype(np.uint16), spec)
    blank = Blank.for_outputs(normalized_floors(noise, spec), out_channels=4, n_classes=2, flow_channels=(3,))
    params = InferenceParams(flip_tta=False, amp=False)
    values = predict_image(network, noise, roi_size=(32, 32), n_classes=2, flow_channels=(3,), params=params, blank=blank)
    assert not calls
    np.testing.assert_array_equal(values, blank.filled((64, 96)))
    assert blank.filled((2, 3))[:, 0, 0].tolist() == [1.0, 0.0, 0.0, NO_FLOW]
    off = params.model_copy(update={"noise_only": 0.0})
    values = predict_image(network, noise, roi_size=(32, 32), n_classes=2, flow_channels=(3,), params=off, blank=blank)
    assert calls and (values[1] > 0.9).all()


def test_the_quiet_parts_of_an_image_are_background_streamed_and_in_memory_alike():
    """Cells on the left, camera noise on the right: a network answering foreground everywhere is
    overruled where nothing stands out of the noise nearby (segpipe.inference.noise.quiet), in the
    rows the stream writes band by band (each band read with the filters' margin) as in memory;
    --noise-only 0 keeps the network's answer."""
    from segpipe.inference import predict_image
    from segpipe.inference.noise import quiet

    rng = np.random.default_rng(8)
    image = rng.poisson(20, (1, 160, 256)).astype(np.float32)
    yy, xx = np.mgrid[:160, :256]
    for y in (30, 80, 130):
        image[0][(yy - y) ** 2 + (xx - 40) ** 2 < 15**2] += 25
    image = image.astype(np.uint16)
    expected = quiet(image.astype(np.float32))
    assert expected[:, 200:].all() and not expected[:, :60].any()
    spec = NormalizationSpec(method="percentile", low=1.0, high=99.8)
    source = zarr.create_array(store={}, shape=image.shape, chunks=(1, 16, 256), dtype=image.dtype)
    source[...] = image
    normalization = stream_normalization(source, spec)
    params = InferenceParams(flip_tta=False, amp=False)
    for threshold in (params.noise_only, 0.0):
        sink = ArraySink(4, (), (160, 256))
        stream_predict(Everywhere(), source, sink, roi_size=(32, 32), out_channels=4, normalization=normalization,
                       activation=partial(activate, n_classes=2), params=params.model_copy(update={"noise_only": threshold}),
                       blank=Blank.for_outputs(floors(normalization), out_channels=4, n_classes=2, flow_channels=(3,)))
        normalized = normalize(image, spec)
        memory = predict_image(Everywhere(), normalized, roi_size=(32, 32), n_classes=2, flow_channels=(3,),
                               params=params.model_copy(update={"noise_only": threshold}),
                               blank=Blank.for_outputs(normalized_floors(normalized, spec), out_channels=4, n_classes=2, flow_channels=(3,)))
        for values in (sink.values, memory):
            if threshold:
                np.testing.assert_array_equal(values[1] < 0.5, expected)
                np.testing.assert_allclose(values[3][expected], NO_FLOW)
            else:
                assert (values[1] > 0.9).all()
