"""The training stage's parameters: one model shared by the catalog, the CLI, the flows and the card."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Fields that decide where training may run and for how long, not what it computes: a run that
#: differs only in these resumes from ``last.pt`` (e.g. a larger time budget continues training).
RUNTIME_FIELDS = frozenset({"max_minutes", "device", "num_workers", "memory_limit_gb"})
#: The ``init`` that trains from random weights (``None`` lets the plan choose a start).
RANDOM = "none"
#: How the distance map can be learnt (:class:`segpipe.training.losses.SegmentationLoss`).
DistanceLoss = Literal["bce", "mse"]


class TrainParams(BaseModel):
    """Everything that decides a training run; recorded in the model card.

    Defaults for ``epochs``, ``iterations_per_epoch``, ``spacing``, ``patch_size``, ``batch_size``
    and ``features`` come from the dataset fingerprint (:func:`segpipe.training.plan.plan_training`): a planned number of iterations,
    so one seed gives one model whatever else the machine is doing. The catalog entry's
    ``training:`` section overrides the defaults, and the command line overrides both.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    network: str = "unet"
    """Network to train, by registered name (unet, fcn, or any registered one)."""
    features: tuple[int, ...] | None = None
    """Encoder widths (U-Net: five plus the last decoder width; FCN: five); planned when not set."""
    norm: Literal["instance", "batch"] = "instance"
    """The U-Net's normalization layers: instance (each sample's maps on their own) or batch (over
    the batch in training, the statistics it kept when predicting, as Cellpose's network); when
    fine-tuning, the starting model's. Batch normalization with a start trained with it was tried
    on the whole-cell and nucleus sets and not made the default (benchmarks/RESULTS.md, "Tried
    (2026-12-06, late night): batch normalization")."""
    patch_size: tuple[int, ...] | None = None
    """Training window per spatial axis, also the inference window; planned when not set. The U-Net
    pools each axis at most as many times (up to four) as its edge halves, so a stack of 4 slices trains on
    4, not on 16 padded ones."""
    spacing: tuple[float, ...] | None = None
    """Pixel (voxel) size to train at, per spatial axis in the dataset's unit; the model then
    predicts at it too (other images are resampled to it and back). Planned when not set: the
    training images' median pixel size, coarsened on its finest axes where the typical object
    with its surroundings is larger than a patch can hold; when fine-tuning (``init``), the
    starting model's."""
    object_size: float | None = Field(None, ge=0)
    """Instance datasets: the typical object extent (in the dataset's unit) every image is
    rescaled to, as Cellpose rescales cells to one diameter: each training and validation image
    by its labels' median object extent, each new image by an estimate from a first prediction
    (refined once); 0: images keep their own pixel size. Planned when not set: the median of the
    training images' median extents where those spread by a factor 2 or more (10th to 90th
    percentile image), 0 otherwise; when fine-tuning a model that has one, that model's."""
    batch_size: int | None = Field(None, ge=1)
    """Patches per iteration; planned when not set."""
    epochs: int | None = Field(None, ge=1)
    """Epochs to train; the learning rate decays to zero over them (poly schedule). Planned when not set."""
    iterations_per_epoch: int | None = Field(None, ge=1)
    """Batches per epoch; planned when not set: 25 in 2D, 200 in 3D, up to three times that in 2D and
    twice in 3D where the training images hold more pixels than an epoch's patches cover (enough
    to cover them 1.5 times)."""
    max_minutes: float | None = Field(None, gt=0)
    """Optional time budget in minutes, checked after every iteration: training stops when it is
    spent even if epochs remain, and the learning rate follows the budget. Not set: no budget."""
    learning_rate: float = Field(2e-3, gt=0)
    """Initial learning rate."""
    weight_decay: float = Field(1e-4, ge=0)
    """Weight decay of the optimizer."""
    val_every: int = Field(5, ge=1)
    """Validate every this many epochs (and after the last): the validation split predicted by
    sliding window, each window once, scored by OP_CSB (instances) or Dice; the latest checkpoint
    within two standard errors of the best score (instances: the SEG's, over the validation objects
    or, where they differ more, its images; Dice: the best itself) is kept."""
    seed: int = 0
    """Seeds sampling, augmentation and initialisation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto (CUDA when present), cpu or cuda."""
    foreground_ratio: float = Field(0.5, ge=0, lt=1)
    """Share of patches centred on an object."""
    distance_weight: float = Field(1.0, ge=0)
    """Weight of the distance-map loss next to Dice + cross-entropy."""
    distance_loss: DistanceLoss | None = None
    """How the distance map is learnt: bce (binary cross-entropy against its soft targets) or mse
    (squared error of its sigmoid); planned when not set: bce in 2D, mse in 3D (benchmarks/RESULTS.md,
    "Distance loss": bce gained on every 2D set measured and lost on both 3D nuclei sets)."""
    boundary_weight: float = Field(1.0, ge=0)
    """Weight of the touching-boundary loss (instance datasets); 0: no boundary output."""
    flow_weight: float | None = Field(None, ge=0)
    """Weight of the flow loss (instance datasets): the network also learns, for each object
    pixel, the direction to its object's centre (Cellpose's flows), and the post-processing can
    then group pixels by where following those directions ends; 0: no flow output. Planned when
    open: 8 (benchmarks/RESULTS.md, "Flows" and "The flow weighted eight times": learning the flow
    raised the seven imaging styles' whole cells, more at weight 4 than 1, more at 8 than 4; "The
    flow in 3D": it raised the 3D smoke volume's nuclei on three seeds of four)."""
    deep_supervision: bool = False
    """U-Net only: its two coarser decoder levels learn the targets too, in training only, as
    nnU-Net trains (:mod:`segpipe.training.deep`). Off by default: in 2D it raised one field of
    large packed cells by 0.055 SEG and lost up to 0.010 on five of seven sets, bbbc007 0.009; on
    the 3D smoke volume it lost 0.016 SEG on average over four seeds (benchmarks/RESULTS.md,
    "Deep supervision" and "Deep supervision in 3D")."""
    normalization: Literal["percentile", "zscore", "ct"] = "percentile"
    """percentile (microscopy: 1st-99.8th percentiles to 0..1 per image), zscore (MRI: clipped
    z-score per image, of its nonzero voxels when a quarter of the training voxels are exactly 0)
    or ct (window and z-score from the training foreground, as nnU-Net)."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """adamw, or sgd (Nesterov, momentum 0.99, as nnU-Net)."""
    affine: bool = False
    """Add random rotations and scaling to the augmentation."""
    elastic: bool = False
    """Add elastic deformations to the augmentation (slower)."""
    num_workers: int | None = Field(None, ge=0)
    """DataLoader worker processes; None: 0 on CPU (the cores train), 4 on GPU."""
    channels_last: bool = True
    """Use the channels-last memory format on GPU (faster convolutions there)."""
    memory_limit_gb: float = Field(4.0, ge=0)
    """Above this much memory for the training split, patches are read from the store instead."""
    init: str | None = None
    """The weights training starts from: a model folder, a catalog dataset whose model to use, the
    name of a model shipped with segpipe (``cells-2d``), or ``none`` for random weights. A
    generalist (``cells-2d``) lends its network and widths, and the dataset's plan decides pixel
    size, patch and normalization; any other model also lends its pixel size, patch and normalization.
    A two-channel dataset feeds a generalist's inputs in the order its predictions on the training
    images fit best (:mod:`segpipe.training.channel_order`). Planned when not set: ``cells-2d`` for 2D
    instance datasets of one object class and one or two channels whose plan its network fits,
    random weights otherwise (benchmarks/RESULTS.md, "The start with scattered objects shipped")."""

    @field_validator("spacing")
    @classmethod
    def _positive(cls, spacing: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if spacing is not None and any(s <= 0 for s in spacing):
            raise ValueError(f"spacing must be positive on every axis, got {list(spacing)}")
        return spacing

    @field_validator("network")
    @classmethod
    def _registered(cls, name: str) -> str:
        from segpipe.models import available_models  # networks (torch, MONAI) load when a name is checked

        if name not in available_models():
            raise ValueError(f"unknown network {name!r}; registered: {', '.join(available_models())}")
        return name

    def trajectory(self) -> dict:
        """The fields that decide what training computes (not where or for how long), as JSON."""
        exclude = set(RUNTIME_FIELDS) | ({"deep_supervision"} if not self.deep_supervision else set())
        return self.model_dump(mode="json", exclude=exclude)  # off: left out, so a run without it keeps its key
