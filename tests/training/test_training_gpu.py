"""CUDA paths: mixed-precision training and GPU inference. Skipped without a GPU (run with -m gpu)."""

import numpy as np
import pytest
import torch

from segpipe.data.catalog import load_catalog
from segpipe.training.params import TrainParams
from segpipe.inference import InferenceParams, predict_image
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.models import build_model
from segpipe.training.loop import train_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_training_on_gpu_with_mixed_precision(crop_catalog, tmp_path):
    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    config = TrainParams(epochs=3, max_minutes=None, iterations_per_epoch=4, batch_size=4, patch_size=(64, 64),
                         val_every=1, device="cuda", num_workers=2)
    result = train_model(ImageStore.open(store), tmp_path / "model", config, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert 0 <= result.history[-1]["val_seg"] <= 1


@pytest.mark.parametrize("amp,tolerance", [(False, 1e-3), (True, 3e-2)])  # amp: bfloat16 on both (CPU with AMX)
def test_gpu_prediction_matches_cpu(amp, tolerance):
    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=2, in_channels=1, out_channels=3).eval()
    image = np.random.default_rng(0).random((1, 150, 170), dtype=np.float32)
    params = InferenceParams(amp=amp)
    cpu = predict_image(model, image, roi_size=(64, 64), n_classes=2, params=params, device="cpu")
    gpu = predict_image(model.cuda(), image, roi_size=(64, 64), n_classes=2, params=params, device="cuda")
    np.testing.assert_allclose(gpu, cpu, atol=tolerance)
