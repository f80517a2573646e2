"""Sliding-window inference: in memory with MONAI, or zarr to zarr with bounded memory.

- :func:`predict_image`: one normalized in-memory image (MONAI ``sliding_window_inference``).
- :func:`stream_predict`: any-size channel-first array to a sink, slab by slab, resumable;
  :class:`~segpipe.inference.zarr_sink.ZarrSink` writes probabilities and semantic labels
  into an OME-Zarr prediction group.
- :func:`~segpipe.inference.instances.stream_instance_labels`: instance labels of a stored
  prediction, slab by slab; :mod:`~segpipe.inference.postprocess` the same in memory.
- :mod:`~segpipe.inference.normalize`: intensity normalization as a model card prescribes it.

The names below are imported on first use, so reading :class:`InferenceParams` does not load
torch and MONAI.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "activate": "memory",
    "padding_mode": "memory",
    "predict_image": "memory",
    "Normalization": "normalize",
    "stream_normalization": "normalize",
    "InferenceParams": "params",
    "ArraySink": "sink",
    "StreamStats": "sink",
    "stream_predict": "stream",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
