"""Fully convolutional network (Long, Shelhamer and Darrell, 2015), FCN-32s/16s/8s, 2D and 3D.

A strided encoder of five stages (output strides 2 to 32) built from MONAI convolution blocks;
1x1 convolutions score the classes at strides 8, 16 and 32; learned transposed convolutions
upsample the coarse scores, which are fused with the finer ones by summation. Inputs of any
size work: they are padded to a multiple of 32 and the output is cropped back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from segpipe.models.registry import register_model

FCN_STRIDE = 32


def _stage(dims: int, cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions, the first with stride 2.

    Group normalization, unlike instance normalization, also works on the 1-voxel maps that
    small inputs give at stride 32.
    """
    norm = ("group", {"num_groups": min(8, cout)})
    return nn.Sequential(
        Convolution(dims, cin, cout, strides=2, kernel_size=3, norm=norm, act="leakyrelu"),
        Convolution(dims, cout, cout, kernel_size=3, norm=norm, act="leakyrelu"),
    )


def _upsample(dims: int, channels: int, factor: int) -> nn.Module:
    """Learned upsampling by ``factor`` (a transposed convolution)."""
    conv = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
    return conv(channels, channels, kernel_size=factor, stride=factor, bias=False)


class FCN(nn.Module):
    """FCN with skip fusion at strides 16 and 8 (``variant="8s"``), 16 only, or none (``"32s"``)."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: tuple[int, ...] = (16, 32, 64, 128, 256),
        variant: Literal["32s", "16s", "8s"] = "8s",
    ):
        super().__init__()
        if len(features) != 5:
            raise ValueError(f"FCN needs five encoder widths, got {features}")
        self.variant = variant
        self.stride = FCN_STRIDE  # an attribute, not the global, so TorchScript compiles forward
        widths = (in_channels, *features)
        self.stages = nn.ModuleList(_stage(spatial_dims, a, b) for a, b in zip(widths[:-1], widths[1:]))
        conv1x1 = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.score32 = conv1x1(features[4], out_channels, 1)
        self.score16 = conv1x1(features[3], out_channels, 1)
        self.score8 = conv1x1(features[2], out_channels, 1)
        self.up32 = _upsample(spatial_dims, out_channels, 2 if variant != "32s" else 32)
        self.up16 = _upsample(spatial_dims, out_channels, 2 if variant == "8s" else 16)
        self.up8 = _upsample(spatial_dims, out_channels, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written so torch.jit.script compiles it (the TorchScript weights of an exported model).
        size = x.shape[2:]
        pad: list[int] = []
        for axis in range(len(size) - 1, -1, -1):  # F.pad lists the last axis first
            pad.extend([0, (self.stride - size[axis] % self.stride) % self.stride])
        x = F.pad(x, pad)
        feats: list[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        score = self.up32(self.score32(feats[4]))
        if self.variant != "32s":
            score = self.up16(score + self.score16(feats[3]))
        if self.variant == "8s":
            score = self.up8(score + self.score8(feats[2]))
        for axis in range(len(size)):
            score = score.narrow(axis + 2, 0, size[axis])
        return score


@register_model("fcn")
def fcn(*, spatial_dims: int, in_channels: int, out_channels: int, **options) -> FCN:
    """FCN-8s by default; ``variant="16s"`` or ``"32s"`` for the coarser ones."""
    return FCN(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **options)
