"""The prediction store: one zarr group of one model's predictions, one OME-Zarr group per image.

Layout::

    predictions.zarr/            attrs["segpipe"]: the model's id, name and classes
      OME/                       the list of predicted images (segpipe.data.collection), for viewers
      <image>/                   OME-Zarr image of class probabilities (float16; c = classes [+ distance,
                                 boundary]), with pyramid levels s0, s1, ... as its source image has
        labels/semantic          class map
        labels/instances         object map (instance models)

Each image group records the *stamp* it was made from (the model, the sliding-window and
post-processing settings, and the image's bytes): a prediction whose stamp differs from the
current one is stale and is made again.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from segpipe.data.collection import root_attrs
from segpipe.data.store import IMAGE_LEVEL
from segpipe.errors import StoreError, StoreNotFound
from segpipe.models.model import Model
from segpipe.prediction.noise_frames import NOISE_ATTR

log = logging.getLogger(__name__)

STAMP_ATTR = "segpipe_inputs"
#: The digest of the stored image a prediction was made from (:func:`segpipe.data.store.array_digest`):
#: scoring checks it, so a prediction of an image ingested again since is not scored against the new one.
IMAGE_DIGEST_ATTR = "segpipe_image_digest"


@dataclass(frozen=True)
class Prediction:
    """Label maps of one image, as written."""

    name: str
    semantic: np.ndarray
    instances: np.ndarray | None


class PredictionStore:
    """The predictions of one model (opened for writing with :meth:`for_model`, or read with :meth:`open`)."""

    def __init__(self, path: Path, root: zarr.Group):
        self.path = path
        self.root = root

    @classmethod
    def for_model(cls, path: str | Path, model: Model) -> PredictionStore:
        """The store of ``model``'s predictions; another model's predictions there are replaced.

        Opening never truncates a store of the same model, so per-image tasks may open it concurrently.
        """
        path = Path(path)
        model_id = model.id
        if (path / "zarr.json").is_file():
            root = zarr.open_group(str(path), mode="a")
            if root.attrs.get("segpipe", {}).get("model_id") == model_id:
                return cls(path, root)
            log.info("%s holds another model's predictions; replacing them", path)
            shutil.rmtree(path)
        root = zarr.open_group(str(path), mode="a")
        root.attrs.update({
            "segpipe": {
                "model_id": model_id,
                "model": model.card.name,
                "model_folder": str(model.folder.resolve()),
                "classes": model.card.classes,
            },
            "ome": root_attrs(),
        })
        return cls(path, root)

    @staticmethod
    def model_id_at(path: str | Path) -> str | None:
        """The id of the model whose predictions the store at ``path`` holds (``None``: no store)."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            return None
        return zarr.open_group(str(path), mode="r").attrs.get("segpipe", {}).get("model_id")

    @classmethod
    def open_for_writing(cls, path: str | Path, model: Model) -> PredictionStore:
        """The store :meth:`for_model` prepared for ``model``, without replacing anything."""
        path = Path(path)
        root = zarr.open_group(str(path), mode="a") if (path / "zarr.json").is_file() else None
        if root is None or root.attrs.get("segpipe", {}).get("model_id") != model.id:
            raise StoreError(f"{path}: not prepared for model {model.card.name!r}; open it with for_model first")
        return cls(path, root)

    @classmethod
    def open(cls, path: str | Path) -> PredictionStore:
        """An existing store, read-only."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise StoreNotFound(f"{path}: no predictions here; run `segpipe predict` first")
        return cls(path, zarr.open_group(str(path), mode="r"))

    @property
    def model_id(self) -> str | None:
        return self.root.attrs.get("segpipe", {}).get("model_id")

    def model(self) -> Model:
        """The model the predictions were made with."""
        folder = self.root.attrs.get("segpipe", {}).get("model_folder")
        if folder is None:
            raise StoreError(f"{self.path}: records no model")
        return Model.open(folder)

    def stamp(self, name: str) -> str | None:
        """The stamp a complete prediction of ``name`` was made from, or ``None``."""
        if name not in self.root or not self.root[name].attrs.get("complete"):
            return None
        return self.root[name].attrs.get(STAMP_ATTR)

    def image_digest(self, name: str) -> str | None:
        """The digest of the stored image the complete prediction of ``name`` was made from, or ``None``
        (a prediction written before it was recorded)."""
        return self.group(name).attrs.get(IMAGE_DIGEST_ATTR)

    def group(self, name: str) -> zarr.Group:
        """The complete prediction group of ``name``."""
        if name not in self.root or not self.root[name].attrs.get("complete"):
            raise StoreNotFound(f"{self.path}: no complete prediction of {name!r}")
        return self.root[name]

    def read(self, name: str) -> Prediction:
        """Load the label maps of one predicted image."""
        group = self.group(name)
        semantic = np.asarray(group[f"labels/semantic/{IMAGE_LEVEL}"])
        instances = np.asarray(group[f"labels/instances/{IMAGE_LEVEL}"]) if "instances" in group["labels"] else None
        return Prediction(name, semantic, instances)

    def noise_frames(self, name: str) -> list[int]:
        """The frames of ``name`` that held only noise and were predicted as background (:mod:`segpipe.inference.noise`)."""
        return [int(f) for f in self.group(name).attrs.get(NOISE_ATTR, [])]

    def labels(self, name: str) -> zarr.Array:
        """The instance map of ``name`` where there is one, else its class map (lazily)."""
        group = self.group(name)
        kind = "instances" if "instances" in group["labels"] else "semantic"
        return group[f"labels/{kind}/{IMAGE_LEVEL}"]
