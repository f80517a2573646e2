"""A small registry so a new network needs no change to training or inference code.

The built-in networks (:mod:`segpipe.models.unet`, :mod:`segpipe.models.fcn`) register when a
name is first looked up, so a process that only reads model cards never loads torch and MONAI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

ModelFactory = Callable[..., "nn.Module"]
_REGISTRY: dict[str, ModelFactory] = {}
_BUILT_IN = ("segpipe.models.unet", "segpipe.models.fcn")
_built_in_loaded = False


def _load_built_in() -> None:
    """Import the built-in networks once (each registers itself)."""
    global _built_in_loaded
    if not _built_in_loaded:
        _built_in_loaded = True
        for module in _BUILT_IN:
            importlib.import_module(module)


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering a factory ``f(*, spatial_dims, in_channels, out_channels, **options)``."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        _load_built_in()  # a user's network cannot take a built-in name that registers later
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    _load_built_in()
    return sorted(_REGISTRY)


def build_model(name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **options) -> nn.Module:
    """Instantiate a registered network.

    Raises:
        ValueError: No network has that name.
    """
    _load_built_in()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name](spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **options)
