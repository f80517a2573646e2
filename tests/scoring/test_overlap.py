"""The overlap table: every code path (dense or sorted keys, slabs, large ids) equals a naive count."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segpipe.scoring import overlap

overlap_module = importlib.import_module("segpipe.scoring.overlap")  # the package exports a function of that name


def naive_table(gt: np.ndarray, pred: np.ndarray) -> tuple[dict, dict, dict]:
    gt_sizes = {int(i): int(np.count_nonzero(gt == i)) for i in np.unique(gt) if i}
    pred_sizes = {int(i): int(np.count_nonzero(pred == i)) for i in np.unique(pred) if i}
    pairs = {}
    for g in gt_sizes:
        for p in pred_sizes:
            n = int(np.count_nonzero((gt == g) & (pred == p)))
            if n:
                pairs[(g, p)] = n
    return gt_sizes, pred_sizes, pairs


def as_dicts(ov) -> tuple[dict, dict, dict]:
    gt_sizes = dict(zip(ov.gt_ids.tolist(), ov.gt_sizes.tolist()))
    pred_sizes = dict(zip(ov.pred_ids.tolist(), ov.pred_sizes.tolist()))
    pairs = {
        (int(ov.gt_ids[g]), int(ov.pred_ids[p])): int(c)
        for g, p, c in zip(ov.gt_index, ov.pred_index, ov.count, strict=True)
    }
    return gt_sizes, pred_sizes, pairs


def test_by_hand():
    gt = np.array([[0, 1, 1, 2], [0, 1, 2, 2]], np.uint16)
    pred = np.array([[5, 5, 0, 2], [0, 5, 5, 2]], np.uint32)
    ov = overlap(gt, pred)
    assert ov.gt_ids.tolist() == [1, 2] and ov.gt_sizes.tolist() == [3, 3]
    assert ov.pred_ids.tolist() == [2, 5] and ov.pred_sizes.tolist() == [2, 4]
    assert ov.pred_ids.dtype == np.uint32
    assert as_dicts(ov)[2] == {(1, 5): 2, (2, 2): 2, (2, 5): 1}
    assert ov.union().tolist() == [3 + 4 - 2, 3 + 2 - 2, 3 + 4 - 1]


@pytest.mark.parametrize("chunk", [7, 64, 1 << 22], ids=["tiny-slabs", "slabs", "one-slab"])
@pytest.mark.parametrize("dense_keys", [0, 1 << 20], ids=["sorted-keys", "dense-keys"])
def test_paths_agree_on_real_labels(monkeypatch, real_labels, perturb, chunk, dense_keys):
    monkeypatch.setattr(overlap_module, "_CHUNK", chunk)
    monkeypatch.setattr(overlap_module, "_DENSE_KEYS", dense_keys)
    gt = real_labels["bbbc007/A9_p7d"][:60, :70]
    pred = perturb(real_labels["bbbc007/A9_p7d"], "noisy", 2)[:60, :70] % 50  # small ids: the raw-id path
    assert as_dicts(overlap(gt, pred)) == naive_table(gt, pred)


def test_large_ids_take_the_compacting_path(real_labels, perturb):
    gt = real_labels["dsb2018"][:64, :64]
    pred = perturb(real_labels["dsb2018"], "relabel", 5)[:64, :64]  # ids up to 2**31
    assert int(pred.max()) > 1 << 20
    huge = np.where(gt > 0, gt.astype(np.uint64) + (1 << 62), 0)
    assert as_dicts(overlap(huge, pred)) == naive_table(huge, pred)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 6)),
    st.sampled_from([np.uint8, np.int32, np.uint64]),
    st.integers(1, 40),
)
def test_equals_naive(gt, pred_dtype, chunk):
    pred = np.flip(gt, 0).astype(pred_dtype) * 3 % 7
    original = overlap_module._CHUNK
    overlap_module._CHUNK = chunk
    try:
        result = overlap(gt, pred)
    finally:
        overlap_module._CHUNK = original
    assert as_dicts(result) == naive_table(gt, pred)
    assert result.gt_index.dtype == np.intp and result.count.dtype == np.int64


def test_empty_images():
    empty = np.zeros((3, 3), np.uint8)
    ov = overlap(empty, empty)
    assert ov.gt_ids.size == ov.pred_ids.size == ov.count.size == 0
    assert overlap(np.zeros((0, 4), np.uint8), np.zeros((0, 4), np.uint8)).count.size == 0
