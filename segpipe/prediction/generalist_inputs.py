"""Which input of a generalist each channel of a new image feeds, chosen without labels.

The shipped generalist ``cells-2d`` reads cytoplasm or membrane on its first input and nuclei
on its second, and learnt cells and nuclei alone with the second input blank. New images come
with one channel, with a blank channel (the Cellpose dataset pads one-channel images so), or
with two in either order. Training chooses the order with the labels
(:mod:`segpipe.training.channel_order`); a new image has none, so for each image:

- a flat channel (its low and high percentiles equal: nothing in it) feeds a blank input;
- a single channel left feeds the first input;
- two or more are fed in every order to the centre of the image (at most
  ``CHOICE_WINDOWS`` windows a side, no flips), and the order whose foreground the network is
  surest of (the mean of ``|2p - 1|`` over the pixels) is taken; a tie keeps the stored order.

Inputs no channel feeds get zeros (:class:`InputSlots`): a blank channel after normalization.
Each channel is normalized with the intensity floor of the input it feeds (:func:`input_normalization`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
import torch

from segpipe.inference import predict_image
from segpipe.inference.normalize import NormalizationSpec, channel_percentiles, normalize
from segpipe.inference.windows import centre_box
from segpipe.models.card import ModelCard

#: The crop the orders are tried on, in windows a side.
CHOICE_WINDOWS = 2


class InputSlots(torch.nn.Module):
    """``network`` fed an image whose channel ``j`` goes to input ``slots[j]``; other inputs get zeros."""

    def __init__(self, network: torch.nn.Module, slots: tuple[int, ...], inputs: int):
        super().__init__()
        if len(set(slots)) != len(slots) or not all(0 <= s < inputs for s in slots):
            raise ValueError(f"slots {list(slots)} must be distinct inputs of 0..{inputs - 1}")
        self.network, self.slots, self.inputs = network, tuple(slots), inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = x.new_zeros((x.shape[0], self.inputs, *x.shape[2:]))
        full[:, list(self.slots)] = x
        return self.network(full)


def input_normalization(spec: NormalizationSpec, slots: tuple[int, ...]) -> NormalizationSpec:
    """``spec`` for an image whose channel ``j`` feeds input ``slots[j]``: the channel takes that
    input's floor (``min_range``, per input of the model)."""
    if not spec.min_range:
        return spec
    floors = list(spec.min_range)
    return spec.model_copy(update={"min_range": [floors[min(slot, len(floors) - 1)] for slot in slots]})


@dataclass(frozen=True)
class InputChoice:
    """What :func:`choose_inputs` decided for one image.

    Attributes:
        slots: ``slots[j]``: the input the image's channel ``j`` feeds.
        flat: The image's channels with nothing in them.
        confidence: The network's mean certainty ``|2p - 1|`` of the crop's foreground for each
            order tried (by its ``slots``); None when fewer than two channels vary.
    """

    slots: tuple[int, ...]
    flat: tuple[int, ...] = ()
    confidence: dict[tuple[int, ...], float] | None = None

    def describe(self, name: str) -> str:
        """One log line: which channel feeds which input, and why."""
        why = []
        if self.flat:
            why.append(f"channel(s) {list(self.flat)} flat")
        if self.confidence:
            why.append("surest of its foreground: " + ", ".join(f"{list(s)} {c:.3f}" for s, c in self.confidence.items()))
        return f"{name}: channels {list(range(len(self.slots)))} feed the generalist's inputs {list(self.slots)}" + (
            f" ({'; '.join(why)})" if why else ""
        )


def choose_inputs(image, card: ModelCard, network: torch.nn.Module, *, device, params) -> InputChoice:
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
    flat = _flat_channels(image, card.normalization)
    varying = [c for c in range(channels) if c not in flat]
    if len(varying) < 2:  # the one that varies (or the first) takes the first input, flat ones the next
        order = varying or [0]
        inputs = dict(zip(order + [c for c in range(channels) if c not in order], range(card.in_channels)))
        return InputChoice(tuple(inputs[c] for c in range(channels)), flat)
    frames = image.ndim - 1 - card.spatial_dims
    box = centre_box(
        image.shape[1 + frames :], windows=CHOICE_WINDOWS, roi=card.patch_size, spacing=card.spacing, model_spacing=card.spacing
    )
    crop = np.asarray(image[(slice(None), *(0,) * frames, *box)])
    quick = params.model_copy(update={"flip_tta": False})
    confidence = {}
    for order in permutations(range(card.in_channels), len(varying)):
        slots = _with_flat(dict(zip(varying, order)), channels, card.in_channels)
        outputs = predict_image(
            InputSlots(network, slots, card.in_channels), normalize(crop, input_normalization(card.normalization, slots)),
            roi_size=card.patch_size, n_classes=card.n_classes, params=quick, device=device, flow_channels=card.flow_channels,
        )
        foreground = 1.0 - outputs[0]
        confidence[slots] = float(np.mean(np.abs(2.0 * foreground - 1.0)))
    stored = tuple(range(channels))
    best = max(confidence, key=lambda slots: (confidence[slots], slots == stored))
    return InputChoice(best, flat, confidence)


def _flat_channels(image, spec: NormalizationSpec) -> tuple[int, ...]:
    """The channels whose low and high percentiles (the normalization's, else 1 and 99.8) are equal."""
    low, high = (spec.low, spec.high) if spec.method == "percentile" else (1.0, 99.8)
    return tuple(c for c in range(image.shape[0]) if np.ptp(channel_percentiles(image, c, (low, high))) <= 0)


def _with_flat(slots: dict[int, int], channels: int, inputs: int) -> tuple[int, ...]:
    """``slots`` of the varying channels, with the other channels on the inputs left, in order."""
    free = iter(i for i in range(inputs) if i not in slots.values())
    return tuple(slots[c] if c in slots else next(free) for c in range(channels))
