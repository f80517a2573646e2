"""Shared helper of the ingest tests (a module with a unique name, importable from each test file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from segpipe.data.store import ImageStore


def write_catalog(folder: Path, **entry) -> Path:
    """``folder/catalog.yaml`` holding one dataset ``d`` with ``entry``."""
    entry.setdefault("classes", ["background", "object"])
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"d": entry}}, sort_keys=False))
    return path


def write_random_pairs(folder: Path, names: list[str], *, size: int) -> Path:
    """Random uint16 images with uint8 label maps (0..2), ``size`` square, under ``img``/``lab``; a catalog of them."""
    import tifffile

    rng = np.random.default_rng(0)
    for sub in ("img", "lab"):
        (folder / sub).mkdir()
    for name in names:
        tifffile.imwrite(folder / "img" / f"{name}.tif", rng.integers(0, 4000, (size, size)).astype(np.uint16))
        tifffile.imwrite(folder / "lab" / f"{name}.tif", rng.integers(0, 3, (size, size)).astype(np.uint8))
    return write_catalog(folder, images="img/*.tif", labels="lab/*.tif", split={"train": names})


def assert_same_stores(expected: Path, actual: Path) -> None:
    """Two stores hold the same images: infos, pixels, labels and OME attributes."""
    want, got = ImageStore.open(expected).images(), ImageStore.open(actual).images()
    assert [im.info for im in got] == [im.info for im in want]
    for a, b in zip(want, got):
        np.testing.assert_array_equal(b.image[...], a.image[...])
        np.testing.assert_array_equal(b.labels[...], a.labels[...])
        assert dict(b.image.attrs) == dict(a.image.attrs)
