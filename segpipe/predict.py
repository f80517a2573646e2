"""Predict a split of a dataset store with a trained model, zarr to zarr; export labels.

Output layout, under the run folder::

    predictions.zarr/<image>/    OME-Zarr image of class probabilities (float16, c = classes [+ distance])
        labels/semantic          class map
        labels/instances         object map (instance datasets)
    predictions/<image>_semantic.tif, <image>_instances.tif     (TIFF export; default for 2D datasets)
    predictions/<image>_semantic.nii.gz, ...                    (NIfTI export, with the source's affine)
    predictions/ctc/<sequence>/01_RES/maskTTT.tif, res_track.txt (Cell Tracking Challenge export:
                                 the frames of one source form a sequence; other images mask000.tif)

Each image is predicted by :func:`segpipe.inference.stream.stream_predict` into a group under a
temporary name (``.<image>.partial``), slab by slab, recording finished rows in the group's
attributes; an interrupted prediction resumes there (same model and settings) and the group is
renamed into place when complete. Complete images of the same model are skipped. One call of
:func:`predict_stored_image` (or :func:`predict_one`) per image lets a flow fan images out.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import zarr
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from segpipe.checkpoint import load_model
from segpipe.errors import StoreError
from segpipe.export import export_ctc, export_nifti, export_tiff, source_affine, tiff_axes
from segpipe.inference import InferenceParams, Normalization, activate, stream_normalization, stream_predict
from segpipe.inference.instances import InstanceStats, InstanceTiling, stream_instance_labels
from segpipe.inference.stream import StreamStats
from segpipe.inference.zarr_sink import ChannelsFirst, ZarrSink, prediction_chunks
from segpipe.postprocess import InstanceParams
from segpipe.store import COMPRESSOR, IMAGE_LEVEL, StoredImage, axes_for, list_images, write_ome_metadata
from segpipe.train import resolve_device

log = logging.getLogger(__name__)

ExportFormat = Literal["tiff", "nifti", "ctc"]


class PredictOptions(BaseModel):
    """What prediction writes besides the label maps.

    Attributes:
        probabilities: Keep the float16 probabilities (``s0``) in the prediction group.
        exports: Files written next to the zarr; ``None``: TIFF for 2D datasets, nothing for 3D.
        instances: How instance labelling splits large frames.
    """

    model_config = ConfigDict(extra="forbid")

    probabilities: bool = True
    exports: tuple[ExportFormat, ...] | None = None
    instances: InstanceTiling = Field(default_factory=InstanceTiling)


@dataclass(frozen=True)
class Prediction:
    """Label maps of one image, as written."""

    name: str
    semantic: np.ndarray
    instances: np.ndarray | None


@dataclass(frozen=True)
class ImageResult:
    """What predicting one image did."""

    name: str
    skipped: bool
    stream: StreamStats | None = None
    instances: InstanceStats | None = None


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
    options: PredictOptions | None = None,
) -> list[str]:
    """Predict every image of ``split``; returns the image names predicted (or already there)."""
    out_dir = Path(out_dir)
    model, card = load_model(model_path, device=resolve_device(device))
    images = list_images(store, split)
    if not images:
        raise StoreError(f"{store}: the {split} split is empty")
    root = open_predictions(out_dir / "predictions.zarr", card)
    names = []
    for image in tqdm(images, desc=f"predict {split}", unit="image", disable=not progress):
        predict_stored_image(image, model, card, root, out_dir, params=params, options=options)
        names.append(image.name)
    if options is not None and options.exports and "ctc" in options.exports:
        export_ctc_sequences(root, images, out_dir / "predictions" / "ctc", ndim=card["spatial_dims"])
    return names


def sequence_name(image: StoredImage) -> str:
    """The sequence a stored image belongs to: frames ``NAME-tNNN`` of one source form ``NAME``."""
    if image.info.get("frame") is not None and "-t" in image.name:
        return image.name.rsplit("-t", 1)[0]
    return image.name


def export_ctc_sequences(root: zarr.Group, images: list[StoredImage], folder: Path, *, ndim: int) -> list[Path]:
    """Cell Tracking Challenge result folders ``folder/<sequence>/01_RES`` from predicted images.

    Frames of one source (ingest's ``frame`` index) form one sequence, numbered by frame; an image
    with a frame axis of its own is a sequence by itself; any other image is ``mask000.tif``.
    Instance labels are exported where there are any, else the class map.
    """
    sequences: dict[str, list[tuple[int, object]]] = {}
    for image in images:
        group = root[image.name]
        labels = group["labels/instances/s0" if "instances" in group["labels"] else "labels/semantic/s0"]
        if labels.ndim > ndim:
            sequences[image.name] = [(t, labels[t]) for t in range(labels.shape[0])]
            continue
        frame = image.info.get("frame")
        sequences.setdefault(sequence_name(image), []).append((int(frame) if frame is not None else 0, labels))
    return [export_ctc(frames, folder / name) for name, frames in sequences.items()]


def predict_one(
    store: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    name: str,
    *,
    params: InferenceParams | None = None,
    device: str = "auto",
    options: PredictOptions | None = None,
) -> ImageResult:
    """Predict one stored image by name (one task of a per-image fan-out)."""
    matches = [image for image in list_images(store) if image.name == name]
    if not matches:
        raise StoreError(f"{store}: no image named {name!r}")
    model, card = load_model(model_path, device=resolve_device(device))
    root = open_predictions(Path(out_dir) / "predictions.zarr", card)
    return predict_stored_image(matches[0], model, card, root, Path(out_dir), params=params, options=options)


def open_predictions(path: Path, card: dict) -> zarr.Group:
    """The predictions group of this model; another model's predictions there are replaced.

    Opening never truncates a group of the same model, so per-image tasks may open it concurrently.
    """
    ident = model_id(card)
    if (path / "zarr.json").is_file():
        root = zarr.open_group(str(path), mode="a")
        if root.attrs.get("segpipe", {}).get("model_id") == ident:
            return root
        log.info("%s holds another model's predictions; replacing them", path)
        shutil.rmtree(path)
    root = zarr.open_group(str(path), mode="a")
    root.attrs["segpipe"] = {"model_id": ident, "dataset": card["dataset"], "classes": card["classes"]}
    return root


def predict_stored_image(
    image: StoredImage,
    model: torch.nn.Module,
    card: dict,
    root: zarr.Group,
    out_dir: Path,
    *,
    params: InferenceParams | None = None,
    options: PredictOptions | None = None,
    on_rows=None,
) -> ImageResult:
    """Predict one image into ``root`` (resuming a partial run), unless it is complete; then export.

    Args:
        image: The stored image (read lazily, window by window).
        model: The trained network, in eval mode.
        card: Its model card.
        root: The predictions group (:func:`open_predictions`).
        out_dir: Run folder; exports go to ``out_dir/predictions``.
        params: Sliding-window settings (default: the card's).
        options: Probabilities kept, exports, instance tiling.
        on_rows: Progress callback ``(frame, row)`` after rows are written and recorded.
    """
    params = params or InferenceParams(**card["inference"])
    options = options or PredictOptions()
    ndim = card["spatial_dims"]
    exports = options.exports if options.exports is not None else (("tiff",) if ndim == 2 else ())
    if image.name in root and root[image.name].attrs.get("complete"):
        log.info("%s: already predicted, skipping", image.name)
        _export(root[image.name], image, card, Path(out_dir), exports, overwrite=False)
        return ImageResult(image.name, skipped=True)
    group = _partial_group(root, image, card, params, options)
    normalization = _normalization(group, image, card)
    n_classes = card["n_classes"]
    frames = image.image.ndim - 1 - ndim
    probabilities = ChannelsFirst(group[IMAGE_LEVEL], frames) if frames else group[IMAGE_LEVEL]
    sink = ZarrSink(
        group, ndim=ndim, n_classes=n_classes, probabilities=probabilities, semantic=group["labels/semantic/s0"]
    )
    stream = stream_predict(
        model,
        image.image,
        sink,
        roi_size=card["patch_size"],
        out_channels=card["out_channels"],
        params=params,
        normalization=normalization,
        activation=partial(activate, n_classes=n_classes),
        device=next(model.parameters()).device,
        on_rows=on_rows,
    )
    log.info("%s: %d windows in %.1f s", image.name, stream.windows, stream.seconds)
    instances = None
    if card["instances"]:
        if not group.attrs.get("instances_done"):
            instances = stream_instance_labels(
                probabilities,
                group["labels/instances/s0"],
                ndim=ndim,
                n_classes=n_classes,
                params=InstanceParams(**card["postprocess"]),
                tiling=options.instances,
                scratch=group,
            )
            group.attrs["instances_stats"] = asdict(instances)
            group.attrs["instances_done"] = True
        else:
            instances = InstanceStats(**group.attrs["instances_stats"])
    final = _finish(root, group, image, card, keep_probabilities=options.probabilities)
    _export(final, image, card, Path(out_dir), exports, overwrite=True)
    return ImageResult(image.name, skipped=False, stream=stream, instances=instances)


def _plan(image: StoredImage, card: dict, params: InferenceParams, options: PredictOptions) -> dict:
    """What a partial prediction must match to be resumed."""
    return {
        "model_id": model_id(card),
        "inference": params.model_dump(),
        "instances": options.instances.model_dump(),
        "source_shape": list(image.image.shape),
    }


def _partial_group(root: zarr.Group, image: StoredImage, card: dict, params, options) -> zarr.Group:
    """The temporary group of ``image``: resumed when it matches the plan, else made afresh."""
    partial_name = f".{image.name}.partial"
    plan = _plan(image, card, params, options)
    if partial_name in root:
        group = root[partial_name]
        if group.attrs.get("plan") == plan:
            log.info("%s: resuming at %s", image.name, group.attrs.get("progress"))
            return group
        del root[partial_name]
    ndim = card["spatial_dims"]
    group = root.create_group(partial_name)
    spatial = tuple(int(s) for s in image.image.shape[1:])
    roi0 = int(card["patch_size"][0])

    frames = len(spatial) - ndim

    def array(where: zarr.Group, name: str, shape, dtype, channels: bool) -> None:
        """Channels after the frame axes (NGFF: time, then channels, then space)."""
        chunks = prediction_chunks(shape, ndim=ndim, channels=channels and not frames, roi0=roi0, overlap=params.overlap)
        if channels and frames:
            chunks = (*chunks[:frames], shape[frames], *chunks[frames + 1 :])
        names = ["t"] * frames + (["c"] if channels else []) + [a["name"] for a in axes_for(ndim, channels=False)]
        where.create_array(
            name, shape=shape, dtype=dtype, chunks=chunks, compressors=COMPRESSOR, dimension_names=names
        )

    channels = card["out_channels"]
    array(group, IMAGE_LEVEL, (*spatial[:frames], channels, *spatial[frames:]), np.float16, True)
    labels = group.create_group("labels")
    array(labels.create_group("semantic"), IMAGE_LEVEL, spatial, np.uint8, False)
    if card["instances"]:
        array(labels.create_group("instances"), IMAGE_LEVEL, spatial, np.uint32, False)
    group.attrs["plan"] = plan
    return group


def _normalization(group: zarr.Group, image: StoredImage, card: dict) -> Normalization:
    """The card's normalization for this image (recorded in the group, so a resumed run uses the same)."""
    if "normalization" in group.attrs:
        return Normalization.from_record(group.attrs["normalization"])
    normalization = stream_normalization(image.image, card["normalization"])
    group.attrs["normalization"] = normalization.to_record()
    return normalization


def _finish(root: zarr.Group, group: zarr.Group, image: StoredImage, card: dict, *, keep_probabilities: bool):
    """Write OME metadata, mark complete and rename the partial group into place."""
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import write_label_metadata

    ndim = card["spatial_dims"]
    frames = image.image.ndim - 1 - ndim
    unit = image.info.get("unit") or "micrometer"
    if keep_probabilities:
        _write_metadata(group, ndim=ndim, frames=frames, channels=True, spacing=image.spacing, unit=unit, name=image.name)
    elif IMAGE_LEVEL in group:
        del group[IMAGE_LEVEL]
    label_root = group["labels"]
    for name in ("semantic", "instances"):
        if name in label_root:
            _write_metadata(
                label_root[name], ndim=ndim, frames=frames, channels=False, spacing=image.spacing, unit=unit, name=name
            )
            write_label_metadata(label_root, name)
    ome = dict(label_root.attrs.get("ome", {}))
    ome.setdefault("version", CurrentFormat().version)  # NGFF 0.5 wants it in every group; ome-zarr leaves it out
    label_root.attrs["ome"] = ome
    group.attrs["complete"] = True
    if image.name in root:
        del root[image.name]
    store_root = Path(str(root.store.root))
    (store_root / root.path / group.basename).rename(store_root / root.path / image.name)
    return zarr.open_group(str(store_root / root.path / image.name), mode="r")


def _write_metadata(group, *, ndim: int, frames: int, channels: bool, spacing, unit: str, name: str) -> None:
    """NGFF multiscales for one level; a frame axis (2D+t, 3D+t) is NGFF's time axis, first."""
    if not frames:
        write_ome_metadata(group, ndim=ndim, channels=channels, spacing=spacing, unit=unit, name=name)
        return
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import write_multiscales_metadata

    space = axes_for(ndim, channels=False)
    for axis in space:
        axis["unit"] = unit
    axes = [{"name": "t", "type": "time"}] + ([{"name": "c", "type": "channel"}] if channels else []) + space
    scale = [1.0] + ([1.0] if channels else []) + [float(s) for s in spacing]
    datasets = [{"path": IMAGE_LEVEL, "coordinateTransformations": [{"type": "scale", "scale": scale}]}]
    write_multiscales_metadata(group, datasets, fmt=CurrentFormat(), axes=axes, name=name)


def _export(group: zarr.Group, image: StoredImage, card: dict, out_dir: Path, formats, *, overwrite: bool) -> None:
    """Write the TIFF and NIfTI exports of the label maps (missing ones only, unless ``overwrite``).

    CTC folders hold sequences, so they are written per split (:func:`export_ctc_sequences`).
    """
    if not formats:
        return
    ndim = card["spatial_dims"]
    frames = image.image.ndim - 1 - ndim
    folder = out_dir / "predictions"
    maps = {name: group[f"labels/{name}/{IMAGE_LEVEL}"] for name in ("semantic", "instances") if name in group["labels"]}
    for fmt in formats:
        for name, array in maps.items():
            if fmt == "tiff":
                path = folder / f"{image.name}_{name}.tif"
                if overwrite or not path.exists():
                    export_tiff(array, path, axes=tiff_axes(ndim, frames))
            elif fmt == "nifti":
                path = folder / f"{image.name}_{name}.nii.gz"
                if overwrite or not path.exists():
                    export_nifti(array, path, affine=source_affine(image.info, ndim=ndim), ndim=ndim)


def read_prediction(root: zarr.Group | str | Path, name: str) -> Prediction:
    """Load the label maps of one predicted image."""
    if not isinstance(root, zarr.Group):
        root = zarr.open_group(str(root), mode="r")
    group = root[name]
    semantic = np.asarray(group[f"labels/semantic/{IMAGE_LEVEL}"])
    instances = np.asarray(group[f"labels/instances/{IMAGE_LEVEL}"]) if "instances" in group["labels"] else None
    return Prediction(name, semantic, instances)
