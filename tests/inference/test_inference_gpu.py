"""On CUDA: the same windows and blending, with the network under autocast (bf16/fp16)."""

import numpy as np
import pytest
import torch
from functools import partial

from segpipe.inference import ArraySink, InferenceParams, activate, predict_image, stream_predict

from conftest import conv_net

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("amp,tolerance", [(False, 1e-4), (True, 3e-2)])
def test_cuda_prediction_matches_the_cpu(amp, tolerance):
    net = conv_net(3, 1, 3)
    image = np.random.default_rng(0).normal(size=(1, 20, 45, 37)).astype(np.float32)
    params = InferenceParams(overlap=0.5, batch_size=8, flip_tta=True, amp=amp)
    reference = predict_image(net, image, roi_size=(16, 16, 16), n_classes=2, params=params)
    sink = ArraySink(3, (), image.shape[1:])
    stream_predict(
        net.cuda(), image, sink, roi_size=(16, 16, 16), out_channels=3, params=params,
        activation=partial(activate, n_classes=2), device="cuda",
    )
    np.testing.assert_allclose(sink.values, reference, rtol=0, atol=tolerance)
