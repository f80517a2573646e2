"""Networks, chosen by name: ``build_model("unet", spatial_dims=2, in_channels=1, out_channels=3)``."""

from segpipe.models.registry import available_models, build_model, register_model
from segpipe.models import fcn as _fcn, unet as _unet  # noqa: F401  (register the built-in networks)

__all__ = ["available_models", "build_model", "register_model"]
