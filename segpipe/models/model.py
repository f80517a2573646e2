"""A trained model as a folder a user can point at, copy and share.

::

    MODEL/
      model.pt           weights (a ``state_dict``) and a copy of the card: the file alone is a model
      model_card.json    the card (:class:`~segpipe.models.card.ModelCard`), readable and editable

Training writes a model folder; prediction, ``segment``, export and fine-tuning open one with
:meth:`Model.open`, which validates the card before anything else happens. Weights are read
with ``weights_only=True``: a model file never runs code. torch loads only when weights are
read or written, so a process that opens models and their cards alone (the files' worker of
``segpipe segment``) does without it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segpipe.errors import ModelError, ModelNotFound, naming
from segpipe.models.card import ModelCard
from segpipe.models.registry import build_model
from segpipe.temporary import replacing

if TYPE_CHECKING:
    import torch

MODEL_FILE = "model.pt"
CARD_FILE = "model_card.json"


@dataclass(frozen=True)
class Model:
    """A model folder with its validated card (weights are loaded on demand).

    Attributes:
        folder: The model folder.
        card: Its card.
    """

    folder: Path
    card: ModelCard

    @classmethod
    def open(cls, path: str | Path) -> Model:
        """Open a model folder, or a ``model.pt`` file.

        The card is ``model_card.json`` when the folder has one, else the copy inside ``model.pt``.

        Raises:
            ModelError: No model there, or its card or weights file is unreadable or invalid.
        """
        path = Path(path)
        folder = path.parent if path.is_file() else path
        weights = folder / MODEL_FILE
        if not weights.is_file():
            raise ModelNotFound(f"{folder}: no trained model here ({MODEL_FILE} is missing); train one with `segpipe train`")
        card_file = folder / CARD_FILE
        if card_file.is_file():
            return cls(folder, ModelCard.read(card_file))
        return cls(folder, ModelCard.from_dict(_load_payload(weights, "cpu")["card"], source=weights))

    @property
    def weights(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def id(self) -> str:
        """Identifies the weights and the card: predictions made with another id are stale."""
        stat = self.weights.stat()  # the card as read (its own version), so an id stays what it was
        return _model_id(str(self.weights), stat.st_mtime_ns, stat.st_size, self.card.model_dump_json(indent=2) + "\n")

    def network(self) -> torch.nn.Module:
        """An untrained network with the card's architecture."""
        return network_from_card(self.card)

    def load(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The trained network on ``device``, in eval mode.

        Raises:
            ModelError: The weights file is damaged, not a segpipe model, or does not fit the card.
        """
        payload = _load_payload(self.weights, device)
        network = self.network()
        try:
            network.load_state_dict(payload["state_dict"])
        except (RuntimeError, KeyError, TypeError) as err:
            lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
            first = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]  # the first mismatch
            more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
            raise ModelError(f"{self.weights}: the weights do not fit the card's network: {first}{more}") from None
        return network.to(device).eval()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights on the CPU."""
        return _load_payload(self.weights, "cpu")["state_dict"]


def network_from_card(card: ModelCard) -> torch.nn.Module:
    """An untrained network with the architecture ``card`` describes."""
    try:
        return build_model(
            card.network,
            spatial_dims=card.spatial_dims,
            in_channels=card.in_channels,
            out_channels=card.out_channels,
            **card.network_options,
        )
    except (ValueError, TypeError) as err:
        raise ModelError(f"model {card.name!r}: cannot build network {card.network!r}: {err}") from None


def save_model(folder: str | Path, state_dict: dict, card: ModelCard) -> Model:
    """Write ``model.pt`` and ``model_card.json`` into ``folder``, each by an atomic rename."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save({"state_dict": state_dict, "card": json.loads(card.to_json())}, folder / MODEL_FILE)
    atomic_write_text(folder / CARD_FILE, card.to_json())
    return Model(folder, card)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a torn file.

    A failed write is an :class:`OSError` naming ``path``: torch's zip writer, meeting one (a full
    disk) as it writes the archive's end, raises a ``RuntimeError`` instead, whose cause it is.
    """
    import torch  # here, not at the top: opening a folder and its card needs no torch

    with replacing(path) as tmp, naming(path), open(tmp, "wb") as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as err:
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, then rename; a failed write names ``path`` and leaves nothing."""
    with replacing(path) as tmp, naming(path):
        tmp.write_text(text)


def _load_payload(path: Path, device) -> dict:
    """``torch.load(weights_only=True)`` with every way a file can be wrong turned into one line."""
    import torch

    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(
            f"{path}: refused: the file holds Python objects other than tensors (not a segpipe model, or "
            "tampered with); segpipe never runs code from a model file"
        ) from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file ({err.strerror or err})") from None
    except Exception as err:  # noqa: BLE001 (a damaged file fails in many ways inside torch's readers)
        raise ModelError(f"{path}: damaged or not a model file ({_first_sentence(err)})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict) or "card" not in payload:
        raise ModelError(f"{path}: not a segpipe model file (expected the weights and the card)")
    return payload


def _first_sentence(err: Exception) -> str:
    """The gist of a loader's error: its first sentence, never torch's advice to load unsafely."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    if not isinstance(err, RuntimeError | ValueError | EOFError) or not text or "weights_only" in text or len(text) > 200:
        return f"unreadable data: {type(err).__name__}"
    return text


@functools.lru_cache(maxsize=64)
def _model_id(path: str, mtime_ns: int, size: int, card_json: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(hashlib.file_digest(handle, "sha256").digest())
    digest.update(card_json.encode())
    return digest.hexdigest()[:16]
