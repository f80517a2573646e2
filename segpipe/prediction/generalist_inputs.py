"""Which input of a generalist each channel of a new image feeds, chosen without labels.

The shipped generalist ``cells-2d`` reads cytoplasm or membrane on its first input and nuclei
on its second, and learnt cells and nuclei alone with the second input blank. New images come
with one channel, with a blank channel (the Cellpose dataset pads one-channel images so), or
with two in either order. Training chooses the order with the labels
(:mod:`segpipe.training.channel_order`); a new image has none, so for each image:

- a flat channel (its low and high percentiles equal: nothing in it, or a few stray pixels)
  feeds no input;
- a single channel left feeds the first input;
- two or more are fed in every order to the centre of the image's content (what is not fill,
  :func:`~segpipe.inference.fill.content_box`; at most ``CHOICE_WINDOWS`` windows a side, no
  flips, normalized with the whole image's statistics),
  and the order whose foreground the network is surest of (the mean of ``|2p - 1|`` over the
  pixels) is taken; a tie keeps the stored order.

Inputs no channel feeds get zeros (:class:`InputSlots`): what a blank channel normalizes to.
Each channel is normalized with the intensity floor of the input it feeds (:func:`input_normalization`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
import torch

from segpipe.inference import predict_image
from segpipe.inference.blank import Blank, floors
from segpipe.inference.fill import content_box
from segpipe.inference.normalize import (
    Normalization,
    NormalizationSpec,
    channel_percentiles,
    percentile_normalization,
    stream_normalization,
)
from segpipe.inference.params import InferenceParams
from segpipe.inference.windows import centre_box
from segpipe.models.card import ModelCard

#: The crop the orders are tried on, in windows a side.
CHOICE_WINDOWS = 2

#: ``slots[j]``: the input an image's channel ``j`` feeds, None for a channel fed to no input.
Slots = tuple[int | None, ...]


class InputSlots(torch.nn.Module):
    """``network`` fed an image whose channel ``j`` goes to input ``slots[j]`` (None: to none); other inputs get zeros."""

    def __init__(self, network: torch.nn.Module, *, slots: Slots, inputs: int):
        super().__init__()
        used = [s for s in slots if s is not None]
        if len(set(used)) != len(used) or not all(0 <= s < inputs for s in used):
            raise ValueError(f"slots {list(slots)} must be distinct inputs of 0..{inputs - 1} (or None)")
        self.network, self.slots, self.inputs = network, tuple(slots), inputs
        self._channels = [j for j, s in enumerate(slots) if s is not None]
        self._targets = [s for s in slots if s is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = x.new_zeros((x.shape[0], self.inputs, *x.shape[2:]))
        full[:, self._targets] = x[:, self._channels]
        return self.network(full)


def input_normalization(spec: NormalizationSpec, slots: Slots) -> NormalizationSpec:
    """``spec`` for an image whose channel ``j`` feeds input ``slots[j]``: the channel takes that
    input's floor (``min_range``, per input of the model); a channel fed to no input keeps its own."""
    if not spec.min_range:
        return spec
    floors = list(spec.min_range)
    inputs = [j if slot is None else slot for j, slot in enumerate(slots)]
    return spec.model_copy(update={"min_range": [floors[min(i, len(floors) - 1)] for i in inputs]})


@dataclass(frozen=True)
class InputChoice:
    """What :func:`choose_inputs` decided for one image.

    Attributes:
        slots: ``slots[j]``: the input the image's channel ``j`` feeds (None: none).
        flat: The image's channels with nothing in them.
        confidence: The network's mean certainty ``|2p - 1|`` of the crop's foreground for each
            order tried (by its ``slots``); None when fewer than two channels vary.
    """

    slots: Slots
    flat: tuple[int, ...] = ()
    confidence: dict[Slots, float] | None = None

    def describe(self, name: str) -> str:
        """One log line: which channel feeds which input, and why."""
        why = []
        if self.flat:
            why.append(f"channel(s) {list(self.flat)} flat, fed to no input")
        if self.confidence:
            why.append("surest of its foreground: " + ", ".join(f"{list(s)} {c:.3f}" for s, c in self.confidence.items()))
        return f"{name}: channels {list(range(len(self.slots)))} feed the generalist's inputs {list(self.slots)}" + (
            f" ({'; '.join(why)})" if why else ""
        )


def choose_inputs(
    image, card: ModelCard, network: torch.nn.Module, *, device: torch.device | str, params: InferenceParams
) -> InputChoice:
    """The inputs of a generalist the channels of ``image`` feed.

    Args:
        image: The stored image, channel-first (zarr or numpy), ``(C, *frames, *spatial)``; ``C`` at
            most ``card.in_channels``. The orders are tried on its first frame.
        card: The generalist's card (normalization, patch, inputs, classes).
        network: Its network, in eval mode.
        device: Where the network runs.
        params: The sliding-window settings (flips are turned off here).
    """
    channels = image.shape[0]
    bounds = _channel_bounds(image, card.normalization)
    flat = tuple(c for c in range(channels) if np.ptp(bounds[c]) <= 0)
    varying = [c for c in range(channels) if c not in flat]
    if len(varying) < 2:  # the one that varies (or, with none, the first) takes the first input
        keep = varying or [0]
        return InputChoice(tuple(0 if c in keep else None for c in range(channels)), flat)
    frames = image.ndim - 1 - card.spatial_dims
    box = centre_box(
        image.shape[1 + frames :], windows=CHOICE_WINDOWS, roi=card.patch_size, spacing=card.spacing, model_spacing=card.spacing,
        within=content_box(image, spatial_dims=card.spatial_dims, frame=(0,) * frames),
    )
    crop = np.asarray(image[(slice(None), *(0,) * frames, *box)], dtype=np.float32)
    quick = params.model_copy(update={"flip_tta": False})
    confidence = {}
    for order in permutations(range(card.in_channels), len(varying)):
        slots = tuple(dict(zip(varying, order)).get(c) for c in range(channels))
        normalization = _normalization(image, bounds, input_normalization(card.normalization, slots))
        outputs = predict_image(
            InputSlots(network, slots=slots, inputs=card.in_channels), normalization.apply(crop),
            roi_size=card.patch_size, n_classes=card.n_classes, params=quick, device=device, flow_channels=card.flow_channels,
            blank=Blank.for_card(card, floors(normalization, normalized=True)),
        )
        confidence[slots] = float(np.mean(np.abs(2.0 * (1.0 - outputs[0]) - 1.0)))
    stored = tuple(range(channels))
    best = max(confidence, key=lambda slots: (confidence[slots], slots == stored))
    return InputChoice(best, flat, confidence)


def _channel_bounds(image, spec: NormalizationSpec) -> list[list[float]]:
    """Each channel's low and high percentiles: the normalization's, else 1 and 99.8. A channel whose
    two are equal is flat; a percentile normalization is made from them (:func:`_normalization`)."""
    low, high = (spec.low, spec.high) if spec.method == "percentile" else (1.0, 99.8)
    return [channel_percentiles(image, c, (low, high), skip_fill=spec.skip_fill) for c in range(image.shape[0])]


def _normalization(image, bounds: list[list[float]], spec: NormalizationSpec) -> Normalization:
    """``spec``'s normalization of ``image``: from the measured ``bounds`` when it is by percentiles."""
    return percentile_normalization(bounds, spec) if spec.method == "percentile" else stream_normalization(image, spec)
