"""Training a model on a labelled store: parameters, planning, patches, augmentation, the loop, tuning.

- :mod:`~segpipe.training.params`: :class:`~segpipe.training.params.TrainParams`, the stage's parameters;
- :mod:`~segpipe.training.plan`: the dataset fingerprint and the defaults planned from it;
- :mod:`~segpipe.training.targets`, :mod:`~segpipe.training.augment`, :mod:`~segpipe.training.patches`:
  what the network learns from, and how patches are drawn and augmented;
- :mod:`~segpipe.training.loop`: the loop, validation and the model folder it writes;
- :mod:`~segpipe.training.checkpoint`: ``last.pt``, for resuming;
- :mod:`~segpipe.training.tuning`: post-processing thresholds chosen on validation.
"""
