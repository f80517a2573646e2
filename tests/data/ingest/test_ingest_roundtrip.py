"""Property tests: random shapes, dtypes and spacings survive ingest unchanged; streaming stays small."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.store import ImageStore

from ingest_helpers import write_catalog

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]
spacings = st.floats(min_value=0.01, max_value=50.0, allow_nan=False, allow_subnormal=False)


@st.composite
def volumes(draw):
    """``(ndim, image (C, [Z,] Y, X), labels ([Z,] Y, X), spacing)`` with a random dtype."""
    ndim = draw(st.sampled_from([2, 3]))
    spatial = (draw(st.integers(1, 6)),) * (ndim == 3) + (draw(st.integers(2, 40)), draw(st.integers(2, 40)))
    channels = draw(st.integers(1, 3))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    if dtype.kind == "f":
        image = (rng.standard_normal((channels, *spatial)) * 100).astype(dtype)
    else:
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, (channels, *spatial), dtype=dtype, endpoint=True)
    image.reshape(-1)[:2] = np.array([0, 1], dtype)  # never constant
    labels = rng.integers(0, draw(st.integers(1, 300)), spatial, endpoint=True).astype(np.int32)
    labels.reshape(-1)[-1] = max(int(labels.max()), 1)  # never empty: ingest refuses a dataset without objects
    return ndim, image, labels, tuple(draw(spacings) for _ in range(ndim))


def _write_ome(path: Path, array: np.ndarray, spacing, axes: str) -> None:
    names = "ZYX"[-len(spacing):]
    meta = {"axes": axes} | {f"PhysicalSize{a}": s for a, s in zip(names, spacing)}
    tifffile.imwrite(path, array, ome=True, metadata=meta, photometric="minisblack")


def _write_nifti(folder: Path, ndim: int, image: np.ndarray, labels: np.ndarray, spacing) -> None:
    """NIfTI holds (x, y, z, channels); a 2D image is one plane."""
    image = image if ndim == 3 else image[:, np.newaxis]
    labels = labels if ndim == 3 else labels[np.newaxis]
    zooms = tuple(reversed(spacing)) if ndim == 3 else (spacing[1], spacing[0], 1.0)
    affine = np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(np.transpose(image, (3, 2, 1, 0)), affine), str(folder / "img" / "a.nii"))
    nib.save(nib.Nifti1Image(np.transpose(labels, (2, 1, 0)), affine), str(folder / "lab" / "a.nii"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volumes(), st.sampled_from(["tiff", "nifti"]))
def test_random_images_round_trip_through_ingest(volume, fmt):
    ndim, image, labels, spacing = volume
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "img").mkdir()
        (folder / "lab").mkdir()
        if fmt == "tiff":
            axes = "C" + "ZYX"[-ndim:]
            _write_ome(folder / "img" / "a.tif", image, spacing, axes)
            _write_ome(folder / "lab" / "a.tif", labels, spacing, axes[1:])
            entry = {"images": "img/*.tif", "labels": "lab/*.tif"}
        else:
            _write_nifti(folder, ndim, image, labels, spacing)
            entry = {"images": "img/*.nii", "labels": "lab/*.nii", "axes": "XYZC"}
        catalog = write_catalog(folder, ndim=ndim, split={"train": ["a"]}, **entry)
        dataset = load_catalog(catalog).dataset("d")
        ingest_dataset(dataset, folder / "out.zarr", progress=False)
        stored = ImageStore.open(folder / "out.zarr").images()[0]
        assert stored.image.dtype == image.dtype
        np.testing.assert_array_equal(stored.image[...], image)
        np.testing.assert_array_equal(stored.labels[...], labels)
        assert stored.labels.dtype == (np.uint8 if labels.max() < 256 else np.uint16)
        np.testing.assert_allclose(stored.spacing, spacing, rtol=1e-6)


def test_streaming_a_stack_holds_a_few_slabs_not_the_file(tmp_path):
    """A 48 MiB stack ingested with a 1 MiB slab budget: traced peak memory stays a small fraction."""
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 3000, (512, 512)).astype(np.uint16)
    n = 96
    tifffile.imwrite(tmp_path / "img" / "big.tif", (np.roll(plane, z, 1) for z in range(n)),
                     shape=(n, 512, 512), dtype=np.uint16, photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab" / "big.tif", ((np.roll(plane, z, 1) > 2500).astype(np.uint8) for z in range(n)),
                     shape=(n, 512, 512), dtype=np.uint8, photometric="minisblack")
    size = (tmp_path / "img" / "big.tif").stat().st_size
    dataset = load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=3,
                                         split={"train": ["big"]})).dataset("d")
    tracemalloc.start()
    try:
        ingest_dataset(dataset, tmp_path / "out.zarr", progress=False,
                       params=IngestParams(max_slab_mib=1, memory_mib=4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.15 * size, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"
    stored = ImageStore.open(tmp_path / "out.zarr").images()[0]
    assert stored.image.chunks == (1, 2, 256, 256)
    for z in (0, 47, 95):
        np.testing.assert_array_equal(stored.image[0, z], np.roll(plane, z, 1))
        np.testing.assert_array_equal(stored.labels[z], np.roll(plane, z, 1) > 2500)


def test_streaming_a_region_split_reads_only_its_region(tmp_path):
    """Region splits stream too: each region of a stack is its own window of the same file."""
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    volume = np.random.default_rng(1).integers(0, 500, (20, 30, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img" / "v.tif", volume)
    tifffile.imwrite(tmp_path / "lab" / "v.tif", (volume > 250).astype(np.uint8))
    regions = {"train": [[0, 20], [0, 18], [0, 40]], "test": [[3, 17], [18, 30], [5, 33]]}
    dataset = load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=3,
                                         split={"regions": regions})).dataset("d")
    ingest_dataset(dataset, tmp_path / "out.zarr", progress=False, params=IngestParams(max_slab_mib=0.001))
    test = ImageStore.open(tmp_path / "out.zarr").images("test")[0]
    np.testing.assert_array_equal(test.image[0], volume[3:17, 18:30, 5:33])
    np.testing.assert_array_equal(test.labels[...], volume[3:17, 18:30, 5:33] > 250)
    assert test.image.chunks[1] == 1  # one plane per slab under this budget


def test_a_region_keeps_its_surroundings_for_prediction(tmp_path):
    """Each region of a split image keeps up to 128 pixels of the image around it, clipped where the image
    ends (channels as selected); a streamed region, and an image that is not cut, keep none."""
    from segpipe.data.ingest.record import CONTEXT

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    image = np.random.default_rng(2).integers(0, 500, (3, 400, 150)).astype(np.uint16)  # CYX
    tifffile.imwrite(tmp_path / "img" / "v.tif", image, photometric="minisblack", metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "lab" / "v.tif", (image[0] > 250).astype(np.uint8))
    regions = {"train": [[0, 150], [0, 150]], "validation": [[150, 200], [0, 150]], "test": [[200, 400], [40, 100]]}
    dataset = load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, channels=[2, 0],
                                         split={"regions": regions})).dataset("d")
    ingest_dataset(dataset, tmp_path / "out.zarr", progress=False)
    stored = {im.split: im for im in ImageStore.open(tmp_path / "out.zarr").images()}
    assert CONTEXT == 128
    expected = {"train": (slice(0, 278), slice(0, 150)), "validation": (slice(22, 328), slice(0, 150)),
                "test": (slice(72, 400), slice(0, 150))}
    for split, box in expected.items():
        im = stored[split]
        np.testing.assert_array_equal(im.context[...], image[[2, 0]][(slice(None), *box)])
        np.testing.assert_array_equal(im.context[(slice(None), *im.in_context)], im.image[...])
    assert stored["test"].info["context_offset"] == [128, 40]
    streamed = tmp_path / "streamed.zarr"
    ingest_dataset(dataset, streamed, progress=False, params=IngestParams(max_slab_mib=0.001))
    assert all(im.context is None for im in ImageStore.open(streamed).images())

    whole = load_catalog(write_catalog(tmp_path, images="img/*.tif", labels="lab/*.tif", ndim=2, channels=[2, 0],
                                       split={"train": ["v"]})).dataset("d")
    ingest_dataset(whole, tmp_path / "whole.zarr", progress=False)
    (im,) = ImageStore.open(tmp_path / "whole.zarr").images()
    assert im.context is None and "context_offset" not in im.info
