"""Small seeded networks for inference tests: outputs depend on window position (zero padding)."""

from __future__ import annotations

import pytest
import torch


def conv_net(dims: int, in_channels: int, out_channels: int, *, width: int = 4, seed: int = 0) -> torch.nn.Module:
    """Two 3x3 convolutions with zero padding; seeded, in eval mode."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    return torch.nn.Sequential(
        conv(in_channels, width, 3, padding=1), torch.nn.ReLU(), conv(width, out_channels, 3, padding=1)
    ).eval()


@pytest.fixture
def net2d() -> torch.nn.Module:
    return conv_net(2, 1, 3)


@pytest.fixture
def net3d() -> torch.nn.Module:
    return conv_net(3, 1, 3)
