"""Damaged and hostile model folders: one ModelError line each, no code run, never advice to load unsafely."""

from __future__ import annotations

import json
import os

import pytest
import torch

from segpipe.errors import ModelError
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
