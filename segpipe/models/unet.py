"""The U-Net of Ronneberger et al. (2015), as MONAI's ``BasicUNet``.

Each level of the contracting path is two 3x3 convolutions then a 2x2 max pool, doubling the
channels; the expansive path upsamples with 2x2 transposed convolutions, concatenates the skip
connection and applies two 3x3 convolutions; a 1x1 convolution gives the class scores.
"""

from __future__ import annotations

from monai.networks.nets import BasicUNet

from segpipe.models.registry import register_model

@register_model("unet")
def unet(
    *, spatial_dims: int, in_channels: int, out_channels: int, features: tuple[int, ...] = (16, 32, 64, 128, 256, 16)
) -> BasicUNet:
    """U-Net with five levels; ``features`` are the five encoder widths plus the last decoder width."""
    return BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(features),
        upsample="deconv",
    )
