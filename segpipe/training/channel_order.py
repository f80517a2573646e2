"""Which of a generalist's input channels each of a dataset's channels feeds.

The shipped generalist reads cytoplasm or membrane first and nuclei second; data comes in
either order. Before fine-tuning, the generalist predicts a window of each training image with
the dataset's channels fed to its inputs in every order, and training starts from the order
whose foreground agrees best with the labels (Dice pooled over the windows). A tie keeps the
file's order, and so does a dataset of one channel (it feeds the first input: the generalist saw
each kind of object alone there).
"""

from __future__ import annotations

import logging
from itertools import permutations
from typing import Sequence


from segpipe.data.store import StoredImage
from segpipe.inference.fill import content_box
from segpipe.inference.windows import centre_box
from segpipe.models.card import ModelCard
from segpipe.models.model import Model, network_from_card
from segpipe.training.splits import load_image, mean_dice, predict_split
from segpipe.training.start import adapt_input

log = logging.getLogger(__name__)

#: At most this many training images are looked at (one window of each).
IMAGES = 32
#: The window's edge in patches: two patches wide, so each window shows objects with their neighbours.
WINDOW_PATCHES = 2


def input_slots(start: Model, card: ModelCard, images: Sequence[StoredImage], *, device="cpu") -> tuple[int, ...]:
    """For each of the dataset's channels, the input of ``start`` it feeds.

    Args:
        start: The model training starts from.
        card: The card of the model being trained (normalization, pixel size, patch, channels).
        images: The labelled training images.
        device: Where the start predicts.

    Returns:
        ``slots[j]``: the input channel of ``start`` whose filters the dataset's channel ``j`` takes
        (:func:`segpipe.training.start.adapt_input`); ``(0, 1, ...)`` keeps the file's order.
    """
    in_order = tuple(range(card.in_channels))
    if not start.card.generalist or card.in_channels < 2 or not images:
        return in_order
    windows = [_window(im, card) for im in images[:IMAGES]]
    windows = [w for w in windows if w[2].any()]
    if not windows:
        return in_order
    state = start.state_dict()

    def score(slots: tuple[int, ...]) -> float:
        network = network_from_card(card)
        network.load_state_dict(adapt_input(state, start.card, card.in_channels, slots=slots))
        predictions = predict_split(network.to(device), windows, card, device, flips=False)
        return mean_dice(predictions, card.n_classes, instances=True)

    scores = {slots: score(slots) for slots in permutations(range(start.card.in_channels), card.in_channels)}
    best = max(scores, key=lambda slots: (scores[slots], slots == in_order))
    log.info(
        "training: %s reads the dataset's channels %s as its inputs %s (foreground Dice on %d training windows: %s)",
        start.card.name, list(in_order), list(best), len(windows),
        ", ".join(f"{list(s)} {d:.3f}" for s, d in scores.items()),
    )
    return best


def _window(im: StoredImage, card: ModelCard) -> tuple:
    """The centre of one image's content (what is not fill, as a new image's first look takes it),
    ``WINDOW_PATCHES`` patches wide (in stored pixels), as :func:`segpipe.training.splits.load_image` gives it."""
    box = centre_box(
        im.image.shape[1:], windows=WINDOW_PATCHES, roi=card.patch_size, spacing=im.spacing, model_spacing=card.spacing,
        within=content_box(im.image, spatial_dims=card.spatial_dims),
    )
    return load_image(im, card, box)

