"""Networks chosen by name, and trained models as folders with a typed card.

``build_model("unet", spatial_dims=2, in_channels=1, out_channels=3)`` builds a registered
network; :class:`Model` opens a trained model folder (:class:`ModelCard` plus weights).
"""

from segpipe.models.registry import available_models, build_model, register_model
from segpipe.models import fcn as _fcn, unet as _unet  # noqa: F401  (register the built-in networks)

__all__ = ["available_models", "build_model", "register_model"]
