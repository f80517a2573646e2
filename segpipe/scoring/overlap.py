"""Overlap (contingency) table of two label images, built without loops over objects.

Every metric in :mod:`segpipe.scoring` starts from the same table: how many pixels each pair
of (ground-truth object, predicted object) shares. Only the pixels where both images hold an
object are paired, and only non-empty cells are kept.

When the largest ids are small (below the pixel count, or 65536), the raw ids are used
directly: object sizes from :func:`numpy.bincount`, pair counts from one ``bincount`` of
``gt_id * (max_pred + 1) + pred_id`` over the shared pixels (or one :func:`numpy.unique` when
that dense table would be larger than the image), and ids are compacted to ``0..n-1`` only in
the small table. The images are walked in slabs of about four million pixels, so the
temporary arrays stay small whatever the image size. Larger ids (up to ``uint64``) are first
compacted with one sort and a binary search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A dense lookup table (ids -> compact index) is used while the largest id stays below this
# or below the number of pixels, whichever is larger.
_LUT_LIMIT = 1 << 16
# Pixels per slab when walking large images.
_CHUNK = 1 << 22
# Pair keys are counted in a dense table up to this many possible keys (8 MiB), else sorted.
_DENSE_KEYS = 1 << 20


@dataclass(frozen=True, eq=False)
class Overlap:
    """Non-empty cells of the contingency table of two label images, background left out.

    Attributes:
        gt_ids: Ground-truth object ids (nonzero values), sorted.
        gt_sizes: Pixel count of each entry of ``gt_ids``.
        pred_ids: Predicted object ids (nonzero values), sorted.
        pred_sizes: Pixel count of each entry of ``pred_ids``.
        gt_index: For each pair of objects that share pixels, its row (index into ``gt_ids``).
        pred_index: For each such pair, its column (index into ``pred_ids``).
        count: For each such pair, the number of shared pixels.
    """

    gt_ids: np.ndarray
    gt_sizes: np.ndarray
    pred_ids: np.ndarray
    pred_sizes: np.ndarray
    gt_index: np.ndarray
    pred_index: np.ndarray
    count: np.ndarray

    def union(self) -> np.ndarray:
        """Pixel count of the union of each pair's two objects (aligned with ``count``)."""
        return self.gt_sizes[self.gt_index] + self.pred_sizes[self.pred_index] - self.count


def check_label_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check two label images and return them as arrays.

    Args:
        gt: Ground-truth labels (integer or bool, non-negative).
        pred: Predicted labels, same shape as ``gt``.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth has shape {gt.shape} but prediction has shape {pred.shape}")
    return check_labels(gt, "ground truth"), check_labels(pred, "prediction")


def check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """Refuse non-integer or negative labels; bool becomes ``uint8``.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: A negative label.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{what} labels have dtype {labels.dtype}; expected an integer or bool dtype")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError(f"{what} labels hold negative values (minimum {labels.min()})")
    return labels


def compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map the objects of a label image to ``0..n-1``.

    Args:
        labels: Non-negative integer labels, any shape; 0 is background.

    Returns:
        ``(ids, index, sizes)``: the sorted nonzero ids (in the input dtype); for every pixel
        (flattened) the index of its id, or -1 on background; and the pixel count of each id.
    """
    flat = labels.reshape(-1)
    high = int(flat.max()) if flat.size else 0
    if high < max(_LUT_LIMIT, flat.size):
        flat = flat.astype(np.intp, copy=False)
        counts = np.bincount(flat, minlength=1)
        counts[0] = 0
        ids = np.flatnonzero(counts)
        lut = np.full(high + 1, -1, np.intp)
        lut[ids] = np.arange(ids.size)
        return ids.astype(labels.dtype), lut[flat], counts[ids].astype(np.int64)
    # Large ids: sort once, then binary search (much faster than unique(return_inverse=True)).
    ids = np.unique(flat)
    ids = ids[ids != 0]
    index = np.searchsorted(ids, flat)
    index[flat == 0] = -1
    sizes = np.bincount(index[index >= 0], minlength=ids.size)
    return ids, index.astype(np.intp, copy=False), sizes.astype(np.int64)


def overlap(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    """Contingency table of the objects of two label images of the same shape (any rank).

    Args:
        gt: Ground-truth labels; 0 is background, other ids need not be consecutive.
        pred: Predicted labels, same shape.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    gt, pred = check_label_pair(gt, pred)
    g, p = gt.reshape(-1), pred.reshape(-1)
    g_max = int(g.max()) if g.size else 0
    p_max = int(p.max()) if p.size else 0
    limit = max(_LUT_LIMIT, g.size)
    if g_max < limit and p_max < limit:
        return _overlap_small_ids(g, p, g_max, p_max)
    return _overlap_compacted(gt, pred)


def _overlap_small_ids(g: np.ndarray, p: np.ndarray, g_max: int, p_max: int) -> Overlap:
    """Raw ids below the pixel count: count ``(gt id, pred id)`` pairs over slabs, then compact.

    Every pixel where either image holds an object gives the key ``gt * (p_max + 1) + pred``;
    the counts of the keys (one ``bincount`` while the key space is small, else one
    ``unique`` per slab, fast because objects make long runs of equal keys) hold the pair
    counts and, in the pairs with background, the rest of each object's size.
    """
    width = p_max + 1
    n_keys = (g_max + 1) * width
    key_type = np.uint32 if n_keys <= 1 << 32 else np.uint64  # 32-bit keys sort twice as fast
    dense = np.zeros(n_keys, np.int64) if n_keys <= _DENSE_KEYS else None
    keys, counts = [], []
    for start in range(0, g.size, _CHUNK):
        gc, pc = g[start : start + _CHUNK], p[start : start + _CHUNK]
        fg = (gc != 0) | (pc != 0)
        key = gc[fg].astype(key_type) * key_type(width) + pc[fg].astype(key_type)
        if dense is not None:
            dense += np.bincount(key, minlength=n_keys)
        elif key.size:
            k, c = np.unique(key, return_counts=True)
            keys.append(k)
            counts.append(c)
    if dense is not None:
        cells = np.flatnonzero(dense)
        count = dense[cells]
    elif len(keys) > 1:
        cells, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        count = np.bincount(inverse, weights=np.concatenate(counts), minlength=cells.size).astype(np.int64)
    elif keys:
        cells, count = keys[0], counts[0].astype(np.int64)
    else:
        cells = count = np.zeros(0, np.int64)
    g_raw, p_raw = np.divmod(cells.astype(np.int64), width)
    g_sizes = np.bincount(g_raw, weights=count, minlength=g_max + 1).astype(np.int64)
    p_sizes = np.bincount(p_raw, weights=count, minlength=p_max + 1).astype(np.int64)
    g_sizes[0] = p_sizes[0] = 0
    gt_ids, pred_ids = np.flatnonzero(g_sizes), np.flatnonzero(p_sizes)
    g_lut = np.zeros(g_max + 1, np.intp)
    g_lut[gt_ids] = np.arange(gt_ids.size)
    p_lut = np.zeros(p_max + 1, np.intp)
    p_lut[pred_ids] = np.arange(pred_ids.size)
    pair = (g_raw != 0) & (p_raw != 0)
    return Overlap(
        gt_ids=gt_ids.astype(g.dtype),
        gt_sizes=g_sizes[gt_ids],
        pred_ids=pred_ids.astype(p.dtype),
        pred_sizes=p_sizes[pred_ids],
        gt_index=g_lut[g_raw[pair]],
        pred_index=p_lut[p_raw[pair]],
        count=count[pair],
    )


def _overlap_compacted(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    """Any ids: compact both images to ``0..n-1`` first."""
    gt_ids, gt_flat, gt_sizes = compact(gt)
    pred_ids, pred_flat, pred_sizes = compact(pred)
    both = (gt_flat >= 0) & (pred_flat >= 0)
    n_rows, n_cols = gt_ids.size, pred_ids.size
    key = gt_flat[both].astype(np.int64) * n_cols + pred_flat[both]
    if key.size == 0:
        cells = count = np.zeros(0, np.int64)
    elif n_rows * n_cols <= max(key.size, _LUT_LIMIT):
        table = np.bincount(key, minlength=n_rows * n_cols)
        cells = np.flatnonzero(table)
        count = table[cells]
    else:
        cells, count = np.unique(key, return_counts=True)
    gt_index, pred_index = np.divmod(cells, max(n_cols, 1))
    return Overlap(
        gt_ids=gt_ids,
        gt_sizes=gt_sizes,
        pred_ids=pred_ids,
        pred_sizes=pred_sizes,
        gt_index=gt_index.astype(np.intp),
        pred_index=pred_index.astype(np.intp),
        count=count.astype(np.int64),
    )
