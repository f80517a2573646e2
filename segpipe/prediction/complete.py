"""Completing a prediction once the network has run: objects, pyramid levels, the group put in place, exports.

:func:`segpipe.prediction.predict.run_network` runs the network on an image and hands over a
:class:`Predicted` (or :class:`Current`, when the store's prediction is current); its
:meth:`~Predicted.complete` makes the instance labels, writes the pyramid levels and NGFF
metadata, renames the partial group into place and writes the exports. None of this needs
torch, so ``segpipe segment`` completes one image in a process of its own, without loading
torch there, while the network predicts the next.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zarr

from segpipe.data.collection import Entry, add_to_collection
from segpipe.data.store import COMPRESSOR, IMAGE_LEVEL, StoredImage, axes_for
from segpipe.inference.instances import InstanceStats, stream_instance_labels
from segpipe.inference.normalize import Normalization
from segpipe.inference.sink import StreamStats
from segpipe.inference.zarr_sink import ChannelsFirst, prediction_chunks
from segpipe.models.card import ModelCard
from segpipe.prediction.export import affine_unit, export_nifti, export_tiff, labels_space, source_affine, tiff_axes
from segpipe.prediction.layers import attach_to_source, attached_stamp, write_layers
from segpipe.prediction.noise_frames import NOISE_ATTR
from segpipe.prediction.params import PredictParams
from segpipe.prediction.resampled import RECORD_ATTR, Grids, drop_scratch, image_grid
from segpipe.prediction.store import IMAGE_DIGEST_ATTR, STAMP_ATTR, PredictionStore

log = logging.getLogger(__name__)

#: Images of at least this many pixels or voxels show their progress, and say when their objects
#: are separated and measured: 2048 x 2048 pixels, a minute or more on 2 CPU cores.
LARGE = 1 << 22


@dataclass(frozen=True)
class ImageResult:
    """What predicting one image did."""

    name: str
    skipped: bool
    stamp: str
    stream: StreamStats | None = None
    instances: InstanceStats | None = None



@dataclass(frozen=True)
class Current:
    """An image whose complete prediction is current: nothing to predict, only to attach and export as asked."""

    image: StoredImage
    card: ModelCard
    params: PredictParams
    predictions: PredictionStore
    stamp: str

    def complete(self, *, exports: Path | None = None, attach: bool = True) -> ImageResult:
        """Attach the label maps where the dataset store was ingested again, and write missing exports."""
        image, card, params = self.image, self.card, self.params
        group = self.predictions.root[image.name]
        if attach and attached_stamp(image) != self.stamp:
            attach_to_source(group, image, stamp=self.stamp, classes=card.classes)
        formats = params.export_formats(card.spatial_dims) if exports is not None else ()
        export_maps(group, image, card, exports, formats, overwrite=False)
        return ImageResult(image.name, skipped=True, stamp=self.stamp)


@dataclass
class Predicted:
    """An image the network has predicted, before its labels are made and written (:meth:`complete`).

    Splitting the two lets a caller run the network on the next image while this one is completed
    in another thread or process (``segpipe segment`` does): it holds no network, and pickles.
    """

    image: StoredImage
    card: ModelCard
    params: PredictParams
    predictions: PredictionStore
    group: zarr.Group | None
    """The partial group the probabilities were streamed into; ``None`` for an image predicted in memory."""
    stamp: str
    image_digest: str
    """The digest of the stored image predicted (recorded with the prediction for scoring)."""
    grids: Grids
    normalization: Normalization
    stream: StreamStats
    values: np.ndarray | None
    """The probabilities in memory as the store keeps them (float16), or ``None`` where they were streamed into ``group``."""
    semantic: np.ndarray | None = None
    """The class map of an image predicted in memory (made from the float32 probabilities)."""

    def complete(self, *, exports: Path | None = None, attach: bool = True) -> ImageResult:
        """Write what is in memory, make the objects, finish the group and export."""
        image, card, params, group = self.image, self.card, self.params, self.group
        ndim, n_classes = card.spatial_dims, card.n_classes
        frames = image.image.ndim - 1 - ndim
        in_memory = self.values is not None
        if group is None:  # predicted in memory: its group is made now, written once
            group = partial_group(self.predictions.root, image, card, self.stamp, overlap=None, image_digest=self.image_digest)
            group.attrs.update({RECORD_ATTR: self.grids.record(), "normalization": self.normalization.to_record()})
        if self.stream.noise_frames:  # frames of only noise, predicted as background (segpipe.inference.noise)
            group.attrs[NOISE_ATTR] = sorted(set(group.attrs.get(NOISE_ATTR, [])) | set(self.stream.noise_frames))
        semantic = group["labels/semantic/s0"]
        if in_memory:  # the objects are made from what the store keeps
            probabilities = self.values
            if params.probabilities:
                group[IMAGE_LEVEL][...] = probabilities
            semantic[...] = self.semantic
        else:
            probabilities = ChannelsFirst(group[IMAGE_LEVEL], frames) if frames else group[IMAGE_LEVEL]
        if self.grids.resample:
            image_grid(group, probabilities, semantic, card=card, name=image.name)
        instances = None
        large = int(np.prod(image.image.shape[1:], dtype=np.int64)) >= LARGE
        if card.instances:
            if not group.attrs.get("instances_done"):
                started = time.monotonic()
                if large:  # minutes on a large image, after the network's progress bar has ended
                    log.info("%s: separating the objects (%s pixels)", image.name, f"{int(np.prod(image.image.shape[1:])):,}")
                out = group["labels/instances/s0"]
                labels = np.zeros(out.shape, out.dtype) if in_memory else out
                instances = stream_instance_labels(
                    probabilities,
                    labels,
                    ndim=ndim,
                    n_classes=n_classes,
                    params=self.grids.post_processing(card.instance_params()),
                    tiling=params.instances,
                    scratch=group,
                )
                if in_memory:
                    out[...] = labels
                objects_class_map(labels, semantic)
                group.attrs["instances_stats"] = asdict(instances)
                group.attrs["instances_done"] = True
                if large:
                    log.info("%s: %s objects in %.0f s; writing the labels", image.name, f"{instances.objects:,}",
                             time.monotonic() - started)
            else:
                instances = InstanceStats(**group.attrs["instances_stats"])
        final = finish_group(self.predictions.root, group, image, card, keep_probabilities=params.probabilities)
        if attach:
            attach_to_source(final, image, stamp=self.stamp, classes=card.classes)
        formats = params.export_formats(card.spatial_dims) if exports is not None else ()
        export_maps(final, image, card, exports, formats, overwrite=True)
        return ImageResult(image.name, skipped=False, stamp=self.stamp, stream=self.stream, instances=instances)



def objects_class_map(labels, semantic) -> None:
    """Write an instance model's class map as its objects' foreground (``labels > 0``).

    The network's likelier class at each pixel draws a rim that the objects, cut at the tuned
    foreground threshold, lack; the class map the store, the exports and the pixel scores use is
    the objects' own. Written block by block along the first axis, so a streamed image's labels
    are never read whole.
    """
    step = int(labels.chunks[0]) if hasattr(labels, "chunks") else int(labels.shape[0])
    for lo in range(0, int(labels.shape[0]), max(step, 1)):
        block = slice(lo, lo + max(step, 1))
        semantic[block] = (np.asarray(labels[block]) > 0).view(np.uint8)


def partial_group(
    root: zarr.Group, image: StoredImage, card: ModelCard, stamp: str, *, overlap: float | None, image_digest: str | None = None
) -> zarr.Group:
    """The temporary group of ``image``: a streamed one is resumed when it was made from the same
    inputs; otherwise (and for arrays written whole) it is made afresh.

    ``overlap``: the windows' overlap, for arrays written row by row as the windows finish
    (chunked by the window step); ``None`` for arrays written whole (:func:`whole_chunks`): there
    is nothing to resume, and a streamed run's leftover would have the wrong chunks.
    ``image_digest``: the stored image's digest, recorded for scoring (``IMAGE_DIGEST_ATTR``).
    """
    partial_name = f".{image.name}.partial"
    plan = {"stamp": stamp, "source_shape": list(image.image.shape)}
    if partial_name in root:
        group = root[partial_name]
        if overlap is not None and group.attrs.get("plan") == plan:
            done = group.attrs.get("progress")
            where = (f"after {done.get('rows', 0)} finished row(s) of frame {done.get('frames', 0)}" if isinstance(done, dict)
                     else "from its start: nothing was finished")
            log.info("%s: resuming the prediction an interrupted run began, %s", image.name, where)
            return group
        del root[partial_name]
    ndim = card.spatial_dims
    group = root.create_group(partial_name)
    spatial = tuple(int(s) for s in image.image.shape[1:])
    roi0 = int(card.patch_size[0])

    frames = len(spatial) - ndim

    def array(where: zarr.Group, name: str, shape, dtype, channels: bool) -> None:
        """Channels after the frame axes (NGFF: time, then channels, then space)."""
        if overlap is None:
            chunks = whole_chunks(shape, ndim=ndim)
        else:
            chunks = prediction_chunks(shape, ndim=ndim, channels=channels and not frames, roi0=roi0, overlap=overlap)
        if channels and frames:
            chunks = (*chunks[:frames], shape[frames], *chunks[frames + 1 :])
        names = ["t"] * frames + (["c"] if channels else []) + [a["name"] for a in axes_for(ndim, channels=False)]
        where.create_array(
            name, shape=shape, dtype=dtype, chunks=chunks, compressors=COMPRESSOR, dimension_names=names
        )

    channels = card.out_channels
    array(group, IMAGE_LEVEL, (*spatial[:frames], channels, *spatial[frames:]), np.float16, True)
    labels = group.create_group("labels")
    array(labels.create_group("semantic"), IMAGE_LEVEL, spatial, np.uint8, False)
    if card.instances:
        array(labels.create_group("instances"), IMAGE_LEVEL, spatial, np.uint32, False)
    group.attrs.update({"plan": plan, STAMP_ATTR: stamp})
    if image_digest is not None:
        group.attrs[IMAGE_DIGEST_ATTR] = image_digest
    return group



#: Edge of the chunks of a prediction written whole, per spatial dimensionality (about a million voxels).
WHOLE_EDGE = {2: 1024, 3: 128}


def whole_chunks(shape, *, ndim: int) -> tuple[int, ...]:
    """Chunks of an array ``([channels,] *spatial)`` written in one go: all channels together and
    spatial edges of :data:`WHOLE_EDGE` (a 512x512 image is one chunk, not the 16 row strips a
    streamed prediction needs; each chunk is a file, so this is most of the files written per image)."""
    edge = WHOLE_EDGE[ndim]
    lead = len(shape) - ndim
    return (*(int(s) for s in shape[:lead]), *(min(int(s), edge) for s in shape[lead:]))



def finish_group(root: zarr.Group, group: zarr.Group, image: StoredImage, card: ModelCard, *, keep_probabilities: bool):
    """Write pyramid levels and OME metadata, mark complete, rename the partial group into place and list it at the root."""
    drop_scratch(group)
    if not keep_probabilities and IMAGE_LEVEL in group:
        del group[IMAGE_LEVEL]
    write_layers(group, image, card, probabilities=keep_probabilities)
    group.attrs["complete"] = True
    if image.name in root:
        del root[image.name]
    store_root = Path(str(root.store.root))
    (store_root / root.path / group.basename).rename(store_root / root.path / image.name)
    final = zarr.open_group(str(store_root / root.path / image.name), mode="r")
    if keep_probabilities:
        add_to_collection(root, Entry.of(root, image.name))
    return final


def export_maps(group: zarr.Group, image: StoredImage, card: ModelCard, folder: Path | None, formats, *, overwrite: bool) -> None:
    """Write the TIFF and NIfTI exports of the label maps into ``folder`` (missing ones only, unless ``overwrite``).

    CTC folders hold sequences, so they are written per split (:func:`export_ctc_sequences`).
    """
    if folder is None or not formats:
        return
    ndim = card.spatial_dims
    frames = image.image.ndim - 1 - ndim
    maps = {name: group[f"labels/{name}/{IMAGE_LEVEL}"] for name in ("semantic", "instances") if name in group["labels"]}
    for fmt in formats:
        for name, array in maps.items():
            if fmt == "tiff":
                path = folder / f"{image.name}_{name}.tif"
                if overwrite or not path.exists():
                    export_tiff(array, path, axes=tiff_axes(ndim, frames), spacing=image.spacing, unit=image.info.get("unit"))
            elif fmt == "nifti":
                path = folder / f"{image.name}_{name}.nii.gz"
                if overwrite or not path.exists():
                    export_nifti(array, path, affine=source_affine(image.info, ndim=ndim), ndim=ndim, unit=affine_unit(image.info),
                                 world=labels_space(image.info), qform=image.info.get("qform"),
                                 qform_space=image.info.get("qform_space"))

