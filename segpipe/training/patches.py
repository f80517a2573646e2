"""Training patches read straight from the zarr store, for datasets larger than memory.

Small datasets are loaded whole (see :func:`segpipe.training.splits.load_split`); when the training
split exceeds ``TrainParams.memory_limit_gb``, :class:`ZarrPatchDataset` reads each patch
from the store instead:

- a patch centre is drawn on an object with probability ``foreground_ratio`` (from a list of
  object voxels collected chunk by chunk when the dataset opens), elsewhere uniformly (redrawn,
  a few times at most, when it falls on pixels the ground truth leaves unannotated);
- the patch is read with a margin, so the distance target of every object that fits in the
  margin is exactly the whole-image one; the margin is then cropped away;
- intensities are normalized with statistics measured once per image on a subsample;
- an image at another pixel size than the model's is read over the patch's physical extent and
  resampled to the model's grid before its targets are made.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from segpipe.data.store import StoredImage
from segpipe.inference.normalize import Normalization, NormalizationSpec, stream_normalization
from segpipe.inference.resample import spacing_differs
from segpipe.training.grid import to_grid
from segpipe.training.targets import boundary_target, centre_heat, distance_target

FOREGROUND_SAMPLES = 20_000  # object voxels remembered per image for oversampling
CENTRE_TRIES = 10  # uniform draws of a background centre before one on unannotated pixels is kept


class ZarrPatchDataset(Dataset):
    """Random training patches of the stored images (an index is only a draw number).

    Args:
        images: Stored images of the training split (zarr arrays, not loaded).
        patch_size: Spatial size of a patch.
        spec: Normalization entry of the model card.
        instances: Build the distance target from instance labels.
        boundary: Build the touching-boundary target too.
        flow: Build the heat the flow target is made from too (objects cut by the margin get
            their centre inside it).
        length: Number of draws per epoch.
        foreground_ratio: Share of patches centred on an object.
        margin: Extra voxels read around a patch for the distance target.
        transform: Augmentation applied to each patch (without a cropping step).
        seed: Seeds the draws; draw ``i`` is the same for the same seed.
        sparse: Give every patch its unannotated pixels (``ignore``), zeros where there are none.
        spacing: The model's pixel size: images at another are resampled to it patch by patch
            (``None``: every image at its own).
    """

    def __init__(
        self,
        images: list[StoredImage],
        *,
        patch_size,
        spec: NormalizationSpec,
        instances: bool,
        boundary: bool = False,
        flow: bool = False,
        length: int,
        foreground_ratio: float,
        margin: int = 32,
        transform=None,
        seed: int = 0,
        sparse: bool = False,
        spacing=None,
    ):
        self.images = images
        self.patch = tuple(int(p) for p in patch_size)
        self.instances = instances
        self.boundary = boundary
        self.flow = flow
        self.length = length
        self.foreground_ratio = foreground_ratio
        self.margin = margin
        self.transform = transform
        self.seed = seed
        self.sparse = sparse
        self.spacing = None if spacing is None else tuple(float(v) for v in spacing)
        self.sizes = np.array([np.prod(im.image.shape[1:]) for im in images], dtype=np.float64)
        self.normalizations: list[Normalization] = [stream_normalization(im.image, spec) for im in images]
        self.foreground = [_foreground_voxels(im, np.random.default_rng(seed + i)) for i, im in enumerate(images)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        which = int(rng.choice(len(self.images), p=self.sizes / self.sizes.sum()))
        image = self.images[which]
        centre = self._centre(rng, which)
        sample = self.read(image, centre, self.normalizations[which])
        return self.transform(sample) if self.transform is not None else sample

    def _centre(self, rng: np.random.Generator, which: int) -> np.ndarray:
        shape = np.array(self.images[which].image.shape[1:])
        voxels = self.foreground[which]
        if len(voxels) and rng.random() < self.foreground_ratio:
            return voxels[rng.integers(len(voxels))]
        ignore = self.images[which].ignore
        for _ in range(CENTRE_TRIES):
            centre = np.array([rng.integers(0, s) for s in shape])
            if ignore is None or not ignore[tuple(centre)]:
                break
        return centre

    def read(self, image: StoredImage, centre, norm: Normalization) -> dict:
        """The patch around ``centre`` (zero-padded at the borders), as a training sample.

        An image at another pixel size than ``spacing`` is read over the same physical extent
        and resampled to it (:func:`segpipe.training.grid.to_grid`) before its targets are made.
        """
        shape = np.array(image.image.shape[1:])
        resampled = self.spacing is not None and spacing_differs(image.spacing, self.spacing)
        step = np.array(self.spacing) / np.array(image.spacing) if resampled else np.ones(len(shape))
        patch = np.ceil(np.array(self.patch) * step - 1e-6).astype(int)  # image pixels
        margin = np.ceil(self.margin * step - 1e-6).astype(int)
        start = np.clip(np.asarray(centre) - patch // 2, 0, np.maximum(shape - patch, 0))
        outer_start = np.maximum(start - margin, 0)
        outer_stop = np.minimum(start + patch + margin, shape)
        window = tuple(slice(a, b) for a, b in zip(outer_start, outer_stop))
        pixels = norm.apply(np.asarray(image.image[(slice(None), *window)]))
        labels = np.asarray(image.labels[window])
        ignore = np.asarray(image.ignore[window]) > 0 if self.sparse and image.ignore is not None else None
        offset, spacing = start - outer_start, image.spacing
        if resampled:
            pixels, labels, ignore = to_grid(pixels, labels, ignore, spacing=image.spacing, target=self.spacing)
            offset, spacing = np.round(offset / step).astype(int), self.spacing
        inner = tuple(slice(o, o + p) for o, p in zip(offset, self.patch))
        dist = distance_target(labels, spacing=spacing)[inner] if self.instances else None
        edge = boundary_target(labels)[inner] if self.instances and self.boundary else None
        heat = centre_heat(labels)[inner] if self.instances and self.flow else None
        pixels, labels = pixels[(slice(None), *inner)], labels[inner]
        pad = [(0, int(p - s)) for p, s in zip(self.patch, labels.shape)]
        sample = {
            "image": np.pad(pixels, [(0, 0), *pad]),
            "label": np.pad((labels > 0) if self.instances else labels, pad).astype(np.int64)[np.newaxis],
        }
        if dist is not None:
            sample["dist"] = np.pad(dist, pad)[np.newaxis]
        if edge is not None:
            sample["boundary"] = np.pad(edge, pad)[np.newaxis]
        if heat is not None:
            sample["heat"] = np.pad(heat, pad)[np.newaxis]
        if self.sparse:
            ignored = ignore[inner] if ignore is not None else np.zeros(labels.shape)
            sample["ignore"] = np.pad(np.asarray(ignored, np.float32), pad)[np.newaxis]
        return sample


def _foreground_voxels(image: StoredImage, rng: np.random.Generator) -> np.ndarray:
    """Up to ``FOREGROUND_SAMPLES`` object voxel coordinates, collected chunk by chunk."""
    labels = image.labels
    chunks = labels.chunks
    found = []
    for corner in np.ndindex(*(int(np.ceil(s / c)) for s, c in zip(labels.shape, chunks))):
        window = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(corner, chunks, labels.shape))
        block = np.asarray(labels[window])
        coords = np.argwhere(block > 0)
        if len(coords) > FOREGROUND_SAMPLES // 4:
            coords = coords[rng.choice(len(coords), FOREGROUND_SAMPLES // 4, replace=False)]
        found.append(coords + np.array([w.start for w in window]))
    voxels = np.concatenate(found) if found else np.zeros((0, labels.ndim), dtype=np.int64)
    if len(voxels) > FOREGROUND_SAMPLES:
        voxels = voxels[rng.choice(len(voxels), FOREGROUND_SAMPLES, replace=False)]
    return voxels
