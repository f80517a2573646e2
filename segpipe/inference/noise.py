"""Whether an image holds anything but noise.

A network normalizes its input's contrast away (the U-Nets here normalize every convolution's
output per image), so a field of pure noise reaches it with the contrast of a real image, and a
network trained on cells finds cells in it: the shipped generalist drew objects all over a
field of camera noise. Such a field is recognised from the image alone:

1. the noise's standard deviation, from the differences of horizontal neighbours (robust
   estimates, which the edges of objects barely move; :func:`noise_sigma`);
2. the image clipped to its median plus or minus six of those deviations (a hot pixel or a
   cosmic ray is then too small to count; an object of many pixels still does);
3. at scales of 2, 4 and 8 pixels, a centre-surround filter (the image smoothed at the scale less
   the image smoothed at four times it): a blob of that size stands out, an even background, a
   gradient of illumination across the field, does not;
4. the largest absolute response over the standard deviation the same filter gives white noise
   of that deviation (known exactly): its **structure**.

Measured here (``benchmarks/RESULTS.md``, "Frames of only noise"): white, Poisson and 8-bit noise
fields of 64 to 1,024 pixels a side reach at most 8.1; one disc of 10 pixels' radius only one
noise deviation above the background 15.2; every real image of the bundled sets at least 60.
A frame is noise only when every plane of every channel scores under :data:`THRESHOLD`.

The same measure, pixel by pixel (:func:`structure_map`), finds the **quiet** parts of an image
that does hold objects: pixels with nothing standing :data:`THRESHOLD` deviations out within
:data:`QUIET_RADIUS` pixels in any channel (:func:`quiet`), the empty half of a field, the noise
between sparse cells. A network normalizing each window as a whole blows their noise up as it
does a frame's. Measured on every annotated cell of the bundled sets and the seven whole-cell
styles (5,460 cells): none has a pixel there (``benchmarks/RESULTS.md``, "Quiet parts of an image").

Values are clipped to the median plus or minus six deviations, or to the 0.05th and 99.95th
percentiles where those lie further out: a hot pixel is clipped, a population of cells darker or
brighter than six deviations (an 8-bit image of smooth cells, whose noise reads 1 count) is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from scipy import ndimage

#: The mean of the smallest 90% of a normal variable's absolute values, over its standard deviation:
#: sqrt(2 / pi) (1 - exp(-q^2 / 2)) / 0.9, q = 1.645 its 90th percentile.
TRIMMED_MEAN = math.sqrt(2 / math.pi) * (1 - math.exp(-(1.6448536**2) / 2)) / 0.9
#: Scales of the centre-surround filter, in pixels (Gaussian standard deviations).
SCALES = (2, 4, 8)
#: The surround's scale over the centre's.
SURROUND = 4
#: Values further than this many noise deviations from the median are clipped to it.
CLIP = 6.0
#: Structure under which a plane holds only noise.
THRESHOLD = 10.0
#: A plane is measured on at most this many pixels (every k-th row and column), a volume on at most :data:`SAMPLE_VOXELS`.
SAMPLE_PIXELS = 1 << 20
SAMPLE_VOXELS = 1 << 24
#: A plane under this many pixels along an axis is too small to judge (it counts as structure).
SMALLEST = 32
#: Pixels with no structure within this many pixels (in every axis) are quiet.
QUIET_RADIUS = 8
#: Percentiles beyond which values are clipped even where they lie within :data:`CLIP` deviations.
CLIP_PERCENTILES = (0.05, 99.95)
#: Pixels :func:`structure_map` needs around a region to give its values there exactly (the widest
#: Gaussian's reach: scipy truncates at four deviations), within a plane.
REACH = 4 * SURROUND * max(SCALES)
#: Pixels of a frame whose quiet parts :class:`QuietRows` finds at once (a larger frame: block by
#: block of rows, each at least four margins tall); the filters hold about six float copies of a block.
QUIET_BLOCK = 1 << 22


def noise_sigma(plane: np.ndarray) -> float:
    """The noise's standard deviation in a 2D ``plane`` (float), from its horizontal neighbours'
    differences ``d``, by two estimates that the edges of objects barely move, the larger kept:
    the median absolute deviation of ``d`` (its standard deviation where most neighbours are
    equal: a few photons a pixel, or no noise at all), and the mean of the smallest 90% of ``|d|``
    (which, unlike a median, does not stick to a step of integer counts: Poisson noise of 2 counts
    reads 1.05 by the median, 1.35 by the mean, 1.41 truly)."""
    steps = np.diff(plane, axis=-1).ravel()
    spread = float(np.median(np.abs(steps - np.median(steps))))
    by_median = 1.4826 * spread if spread > 0 else float(np.std(steps))
    kept = int(0.9 * steps.size)
    by_mean = float(np.partition(np.abs(steps), kept)[:kept].mean()) / TRIMMED_MEAN if kept else 0.0
    return max(by_median, by_mean) / math.sqrt(2.0)


def white_response(scale: float) -> float:
    """Standard deviation of the centre-surround filter's output on 2D white noise of deviation 1:
    Gaussians of ``scale`` and ``SURROUND * scale`` (sums of products of the kernels, in closed form)."""
    s2, b2 = scale**2, (SURROUND * scale) ** 2
    return math.sqrt(1 / (4 * math.pi * s2) + 1 / (4 * math.pi * b2) - 1 / (math.pi * (s2 + b2)))


def clipped(plane: np.ndarray, sigma: float) -> np.ndarray:
    """``plane`` (float32) clipped to its median plus or minus :data:`CLIP` ``sigma``, widened to
    the :data:`CLIP_PERCENTILES` where those lie further out."""
    low, middle, high = np.percentile(plane, (CLIP_PERCENTILES[0], 50, CLIP_PERCENTILES[1]))
    return np.clip(plane, min(middle - CLIP * sigma, low), max(middle + CLIP * sigma, high))


def responses(plane: np.ndarray, sigma: float) -> Iterator[np.ndarray]:
    """The centre-surround filter's absolute response at each scale that fits ``plane`` (finest
    first), over what white noise of deviation ``sigma`` gives."""
    plane = clipped(plane, sigma)
    smoothed: dict[float, np.ndarray] = {}  # a surround that is another scale's centre is smoothed once

    def at(width: float) -> np.ndarray:
        if width not in smoothed:
            smoothed[width] = ndimage.gaussian_filter(plane, width, mode="reflect")
        return smoothed[width]

    for scale in SCALES:
        if 2 * SURROUND * scale > min(plane.shape):
            return
        response = np.abs(at(scale) - at(SURROUND * scale))
        response /= sigma * white_response(scale)
        smoothed.pop(scale)
        yield response


def structure(plane: np.ndarray, *, enough: float = math.inf) -> float:
    """How far the strongest blob of a 2D ``plane`` stands above its noise, in the deviations white
    noise would give (0 for a flat plane; infinite where the plane varies but its noise measures 0).
    The scales are tried from the finest, and the first answer of at least ``enough`` is returned."""
    plane = np.asarray(plane, dtype=np.float32)
    sigma, known = _measurable(plane)
    if known is not None:
        return known
    best = 0.0
    for response in responses(plane, sigma):
        best = max(best, float(response.max()))
        if best >= enough:
            break
    return best


def _measurable(plane: np.ndarray) -> tuple[float, float | None]:
    """The noise deviation of a float ``plane``, and its structure where that needs no filter:
    infinite for a plane too small to judge or varying without noise, 0 for a flat one."""
    if min(plane.shape) < SMALLEST:
        return 0.0, math.inf
    sigma = noise_sigma(plane)
    if sigma == 0:
        return 0.0, 0.0 if plane.min() == plane.max() else math.inf
    return sigma, None


def structure_map(plane: np.ndarray) -> np.ndarray:
    """:func:`structure` pixel by pixel: the strongest response over the scales at each pixel of a
    2D ``plane`` (float32; infinite everywhere for a plane too small to judge or varying without
    noise, 0 for a flat one)."""
    plane = np.asarray(plane, dtype=np.float32)
    sigma, known = _measurable(plane)
    if known is not None:
        return np.full(plane.shape, known, np.float32)
    best = np.zeros(plane.shape, np.float32)
    for response in responses(plane, sigma):
        np.maximum(best, response, out=best)
    return best


def quiet(block: np.ndarray, *, threshold: float = THRESHOLD, radius: int = QUIET_RADIUS) -> np.ndarray:
    """Pixels of a channel-first ``block`` ``(C, *spatial)`` with nothing in any channel standing
    ``threshold`` noise deviations out (:func:`structure_map`, plane by plane) within ``radius``
    pixels along every axis: a boolean array of ``block``'s spatial shape."""
    spatial = block.shape[1:]
    loud = np.zeros(spatial, dtype=bool)
    loud_planes = loud.reshape(-1, *spatial[-2:])  # a view: planes of a stack, or the one plane
    for channel in block:
        for index, plane in enumerate(channel.reshape(-1, *spatial[-2:])):
            loud_planes[index] |= structure_map(plane) >= threshold
    if loud.all() or not loud.any():
        return ~loud
    return ndimage.maximum_filter(loud.view(np.uint8), size=2 * radius + 1, mode="nearest") == 0


def planes(block: np.ndarray) -> Iterator[np.ndarray]:
    """The 2D planes of a channel-first ``block`` ``(C, *spatial)``: each channel's, in 3D the middle plane first, then outward."""
    for channel in block:
        if channel.ndim == 2:
            yield channel
            continue
        depth = channel.shape[0]
        middle = depth // 2
        for index in sorted(range(depth), key=lambda z: abs(z - middle)):
            yield channel[index]


def noise_only(block: np.ndarray, *, threshold: float = THRESHOLD) -> bool:
    """Whether every plane of every channel of ``block`` ``(C, *spatial)`` scores under ``threshold``."""
    return all(structure(plane, enough=threshold) < threshold for plane in planes(block))


def read_sample(source, frame: tuple[int, ...], ndim: int) -> np.ndarray:
    """Frame ``frame`` of ``source`` ``(C, *frames, *spatial)``, every k-th pixel along the last two
    axes, so that a plane has at most :data:`SAMPLE_PIXELS` and the frame at most :data:`SAMPLE_VOXELS`."""
    spatial = tuple(int(n) for n in source.shape[source.ndim - ndim :])
    plane = math.prod(spatial[-2:])
    stride = max(math.ceil(math.sqrt(plane / SAMPLE_PIXELS)), math.ceil(math.sqrt(math.prod(spatial) / SAMPLE_VOXELS)), 1)
    steps = (slice(None),) * (ndim - 2) + (slice(None, None, stride),) * 2
    return np.asarray(source[(slice(None), *frame, *steps)])


def frame_noise_only(source, frame: tuple[int, ...], ndim: int, *, threshold: float = THRESHOLD) -> bool:
    """:func:`noise_only` of frame ``frame`` of ``source`` ``(C, *frames, *spatial)``, on the sample
    :func:`read_sample` reads; a volume's middle plane is read first, and where it holds more than
    noise (as a real volume's does) nothing more is read."""
    if ndim == 3 and not noise_only(read_sample(source, (*frame, int(source.shape[-3]) // 2), 2), threshold=threshold):
        return False
    return noise_only(read_sample(source, frame, ndim), threshold=threshold)


class QuietRows:
    """The quiet pixels (:func:`quiet`) of the frames of ``source`` ``(C, *frames, *spatial)``, for
    the boxes a stream writes down its rows: found a block of rows at a time (about
    :data:`QUIET_BLOCK` pixels, read with the margin the filters need, so the blocks give what the
    whole frame would, but for pixels at the threshold: each block estimates the noise from its own)
    and kept until a box beyond the block is asked for."""

    def __init__(self, source, ndim: int, *, threshold: float = THRESHOLD):
        self.source, self.ndim, self.threshold = source, ndim, threshold
        self._frame: tuple[int, ...] | None = None
        self._rows = (0, 0)
        self._mask = np.zeros((0,), dtype=bool)

    def __call__(self, frame: tuple[int, ...], box: tuple[slice, ...]) -> np.ndarray:
        """The quiet pixels of ``box`` of ``frame``: a boolean array of the box's shape."""
        first, last = box[0].start, box[0].stop
        if frame != self._frame or not (self._rows[0] <= first and last <= self._rows[1]):
            self._find(frame, first, last)
        return self._mask[(slice(first - self._rows[0], last - self._rows[0]), *box[1:])]

    def _find(self, frame: tuple[int, ...], first: int, last: int) -> None:
        shape = tuple(int(n) for n in self.source.shape[self.source.ndim - self.ndim :])
        margin = REACH + QUIET_RADIUS if self.ndim == 2 else QUIET_RADIUS  # a stack's planes are filtered one by one
        stop = min(shape[0], max(last, first + max(4 * margin, QUIET_BLOCK // math.prod(shape[1:]))))
        low, high = max(0, first - margin), min(shape[0], stop + margin)
        block = np.asarray(self.source[(slice(None), *frame, slice(low, high))], dtype=np.float32)
        self._mask = quiet(block, threshold=self.threshold)[first - low : stop - low]
        self._frame, self._rows = frame, (first, stop)
