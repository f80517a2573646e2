"""Measurements agree with scikit-image's regionprops_table, streamed or whole, 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as connected, regionprops_table

from segpipe.prediction.measure import measure_objects


def blobs(shape, seed):
    rng = np.random.default_rng(seed)
    noise = rng.random(shape)
    from scipy import ndimage

    return connected(ndimage.gaussian_filter(noise, 2) > 0.52).astype(np.uint32)


@pytest.mark.parametrize(("shape", "spacing"), [((97, 83), (0.5, 0.25)), ((21, 40, 33), (2.0, 0.5, 0.5))])
@pytest.mark.parametrize("slab_voxels", [1 << 30, 700])
def test_same_numbers_as_regionprops_table(shape, spacing, slab_voxels):
    labels = blobs(shape, 1)
    assert labels.max() > 5
    rng = np.random.default_rng(2)
    image = rng.normal(100, 20, size=(2, *shape))
    ours = measure_objects(labels, image, spacing=spacing, channel_names=["dna", "actin"], slab_voxels=slab_voxels)
    theirs = regionprops_table(
        labels, np.moveaxis(image, 0, -1), properties=("label", "area", "centroid", "bbox", "intensity_mean"), spacing=spacing
    )
    ndim = len(shape)
    axes = "zyx"[3 - ndim :]
    np.testing.assert_array_equal(ours["label"], theirs["label"])
    np.testing.assert_allclose(ours["area" if ndim == 2 else "volume"], theirs["area"], rtol=1e-12)
    for i, axis in enumerate(axes):
        np.testing.assert_allclose(ours[f"centroid-{axis}"], theirs[f"centroid-{i}"], rtol=1e-9)
        np.testing.assert_array_equal(ours[f"bbox-{axis}-min"], theirs[f"bbox-{i}"])
        np.testing.assert_array_equal(ours[f"bbox-{axis}-max"], theirs[f"bbox-{i + ndim}"])
    for c, name in enumerate(("dna", "actin")):
        np.testing.assert_allclose(ours[f"mean_intensity-{name}"], theirs[f"intensity_mean-{c}"], rtol=1e-9)


def test_no_objects_gives_empty_columns():
    out = measure_objects(np.zeros((5, 6), np.uint8), spacing=(1.0, 1.0))
    assert out["label"].size == 0 and out["area"].size == 0
