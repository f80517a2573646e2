"""A finished prediction as viewers see it: pyramid levels, NGFF metadata, and its label maps attached to its image.

The prediction group gets the pyramid levels its source image has (the factors ingest
recorded; none for a store ingested without them) and lies where the image lies (a test
region keeps its translation). Its probabilities are an image whose channels are named after
the classes and the extra outputs (``distance map``, ``boundary map``); its label maps are
NGFF labels with class colours and names (the class map) or without (the object map).

The label maps are also copied under the source image in the dataset store, as
``labels/predicted-semantic`` and ``labels/predicted-instances`` next to the ground truth
(``labels/gt``), so opening the dataset store shows image, ground truth and prediction
together. Each copy records the stamp of the prediction it came from.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import zarr

from segpipe.data import ngff
from segpipe.data.pyramid import average, build_levels, chunk_rows, pick, steps_between
from segpipe.data.store import COMPRESSOR, IMAGE_LEVEL, StoredImage, create_levels, write_ome_metadata
from segpipe.models.card import ModelCard

#: Label maps of a prediction group, and the names of their copies under the source image.
ATTACHED = {"semantic": "predicted-semantic", "instances": "predicted-instances"}
EXTRA_NAMES = {"distance": "distance map", "boundary": "boundary map"}  # the flow's channels: "flow y", "flow x"
STAMP_KEY = "segpipe_prediction"
#: Most objects whose properties an attached object map lists (each costs about 60 bytes of metadata).
MAX_PROPERTIES = 10_000


def channel_names(card: ModelCard) -> list[str]:
    """Names of the probability channels: the classes, then the extra outputs (a flow channel per axis)."""
    return [EXTRA_NAMES.get(name, name) for name in card.output_names]


def factors_of(image: StoredImage) -> list[tuple[int, ...]]:
    """The pyramid levels ingest gave ``image`` (the full resolution only for a store that has none)."""
    ndim = len(image.spacing)
    return [tuple(f) for f in image.info.get("levels") or [(1,) * ndim]]


def write_layers(group: zarr.Group, image: StoredImage, card: ModelCard, *, probabilities: bool) -> None:
    """Build the levels of ``group``'s arrays and write their NGFF metadata.

    Args:
        group: The prediction group (``s0`` probabilities, if kept, and ``labels/<kind>/s0``).
        image: Its source image.
        card: The model's card (class and output names).
        probabilities: Whether ``group`` keeps its probabilities.
    """
    ndim = card.spatial_dims
    frames = image.image.ndim - 1 - ndim
    factors = factors_of(image)
    common = {
        "ndim": ndim, "frames": frames, "spacing": image.spacing, "unit": image.info.get("unit") or "micrometer",
        "factors": factors, "origin": image.info.get("origin"),
    }
    if probabilities:
        _levels(group, factors, ndim=ndim, reduce=average)
        names = channel_names(card)
        write_ome_metadata(group, channels=True, name=f"{image.name} probabilities", averaged=True,
                           omero=ngff.omero(names, [(0.0, 1.0)] * len(names)), **common)
    label_root = group["labels"]
    kinds = [kind for kind in ATTACHED if kind in label_root]
    for kind in kinds:
        _levels(label_root[kind], factors, ndim=ndim, reduce=pick)
        write_ome_metadata(label_root[kind], channels=False, name=kind, averaged=False, **common)
        _set_ome(label_root[kind], {"image-label": ngff.image_label(card.classes, instances=kind == "instances")})
    label_root.attrs["ome"] = ngff.labels_group_attrs(kinds)["ome"]


def attach_to_source(group: zarr.Group, image: StoredImage, *, stamp: str, classes: list[str]) -> None:
    """Copy the label maps of the finished prediction ``group`` (all levels) under ``image`` in its store
    (nothing when ``image`` is not an OME-Zarr image group's level in a local store).

    The copied object map lists each object's class and size in voxels (``properties``, shown
    by napari under the cursor), up to :data:`MAX_PROPERTIES` objects.
    """
    source = source_group(image)
    if source is None:
        return
    label_root = source.require_group("labels")
    listed = [name for name in label_root.attrs.get("ome", {}).get("labels", []) if name not in ATTACHED.values()]
    for kind, name in ATTACHED.items():
        if name in label_root:
            del label_root[name]
        if kind not in group["labels"]:
            continue
        origin = group["labels"][kind]
        attrs = origin.attrs.asdict()
        attrs["ome"]["multiscales"][0]["name"] = name
        target = label_root.create_group(name, attributes={**attrs, STAMP_KEY: stamp})
        counts = None
        for dataset in attrs["ome"]["multiscales"][0]["datasets"]:
            copied = _copy(origin[dataset["path"]], target, dataset["path"], ndim=len(image.spacing))
            counts = copied if counts is None else counts
        if kind == "instances":
            _set_ome(target, {"image-label": {**attrs["ome"]["image-label"], **object_properties(counts, classes)}})
        listed.append(name)
    label_root.attrs["ome"] = ngff.labels_group_attrs(listed)["ome"]


def attached_stamp(image: StoredImage) -> str | None:
    """The stamp of the prediction attached under ``image``, or ``None``."""
    folder = _source_folder(image)
    if folder is None:
        return None
    for name in ATTACHED.values():
        if (folder / "labels" / name / "zarr.json").is_file():
            return zarr.open_group(str(folder / "labels" / name), mode="r").attrs.get(STAMP_KEY)
    return None


def source_group(image: StoredImage) -> zarr.Group | None:
    """The OME-Zarr image group holding ``image``'s pixels, opened for writing (``None``: there is none)."""
    folder = _source_folder(image)
    return zarr.open_group(str(folder), mode="a") if folder is not None else None


def _source_folder(image: StoredImage) -> Path | None:
    root = getattr(image.image.store, "root", None)
    parent = PurePosixPath(image.image.path).parent
    if root is None or str(parent) in ("", "."):
        return None
    folder = Path(str(root)) / parent
    return folder if (folder / "zarr.json").is_file() else None


def _levels(group: zarr.Group, factors, *, ndim: int, reduce) -> None:
    if len(factors) > 1:
        base = group[IMAGE_LEVEL]
        build_levels(base, create_levels(group, base, factors, ndim=ndim), steps_between(factors), reduce=reduce, ndim=ndim)


def _set_ome(group: zarr.Group, extra: dict) -> None:
    group.attrs["ome"] = {**group.attrs["ome"], **extra}


def object_properties(counts: np.ndarray, classes: list[str]) -> dict:
    """``properties`` of an object map with voxel ``counts`` per label value (none over :data:`MAX_PROPERTIES` objects)."""
    present = [int(v) for v in np.flatnonzero(counts) if v > 0]
    if len(present) > MAX_PROPERTIES:
        return {}
    return {"properties": [{"label-value": v, "class": classes[-1], "voxels": int(counts[v])} for v in present]}


def _copy(source: zarr.Array, group: zarr.Group, name: str, *, ndim: int) -> np.ndarray:
    """Copy ``source`` into ``group/name`` (same shape, chunks and axes), one chunk row at a time.

    Returns:
        The number of voxels of each value (index: the value).
    """
    target = group.create_array(
        name, shape=source.shape, dtype=source.dtype, chunks=source.chunks, compressors=COMPRESSOR,
        dimension_names=getattr(source.metadata, "dimension_names", None),
    )
    counts = np.zeros(1, np.int64)
    for prefix, rows in chunk_rows(source, ndim):
        index = (*prefix, *(slice(None),) * (source.ndim - ndim - len(prefix)), rows)
        block = np.asarray(source[index])
        target[index] = block
        found = np.bincount(block.ravel())
        if len(found) > len(counts):
            found[: len(counts)] += counts
            counts = found
        else:
            counts[: len(found)] += found
    return counts
