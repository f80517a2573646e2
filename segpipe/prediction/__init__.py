"""Applying a model to the images of a store: the prediction store, streamed prediction, exports.

- :mod:`~segpipe.prediction.params`: :class:`~segpipe.prediction.params.PredictParams`;
- :mod:`~segpipe.prediction.predict`: a :class:`~segpipe.prediction.predict.Predictor` applied image by image;
- :mod:`~segpipe.prediction.store`: :class:`~segpipe.prediction.store.PredictionStore`;
- :mod:`~segpipe.prediction.export`: TIFF, NIfTI and Cell Tracking Challenge files.
"""
