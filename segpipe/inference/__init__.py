"""Sliding-window inference: in memory with MONAI, or zarr to zarr with bounded memory.

- :func:`predict_image`: one normalized in-memory image (MONAI ``sliding_window_inference``).
- :func:`stream_predict`: any-size channel-first array to a sink, slab by slab, resumable;
  :class:`ZarrSink` writes probabilities and semantic labels into an OME-Zarr prediction group.
- :func:`stream_instance_labels`: instance labels of a stored prediction, slab by slab.
"""

from segpipe.inference.memory import activate, padding_mode, predict_image
from segpipe.inference.normalize import Normalization, stream_normalization
from segpipe.inference.params import InferenceParams
from segpipe.inference.stream import ArraySink, StreamStats, stream_predict

__all__ = [
    "ArraySink",
    "InferenceParams",
    "Normalization",
    "StreamStats",
    "activate",
    "padding_mode",
    "predict_image",
    "stream_normalization",
    "stream_predict",
]
