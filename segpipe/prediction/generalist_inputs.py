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
        confidence: The network's mean certainty ``|2p - 1|`` of the crop's foreground per order
            tried (``slots`` of the varying channels), empty when nothing was tried.
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


def choose_inputs(
    image: np.ndarray | object, card: ModelCard, network: torch.nn.Module, *, device, params
) -> InputChoice:
    """The inputs of a generalist the channels of ``image`` (channel-first, zarr or numpy) feed.

    Args:
        image: The stored image, ``(C, *frames, *spatial)``; ``C`` at most ``card.in_channels``. The
            orders are tried on its first frame.
        card: The generalist's card (normalization, patch, inputs, classes).
        network: Its network, in eval mode.
        device: Where the network runs.
        params: The sliding-window settings (flips are turned off here).
    """
    channels = image.shape[0]
    spec = card.normalization
    low, high = (spec.low, spec.high) if spec.method == "percentile" else (1.0, 99.8)
    flat = tuple(c for c in range(channels) if np.ptp(channel_percentiles(image, c, (low, high))) <= 0)
    varying = [c for c in range(channels) if c not in flat]
    spare = iter(range(card.in_channels))
    if len(varying) < 2:  # the one that varies (or the first) takes the first input; flat ones the rest
        order = varying or [0]
        rest = [c for c in range(channels) if c not in order]
        inputs = dict(zip(order + rest, spare))
        return InputChoice(tuple(inputs[c] for c in range(channels)), flat)
    frames = image.ndim - 1 - card.spatial_dims
    shape = image.shape[1 + frames :]
    box = centre_box(shape, windows=CHOICE_WINDOWS, roi=card.patch_size, spacing=card.spacing, model_spacing=card.spacing)
    crop = np.asarray(image[(slice(None), *(0,) * frames, *box)])
    quick = params.model_copy(update={"flip_tta": False})
    confidence = {}
    for order in permutations(range(card.in_channels), len(varying)):
        slots = dict(zip(varying, order))
        free = iter(i for i in range(card.in_channels) if i not in order)
        full = tuple(slots[c] if c in slots else next(free) for c in range(channels))
        outputs = predict_image(
            InputSlots(network, full, card.in_channels), normalize(crop, input_normalization(spec, full)), roi_size=card.patch_size, n_classes=card.n_classes,
            params=quick, device=device, flow_channels=card.flow_channels,
        )
        foreground = 1.0 - outputs[0]
        confidence[full] = float(np.mean(np.abs(2.0 * foreground - 1.0)))
    stored = tuple(range(channels))
    best = max(confidence, key=lambda slots: (confidence[slots], slots == stored))
    return InputChoice(best, flat, confidence)
