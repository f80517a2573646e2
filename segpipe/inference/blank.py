"""Where an image holds nothing, the prediction is background, whatever the network answers there.

A pixel is blank when, in every channel, its neighbourhood (``2 * radius + 1`` pixels a side) holds
one value, at or below the channel's floor (the value the normalization maps to its bottom: the low
percentile, or the lower clip). A blank image, the zero fill around a stitched or registered image,
a channel clipped to black: nothing there can be an object, yet a network that never saw a constant
window answers one with shapes (in a blank 256 x 256 image the shipped generalist found 56 objects,
laid out on its window grid). A real image is never one value over a neighbourhood: its noise
varies, and a saturated object is flat at the top, not at the floor.

A whole frame that holds nothing but noise (:mod:`segpipe.inference.noise`: a field of camera
noise, the empty planes above and below the cells of a stack) is background too, as a whole: the
network is not run on it. So are the quiet parts of a frame that holds objects
(:func:`segpipe.inference.noise.quiet`: nothing stands out of the noise within a few pixels), where
a network finds specks in noise it has normalized up to the contrast of cells.

:class:`Blank` sets the activated outputs of blank pixels to what the network gives for
background (class 0 certain, no distance, no boundary, no flow) in
:func:`segpipe.inference.stream.stream_predict`, before the sink stores them, so the class map
and the objects made later agree; and in :func:`segpipe.inference.memory.predict_image`, so that
validation, the post-processing's tuning, a generalist's choice of inputs and the estimate of a new
image's object size see what prediction will give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from segpipe.inference import noise
from segpipe.inference.fill import bounding_box, everywhere
from segpipe.inference.normalize import Normalization, NormalizationSpec, window_normalize

#: Half the side of the neighbourhood that must be one value (7 pixels a side).
RADIUS = 3
#: A flow channel's activated value where there is no flow.
NO_FLOW = 0.5


@dataclass(frozen=True)
class Blank:
    """The rule and the answer for blank pixels.

    Attributes:
        floors: Per channel of the source, the value at or below which a flat neighbourhood is blank,
            in the source's units.
        background: Per output channel, the activated value for background.
        radius: Half the side of the neighbourhood.
    """

    floors: tuple[float, ...]
    background: tuple[float, ...]
    radius: int = RADIUS

    @classmethod
    def for_outputs(
        cls, floors: Sequence[float], *, out_channels: int, n_classes: int, flow_channels: Sequence[int] = ()
    ) -> Blank:
        """Background of a network with ``n_classes`` class channels (softmax; class 0 first), then
        extra channels through a sigmoid: distance and boundary 0, flow channels :data:`NO_FLOW`."""
        background = [0.0] * out_channels
        background[0] = 1.0
        for channel in flow_channels:
            background[channel] = NO_FLOW
        return cls(tuple(float(f) for f in floors), tuple(background))

    @classmethod
    def for_card(cls, card, floors: Sequence[float]) -> Blank:
        """:meth:`for_outputs` of the network a model card (:class:`segpipe.models.card.ModelCard`) describes."""
        return cls.for_outputs(floors, out_channels=card.out_channels, n_classes=card.n_classes, flow_channels=card.flow_channels)

    def mask(self, raw: np.ndarray, *, quiet: float = 0.0) -> np.ndarray:
        """Blank pixels of a channel-first block ``(C, *spatial)``; its edges are extended outward.
        With ``quiet`` > 0, also the pixels with nothing standing ``quiet`` noise deviations out
        near them (:func:`segpipe.inference.noise.quiet`).
        """
        blank = self._blank(raw)
        if quiet > 0:
            blank |= noise.quiet(raw, threshold=quiet)
        return blank

    def _blank(self, raw: np.ndarray) -> np.ndarray:
        """Neighbourhoods all at the floor are found first, one axis at a time (a real image has
        none, and the search ends at the first axis without one); whether they hold one value is
        then measured only around those."""
        size = 2 * self.radius + 1
        blank = np.ones(raw.shape[1:], dtype=bool)
        for channel, floor in zip(raw, self.floors):
            low = everywhere(channel <= floor, size) & blank
            if not low.any():
                return np.zeros(raw.shape[1:], dtype=bool)
            box = bounding_box(low, self.radius)
            part = channel[box]
            top = ndimage.maximum_filter(part, size=size, mode="nearest")
            blank = np.zeros_like(blank)
            blank[box] = low[box] & (ndimage.minimum_filter(part, size=size, mode="nearest") == top)
        return blank

    def apply(
        self, values: np.ndarray, source, frame: tuple[int, ...], box: tuple[slice, ...], *, quiet: noise.QuietRows | None = None
    ) -> None:
        """Set the blank pixels of ``values`` ``(C, *box)``, the activated outputs of ``box`` of ``frame``
        of ``source`` ``(C, *frames, *spatial)``, to background, in place (reads ``box`` and a margin of
        ``radius``); with ``quiet`` (a :class:`segpipe.inference.noise.QuietRows` of ``source``), the
        quiet ones too."""
        shape = source.shape[source.ndim - len(box):]
        wide = tuple(slice(max(0, b.start - self.radius), min(n, b.stop + self.radius)) for b, n in zip(box, shape))
        raw = np.asarray(source[(slice(None), *frame, *wide)])
        inner = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide))
        blank = self._blank(raw)[inner]
        if quiet is not None:
            blank |= quiet(frame, box)
        self._set(values, blank)

    def clear(self, values: np.ndarray, image: np.ndarray, *, quiet: float = 0.0) -> None:
        """Set the blank pixels of ``values`` ``(C, *spatial)``, the activated outputs for the whole
        channel-first ``image`` (in the units of :attr:`floors`), to background, in place, and with
        ``quiet`` > 0 the quiet ones too (:meth:`mask`)."""
        self._set(values, self.mask(image, quiet=quiet))

    @staticmethod
    def only_noise(block: np.ndarray, threshold: float) -> bool:
        """Whether the channel-first ``block`` ``(C, *spatial)``, a whole frame, holds only noise:
        nothing in it stands ``threshold`` noise deviations out (:func:`segpipe.inference.noise.noise_only`;
        0: never)."""
        return threshold > 0 and noise.noise_only(block, threshold=threshold)

    @staticmethod
    def frame_only_noise(source, frame: tuple[int, ...], ndim: int, threshold: float) -> bool:
        """:meth:`only_noise` of frame ``frame`` of ``source`` ``(C, *frames, *spatial)``, judged on
        every k-th pixel of its planes (:func:`segpipe.inference.noise.frame_noise_only`)."""
        return threshold > 0 and noise.frame_noise_only(source, frame, ndim, threshold=threshold)

    def filled(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """Background outputs ``(C, *shape)``."""
        values = np.empty((len(self.background), *shape), dtype=dtype)
        values[...] = np.asarray(self.background, dtype=dtype).reshape(-1, *(1,) * len(shape))
        return values

    def _set(self, values: np.ndarray, blank: np.ndarray) -> None:
        if blank.any():
            values[:, blank] = np.asarray(self.background, dtype=values.dtype)[:, None]


def floors(normalization: Normalization, *, normalized: bool = False) -> tuple[float, ...]:
    """Per channel, the value the normalization maps to its bottom: the lower clip where it clips
    (z-scoring, CT windows), else the subtracted low percentile; with ``normalized``, that value
    after the normalization (for a source normalized already, as a resampled image is)."""
    raw = normalization.clip_low if normalization.clip_low is not None else normalization.shift
    if not normalized:
        return tuple(float(v) for v in raw)
    return tuple(float(v) for v in normalization.apply(np.asarray(raw, dtype=np.float64).reshape(-1, 1))[:, 0])


def normalized_floors(image: np.ndarray, spec: NormalizationSpec) -> tuple[float, ...]:
    """Per channel, the floor of ``image``, normalized in memory as ``spec`` says (by
    :func:`segpipe.inference.normalize.normalize`, which keeps no :class:`Normalization`): 0 for
    percentiles (the low one is subtracted), the window's bottom for CT, and after z-scoring the
    channel's least value, which is its lower clip (the low percentile of the channel's own values)."""
    if spec.method == "percentile":
        return (0.0,) * len(image)
    if spec.method == "ct":
        bottom = window_normalize(np.asarray([spec.window[0]], np.float32), window=spec.window, mean=spec.mean, std=spec.std)
        return (float(bottom[0]),) * len(image)
    return tuple(float(channel.min()) for channel in image)
