"""Damaged and hostile model folders: one ModelError line each, no code run, never advice to load unsafely."""

from __future__ import annotations

import json
import os
import typing

import pytest
import torch
from pydantic import BaseModel

from segpipe.errors import ModelError
from segpipe.models.card import CARD_VERSION, ModelCard
from segpipe.models.model import Model, network_from_card, save_model


class Payload:
    """A pickle that runs a command when unpickled without ``weights_only``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def good(tmp_path, model_card):
    card = model_card()
    return save_model(tmp_path / "good", network_from_card(card).state_dict(), card)


def _damage(model: Model, kind: str, tmp_path) -> None:
    weights = model.weights
    if kind == "pickle payload":
        payload = torch.load(weights, weights_only=True)
        torch.save({**payload, "extra": Payload(str(tmp_path / "PWNED"))}, weights)
    elif kind == "truncated zip":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "not a model":
        weights.write_bytes(b"hello, not a pickle")
    elif kind == "empty":
        weights.write_bytes(b"")
    elif kind == "other tensors":
        torch.save({"weights": torch.zeros(3)}, weights)


@pytest.mark.parametrize("kind", ["pickle payload", "truncated zip", "not a model", "empty", "other tensors"])
def test_a_damaged_or_hostile_weights_file(good, tmp_path, kind):
    _damage(good, kind, tmp_path)
    (good.folder / "model_card.json").unlink()  # the card then comes from model.pt too
    for attempt in (lambda: Model.open(good.folder), lambda: Model(good.folder, good.card).load("cpu")):
        with pytest.raises(ModelError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(str(good.weights)) and "\n" not in message, message
        assert "weights_only" not in message and "Traceback" not in message, message
    assert not (tmp_path / "PWNED").exists()


def test_a_card_with_an_unknown_option(good):
    card = json.loads((good.folder / "model_card.json").read_text())
    card["postprocess"]["seed_rule"] = "magic"
    (good.folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model_card.json: not a valid model card: postprocess.seed_rule: unknown field$"):
        Model.open(good.folder)


def test_a_card_from_a_newer_segpipe_says_so_before_its_new_fields(good):
    """Before, a newer card's new field was reported as an unknown field, not as a newer card."""
    card = json.loads((good.folder / "model_card.json").read_text())
    card["card_version"] += 1
    card["postprocess"]["seed_rule"] = "magic"
    card["a_later_field"] = 1
    (good.folder / "model_card.json").write_text(json.dumps(card))
    newer = rf"model_card.json: not a valid model card: made by a newer segpipe \(card version {card['card_version']}, "
    with pytest.raises(ModelError, match=newer + r"this one reads up to \d+\): upgrade segpipe to open it$"):
        Model.open(good.folder)


#: Every field of the card's layout (nested ``a.b``) and every value a closed field takes
#: (``a=v``), as of :data:`CARD_VERSION`: a segpipe of an earlier version refuses a field or value
#: it does not know as ill-formed, so a change here needs a new card version.
LAYOUT = {
    4: frozenset({
        "card_version", "channel_names", "classes", "extra_outputs", "extra_outputs=boundary",
        "extra_outputs=distance", "extra_outputs=flow", "generalist", "in_channels", "inference",
        "inference.amp", "inference.batch_size", "inference.flip_tta", "inference.mode",
        "inference.mode=constant", "inference.mode=gaussian", "inference.overlap", "inference.prefetch",
        "inference.sigma_scale", "instances", "name", "network", "network_options", "normalization",
        "normalization.high", "normalization.low", "normalization.mean", "normalization.method",
        "normalization.method=ct", "normalization.method=percentile", "normalization.method=zscore",
        "normalization.min_range", "normalization.nonzero", "normalization.skip_fill", "normalization.std",
        "normalization.window", "object_size", "out_channels", "patch_size", "postprocess",
        "postprocess.edge_min_size", "postprocess.foreground_threshold", "postprocess.min_size", "postprocess.relief",
        "postprocess.relief=boundary", "postprocess.relief=distance", "postprocess.relief=flow",
        "postprocess.seed_h", "postprocess.seed_method", "postprocess.seed_method=hmaxima",
        "postprocess.seed_method=threshold", "postprocess.seed_threshold", "postprocess.sink_size",
        "postprocess.smoothing", "software", "spacing", "spatial_dims", "spatial_dims=2", "spatial_dims=3",
        "training", "training.best_epoch", "training.config", "training.config_key", "training.dataset",
        "training.dataset_fingerprint", "training.ended_by", "training.ended_by=iterations",
        "training.ended_by=time budget", "training.epochs", "training.init", "training.init_inputs",
        "training.iterations", "training.seconds", "training.validation", "unit",
    }),
}
LAYOUT[5] = LAYOUT[4] | {"spacing_guessed"}
LAYOUT[6] = LAYOUT[5] | {"normalization.floor_for"}
LAYOUT[7] = LAYOUT[6] | {"inference.noise_only", "postprocess.grid", "pixel_size_set"}
LAYOUT[8] = LAYOUT[7] | {"training.resumed_after"}


def _layout(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths = set()
    for name, info in model.model_fields.items():
        paths |= {prefix + name, *_inner(info.annotation, prefix + name)}
    return paths


def _inner(annotation, path: str) -> set[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _layout(annotation, path + ".")
    if typing.get_origin(annotation) is typing.Literal:
        return {f"{path}={value}" for value in typing.get_args(annotation)}
    return set().union(*(_inner(arg, path) for arg in typing.get_args(annotation)))


def test_the_card_layout_changes_only_with_its_version():
    """A field added to the card without a new version (``normalization.skip_fill`` at version 2)
    made every card written after it unreadable to the segpipe before, with "unknown field"
    instead of "made by a newer segpipe"."""
    assert CARD_VERSION in LAYOUT, f"card version {CARD_VERSION}: list its layout in LAYOUT"
    changed = _layout(ModelCard) ^ LAYOUT[CARD_VERSION]
    assert not changed, f"the card's layout changed ({sorted(changed)}): raise CARD_VERSION and list the new layout"


def test_a_card_that_is_not_json(good):
    (good.folder / "model_card.json").write_text("{ not json")
    with pytest.raises(ModelError, match=r"model_card.json: cannot read the model card"):
        Model.open(good.folder)


def test_weights_that_do_not_fit_the_card(good, model_card):
    wider = model_card(network_options={"features": [16, 32, 64, 128, 256, 16]})
    (good.folder / "model_card.json").write_text(wider.to_json())
    with pytest.raises(ModelError, match=r"model.pt: the weights do not fit the card's network: "):
        Model.open(good.folder).load("cpu")


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_flow_output_takes_a_channel_per_axis(model_card, ndim):
    card = model_card(ndim, out_channels=2 + 2 + ndim, extra_outputs=("distance", "boundary", "flow"))
    assert card.flow_channels == tuple(range(4, 4 + ndim))
    assert card.output_names[4:] == [f"flow {axis}" for axis in "zyx"[3 - ndim :]]
    with pytest.raises(ValueError, match="out_channels 5 does not fit"):
        model_card(ndim, out_channels=5, extra_outputs=("distance", "boundary", "flow"))
    assert model_card(ndim).flow_channels == ()


def test_a_card_read_from_an_older_file_is_written_with_this_layouts_version(tmp_path, model_card):
    """The version was copied from the file read: an old card saved again with every current field
    still said 1, and an older segpipe then reported "unknown field" instead of "newer segpipe"."""
    old = model_card().model_copy(update={"card_version": 1})
    model = save_model(tmp_path / "m", network_from_card(old).state_dict(), old)
    assert json.loads((model.folder / "model_card.json").read_text())["card_version"] == CARD_VERSION
    assert torch.load(model.weights, weights_only=True)["card"]["card_version"] == CARD_VERSION
