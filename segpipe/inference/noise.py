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


def structure(plane: np.ndarray, *, enough: float = math.inf) -> float:
    """How far the strongest blob of a 2D ``plane`` stands above its noise, in the deviations white
    noise would give (0 for a flat plane; infinite where the plane varies but its noise measures 0).
    The scales are tried from the finest, and the first answer of at least ``enough`` is returned."""
    plane = np.asarray(plane, dtype=np.float32)
    if min(plane.shape) < SMALLEST:
        return math.inf
    sigma = noise_sigma(plane)
    if sigma == 0:
        return 0.0 if plane.min() == plane.max() else math.inf
    middle = float(np.median(plane))
    clipped = np.clip(plane, middle - CLIP * sigma, middle + CLIP * sigma)
    best = 0.0
    for scale in SCALES:
        if 2 * SURROUND * scale > min(plane.shape):
            break
        centre = ndimage.gaussian_filter(clipped, scale, mode="reflect")
        surround = ndimage.gaussian_filter(clipped, SURROUND * scale, mode="reflect")
        best = max(best, float(np.abs(centre - surround).max()) / (sigma * white_response(scale)))
        if best >= enough:
            break
    return best


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
