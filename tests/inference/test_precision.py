"""The network's precision: bfloat16 on CPUs with Intel AMX when ``amp`` is on, float32 otherwise."""

from functools import partial

import numpy as np

from segpipe.inference import ArraySink, InferenceParams, activate, predict_image, stream_predict
from segpipe.inference.precision import cpu_bfloat16, has_amx

from conftest import conv_net


def test_amx_is_read_from_the_cpu_flags():
    assert has_amx({"fpu", "avx512f", "amx_tile", "amx_bf16", "amx_int8"})
    assert not has_amx({"fpu", "avx512f", "avx512_bf16"})  # bfloat16 instructions without the matrix units
    assert not has_amx(set())


def _predicted(net, image, *, amp: bool, streamed: bool) -> np.ndarray:
    params = InferenceParams(overlap=0.5, batch_size=4, flip_tta=True, amp=amp)
    if not streamed:
        return predict_image(net, image, roi_size=(16, 16), n_classes=2, params=params)
    sink = ArraySink(3, (), image.shape[1:])
    stream_predict(net, image, sink, roi_size=(16, 16), out_channels=3, params=params, activation=partial(activate, n_classes=2))
    return sink.values


def test_amp_on_the_cpu_is_bfloat16_where_the_cpu_has_amx_and_float32_elsewhere():
    net = conv_net(2, 1, 3)
    image = np.random.default_rng(0).normal(size=(1, 40, 56)).astype(np.float32)
    exact = _predicted(net, image, amp=False, streamed=False)
    reduced = _predicted(net, image, amp=True, streamed=False)
    if cpu_bfloat16():
        difference = np.abs(reduced - exact).max()
        assert 0 < difference < 3e-2  # bfloat16 keeps 8 bits of mantissa: changes in the third decimal
    else:
        np.testing.assert_array_equal(reduced, exact)


def test_the_streamed_and_in_memory_paths_run_the_same_precision():
    net = conv_net(2, 1, 3)
    image = np.random.default_rng(1).normal(size=(1, 37, 45)).astype(np.float32)
    for amp in (False, True):
        np.testing.assert_allclose(
            _predicted(net, image, amp=amp, streamed=True), _predicted(net, image, amp=amp, streamed=False), rtol=0, atol=1e-5
        )
