"""Classical baselines to score next to the trained model (scikit-image and SciPy only).

What a lab would try first without deep learning. Instance datasets, :func:`otsu_watershed`:

1. smooth the first channel with a Gaussian (``sigma`` pixels);
2. threshold at Otsu's level (objects brighter than background, as in fluorescence);
3. fill holes and drop specks smaller than ``min_size`` pixels;
4. split touching objects: the distance transform of the mask (in physical units when a
   spacing is given), its h-maxima as markers, and a watershed of the inverted distance
   restricted to the mask.

Semantic datasets, :func:`otsu_classes`: multi-Otsu thresholds cut the smoothed intensities
into as many bands as there are classes, darkest band = class 0 (true of fluorescence
foreground, and of background, grey and white matter in T1 MRI; a dataset whose classes are
not ordered by brightness gets a poor baseline, which the report then shows).

Neither learns anything from the data, so each is a floor the model should clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_multiotsu, threshold_otsu
from skimage.measure import label
from skimage.morphology import h_maxima, remove_small_objects
from skimage.segmentation import watershed

DESCRIPTION = "Otsu threshold + distance-transform watershed (scikit-image)"
SEMANTIC_DESCRIPTION = "multi-Otsu intensity thresholds, one band per class, darkest = class 0 (scikit-image)"


@dataclass(frozen=True)
class BaselineParams:
    """Settings of the baseline (fixed, not tuned per dataset).

    Attributes:
        sigma: Gaussian smoothing before thresholding, in pixels.
        min_size: Objects smaller than this many pixels (voxels) are dropped.
        h: Height of the distance maxima that seed separate objects, in pixels.
    """

    sigma: float = 1.0
    min_size: int = 15
    h: float = 1.0


def otsu_watershed(
    image: np.ndarray, *, ndim: int, spacing: Sequence[float] | None = None, params: BaselineParams | None = None
) -> np.ndarray:
    """Instance labels of one image by Otsu thresholding and a distance-transform watershed.

    Args:
        image: ``(C, [Z,] Y, X)`` or ``([Z,] Y, X)``; the first channel is used.
        ndim: Spatial dimensions (2 or 3).
        spacing: Pixel size per spatial axis; the distance transform uses it (anisotropic 3D).
        params: Smoothing, size and marker settings.

    Returns:
        ``int32`` labels, 0 background, objects ``1..n``.
    """
    params = params or BaselineParams()
    smooth, sampling = _smoothed(image, ndim=ndim, spacing=spacing, sigma=params.sigma)
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(smooth.shape, np.int32)
    mask = smooth > threshold_otsu(smooth)
    mask = ndi.binary_fill_holes(mask)
    mask = remove_small_objects(mask, max_size=params.min_size - 1)
    distance = ndi.distance_transform_edt(mask, sampling=sampling / sampling.min())
    markers = label(h_maxima(distance, params.h))
    return watershed(-distance, markers, mask=mask).astype(np.int32)


def otsu_classes(
    image: np.ndarray, *, n_classes: int, ndim: int, spacing: Sequence[float] | None = None, sigma: float = 1.0
) -> np.ndarray:
    """Class map of one image from multi-Otsu intensity bands (darkest band = class 0).

    Args:
        image: ``(C, [Z,] Y, X)`` or ``([Z,] Y, X)``; the first channel is used.
        n_classes: Number of classes (bands), at least 2.
        ndim: Spatial dimensions.
        spacing: Pixel size per axis (the smoothing is isotropic in physical units).
        sigma: Gaussian smoothing, in pixels along the finest axis.

    Returns:
        ``uint8`` class map.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    smooth, _ = _smoothed(image, ndim=ndim, spacing=spacing, sigma=sigma)
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(smooth.shape, np.uint8)
    try:
        thresholds = [threshold_otsu(smooth)] if n_classes == 2 else threshold_multiotsu(smooth, classes=n_classes)
    except ValueError:  # fewer grey levels than classes: nothing to separate
        return np.zeros(smooth.shape, np.uint8)
    return np.digitize(smooth, thresholds).astype(np.uint8)


def _smoothed(image: np.ndarray, *, ndim: int, spacing, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(image, np.float32)
    if array.ndim == ndim + 1:
        array = array[0]
    if array.ndim != ndim:
        raise ValueError(f"expected a {ndim}D image (optionally with channels first), got shape {np.shape(image)}")
    sampling = np.ones(ndim) if spacing is None else np.asarray(spacing, np.float64)
    return gaussian(array, sigma=sigma * sampling.min() / sampling, preserve_range=True), sampling
