"""The U-Net of Ronneberger et al. (2015), as MONAI's ``BasicUNet``, with per-axis pooling.

Each level of the contracting path is two 3x3 convolutions then a 2x2 max pool, doubling the
channels; the expansive path upsamples with 2x2 transposed convolutions, concatenates the skip
connection and applies two 3x3 convolutions; a 1x1 convolution gives the class scores.

``pools`` gives each of the four levels its own pooling factor per axis (1 or 2), as nnU-Net
plans them: a stack of 5 slices is pooled along z twice, not four times over 11 slices of
padding. The transposed convolutions of the expansive path mirror the pools.

Each convolution is followed by a normalization layer: instance normalization (each sample's
maps on their own, MONAI's default) or batch normalization (over the batch in training, the
statistics learnt in training when predicting, as Cellpose's network), ``norm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from monai.networks.layers import Conv, Pool
from monai.networks.nets import BasicUNet

from segpipe.models.registry import register_model

#: Poolings of the contracting path.
LEVELS = 4
#: The normalization layers ``norm`` names, as MONAI's ``norm`` argument.
NORMS = {"instance": ("instance", {"affine": True}), "batch": ("batch", {})}


def norm_of(options: dict) -> str:
    """The normalization layers a card's ``network_options`` give a U-Net: ``instance`` where they
    name none (every card before the option)."""
    return options.get("norm", "instance")


@register_model("unet")
def unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: tuple[int, ...] = (16, 32, 64, 128, 256, 16),
    pools: Sequence[Sequence[int]] | None = None,
    norm: Literal["instance", "batch"] = "instance",
) -> BasicUNet:
    """U-Net with five levels; ``features`` are the five encoder widths plus the last decoder width.

    ``pools``: per level, the pooling factor (1 or 2) of each spatial axis; None pools every axis
    by 2 at every level (then inputs are multiples of 16). ``norm``: ``instance`` or ``batch``
    normalization after each convolution.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    net = BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(features),
        upsample="deconv",
        norm=NORMS[norm],
    )
    if pools is not None:
        set_pools(net, check_pools(pools, spatial_dims))
    return net


def check_pools(pools: Sequence[Sequence[int]], spatial_dims: int) -> tuple[tuple[int, ...], ...]:
    """``pools`` as tuples, or a ValueError saying what is wrong with them."""
    pools = tuple(tuple(int(f) for f in level) for level in pools)
    if len(pools) != LEVELS or any(len(level) != spatial_dims for level in pools):
        raise ValueError(f"pools must give {LEVELS} levels of {spatial_dims} factors, got {[list(p) for p in pools]}")
    if any(f not in (1, 2) for level in pools for f in level):
        raise ValueError(f"pooling factors must be 1 or 2, got {[list(p) for p in pools]}")
    return pools


def set_pools(net: BasicUNet, pools: Sequence[Sequence[int]]) -> None:
    """Give level ``i`` of ``net`` the pooling factors ``pools[i]``, and its upsampling the same."""
    dims = len(pools[0])
    for i, factors in enumerate(pools, start=1):
        getattr(net, f"down_{i}").max_pooling = Pool["MAX", dims](kernel_size=factors, stride=factors)
        up = getattr(net, f"upcat_{i}").upsample
        up.deconv = Conv["CONVTRANS", dims](
            up.deconv.in_channels, up.deconv.out_channels, kernel_size=factors, stride=factors, bias=up.deconv.bias is not None
        )


def axis_divisors(pools: Sequence[Sequence[int]] | None, spatial_dims: int) -> tuple[int, ...]:
    """The factor each axis of an input must be a multiple of: the product of its pools."""
    if pools is None:
        return (2**LEVELS,) * spatial_dims
    divisors = [1] * spatial_dims
    for level in pools:
        divisors = [d * f for d, f in zip(divisors, level)]
    return tuple(divisors)
