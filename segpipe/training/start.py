"""The weights a training run starts from: a model it names, the shipped generalist, or random ones.

A model of the same kind of data (a folder, a catalog dataset's model) lends its network, widths,
pixel size, patch and normalization: training continues where it left off. A generalist
(:attr:`segpipe.models.card.ModelCard.generalist`, as the shipped ``cells-2d``) lends its network
and widths only; the dataset plans the rest, and a dataset of fewer channels keeps the filters of
the generalist's first channels (:func:`adapt_input`).
"""

from __future__ import annotations

import logging

import torch

from segpipe.data.store import ImageStore
from segpipe.errors import ModelError
from segpipe.models.card import ModelCard
from segpipe.models.model import Model, network_from_card
from segpipe.models.shipped import CELLS_2D, STARTS, shipped_model, shipped_names
from segpipe.models.unet import axis_divisors, norm_of
from segpipe.training.params import RANDOM, TrainParams

log = logging.getLogger(__name__)


def named_start(config: TrainParams, init: Model | None) -> Model | None:
    """The start the caller chose: ``init``, or the shipped model ``config.init`` names; None when none is named.

    Raises:
        ModelError: ``config.init`` names a model that is not shipped and ``init`` is None (folders
            and catalog names are resolved by :func:`segpipe.pipeline.stages.train`).
    """
    if init is not None or config.init in (None, RANDOM):
        return init
    named = shipped_model(config.init)
    if named is None:
        raise ModelError(
            f"training: init {config.init}: not a model shipped with segpipe ({', '.join(shipped_names())}); "
            "pass the model folder's Model as init (segpipe.pipeline.stages.train resolves folders and catalog names)"
        )
    return named


def default_start(store: ImageStore, fingerprint: dict, config: TrainParams) -> Model | None:
    """The shipped generalist when ``init`` is open and it fits the dataset, else None (random weights).

    It fits 2D instance datasets of one object class and at most its channels, trained with its
    network, widths, normalization layers and normalization method.
    """
    if config.init is not None or store.ndim != 2 or not store.instances or len(store.classes) != 2:
        return None
    start = shipped_model(CELLS_2D)
    if start is None or fingerprint["channels"] > start.card.in_channels:
        return None
    if config.network != start.card.network or config.normalization != start.card.normalization.method:
        return None
    features = tuple(start.card.network_options.get("features") or ())
    if config.norm != norm_of(start.card.network_options):
        return None
    return start if config.features is None or tuple(config.features) == features else None


def start_config(config: TrainParams, start: Model | None, *, ndim: int, guessed: bool = False) -> TrainParams:
    """``config`` with what ``start`` lends it (before planning): network and widths; pixel size and
    patch too, when the fields are open and ``start`` is not a generalist of the same dimensions.

    A pixel size ``start`` took for files that gave none is lent only to a dataset whose pixel size
    is a guess too (``guessed``): both then count in pixels, and a physical one would mean nothing.
    """
    if start is None:
        return config
    card = start.card
    features = card.network_options.get("features")
    update: dict = {"network": card.network, "features": tuple(features) if features else None}
    if card.network == "unet":
        update["norm"] = norm_of(card.network_options)
    overridden = {k: v for k, v in update.items() if k in config.model_fields_set and getattr(config, k) != v}
    if overridden:
        log.warning(
            "training: %s not used: training starts from %s, whose network it keeps (%s); train with init: none for yours",
            ", ".join(f"{k}: {_shown(getattr(config, k))}" for k in overridden), card.name,
            ", ".join(f"{k} {_shown(v)}" for k, v in overridden.items()),
        )
    if config.init is None:
        update["init"] = card.name
    if not card.generalist and card.spatial_dims == ndim:
        if config.spacing is None and (not card.spacing_guessed or guessed):
            update["spacing"] = card.spacing  # the scale its filters learned objects at
        if config.patch_size is None:
            update["patch_size"] = card.patch_size  # the window its poolings were built for
    return config.model_copy(update=update)


def _shown(value) -> str:
    """A setting as a catalog writes it: ``[16, 32]`` for a tuple of widths."""
    return str(list(value)) if isinstance(value, tuple) else str(value)


def kind_problem(start: ModelCard, *, ndim: int, instances: bool, classes: list[str]) -> str | None:
    """Why ``start`` cannot start training on a dataset of ``ndim`` spatial axes, objects or a class
    map (``instances``) and ``classes``, or None: what the catalog entry alone shows, before any
    image is read (:func:`start_problem` checks the rest against the planned model)."""
    if start.spatial_dims != ndim:
        return f"a {start.spatial_dims}D model cannot start training on {ndim}D images"
    if start.instances != instances:
        return ("it separates objects; this dataset's labels are a class map (instances: false)" if start.instances
                else "it predicts a class map; this dataset's labels are objects")
    if start.n_classes != len(classes):
        return f"it predicts {start.classes}, this dataset has {classes}"
    return None


def start_problem(card: ModelCard, start: ModelCard) -> str | None:
    """Why a model with ``card`` cannot start from ``start``'s weights, or None when it can."""
    fewer = start.generalist and card.in_channels <= start.in_channels
    if start.spatial_dims != card.spatial_dims or (start.in_channels != card.in_channels and not fewer):
        return (
            f"a {start.spatial_dims}D model of {start.in_channels} channel(s) cannot start training on "
            f"{card.spatial_dims}D images of {card.in_channels} channel(s)"
        )
    if (start.instances, start.n_classes) != (card.instances, card.n_classes):
        return f"it predicts {start.classes}, this dataset has {card.classes}"
    if start.extra_outputs != card.extra_outputs:
        return (
            f"it has the outputs {list(start.extra_outputs)}, this training {list(card.extra_outputs)} "
            "(boundary_weight or flow_weight differ)"
        )
    if start.generalist and start.normalization.method != card.normalization.method:
        return f"it takes {start.normalization.method} normalization, this training {card.normalization.method}"
    if start.network == "unet":  # the FCN pads itself
        divisors = axis_divisors(start.network_options.get("pools"), start.spatial_dims)
        if any(edge % d for edge, d in zip(card.patch_size, divisors)):
            return (
                f"its network takes windows pooled to multiples of {list(divisors)} pixels, not the patch size "
                f"{list(card.patch_size)} (leave patch_size open to keep the model's, {list(start.patch_size)})"
            )
    return None


def started_card(card: ModelCard, start: Model) -> ModelCard:
    """The card of a model trained from ``start``: its network options, and (unless a generalist) its normalization."""
    shipped = start.folder.resolve().parent == STARTS.resolve()
    record = card.training.model_copy(update={"init": start.card.name if shipped else str(start.folder.resolve())})
    update = {"network_options": start.card.network_options, "training": record}
    if not start.card.generalist:
        update["normalization"] = start.card.normalization
    return card.model_copy(update=update)


def adapt_input(
    state: dict[str, torch.Tensor], start: ModelCard, in_channels: int, *, slots: tuple[int, ...] | None = None
) -> dict[str, torch.Tensor]:
    """``start``'s weights for a network of ``in_channels`` inputs: input ``j`` of its first convolution
    keeps the filters of ``start``'s input ``slots[j]`` (default: the first ``in_channels``, which the
    model saw alone with the others blank; :func:`segpipe.training.channel_order.input_slots` chooses others)."""
    slots = tuple(range(in_channels)) if slots is None else tuple(slots)
    if len(slots) != in_channels or len(set(slots)) != in_channels or not all(0 <= s < start.in_channels for s in slots):
        raise ValueError(f"model {start.name!r}: inputs {list(slots)} are not {in_channels} of its {start.in_channels}")
    if slots == tuple(range(start.in_channels)):
        return state
    for name, module in network_from_card(start).named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)) and module.in_channels == start.in_channels:
            key = f"{name}.weight"
            return {**state, key: state[key][:, list(slots)].clone()}
    raise ValueError(f"model {start.name!r}: no input convolution of {start.in_channels} channels found")
