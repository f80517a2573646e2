"""Sliding-window prediction of one image with a trained model (MONAI ``sliding_window_inference``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from pydantic import BaseModel, ConfigDict, Field


class InferenceParams(BaseModel):
    """Sliding-window settings.

    Attributes:
        overlap: Fraction of a window shared with its neighbour along each axis.
        batch_size: Windows run through the network at once.
        mode: Blending of overlapping windows: ``gaussian`` weights centres over borders.
        flip_tta: Average predictions over flips of every spatial axis (test-time augmentation).
    """

    model_config = ConfigDict(extra="forbid")

    overlap: float = Field(0.5, ge=0, lt=1)
    batch_size: int = Field(4, ge=1)
    mode: str = "gaussian"
    flip_tta: bool = True


def activate(logits: torch.Tensor, *, n_classes: int) -> torch.Tensor:
    """Class logits to softmax probabilities; an extra distance channel through a sigmoid."""
    probs = torch.softmax(logits[:, :n_classes], dim=1)
    if logits.shape[1] == n_classes:
        return probs
    return torch.cat([probs, torch.sigmoid(logits[:, n_classes:])], dim=1)


@torch.no_grad()
def predict_image(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    roi_size: Sequence[int],
    n_classes: int,
    params: InferenceParams | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Predict one normalized, channel-first image.

    Args:
        model: Network in eval mode.
        image: ``(C, *spatial)`` float array, normalized as in training.
        roi_size: Window size (the training patch size).
        n_classes: Number of class channels (the rest, if any, is the distance map).
        params: Overlap, batch and blending settings.
        device: Where the network runs.

    Returns:
        float32 ``(n_classes [+1], *spatial)``: class probabilities, then the distance map.
    """
    params = params or InferenceParams()
    device = torch.device(device)
    inputs = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    spatial_axes = list(range(2, inputs.ndim))
    flips: list[list[int]] = [[]]
    if params.flip_tta:
        flips += [[axis] for axis in spatial_axes]
    total = None
    for axes in flips:
        x = torch.flip(inputs, axes) if axes else inputs
        logits = sliding_window_inference(
            x,
            roi_size=tuple(roi_size),
            sw_batch_size=params.batch_size,
            predictor=model,
            overlap=params.overlap,
            mode=params.mode,
            padding_mode="reflect" if _reflect_ok(x.shape[2:], roi_size) else "constant",
        )
        probs = activate(logits, n_classes=n_classes)
        probs = torch.flip(probs, axes) if axes else probs
        total = probs if total is None else total + probs
    return (total / len(flips))[0].float().cpu().numpy()


def _reflect_ok(shape: Sequence[int], roi: Sequence[int]) -> bool:
    """Reflection padding needs each padded axis to be longer than its padding."""
    return all(s > (r - s) for s, r in zip(shape, roi))
