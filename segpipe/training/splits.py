"""The labelled images training checks itself on, in memory: validation, and training images for tuning.

:func:`load_split` gives a split's images normalized as the model card says, with their labels
and unannotated pixels; :func:`predict_split` runs a network over them by sliding window and
:func:`mean_dice` scores what it gives;
:func:`tuning_training_set` picks the training images the post-processing is also tuned on
(:mod:`segpipe.training.tuning`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from segpipe.data.store import ImageStore, StoredImage
from segpipe.inference import predict_image
from segpipe.inference.blank import Blank, normalized_floors
from segpipe.inference.normalize import normalize, stream_normalization
from segpipe.inference.resample import spacing_differs
from segpipe.models.card import ModelCard
from segpipe.training.grid import to_grid

log = logging.getLogger(__name__)


def load_split(
    store: ImageStore, split: str, *, card: ModelCard
) -> list[tuple[StoredImage, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Normalized images, their labels and their unannotated pixels (``None``: none) for one split,
    in memory, at the model's pixel size (:mod:`segpipe.training.grid`)."""
    return [load_image(im, card) for im in store.images(split, labelled=True)]


def load_image(im: StoredImage, card: ModelCard, box: tuple[slice, ...] = ()) -> tuple:
    """One image (or the part ``box`` selects) as :func:`load_split` gives it: the stored image,
    normalized pixels, labels and unannotated pixels, on the model's grid."""
    ignored = None if im.ignore is None else np.asarray(im.ignore[box]) > 0
    image = normalize(np.asarray(im.image[(slice(None), *box)]), card.normalization)
    return im, *to_grid(image, np.asarray(im.labels[box]), ignored, spacing=im.spacing, target=card.spacing)


def predict_split(
    model, val_set, card: ModelCard, device, *, flips: bool = True
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(probabilities, labels, ignored pixels)`` of each image of a split :func:`load_split` gave.

    ``flips=False`` predicts each window once, whatever the card's test-time flips say (a third
    of the work in 2D, a quarter in 3D): enough to rank checkpoints against each other. Blank pixels
    are background, as in prediction (:mod:`segpipe.inference.blank`).
    """
    model.eval()
    params = card.inference if flips else card.inference.model_copy(update={"flip_tta": False})
    return [(_predicted(model, stored, img, card, params, device), lab, ignore) for stored, img, lab, ignore in val_set]


def _predicted(model, stored: StoredImage | None, img: np.ndarray, card: ModelCard, params, device) -> np.ndarray:
    """The network's outputs for ``img``; a region of a larger image inside its surroundings, as
    prediction does (:func:`in_context`)."""
    around = in_context(stored, img, card)
    outputs = predict_image(
        model, img if around is None else around, roi_size=card.patch_size, n_classes=card.n_classes, params=params,
        device=device, flow_channels=card.flow_channels, blank=Blank.for_card(card, normalized_floors(img, card.normalization)),
    )
    return outputs if around is None else outputs[(slice(None), *stored.in_context)]


def in_context(stored: StoredImage | None, img: np.ndarray, card: ModelCard) -> np.ndarray | None:
    """The surroundings of the region ``stored`` (:attr:`StoredImage.context`), normalized as its pixels ``img``
    were (by the region's own statistics), where ``img`` is the whole region at its stored pixel size; else ``None``."""
    if (stored is None or stored.context is None or tuple(img.shape[1:]) != tuple(stored.image.shape[1:])
            or spacing_differs(stored.spacing, card.spacing)):
        return None
    return stream_normalization(np.asarray(stored.image), card.normalization).apply(np.asarray(stored.context))


def class_dice(predictions, n_classes: int, *, instances: bool) -> np.ndarray:
    """Dice of each foreground class of :func:`predict_split`'s ``predictions``, pooled over the
    images' annotated pixels (instance labels count as one foreground class); NaN for a class
    neither the labels nor the predictions hold (no Dice to give, as the test scores say n/a)."""
    inter = np.zeros(n_classes)
    total = np.zeros(n_classes)
    for probs, labels, ignore in predictions:
        pred = np.argmax(probs[:n_classes], axis=0)
        gt = (labels > 0).astype(np.int64) if instances else labels
        if ignore is not None:
            pred, gt = pred[~ignore], gt[~ignore]
        for c in range(1, n_classes):
            inter[c] += np.sum((pred == c) & (gt == c))
            total[c] += np.sum(pred == c) + np.sum(gt == c)
    return np.where(total[1:] > 0, 2 * inter[1:] / np.maximum(total[1:], 1), np.nan)


def mean_dice(predictions, n_classes: int, *, instances: bool) -> float:
    """The mean of :func:`class_dice` over the classes it gives a Dice (0 where it gives none)."""
    return nan_mean(class_dice(predictions, n_classes, instances=instances))


def nan_mean(values: np.ndarray) -> float:
    """The mean of the values that are not NaN; 0 where every one is."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else 0.0


#: At most this many pixels (voxels) of training images are predicted to tune the post-processing
#: (:func:`tuning_training_set`): 4 million, 16 fields of 512 x 512 or a volume of 160^3.
TUNING_TRAINING_PIXELS = 2**22


def tuning_training_set(store: ImageStore, card: ModelCard, *, pixels: int = TUNING_TRAINING_PIXELS) -> list:
    """Training images that help tune the post-processing, as :func:`load_split` gives them.

    Images in catalog order until ``pixels`` are taken; when the first is larger than that alone
    (one large volume split by region), its centre, cropped to ``pixels``. Images without an
    object are left out.
    """
    chosen, total = [], 0
    for im in store.images("train", labelled=True):
        shape = im.image.shape[1:]
        total += math.prod(shape)
        if total > pixels:
            if not chosen:
                chosen.append(load_image(im, card, _centre_box(shape, pixels)))
            break
        item = load_image(im, card)
        if item[2].any():
            chosen.append(item)
    return [item for item in chosen if item[2].any()]  # a cropped centre may hold no object


def _centre_box(shape: tuple[int, ...], pixels: int) -> tuple[slice, ...]:
    """The centre of ``shape``, every axis shrunk by the same factor to about ``pixels``."""
    factor = (pixels / math.prod(shape)) ** (1 / len(shape))
    sizes = [max(1, int(n * factor)) for n in shape]
    return tuple(slice((n - size) // 2, (n - size) // 2 + size) for n, size in zip(shape, sizes))


def scorable(val_set: list) -> list:
    """The validation images, or none (with a warning) when none of them has an object to score."""
    if val_set and not any(np.any(labels) for _, _, labels, _ in val_set):
        names = ", ".join(im.name for im, _, _, _ in val_set)
        log.warning(
            "the validation split has no object (%s: every label map is empty): it cannot choose a checkpoint "
            "or tune the post-processing; keeping the last checkpoint (an instance model's post-processing is tuned on "
            "training images)",
            names,
        )
        return []
    return val_set
