"""Which input of a generalist each channel of a new image feeds, chosen without labels.

The shipped generalist ``cells-2d`` reads cytoplasm or membrane on its first input and nuclei
on its second, and learnt cells and nuclei alone with the second input blank. New images come
with one channel, with a blank channel (the Cellpose dataset pads one-channel images so), or
with two in either order. Training chooses the order with the labels
(:mod:`segpipe.training.channel_order`); a new image has none, so for each image:

- a flat channel (its low and high percentiles equal: nothing in it, or a few stray pixels)
  feeds no input;
- a single channel left feeds the first input;
- two or more are ranked by how much of the centre of the image's content (what is not fill,
  :func:`~segpipe.inference.fill.content_box`; at most ``CHOICE_WINDOWS`` windows a side) their
  foreground covers, holes filled (:func:`foreground_cover`): the widest feeds the first input,
  the next the second; a tie keeps the stored order. Cells hold their nuclei, so the cytoplasm
  or membrane stain covers more. The network is not asked: a generalist that also learnt nuclei
  alone can be as sure of a nuclear channel on its first input as of the cytoplasm there.

Inputs no channel feeds get zeros (:class:`InputSlots`): what a blank channel normalizes to.
Each channel is normalized with the intensity floor of the input it feeds (:func:`input_normalization`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

from segpipe.inference.fill import content_box
from segpipe.inference.normalize import (
    NormalizationSpec,
    channel_percentiles,
)
from segpipe.inference.windows import centre_box
from segpipe.models.card import ModelCard

#: The crop the channels are compared on, in windows a side.
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
        coverage: The share of the crop each varying channel's foreground covers, holes filled
            (:func:`foreground_cover`), by channel; None when fewer than two channels vary.
    """

    slots: Slots
    flat: tuple[int, ...] = ()
    coverage: dict[int, float] | None = None

    def describe(self, name: str) -> str:
        """One log line: which channel feeds which input, and why."""
        why = []
        if self.flat:
            why.append(f"channel(s) {list(self.flat)} flat, fed to no input")
        if self.coverage:
            why.append("foreground covers " + ", ".join(f"{c:.3f} of channel {j}" for j, c in self.coverage.items()))
        return f"{name}: channels {list(range(len(self.slots)))} feed the generalist's inputs {list(self.slots)}" + (
            f" ({'; '.join(why)})" if why else ""
        )


def choose_inputs(image, card: ModelCard) -> InputChoice:
    """The inputs of a generalist the channels of ``image`` feed.

    Args:
        image: The stored image, channel-first (zarr or numpy), ``(C, *frames, *spatial)``; ``C`` at
            most ``card.in_channels``. Channels are compared on its first frame.
        card: The generalist's card (normalization, patch, inputs).
    """
    channels = image.shape[0]
    bounds = _channel_bounds(image, card.normalization)
    flat = _flat(bounds)
    varying = [c for c in range(channels) if c not in flat]
    if len(varying) < 2:  # the one that varies (or, with none, the first) takes the first input
        keep = varying or [0]
        return InputChoice(tuple(0 if c in keep else None for c in range(channels)), flat)
    frames = image.ndim - 1 - card.spatial_dims
    box = centre_box(
        image.shape[1 + frames :], windows=CHOICE_WINDOWS, roi=card.patch_size, spacing=card.spacing, model_spacing=card.spacing,
        within=content_box(image, spatial_dims=card.spatial_dims, frame=(0,) * frames),
    )
    coverage = {}
    for c in varying:
        low, high = bounds[c]
        crop = np.asarray(image[(c, *(0,) * frames, *box)], dtype=np.float32)
        coverage[c] = foreground_cover(np.clip((crop - low) / (high - low), 0.0, 1.0))
    ranked = sorted(varying, key=lambda c: (-coverage[c], c))  # a tie keeps the stored order
    inputs = dict(zip(ranked, range(card.in_channels)))
    return InputChoice(tuple(inputs.get(c) for c in range(channels)), flat, coverage)


def foreground_cover(channel: np.ndarray) -> float:
    """The share of ``channel`` above its Otsu threshold once the holes of that foreground are filled.

    Cells hold their nuclei, so a cytoplasm stain covers more of a field than a nuclear one; a
    membrane stain's outlines cover little until the cells they enclose are filled."""
    if np.ptp(channel) <= 0:
        return 0.0
    return float(ndimage.binary_fill_holes(channel > threshold_otsu(channel)).mean())


def flat_channels(image, spec: NormalizationSpec) -> tuple[int, ...]:
    """The channels of ``image`` (channel-first) with nothing in them: their low and high
    percentiles equal (:func:`_channel_bounds`), whatever a few stray pixels hold."""
    return _flat(_channel_bounds(image, spec))


def _flat(bounds: list[list[float]]) -> tuple[int, ...]:
    """The channels whose two percentiles (``bounds``, by channel) are equal."""
    return tuple(c for c, pair in enumerate(bounds) if np.ptp(pair) <= 0)


def _channel_bounds(image, spec: NormalizationSpec) -> list[list[float]]:
    """Each channel's low and high percentiles: the normalization's, else 1 and 99.8. A channel whose
    two are equal is flat; the others are scaled between them to compare their foregrounds."""
    low, high = (spec.low, spec.high) if spec.method == "percentile" else (1.0, 99.8)
    return [channel_percentiles(image, c, (low, high), skip_fill=spec.skip_fill) for c in range(image.shape[0])]


