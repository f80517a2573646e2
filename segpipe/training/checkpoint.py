"""Training state for resuming: ``last.pt`` in the model folder, written after every epoch.

It holds the weights, the optimizer, the history, the best score so far and the time spent,
under the run's ``config_key``: a run with the same key continues where the last one stopped.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch

from segpipe.models.model import atomic_save

log = logging.getLogger(__name__)

STATE_FILE = "last.pt"


def save_state(folder: Path, state: dict) -> None:
    """Write ``last.pt`` atomically."""
    atomic_save(state, Path(folder) / STATE_FILE)


def load_state(folder: Path, config_key: str) -> dict | None:
    """The saved state of a run with ``config_key``, or ``None`` (none, another run's, or unreadable)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        log.warning("%s is unreadable (%s); starting over", path, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None
    if not isinstance(state, dict) or state.get("config_key") != config_key:
        log.warning("%s is from another configuration or dataset; starting over", path)
        return None
    return state
