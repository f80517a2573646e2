"""Self-configuration: a dataset fingerprint and the training defaults derived from it (nnU-Net-style, kept small)."""

from __future__ import annotations

import math

import numpy as np

from segpipe.data.store import ImageStore
from segpipe.errors import InputError, StoreError
from segpipe.inference.normalize import NormalizationSpec, intensity_percentiles, number_type
from segpipe.inference.object_size import object_extents
from segpipe.inference.resample import resampled_shape
from segpipe.models.unet import LEVELS
from segpipe.training.params import TrainParams

#: Target patch edge per dimensionality (voxels at the finest spacing), and the batch that goes with it on a CPU.
PATCH_EDGE = {2: 128, 3: 32}
BATCH = {2: 8, 3: 2}
#: In 3D the patch edge grows to this many times the typical object's largest extent (instance
#: datasets), up to ``MAX_PATCH_EDGE``: a patch must hold an object with a margin for the distance
#: map to peak at its centre (nuclei of 18 voxels in patches of 32 are segmented at SEG 0.9+).
OBJECT_CONTEXT = 1.75
MAX_PATCH_EDGE = {2: 128, 3: 64}
#: Planned epochs per dimensionality (of ``iterations_per_epoch`` batches): a fixed schedule, as
#: nnU-Net plans one, so a seed gives the same model on any machine of the same kind.
EPOCHS = {2: 40, 3: 10}
#: Batches per epoch: in 3D an epoch is eight times longer, so that 10 epochs (2000 batches of
#: 2 patches) converge on small volumes. At 10 epochs, 200 batches per epoch against 100 gave
#: test SEG 0.693 against 0.617 (synthetic nuclei), 0.864 against 0.843 and 0.995 against 0.993
#: (two generated nuclei volumes) and grey matter Dice 0.959 against 0.958 (MNI152),
#: ``benchmarks/RESULTS.md``.
ITERATIONS = {2: 25, 3: 200}
#: Where the training images hold more pixels than an epoch's patches cover, an epoch takes more
#: batches: enough for its patches to hold ``COVERAGE`` times the training pixels (at the planned
#: pixel size), at most ``MAX_ITERATIONS_SHARE`` times ``ITERATIONS`` (three times in 2D, twice in
#: 3D). The seven imaging styles' whole cells at their files' pixel sizes (21 images, 4.3 million
#: pixels against 3.3 million per epoch of 25 batches of 8 x 128 x 128) want 50: test SEG 0.622 and
#: 0.615 against 0.604 and 0.604 (two seeds), F1@0.5 +0.03 on both; every other bundled set holds
#: under a third of an epoch's pixels and keeps its 25 or 200 (c2c12-phase lost 0.028 SEG at 50,
#: bbbc007 gained 0.004; ``benchmarks/RESULTS.md``, "Batches per epoch from the training images'
#: size"). Rescaled to one
#: object size, the styles hold 6.9 million pixels (79 batches): at the cap of three times 25, 75
#: gave 0.667 and 0.671 against 0.660 and 0.660 at 50 (two seeds), for 1.5 times the training time.
#: 3D keeps the cap of twice 200 (not measured higher: a 3D batch is the slower one on a CPU).
COVERAGE = 1.5
MAX_ITERATIONS_SHARE = {2: 3, 3: 2}
#: Where the typical object size of the training images (each image's median object extent)
#: spans this factor or more between the 10th and 90th percentile image, every image is rescaled
#: so its objects have the median of them (``object_size``), as Cellpose rescales cells to one
#: diameter; new images are predicted at the scale a first prediction estimates
#: (:mod:`segpipe.prediction.object_size`). The seven imaging styles' cells span a factor 3.25
#: (20 to 65 pixels) and gain 0.038 SEG rescaled; c2c12-phase's frames span 1.52 (13 to 20 pixels:
#: small cells, which resampling blurs) and lose 0.068 (``benchmarks/RESULTS.md``, "Objects
#: rescaled to one size").
SIZE_SPREAD = 2.0
#: U-Net widths (five encoder levels, then the last decoder level): 3D patches hold 8-16 times
#: more voxels per sample, so 3D halves every width (a quarter of the computation per voxel).
UNET_FEATURES = {2: (16, 32, 64, 128, 256, 16), 3: (8, 16, 32, 64, 128, 8)}
OTHER_FEATURES = (16, 32, 64, 128, 256)  # the FCN and other networks: five widths
DIVISOR = 2**LEVELS  # 16: four 2x2 poolings in the U-Net; the FCN pads itself
#: An axis is pooled at a level, while it has poolings left, when its pixel size is at most this
#: many times the finest (nnU-Net's rule): a thick z step waits until the others have caught up.
ANISOTROPY = 2.0


def fingerprint_store(store: ImageStore) -> dict:
    """Summarize the training split: shapes, spacing, channels, intensities, objects.

    Returns:
        JSON-ready dict saved next to the model and printed before training.
    """
    images = store.images("train", labelled=True)
    if not images:
        raise StoreError(f"{store.path}: no image of the training split has ground truth; nothing to train on")
    shapes = np.array([im.image.shape[1:] for im in images])
    spacings = np.array([im.spacing for im in images])
    volume = float(np.sum(np.prod(shapes * spacings, axis=1)))
    lows, highs, ranges, objects, foreground, extents, zeros, typical = [], [], [], [], [], [], [], []
    rng = np.random.default_rng(0)
    for im in images:
        pixels = np.asarray(im.image)
        image = pixels[0]
        bounds = [intensity_percentiles(channel, (1.0, 99.8), skip_fill=True) for channel in pixels]
        lows.append(bounds[0][0])
        highs.append(bounds[0][1])
        ranges.append([hi - lo for lo, hi in bounds])
        zeros.append(float(np.mean(~np.any(pixels != 0, axis=0))))
        if im.labels is not None:
            labels = np.asarray(im.labels)
            objects.append(int(len(np.unique(labels)) - 1))
            if store.instances:
                own = object_extents(labels, im.spacing)
                extents += own
                typical += [float(np.median(own))] if own else []
            values = image[labels > 0]
            if values.size:
                foreground.append(rng.choice(values, size=min(values.size, 100_000), replace=False))
    return {
        "n_train": len(images),
        "channels": int(images[0].image.shape[0]),
        "median_shape": [int(v) for v in np.median(shapes, axis=0)],
        "min_shape": [int(v) for v in shapes.min(axis=0)],
        "median_spacing": [float(v) for v in np.median(spacings, axis=0)],
        # no file (nor the catalog) gave a pixel size: 1 per pixel was taken, no physical size
        "spacing_guessed": all(im.spacing_guessed for im in images),
        "dtypes": sorted({str(im.image.dtype) for im in images}),
        "train_volume": volume,
        "intensity_p1": float(np.median(lows)),
        "intensity_p99_8": float(np.median(highs)),
        "intensity_range": [float(v) for v in np.median(np.array(ranges), axis=0)],
        "zero_share": float(np.median(zeros)),
        "objects_per_image": float(np.mean(objects)) if objects else None,
        "object_extent": float(np.median(extents)) if extents else None,
        "image_extents": typical or None,
        "foreground_intensity": _intensity_stats(np.concatenate(foreground)) if foreground else None,
    }


def _intensity_stats(values: np.ndarray) -> dict:
    """Foreground intensity statistics (for CT windowing), as nnU-Net collects them."""
    values = values.astype(np.float64)
    p0_5, p99_5 = np.percentile(values, (0.5, 99.5))
    return {"mean": float(values.mean()), "std": float(values.std()), "p0_5": float(p0_5), "p99_5": float(p99_5)}


def patch_edge(ndim: int, spacing: list[float], object_extent: float | None = None) -> float:
    """The target patch edge in voxels of the finest spacing: ``PATCH_EDGE``, or in 3D
    ``OBJECT_CONTEXT`` times the typical object's extent when that is larger (at most ``MAX_PATCH_EDGE``)."""
    edge = float(PATCH_EDGE[ndim])
    if ndim == 3 and object_extent:
        edge = max(edge, OBJECT_CONTEXT * object_extent / min(spacing))
    return min(edge, float(MAX_PATCH_EDGE[ndim]))


def plan_spacing(ndim: int, spacing: list[float], object_extent: float | None = None) -> tuple[float, ...]:
    """The pixel size to train and predict at: ``spacing``, or, when the typical object with its
    surroundings (``OBJECT_CONTEXT`` times its ``object_extent``) spans more than ``MAX_PATCH_EDGE``
    pixels of the finest axis, a coarser one on which it spans that many.

    Only axes finer than the new pixel size change (a thick z step stays as it is). A patch then
    holds a whole object, as Cellpose rescales cells to one diameter: a network trained on
    windows smaller than its objects sees their insides as texture and no border, and splits
    them into pieces.
    """
    finest = min(spacing)
    span = OBJECT_CONTEXT * object_extent / finest if object_extent else 0.0
    if span <= MAX_PATCH_EDGE[ndim]:
        return tuple(float(s) for s in spacing)
    coarser = float(f"{finest * span / MAX_PATCH_EDGE[ndim]:.3g}")  # a size a person can read and type
    return tuple(float(max(s, coarser)) for s in spacing)


def plan_patch_size(median_shape: list[int], spacing: list[float], *, edge: float | None = None) -> tuple[int, ...]:
    """A patch of about ``edge`` (default ``PATCH_EDGE``) physical-isotropic edge, no larger than the median image.

    ``edge`` counts voxels of the finest spacing: axes with coarser spacing get proportionally
    fewer voxels; every edge is a multiple of 16, rounded down where the image is smaller than
    the target (so random crops still vary), and at least 16. Along an axis the image has fewer
    than 16 pixels of (a stack of a few slices), the edge is the largest power of two it holds,
    and the U-Net pools that axis fewer times (:func:`plan_pools`) instead of learning from padding.
    """
    ndim = len(median_shape)
    edge = PATCH_EDGE[ndim] if edge is None else edge
    finest = min(spacing)
    patch = []
    for size, step in zip(median_shape, spacing):
        want = edge * finest / step
        if size < DIVISOR:
            patch.append(2 ** int(math.floor(math.log2(max(size, 1)))))
            continue
        multiple = math.ceil(want / DIVISOR) if want <= size else math.floor(size / DIVISOR)
        patch.append(max(DIVISOR, int(multiple * DIVISOR)))
    return tuple(patch)


def plan_pools(patch_size: tuple[int, ...], spacing: tuple[float, ...]) -> tuple[tuple[int, ...], ...] | None:
    """The U-Net's pooling factors per level and axis for ``patch_size``, or None for 2 everywhere.

    An axis is pooled at most as many times (up to four) as its patch edge halves, and not at a
    level where it is more than ``ANISOTROPY`` times coarser than the finest axis still to pool, as
    nnU-Net plans anisotropic networks: a z step of 3 um against 0.5 um pixels waits until two
    poolings of y and x have brought them to 2 um. Patches whose edges are all multiples of 16 on
    a grid at most that anisotropic get the plain U-Net.
    """
    left = [min(LEVELS, _twos(p)) for p in patch_size]
    step = [float(s) for s in spacing]
    pools = []
    for _ in range(LEVELS):
        finest = min((s for k, s in zip(left, step) if k > 0), default=0.0)  # of the axes still to pool
        factors = tuple(2 if k > 0 and s <= ANISOTROPY * finest else 1 for k, s in zip(left, step))
        for axis, factor in enumerate(factors):
            if factor == 2:
                left[axis] -= 1
                step[axis] *= 2
        pools.append(factors)
    if all(f == 2 for level in pools for f in level):
        return None
    return tuple(pools)


def _twos(n: int) -> int:
    """How many times ``n`` halves to an integer."""
    count = 0
    while n > 0 and n % 2 == 0:
        n //= 2
        count += 1
    return count


#: How the distance map is learnt, by spatial dimensions (see :class:`segpipe.training.losses.SegmentationLoss`).
DISTANCE_LOSS = {2: "bce", 3: "mse"}
#: Weight of the flow's loss by spatial dimensions; 0: no flow output (see :class:`segpipe.training.params.TrainParams`).
#: In 2D it weighs eight times the distance map's: on the seven imaging styles' whole cells (two
#: seeds), weight 1 gave test SEG 0.546 and 0.510, 4 gave 0.564 and 0.529, 8 gives 0.585 and 0.547
#: (``benchmarks/RESULTS.md``, "The flow weighted four times" and "The flow weighted eight times");
#: the small-object sets pay for it: dsb2018-nuclei 0.790 against 0.811, c2c12-phase 0.568 against
#: 0.578 with weight 4 (one seed each, "... on the other real sets"). In 3D the same weight: on
#: synthetic-nuclei-3d, seeds 0-3, test SEG 0.764, 0.760, 0.771, 0.768 against 0.744, 0.757, 0.726, 0.770
#: without; the trade, two seeds: nuclei3d-crowded-small 0.852 and 0.843 against 0.860 and 0.858,
#: fluo-n3dh-cho 0.897 and 0.909 against 0.910 and 0.911 ("The flow in 3D"): the set below the 0.75
#: goal is lifted, the sets above it lose about 0.01 (nuclei3d-sparse-large 0.988 against 0.996).
FLOW_WEIGHT = {2: 8.0, 3: 8.0}


def plan_training(fingerprint: dict, config: TrainParams) -> TrainParams:
    """Fill what ``config`` leaves open (``None``) from the fingerprint."""
    ndim = len(fingerprint["median_shape"])
    updates = {}
    if config.epochs is None:
        updates["epochs"] = EPOCHS[ndim]
    extent = fingerprint.get("object_extent")
    if config.spacing is None:
        updates["spacing"] = plan_spacing(ndim, fingerprint["median_spacing"], extent)
    elif len(config.spacing) != ndim:
        raise InputError(f"training: spacing {list(config.spacing)} has {len(config.spacing)} axes, the data has {ndim}")
    if config.patch_size is None:
        spacing = updates.get("spacing", config.spacing)
        shape = resampled_shape(fingerprint["median_shape"], fingerprint["median_spacing"], spacing)
        updates["patch_size"] = plan_patch_size(list(shape), spacing, edge=patch_edge(ndim, spacing, extent))
    elif len(config.patch_size) != ndim:
        raise InputError(f"training: patch_size {list(config.patch_size)} has {len(config.patch_size)} axes, the data has {ndim}")
    if config.batch_size is None:
        updates["batch_size"] = BATCH[ndim]
    if config.iterations_per_epoch is None:
        updates["iterations_per_epoch"] = plan_iterations(
            fingerprint.get("train_volume"),
            spacing=updates.get("spacing", config.spacing),
            patch_size=updates.get("patch_size", config.patch_size),
            batch_size=updates.get("batch_size", config.batch_size),
        )
    if config.distance_loss is None:
        updates["distance_loss"] = DISTANCE_LOSS[ndim]
    if config.flow_weight is None:
        updates["flow_weight"] = FLOW_WEIGHT[ndim]
    if config.features is None:
        updates["features"] = UNET_FEATURES[ndim] if config.network == "unet" else OTHER_FEATURES
    return config.model_copy(update=updates)


def plan_object_size(fingerprint: dict, config: TrainParams) -> float:
    """The typical object extent every image is rescaled to, or 0: ``config.object_size`` when
    set, else the median of the training images' typical extents where they spread by
    ``SIZE_SPREAD`` or more (instance datasets), else 0."""
    if config.object_size is not None:
        return float(config.object_size)
    typical = fingerprint.get("image_extents") or []
    if len(typical) < 2:
        return 0.0
    low, high = np.percentile(typical, (10, 90))
    return float(np.median(typical)) if high >= SIZE_SPREAD * low else 0.0


def plan_iterations(volume: float | None, *, spacing, patch_size, batch_size: int) -> int:
    """Batches per epoch: ``ITERATIONS``, or more where the training images (``volume``: their summed
    physical size, pixels times pixel area or volume) hold more pixels at ``spacing`` than an epoch's
    patches cover, enough to cover them ``COVERAGE`` times, at most ``MAX_ITERATIONS_SHARE`` times as many."""
    base = ITERATIONS[len(spacing)]
    if not volume:
        return base
    pixels = volume / math.prod(spacing)
    wanted = math.ceil(COVERAGE * pixels / (batch_size * math.prod(patch_size)))
    return int(min(max(base, wanted), MAX_ITERATIONS_SHARE[len(spacing)] * base))


#: When at least this share of the training voxels is exactly 0 in every channel (a skull-stripped
#: MRI's background), z-scoring measures the nonzero voxels only, as nnU-Net does when cropping
#: to the nonzero region would shrink the images by a quarter.
ZERO_SHARE = 0.25
#: The percentile range of an image is never taken as less than this share of the training
#: images' typical range (per channel): an empty, noisy field is not stretched into "objects".
MIN_RANGE_SHARE = 0.25


def floor_type(dtypes: list[str]) -> str | None:
    """The pixel type the range floor is for (the floor is in the training images' units): ``float``,
    or the narrowest integer type of the training images; ``None`` when they mix floats and integers."""
    kinds = {number_type(d) for d in dtypes}
    if len(kinds) != 1:
        return None
    return "float" if kinds == {"float"} else str(min((np.dtype(d) for d in dtypes), key=lambda d: d.itemsize))


def normalization_spec(method: str, fingerprint: dict) -> NormalizationSpec:
    """The normalization entry of a model card, with what the method needs from the fingerprint."""
    if method == "percentile":
        floor = [MIN_RANGE_SHARE * r for r in fingerprint["intensity_range"]] if fingerprint.get("intensity_range") else None
        return NormalizationSpec(method=method, low=1.0, high=99.8, min_range=floor, skip_fill=True,
                                 floor_for=floor_type(fingerprint.get("dtypes") or []) if floor else None)
    if method == "zscore":
        return NormalizationSpec(method=method, low=0.5, high=99.5, nonzero=fingerprint.get("zero_share", 0.0) >= ZERO_SHARE)
    stats = fingerprint["foreground_intensity"]
    return NormalizationSpec(method=method, window=(stats["p0_5"], stats["p99_5"]), mean=stats["mean"], std=stats["std"])
