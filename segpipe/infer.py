"""Compatibility module: in-memory sliding-window prediction now lives in :mod:`segpipe.inference`."""

from segpipe.inference import InferenceParams, activate, predict_image

__all__ = ["InferenceParams", "activate", "predict_image"]
