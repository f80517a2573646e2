"""Fill: flat patches at a channel's least value, and the box of an image's content."""

import numpy as np
import zarr

from segpipe.inference.fill import content_box, fill_mask


def test_the_fill_is_found_to_its_edge_and_nowhere_else():
    rng = np.random.default_rng(1)
    image = rng.normal(100.0, 5.0, size=(40, 40))
    image[5:30, 20:29] = 0.0  # fill 9 pixels wide: every pixel of it lies in a flat 7 x 7 patch
    image[2:8, 2:8] = 0.0  # 6 x 6 at the least value: too small to be fill
    image[35, ::3] = 0.0  # scattered zeros (a background subtracted and clipped)
    expected = np.zeros(image.shape, bool)
    expected[5:30, 20:29] = True
    np.testing.assert_array_equal(fill_mask(image), expected)
    np.testing.assert_array_equal(fill_mask(np.full((9, 9), 3.0)), np.ones((9, 9), bool))
    volume = np.stack([image] * 8)  # in 3D the patch is 7 pixels on every axis
    np.testing.assert_array_equal(fill_mask(volume), np.stack([expected] * 8))
    thin = volume[:3]  # edges extended, as the blank rule's: a stack of 3 slices keeps its fill
    np.testing.assert_array_equal(fill_mask(thin), np.stack([expected] * 3))
    thin[1, 10, 24] = 50.0  # one slice's pixel inside the fill breaks the flat patches around it, in 3D
    assert not fill_mask(thin)[:, 10, 24].any() and fill_mask(thin)[:, 20, 20].all()


def test_the_content_box_bounds_what_is_not_fill_in_some_channel(tmp_path):
    rng = np.random.default_rng(4)
    image = np.zeros((2, 3, 300, 500), np.uint16)  # channels, frames, y, x
    image[0, :, 40:140, 250:390] = rng.integers(50, 200, size=(3, 100, 140))  # the field, first channel
    image[1, :, 150:170, 10:20] = rng.integers(50, 200, size=(3, 20, 10))  # a patch in the second channel only
    assert content_box(image, spatial_dims=2, frame=(1,)) == (slice(40, 170), slice(10, 390))
    image[1] = 0
    assert content_box(image, spatial_dims=2, frame=(0,)) == (slice(40, 140), slice(250, 390))
    stored = zarr.create_array(str(tmp_path / "mosaic.zarr"), shape=image.shape, dtype=image.dtype, chunks=(1, 1, 64, 64))
    stored[...] = image
    # read at a stride of 4 (9,400 pixels of the 150,000): the box to the stride's precision, never inside the field
    y, x = content_box(stored, spatial_dims=2, frame=(2,), pixels=9_400)
    assert 37 <= y.start <= 40 and 140 <= y.stop <= 144 and 247 <= x.start <= 250 and 390 <= x.stop <= 394
    assert content_box(np.zeros((1, 50, 60)), spatial_dims=2) == (slice(0, 50), slice(0, 60))  # all fill: the whole frame
    noisy = rng.normal(size=(1, 50, 60))
    assert content_box(noisy, spatial_dims=2) == (slice(0, 50), slice(0, 60))
