"""Networks chosen by name, and trained models as folders with a typed card.

``build_model("unet", spatial_dims=2, in_channels=1, out_channels=3)`` builds a registered
network; :class:`Model` opens a trained model folder (:class:`ModelCard` plus weights).
Importing the package loads no network: the built-in ones register on first use.
"""

from segpipe.models.registry import available_models, build_model, register_model

__all__ = ["available_models", "build_model", "register_model"]
