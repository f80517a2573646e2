"""The model card: everything needed to apply a trained network, typed and checked when read.

A card travels with the weights (``model_card.json`` beside ``model.pt``, and a copy inside
``model.pt``). Prediction, export and reports read a model only through :class:`ModelCard`;
a card with a missing, unknown or ill-typed field is refused with the file and field named.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segpipe.data.readers.units import pixel_size_problem, sizes_text
from segpipe.errors import ModelError, explain
from segpipe.inference.normalize import NormalizationSpec
from segpipe.inference.params import InferenceParams
from segpipe.inference.postprocess import InstanceParams

#: Version of the card's layout; a reader refuses cards from a newer segpipe before it reads
#: their fields (a newer card's fields would otherwise be reported as unknown). 2: the fields
#: ``object_size`` and ``training.init_inputs``; 3: ``normalization.skip_fill``; 4:
#: ``postprocess.edge_min_size``; 5: ``spacing_guessed``; 6: ``normalization.floor_for``; 7:
#: ``inference.noise_only``, ``pixel_size_set``; 8: ``training.resumed_after``. A card of an
#: earlier version reads as it is (its missing fields take their defaults).
CARD_VERSION = 8


class TrainingRecord(BaseModel):
    """How a model was trained (empty for a model imported without this record).

    Attributes:
        dataset: Catalog name of the training data.
        dataset_fingerprint: Fingerprint of the ingested sources.
        config: The training parameters as used (``segpipe.training.params.TrainParams``, JSON).
        config_key: What decides the training trajectory, hashed: a run with the same key resumes.
        epochs: Epochs trained.
        iterations: Optimizer steps taken.
        best_epoch: Epoch of the kept weights.
        seconds: Training time, summed over resumed runs.
        ended_by: ``iterations`` (the planned schedule ran out) or ``time budget``.
        resumed_after: The epochs after which a stopped run was started again and went on from its
            saved state (empty: trained in one run).
        validation: Validation scores of the kept weights and the images they came from
            (``tuned_on``; ``tuned_with_training``: the training images the post-processing
            was also tuned on).
        init: The model the weights started from, when fine-tuned.
        init_inputs: For each of the dataset's channels, the input of the ``init`` generalist whose
            filters it took (:mod:`segpipe.training.channel_order`); None: in the file's order.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    dataset_fingerprint: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    config_key: str | None = None
    epochs: int | None = None
    iterations: int | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    ended_by: Literal["iterations", "time budget"] | None = None
    resumed_after: list[int] = Field(default_factory=list)
    validation: dict[str, Any] = Field(default_factory=dict)
    init: str | None = None
    init_inputs: list[int] | None = None

    @property
    def scored_on_training(self) -> bool:
        """``validation`` holds scores on training images: the run had no validation images, and
        its post-processing was tuned on training images (optimistic: the network learnt them)."""
        return "tuned_on" in self.validation and not self.validation["tuned_on"] and bool(self.validation.get("tuned_with_training"))


class ModelCard(BaseModel):
    """A trained model's description.

    Attributes:
        card_version: Layout version (:data:`CARD_VERSION`).
        name: Shown in listings and reports (the training dataset's name by default).
        network: Registered network name (:func:`segpipe.models.available_models`).
        network_options: Keyword arguments of the network's factory (e.g. ``features``).
        spatial_dims: 2 or 3.
        in_channels: Image channels the network takes, in order.
        channel_names: Names of those channels, when known.
        out_channels: Network outputs: the class scores, then ``extra_outputs``.
        extra_outputs: What the outputs after the class scores are: for instance models the
            distance map, a boundary map when the model has one, and the flow (one channel per
            spatial axis) when it has one (None: as older cards, the distance map for instance models).
        classes: Class names, background first.
        instances: Whether the model separates objects (a distance map and a watershed).
        patch_size: Training window, also the inference window, per spatial axis.
        spacing: Pixel or voxel size the model was trained at, per spatial axis.
        spacing_guessed: The training images' files gave no pixel size (nor did the catalog), so
            ``spacing`` is relative to the 1 per pixel ingest took for them: no physical size. New
            images are then taken at 1 per pixel too, whatever their files say.
        pixel_size_set: The training images' pixel size per spatial axis (in ``unit``), given after
            training with ``segpipe models pixel-size`` where their files gave none (:meth:`at_pixel_size`):
            ``spacing`` and ``object_size`` were converted by it; ``None`` otherwise.
        unit: Unit of ``spacing``.
        normalization: How input intensities are scaled.
        inference: Sliding-window settings the model was validated with.
        postprocess: Watershed settings tuned on validation (instance models).
        training: How it was trained.
        software: Versions it was trained with.
        generalist: Trained across kinds of data to start others' training from: a dataset
            fine-tuned from it keeps its network and widths, and plans its own pixel size, patch
            and normalization; a model of fewer channels keeps the first channels' filters.
        object_size: Typical object extent (in ``unit``) the model saw every image rescaled to;
            a new image is predicted at the scale a first prediction estimates brings its
            objects to it (:mod:`segpipe.prediction.object_size`). None: at its own pixel size.
    """

    model_config = ConfigDict(extra="forbid")

    card_version: int = CARD_VERSION
    name: str
    network: str
    network_options: dict[str, Any] = Field(default_factory=dict)
    spatial_dims: Literal[2, 3]
    in_channels: int = Field(ge=1)
    channel_names: list[str] | None = None
    out_channels: int = Field(ge=1)
    extra_outputs: tuple[Literal["distance", "boundary", "flow"], ...] | None = None
    classes: list[str] = Field(min_length=2)
    instances: bool
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    spacing_guessed: bool = False
    pixel_size_set: tuple[float, ...] | None = None
    unit: str = "micrometer"
    normalization: NormalizationSpec
    inference: InferenceParams = Field(default_factory=InferenceParams)
    postprocess: InstanceParams | None = None
    training: TrainingRecord = Field(default_factory=TrainingRecord)
    software: dict[str, str] = Field(default_factory=dict)
    generalist: bool = False
    object_size: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_newer(cls, data: Any) -> Any:
        version = data.get("card_version", CARD_VERSION) if isinstance(data, dict) else CARD_VERSION
        if isinstance(version, int) and version > CARD_VERSION:
            raise ValueError(f"made by a newer segpipe (card version {version}, this one reads up to {CARD_VERSION}): "
                             "upgrade segpipe to open it")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        for name in ("patch_size", "spacing"):
            if len(getattr(self, name)) != self.spatial_dims:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {self.spatial_dims} spatial axes")
        if any(not (math.isfinite(s) and s > 0) for s in self.spacing):
            raise ValueError(f"spacing must be positive and finite, got {list(self.spacing)}")
        if self.extra_outputs is None:
            self.extra_outputs = ("distance",) if self.instances else ()
        if self.instances != ("distance" in self.extra_outputs):
            raise ValueError("an instance model has a distance output, a class-map model none")
        if self.out_channels != self.n_classes + self.extra_channels:
            raise ValueError(
                f"out_channels {self.out_channels} does not fit {self.n_classes} classes"
                + (f" plus {', '.join(self.extra_outputs)}" if self.extra_outputs else "")
            )
        if self.instances and self.n_classes != 2:
            raise ValueError("an instance model has two classes: background and the objects")
        if self.channel_names is not None and len(self.channel_names) != self.in_channels:
            raise ValueError(f"channel_names has {len(self.channel_names)} names for {self.in_channels} channels")
        return self

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def extra_channels(self) -> int:
        """Channels after the class scores (the flow has one per spatial axis)."""
        return extra_channels(self.extra_outputs or (), self.spatial_dims)

    @property
    def flow_channels(self) -> tuple[int, ...]:
        """The output channel of the flow along each spatial axis (the last channels); () without a flow."""
        if "flow" not in (self.extra_outputs or ()):
            return ()
        return tuple(range(self.out_channels - self.spatial_dims, self.out_channels))

    @property
    def output_names(self) -> list[str]:
        """A name for each output channel: the classes, then the extra outputs (a flow per axis)."""
        names = [*self.classes]
        for extra in self.extra_outputs or ():
            names += [f"flow {axis}" for axis in "zyx"[-self.spatial_dims :]] if extra == "flow" else [extra]
        return names

    def instance_params(self) -> InstanceParams:
        """The post-processing to apply (defaults when the card has none tuned)."""
        return self.postprocess or InstanceParams()

    def at_pixel_size(self, pixel_size: tuple[float, ...], unit: str) -> ModelCard:
        """This card told the pixel size of its training images where their files gave none
        (:attr:`spacing_guessed`), or told it again (:attr:`pixel_size_set`: a wrong size corrected):
        ``pixel_size`` per spatial axis, in ``unit``, is one pixel of those images. The pixel size the
        model was planned at (a multiple of that pixel) and the object size are converted into
        ``unit``; the post-processing's sizes count the model's pixels and stay.

        Raises:
            ValueError: The card's pixel size was known at training or it is a generalist's (the
                message says why), or ``pixel_size`` is not one positive, finite size per spatial axis.
        """
        if self.generalist:
            raise ValueError("a generalist takes every image at its own pixels: it has no pixel size to set")
        if len(pixel_size) != self.spatial_dims:
            raise ValueError(f"give one size per spatial axis ({self.spatial_dims} for a "
                             f"{self.spatial_dims}D model), got {sizes_text(pixel_size)}")
        if problem := pixel_size_problem(pixel_size, unit):
            raise ValueError(problem)
        if self.pixel_size_set is not None:  # undo the size set before, then set this one
            before = self.pixel_size_set
            return self.model_copy(update={
                "spacing": tuple(s / p for s, p in zip(self.spacing, before)), "spacing_guessed": True, "pixel_size_set": None,
                "object_size": self.object_size / _across(before) if self.object_size else self.object_size,
            }).at_pixel_size(pixel_size, unit)
        if not self.spacing_guessed:
            raise ValueError(f"it was trained at a known pixel size ({sizes_text(self.spacing)} {self.unit}), which its "
                             "network learnt; to change it, train again with spacing: in the catalog entry")
        return self.model_copy(update={
            "spacing": tuple(float(s * p) for s, p in zip(self.spacing, pixel_size)), "unit": unit, "spacing_guessed": False,
            "pixel_size_set": tuple(float(p) for p in pixel_size),
            "object_size": self.object_size * _across(pixel_size) if self.object_size else self.object_size,
        })

    def to_json(self) -> str:
        """The card as JSON, marked with this segpipe's layout version (a card read from an older
        file is written with every current field, so it is of the current layout)."""
        return self.model_copy(update={"card_version": CARD_VERSION}).model_dump_json(indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path) -> ModelCard:
        """Validate a card read from ``source``; :class:`ModelError` names the file and the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ModelError(f"{source}: not a valid model card: {explain(err)}") from None

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read and validate ``model_card.json``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path}: no model card here") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(f"{path}: cannot read the model card: {err}") from None
        return cls.from_dict(data, source=path)


def extra_channels(extra_outputs, spatial_dims: int) -> int:
    """Output channels ``extra_outputs`` take: one each, the flow one per spatial axis."""
    return sum(spatial_dims if extra == "flow" else 1 for extra in extra_outputs)


def _across(pixel_size) -> float:
    """The side of a square (cube) pixel of the same area (volume)."""
    return float(math.prod(pixel_size)) ** (1 / len(pixel_size))


