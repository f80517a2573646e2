"""Typed configuration objects passed from the CLI and flows into the library."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Everything that decides a training run; saved in the model card.

    Defaults for ``patch_size``, ``batch_size`` and ``features`` come from the dataset
    fingerprint (:func:`segpipe.plan.plan_training`); a catalog entry or the CLI may override them.

    Attributes:
        model: Registered network name (``unet`` or ``fcn``).
        features: Encoder widths (U-Net: five plus the last decoder width; FCN: five).
        patch_size: Training window, also the inference window.
        batch_size: Patches per iteration.
        epochs: Planned epochs; the learning rate decays to zero over them (poly schedule).
        iterations_per_epoch: Batches per epoch.
        max_minutes: Wall-clock budget; when set, the epochs are cut after the first one so
            the schedule still completes in time. ``None`` trains exactly ``epochs``.
        learning_rate: Initial AdamW learning rate.
        weight_decay: AdamW weight decay.
        val_every: Validate every this many epochs (and after the last).
        seed: Seeds sampling, augmentation and initialisation.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        foreground_ratio: Share of patches centred on an object.
        distance_weight: Weight of the distance-map loss next to Dice + cross-entropy.
        normalization: ``percentile`` (microscopy: 1st-99.8th percentiles to 0..1 per image),
            ``zscore`` (MRI: percentile clipping then z-score per image) or ``ct`` (window and
            z-score from the training foreground's intensities, as nnU-Net does for CT).
        optimizer: ``adamw`` or ``sgd`` (Nesterov, momentum 0.99, as nnU-Net).
        affine: Add random rotations and scaling to the augmentation.
        elastic: Add elastic deformations (slower).
        num_workers: DataLoader worker processes; ``None``: 0 on CPU (the cores train), 4 on GPU.
        channels_last: Use the channels-last memory format on GPU (faster convolutions there).
        memory_limit_gb: Above this much memory for the training split, patches are read
            from the zarr store instead of holding the images.
    """

    model_config = ConfigDict(extra="forbid")

    model: Literal["unet", "fcn"] = "unet"
    features: tuple[int, ...] | None = None
    patch_size: tuple[int, ...] | None = None
    batch_size: int | None = Field(None, ge=1)
    epochs: int = Field(200, ge=1)
    iterations_per_epoch: int = Field(25, ge=1)
    max_minutes: float | None = Field(8.0, gt=0)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    val_every: int = Field(5, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    foreground_ratio: float = Field(0.5, ge=0, lt=1)
    distance_weight: float = Field(1.0, ge=0)
    normalization: Literal["percentile", "zscore", "ct"] = "percentile"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    affine: bool = False
    elastic: bool = False
    num_workers: int | None = Field(None, ge=0)
    channels_last: bool = True
    memory_limit_gb: float = Field(4.0, ge=0)
