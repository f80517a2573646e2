"""Sliding-window and instance-tiling settings shared by in-memory and zarr-to-zarr prediction."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InferenceParams(BaseModel):
    """Sliding-window settings; the model card stores the ones a model was validated with."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    overlap: float = Field(0.5, ge=0, le=0.9)
    """Fraction of a window shared with its neighbour along each axis (0 to 0.9: at 0.9 a 2D image
    takes 25 times the windows it takes at 0.5, a 3D one 125 times; at 0.999 a 256 x 256 field took
    16,000 windows of a 128-pixel patch, one step per pixel)."""
    batch_size: int = Field(4, ge=1)
    """Windows run through the network at once."""
    mode: Literal["gaussian", "constant"] = "gaussian"
    """Blending of overlapping windows: gaussian weights centres over borders (MONAI's
    importance map), constant weights every voxel of a window equally."""
    sigma_scale: float = Field(0.125, gt=0)
    """Gaussian standard deviation as a fraction of the window size (MONAI's default)."""
    flip_tta: bool = True
    """Average predictions over flips of every spatial axis (test-time augmentation)."""
    amp: bool = True
    """Run the network in reduced precision where the device is faster so: autocast on CUDA (bfloat16
    where supported, else float16), bfloat16 on CPUs with Intel AMX (about 1.5x the float32 speed in 2D);
    float32 elsewhere. Probabilities change in the third decimal (measured in the benchmarks' RESULTS.md)."""
    noise_only: float = Field(10.0, ge=0)
    """Noise is background: a frame (an image, a time-lapse frame, a 3D model's volume) in which
    nothing in any channel stands this many noise deviations out of its noise (default 10; fields
    of noise score under 9, the real images tried 60 and more) gets no objects, the network not run
    on it; and in other frames, so do the quiet parts, where nothing stands out within 8 pixels
    (an empty half of a field, the noise between sparse cells). 0: the network's answer everywhere."""
    prefetch: int = Field(2, ge=1)
    """Batches read and normalized ahead by the reading thread (zarr-to-zarr only)."""


class InstanceTiling(BaseModel):
    """How instance labelling splits large frames.

    Attributes:
        whole_limit: Frames with at most this many voxels are labelled whole; larger ones slab by
            slab along their first axis, or their longest where the first's planes are too large
            (:func:`segpipe.inference.instances.slab_axis`).
        slab: Rows per slab (default: what fits ``whole_limit`` voxels with the halos, and at
            least ``halo`` rows, so that a slab's window holds at most three times its own rows).
        halo: Rows of context on each side of a slab, on the model's grid (as many more rows where
            the probabilities were resampled to a finer one); objects up to this tall are exact.
    """

    model_config = ConfigDict(extra="forbid")

    whole_limit: int = Field(1 << 24, ge=0)
    slab: int | None = Field(None, ge=1)
    halo: int = Field(32, ge=0)
