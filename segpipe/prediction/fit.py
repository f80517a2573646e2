"""Whether a model fits the images it is asked to segment, checked before anything is written."""

from __future__ import annotations

import logging

from segpipe.data.store import ImageStore
from segpipe.errors import ModelError
from segpipe.models.card import ModelCard

log = logging.getLogger(__name__)


def takes_channels(card: ModelCard, channels: int) -> bool:
    """Whether the model reads images of ``channels`` channels: as many as it has inputs, or, for a
    generalist, fewer (its other inputs blank: :mod:`segpipe.prediction.generalist_inputs`)."""
    return channels == card.in_channels or (card.generalist and 0 < channels < card.in_channels)


def channels_taken(card: ModelCard) -> str:
    """How many channels the model reads, in words: ``"2"``, or ``"1 or 2"`` for a generalist."""
    if not card.generalist or card.in_channels == 1:
        return str(card.in_channels)
    return "1 or 2" if card.in_channels == 2 else f"1 to {card.in_channels}"


def check_fits(card: ModelCard, store: ImageStore, *, where: str | None = None) -> None:
    """Refuse a model whose dimensions, channels or (for scored images) classes do not fit ``store``.

    Raises:
        ModelError: Naming the model, the images and what differs.
    """
    where = where or str(store.path)
    model = f"model {card.name!r}"
    if card.spatial_dims != store.ndim:
        raise ModelError(f"{where}: {model} segments {card.spatial_dims}D images, these are {store.ndim}D")
    for info in store.record["images"]:
        channels = int(info["shape"][0])
        if not takes_channels(card, channels):
            names = f" ({', '.join(card.channel_names)})" if card.channel_names else ""
            raise ModelError(
                f"{where}: {model} takes {channels_taken(card)} channel(s){names}, image {info['name']!r} has {channels}; "
                "choose the channels with channels: in the catalog (or --channels for segpipe segment)"
            )
    if store.labelled and (store.instances != card.instances or len(store.classes) != card.n_classes):
        kind = lambda instances, classes: f"{'objects' if instances else 'classes'} {classes}"  # noqa: E731
        raise ModelError(
            f"{where}: {model} predicts {kind(card.instances, card.classes)}, the ground truth here has "
            f"{kind(store.instances, store.classes)}: its predictions could not be scored"
        )


def warn_unknown_pixel_size(card: ModelCard, store: ImageStore, names: list[str]) -> None:
    """One warning when the model's pixel size was a guess (its training files gave none) while
    images of ``names`` give theirs: they are taken at 1 per pixel, as its training images were."""
    if not card.spacing_guessed or card.generalist or card.object_size:
        return
    known = [n for n in names if not store.image(n).spacing_guessed]
    if known:
        log.warning(
            "%s: the pixel size model %r was trained at is not known (its training images' files gave none), so %d "
            "image(s) with a pixel size (first: %s) are taken at 1 per pixel, as its training images were, not at their "
            "own. To resample by physical size, tell the model its training images' pixel size (segpipe models pixel-size "
            "MODEL SIZE), or train it with that pixel size (spacing: in their catalog entry)", store.path, card.name, len(known), known[0],
        )
