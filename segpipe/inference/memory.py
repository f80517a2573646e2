"""Sliding-window prediction of one in-memory image with MONAI ``sliding_window_inference``.

Training validates with this; :mod:`segpipe.inference.stream` gives the same numbers zarr to zarr
for images that do not fit in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from segpipe.inference.blank import Blank
from segpipe.inference.params import InferenceParams
from segpipe.inference.precision import autocast
from segpipe.inference.windows import tta_passes, unflip


def activate(logits: torch.Tensor, *, n_classes: int) -> torch.Tensor:
    """Class logits to softmax probabilities; the extra channels (distance, boundary, flow) through a sigmoid."""
    probs = torch.softmax(logits[:, :n_classes], dim=1)
    if logits.shape[1] == n_classes:
        return probs
    return torch.cat([probs, torch.sigmoid(logits[:, n_classes:])], dim=1)


def padding_mode(shape: Sequence[int], roi: Sequence[int]) -> str:
    """Reflection where every padded axis is long enough to reflect, else the edges replicated.

    Training never shows the network padding, so zeros around an image smaller than a window
    are unlike anything it has seen: on the synthetic 3D test region (13 rows under 32-row
    windows) foreground Dice was 0.60 with zeros and 0.89 with the edges replicated.
    """
    return "reflect" if all(s > (r - s) for s, r in zip(shape, roi)) else "replicate"


@torch.no_grad()
def predict_image(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    roi_size: Sequence[int],
    n_classes: int,
    params: InferenceParams | None = None,
    device: torch.device | str = "cpu",
    flow_channels: Sequence[int] = (),
    blank: Blank | None = None,
) -> np.ndarray:
    """Predict one normalized, channel-first image.

    Args:
        model: Network in eval mode.
        image: ``(C, *spatial)`` float array, normalized as in training.
        roi_size: Window size (the training patch size).
        n_classes: Number of class channels (the rest, if any, is the distance map).
        params: Overlap, batch and blending settings.
        device: Where the network runs.
        flow_channels: The flow's channel per spatial axis (:attr:`segpipe.models.card.ModelCard.flow_channels`),
            whose sign a flipped pass undoes.
        blank: The rule for blank pixels, its floors in normalized units
            (:func:`segpipe.inference.blank.normalized_floors`): their outputs are set to background,
            as :func:`segpipe.inference.stream.stream_predict` sets them, and an image of nothing but
            noise is background whole, without running the network. None: the network's answer.

    Returns:
        float32 ``(out_channels, *spatial)``: class probabilities, then the extra outputs' sigmoids.
    """
    params = params or InferenceParams()
    if blank is not None and blank.only_noise(image, params.noise_only):
        return blank.filled(image.shape[1:])
    device = torch.device(device)
    inputs = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    total = None
    passes = tta_passes(inputs.ndim - 2, flip_tta=params.flip_tta)

    def network(x: torch.Tensor) -> torch.Tensor:  # in the precision ``params.amp`` gives; blended in float32
        with autocast(device, params.amp):
            return model(x).float()

    for flips in passes:
        axes = [axis + 2 for axis in flips]
        x = torch.flip(inputs, axes) if axes else inputs
        logits = sliding_window_inference(
            x,
            roi_size=tuple(roi_size),
            sw_batch_size=params.batch_size,
            predictor=network,
            overlap=params.overlap,
            mode=params.mode,
            sigma_scale=params.sigma_scale,
            padding_mode=padding_mode(x.shape[2:], roi_size),
        )
        probs = activate(unflip(logits, flips, channel_axis=1, flow_channels=flow_channels), n_classes=n_classes)
        total = probs if total is None else total + probs
    values = (total / len(passes))[0].float().cpu().numpy()
    if blank is not None:
        blank.clear(values, image, quiet=params.noise_only)
    return values
