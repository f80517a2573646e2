"""Frames that held only noise (:mod:`segpipe.inference.noise`), said once for a run.

Each prediction group records its frames of only noise (:data:`NOISE_ATTR`, frame numbers over
the image's frame axes, 0 for a single frame); ``segment``, ``predict`` and the Prefect flows say
in one warning how many images held some, however many frames that is.
"""

from __future__ import annotations

import logging

log = logging.getLogger("segpipe.prediction.predict")

#: Attribute of a prediction group listing its frames of only noise.
NOISE_ATTR = "noise_frames"


def warn_noise_only(noise: dict[str, int], threshold: float) -> None:
    """One warning for a run's images that held only noise in some or all of their frames
    (``noise``: image name to such frames); nothing when there are none."""
    if noise:
        log.warning(
            "%d image(s) hold only noise in %d frame(s) in all (first: %s): predicted as background there, no objects "
            "(nothing in them stands %g noise deviations out of their noise, in any channel; --noise-only 0 predicts them)",
            len(noise), sum(noise.values()), next(iter(noise)), threshold,
        )


def of_results(results) -> dict[str, int]:
    """``{name: frames of only noise}`` of the images predicted in this run (their
    :class:`segpipe.prediction.complete.ImageResult`; one that was current has no stream) that hold some."""
    return {r.name: len(r.stream.noise_frames) for r in results if r.stream is not None and r.stream.noise_frames}


def recorded(predictions, names: list[str]) -> dict[str, int]:
    """``{name: frames of only noise}`` of the complete predictions of ``names`` in ``predictions``
    (a :class:`segpipe.prediction.store.PredictionStore`) that hold some."""
    noise = {}
    for name in names:
        if predictions.stamp(name) is not None and (frames := predictions.noise_frames(name)):
            noise[name] = len(frames)
    return noise
