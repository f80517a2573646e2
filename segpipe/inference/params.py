"""Sliding-window settings shared by in-memory and zarr-to-zarr prediction."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InferenceParams(BaseModel):
    """Sliding-window settings; the model card stores the defaults a model was validated with.

    Attributes:
        overlap: Fraction of a window shared with its neighbour along each axis.
        batch_size: Windows run through the network at once.
        mode: Blending of overlapping windows: ``gaussian`` weights centres over borders
            (MONAI's importance map), ``constant`` weights every voxel of a window equally.
        sigma_scale: Gaussian standard deviation as a fraction of the window size (MONAI's default).
        flip_tta: Average predictions over flips of every spatial axis (test-time augmentation).
        amp: On CUDA, run the network under autocast (bfloat16 where supported, else float16);
            blending stays float32. Ignored on the CPU.
        prefetch: Batches read and normalized ahead by the reading thread (zarr-to-zarr only).
    """

    model_config = ConfigDict(extra="forbid")

    overlap: float = Field(0.5, ge=0, lt=1)
    batch_size: int = Field(4, ge=1)
    mode: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: float = Field(0.125, gt=0)
    flip_tta: bool = True
    amp: bool = True
    prefetch: int = Field(2, ge=1)
