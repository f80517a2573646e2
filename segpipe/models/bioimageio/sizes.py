"""The input sizes a package accepts and the output halo consumers crop when they tile."""

from __future__ import annotations

import math
from collections.abc import Sequence

from segpipe.models.card import ModelCard
from segpipe.models.unet import LEVELS, axis_divisors

#: Spatial sizes a package accepts are ``min + n * STEP`` (four poolings; the FCN pads itself);
#: an axis a U-Net pools fewer times (``pools`` on the card) steps by the product of its pools.
STEP = 2**LEVELS  # 16
#: Output border consumers crop when they tile (pixels per side), per 2D/3D.
HALO = {2: 16, 3: 8}


def min_size(card: ModelCard, axis: int) -> int:
    """The smallest input along spatial ``axis`` a package accepts.

    Room for the halo and for the U-Net's four poolings (32: 2 pixels at its bottom in 3D); an
    axis pooled fewer times (a stack of a few slices) takes one step; for the FCN, which pads to
    a multiple of 32, 48 so that its stride-32 maps have more than one voxel (group normalization
    of one channel per group fails on a single voxel).
    """
    if card.network == "fcn":
        return 48
    if step(card, axis) < STEP:
        return step(card, axis)
    return {2: 48, 3: 32}[card.spatial_dims]


def step(card: ModelCard, axis: int) -> int:
    """The step of the input sizes along spatial ``axis``: the product of the U-Net's pools there."""
    if card.network != "unet":
        return STEP
    return axis_divisors(card.network_options.get("pools"), card.spatial_dims)[axis]


def halo(card: ModelCard, axis: int) -> int:
    """Output pixels to crop off each side along ``axis`` when tiling; none on a thin axis (one window spans it)."""
    return HALO[card.spatial_dims] if step(card, axis) >= STEP else 0


def grid_size(size: int, card: ModelCard, axis: int, *, up: bool = True) -> int:
    """The input size ``min_size + n * step`` along ``axis`` nearest ``size`` (the next up, or the next down)."""
    low = min_size(card, axis)
    n = (max(size, low) - low) / step(card, axis)
    return low + step(card, axis) * (math.ceil(n) if up else math.floor(n))


def input_sizes_text(card: ModelCard, axes: Sequence[str]) -> str:
    """The input sizes and output halo, per axis where the axes differ, for the package's documentation."""
    mins, steps, halos = ([f(card, a) for a in range(card.spatial_dims)] for f in (min_size, step, halo))
    if len(set(zip(mins, steps, halos))) == 1:
        return (
            f"Spatial sizes {mins[0]} + n x {steps[0]} pixels per axis; crop {halos[0]} pixels off each side "
            "of the output when tiling."
        )
    each = "; ".join(f"{a}: {m} + n x {st}, crop {h}" for a, m, st, h in zip(axes, mins, steps, halos))
    return f"Spatial sizes per axis ({each} pixels off each side of the output when tiling)."
