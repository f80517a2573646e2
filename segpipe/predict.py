"""Predict a split of a dataset store with a trained model; write zarr (and TIFF for 2D).

Output layout, under the run folder::

    predictions.zarr/<image>/    OME-Zarr image of class probabilities (float16, c = classes)
        labels/semantic          class map
        labels/instances         object map (instance datasets)
    predictions/<image>_semantic.tif, <image>_instances.tif     (2D datasets)

Each image is written under a temporary name and renamed when complete; images already
predicted by the same model are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
import zarr
from tqdm.auto import tqdm

from segpipe.checkpoint import load_model
from segpipe.infer import InferenceParams, predict_image
from segpipe.postprocess import InstanceParams, instance_labels, semantic_labels
from segpipe.store import IMAGE_LEVEL, StoredImage, create_array, list_images, write_ome_metadata
from segpipe.train import NORMALIZATION, resolve_device
from segpipe.transforms import percentile_normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Label maps of one image, as written."""

    name: str
    semantic: np.ndarray
    instances: np.ndarray | None


def model_id(card: dict) -> str:
    """Identifies the trained weights a prediction came from."""
    return f"{card['config_key']}-{card.get('best_epoch', 0)}-{card.get('postprocess')}"


def predict_dataset(
    store: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    params: InferenceParams | None = None,
    device: str = "auto",
    progress: bool = True,
) -> list[str]:
    """Predict every image of ``split``; returns the image names predicted (or already there)."""
    out_dir = Path(out_dir)
    model, card = load_model(model_path, device=resolve_device(device))
    images = list_images(store, split)
    if not images:
        raise ValueError(f"{store}: the {split} split is empty")
    root = _open_predictions(out_dir / "predictions.zarr", card)
    names = []
    for image in tqdm(images, desc=f"predict {split}", unit="image", disable=not progress):
        predict_stored_image(image, model, card, root, out_dir, params=params)
        names.append(image.name)
    return names


def _open_predictions(path: Path, card: dict) -> zarr.Group:
    ident = model_id(card)
    if (path / "zarr.json").is_file():
        root = zarr.open_group(str(path), mode="a")
        if root.attrs.get("segpipe", {}).get("model_id") == ident:
            return root
        log.info("%s holds another model's predictions; replacing them", path)
        shutil.rmtree(path)
    root = zarr.open_group(str(path), mode="w")
    root.attrs["segpipe"] = {"model_id": ident, "dataset": card["dataset"], "classes": card["classes"]}
    return root


def predict_stored_image(
    image: StoredImage, model: torch.nn.Module, card: dict, root: zarr.Group, out_dir: Path, *, params=None
) -> Prediction:
    """Predict one image into ``root`` unless a complete prediction is already there."""
    if image.name in root and root[image.name].attrs.get("complete"):
        log.info("%s: already predicted, skipping", image.name)
        return read_prediction(root, image.name)
    params = params or InferenceParams(**card["inference"])
    normalized = percentile_normalize(np.asarray(image.image), low=NORMALIZATION["low"], high=NORMALIZATION["high"])
    device = next(model.parameters()).device
    probs = predict_image(
        model, normalized, roi_size=card["patch_size"], n_classes=card["n_classes"], params=params, device=device
    )
    n_classes = card["n_classes"]
    semantic = semantic_labels(probs[:n_classes])
    instances = None
    if card["instances"]:
        post = InstanceParams(**card["postprocess"])
        instances = instance_labels(1.0 - probs[0], probs[n_classes], post)
    _write_prediction(root, image, probs, semantic, instances, card)
    if card["spatial_dims"] == 2:
        _write_tiffs(out_dir / "predictions", image.name, semantic, instances)
    return Prediction(image.name, semantic, instances)


def _write_prediction(root, image: StoredImage, probs, semantic, instances, card) -> None:
    from ome_zarr.writer import write_label_metadata

    ndim = card["spatial_dims"]
    unit = image.info.get("unit") or "micrometer"
    partial = f".{image.name}.partial"
    if partial in root:
        del root[partial]
    group = root.create_group(partial)
    create_array(group, IMAGE_LEVEL, shape=probs.shape, dtype=np.float16, ndim=ndim)[...] = probs.astype(np.float16)
    write_ome_metadata(group, ndim=ndim, channels=True, spacing=image.spacing, unit=unit, name=image.name)
    label_root = group.create_group("labels")
    maps = {"semantic": semantic} | ({"instances": instances} if instances is not None else {})
    for name, array in maps.items():
        sub = label_root.create_group(name)
        create_array(sub, IMAGE_LEVEL, shape=array.shape, dtype=array.dtype, ndim=ndim)[...] = array
        write_ome_metadata(sub, ndim=ndim, channels=False, spacing=image.spacing, unit=unit, name=name)
        write_label_metadata(label_root, name)
    group.attrs["complete"] = True
    if image.name in root:
        del root[image.name]
    store_path = Path(str(root.store.root)) if hasattr(root.store, "root") else None
    if store_path is not None:
        (store_path / partial).rename(store_path / image.name)
    else:  # pragma: no cover - non-local stores are not written by segpipe today
        raise NotImplementedError("predictions are written to local zarr stores only")


def _write_tiffs(folder: Path, name: str, semantic: np.ndarray, instances: np.ndarray | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / f"{name}_semantic.tif", semantic, compression="zlib")
    if instances is not None:
        tifffile.imwrite(folder / f"{name}_instances.tif", instances, compression="zlib")


def read_prediction(root: zarr.Group | str | Path, name: str) -> Prediction:
    """Load the label maps of one predicted image."""
    if not isinstance(root, zarr.Group):
        root = zarr.open_group(str(root), mode="r")
    group = root[name]
    semantic = np.asarray(group[f"labels/semantic/{IMAGE_LEVEL}"])
    instances = np.asarray(group[f"labels/instances/{IMAGE_LEVEL}"]) if "instances" in group["labels"] else None
    return Prediction(name, semantic, instances)
