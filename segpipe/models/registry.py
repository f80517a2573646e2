"""A small registry so a new network needs no change to training or inference code."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering a factory ``f(*, spatial_dims, in_channels, out_channels, **options)``."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **options) -> nn.Module:
    """Instantiate a registered network.

    Raises:
        ValueError: No network has that name.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name](spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **options)
