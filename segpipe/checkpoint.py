"""Saving and loading models: weights plus the model card, which is all prediction needs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from segpipe.errors import StoreError
from segpipe.models import build_model

MODEL_FILE = "model.pt"
CARD_FILE = "model_card.json"
STATE_FILE = "last.pt"


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a torn file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_model(model_dir: Path, state_dict: dict, card: dict) -> Path:
    """Write ``model.pt`` (weights and card) and a readable ``model_card.json``."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MODEL_FILE
    atomic_save({"state_dict": state_dict, "card": card}, path)
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return path


def load_model(path: str | Path, *, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from its checkpoint (``weights_only`` loading: no pickle).

    Args:
        path: ``model.pt`` or the folder holding it.
        device: Where to put the network.

    Returns:
        The network in eval mode and its model card.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise StoreError(f"{path}: no trained model here; run `segpipe train` first")
    payload = torch.load(path, map_location=device, weights_only=True)
    card = payload["card"]
    model = network_from_card(card)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), card


def network_from_card(card: dict) -> torch.nn.Module:
    """An untrained network with the architecture the card describes."""
    return build_model(
        card["model"],
        spatial_dims=card["spatial_dims"],
        in_channels=card["in_channels"],
        out_channels=card["out_channels"],
        **card["model_options"],
    )
