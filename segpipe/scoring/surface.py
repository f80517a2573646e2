"""Surface distances of class maps in physical units: 95th-percentile Hausdorff and ASD.

Both come from MONAI (:func:`monai.metrics.utils.get_edge_surface_distance`, the routine behind
``compute_hausdorff_distance`` and ``compute_average_surface_distance``), computed once per
class and reduced the way those two functions reduce it:

* the surface of a mask is its voxels that a 3x3(x3) cross erosion removes;
* every surface voxel of one mask gets the Euclidean distance, in the units of ``spacing``, to
  the nearest surface voxel of the other; both directions are kept;
* HD95 is the larger of the two directions' 95th percentiles (linear interpolation);
* ASD (average symmetric surface distance) is the mean of both directions' distances pooled.

A class missing from either map has no defined distance: NaN here (MONAI would return inf
and warn), so dataset means can leave it out and say how many images were counted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segpipe.scoring.overlap import check_label_pair


@dataclass(frozen=True)
class SurfaceResult:
    """Per-class surface distances of one image; one entry per class, background (0) is NaN.

    Attributes:
        hd95: 95th-percentile symmetric Hausdorff distance, in the units of the spacing.
        asd: Average symmetric surface distance, same units.
    """

    hd95: list[float]
    asd: list[float]


def surface_distances(
    gt: np.ndarray, pred: np.ndarray, *, n_classes: int, spacing: Sequence[float] | None = None, percentile: float = 95
) -> SurfaceResult:
    """HD95 and ASD of every foreground class of two class maps (2D or 3D).

    Args:
        gt: Ground-truth class map, integers in ``[0, n_classes)``.
        pred: Predicted class map, same shape.
        n_classes: Number of classes including background; class 0 is not scored.
        spacing: Pixel or voxel size per axis, in array order (default 1 per axis).
        percentile: Which percentile of the distances the Hausdorff distance takes.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: Shapes differ, a bad class value, or ``spacing`` of the wrong length.
    """
    gt, pred = check_label_pair(gt, pred)
    if spacing is None:
        spacing = [1.0] * gt.ndim
    spacing = [float(s) for s in spacing]
    if len(spacing) != gt.ndim or any(not s > 0 for s in spacing):
        raise ValueError(f"spacing {spacing} does not fit an image of {gt.ndim} axes (positive values, one per axis)")
    import torch  # imported here: the other scores need neither torch nor MONAI
    from monai.metrics.utils import get_edge_surface_distance

    hd95, asd = [math.nan] * n_classes, [math.nan] * n_classes
    for c in range(1, n_classes):
        gt_c, pred_c = gt == c, pred == c
        if not (gt_c.any() and pred_c.any()):
            continue
        with warnings.catch_warnings():
            # MONAI 1.5+ calls its own deprecated get_mask_edges argument internally.
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
            _, (to_gt, to_pred), _ = get_edge_surface_distance(
                torch.from_numpy(pred_c), torch.from_numpy(gt_c), spacing=spacing, symmetric=True, class_index=c
            )
        q = percentile / 100
        hd95[c] = float(torch.max(torch.quantile(to_gt, q), torch.quantile(to_pred, q)))
        asd[c] = float(torch.cat([to_gt, to_pred]).mean())
    return SurfaceResult(hd95=hd95, asd=asd)
