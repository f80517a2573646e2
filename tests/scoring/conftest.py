"""Real label images shipped in ``data/`` and perturbations that turn them into predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.morphology import ball, dilation, disk, erosion

DATA = Path(__file__).parents[2] / "data"

PERTURBATIONS = ("identity", "erode", "dilate", "shift", "merge", "drop", "split", "relabel", "flip", "noisy")


@pytest.fixture(scope="session")
def real_labels() -> dict[str, np.ndarray]:
    """Every ground-truth label image in ``data/``, by name (``bbbc007/<stem>``, ``dsb2018``, ``nuclei3d``)."""
    labels = {f"bbbc007/{p.stem}": tifffile.imread(p) for p in sorted((DATA / "bbbc007" / "labels").glob("*.tif"))}
    labels["dsb2018"] = tifffile.imread(DATA / "dsb2018-nuclei-2d" / "labels.tif")
    labels["nuclei3d"] = tifffile.imread(DATA / "synthetic-nuclei-3d" / "labels.tif")
    return labels


@pytest.fixture(params=PERTURBATIONS)
def perturbation(request: pytest.FixtureRequest) -> str:
    """Each name in ``PERTURBATIONS`` in turn (parametrizes the test)."""
    return request.param


@pytest.fixture(scope="session")
def perturb() -> Callable[[np.ndarray, str, int], np.ndarray]:
    """``perturb(labels, kind, seed)``: a prediction made from ground truth; ``kind`` in ``PERTURBATIONS``."""
    return make_prediction


def make_prediction(labels: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """Perturb a label image into a plausible (imperfect) prediction, as ``uint32``."""
    rng = np.random.default_rng(seed)
    lab = labels.astype(np.uint32)
    if kind == "identity":
        return lab
    if kind == "erode":
        return _erode(lab, 1)
    if kind == "dilate":
        return _dilate(lab, 2)
    if kind == "shift":
        return _shift(lab, (3, -2, 1)[: lab.ndim])
    if kind == "merge":
        return _merge_neighbours(lab)
    if kind == "drop":
        return _drop(lab, rng, 0.3)
    if kind == "split":
        return _split(lab)
    if kind == "relabel":
        return _relabel(lab, rng)
    if kind == "flip":
        return np.ascontiguousarray(lab[::-1])
    if kind == "noisy":
        out = _drop(_shift(_erode(lab, 1), (1,) * lab.ndim), rng, 0.1)
        for _ in range(5):  # false positives overwriting whatever is there
            corner = [int(rng.integers(0, s - 4)) for s in out.shape]
            out[tuple(slice(c, c + 4) for c in corner)] = int(rng.integers(1_000_000, 2_000_000))
        return _relabel(out, rng)
    raise ValueError(f"unknown perturbation {kind!r}")


def _footprint(ndim: int, radius: int) -> np.ndarray:
    return disk(radius) if ndim == 2 else ball(radius)


def _erode(lab: np.ndarray, radius: int) -> np.ndarray:
    fp = _footprint(lab.ndim, radius)
    return np.where(erosion(lab, fp) == dilation(lab, fp), lab, 0).astype(np.uint32)


def _dilate(lab: np.ndarray, radius: int) -> np.ndarray:
    return np.where(lab == 0, dilation(lab, _footprint(lab.ndim, radius)), lab).astype(np.uint32)


def _shift(lab: np.ndarray, offset: tuple[int, ...]) -> np.ndarray:
    out = np.zeros_like(lab)
    src = tuple(slice(max(-o, 0), s - max(o, 0)) for o, s in zip(offset, lab.shape))
    dst = tuple(slice(max(o, 0), s - max(-o, 0)) for o, s in zip(offset, lab.shape))
    out[dst] = lab[src]
    return out


def _merge_neighbours(lab: np.ndarray) -> np.ndarray:
    """Give disjoint pairs of nearby objects one id (the merged object may be in two pieces)."""
    grown = dilation(lab, _footprint(lab.ndim, 3))
    near = (lab > 0) & (grown > 0) & (grown != lab)
    pairs = np.unique(np.stack([grown[near], lab[near]], axis=1), axis=0)
    mapping = np.arange(int(lab.max()) + 1, dtype=np.uint32)
    used: set[int] = set()
    for a, b in pairs.tolist():
        if a not in used and b not in used:
            mapping[a] = b
            used.update((a, b))
    return mapping[lab]


def _drop(lab: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    ids = np.unique(lab[lab > 0])
    dropped = rng.choice(ids, size=int(fraction * ids.size), replace=False)
    return np.where(np.isin(lab, dropped), 0, lab).astype(np.uint32)


def _split(lab: np.ndarray) -> np.ndarray:
    """Cut every object in two at its mean coordinate along the last axis."""
    coord = np.indices(lab.shape)[-1]
    mean = np.bincount(lab.ravel(), coord.ravel()) / np.maximum(np.bincount(lab.ravel()), 1)
    upper = coord > mean[lab]
    return np.where(lab > 0, 2 * lab + upper, 0).astype(np.uint32)


def _relabel(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map ids to distinct random large ids (below 2**31, see the py-ctcmetrics note in the tests)."""
    ids = np.unique(lab)
    new = rng.choice((1 << 31) - (1 << 20), size=ids.size, replace=False) + (1 << 20)
    new[ids == 0] = 0
    return new.astype(np.uint32)[np.searchsorted(ids, lab)]
