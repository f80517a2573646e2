"""Volumes from NIfTI files drawn as Slicer draws them (radiological: the subject's right on the
figure's left), whatever order and direction the file stores."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.report.orientation import anatomical_view, view_of


def _stored(ras: np.ndarray, spacing_ras, *, order, flips):
    """The store's (z, y, x) array and the file's affine of a volume given in RAS voxel order
    (x: R, y: A, z: S), written with its voxel axes permuted (``order``: the world axis of each
    file axis) and some reversed."""
    volume, affine = ras, np.zeros((4, 4))
    affine[3, 3] = 1
    for file_axis, world in enumerate(order):
        affine[world, file_axis] = spacing_ras[world] * (-1 if flips[file_axis] else 1)
    volume = np.transpose(ras, order)  # file axis n holds world axis order[n]
    for file_axis, flip in enumerate(flips):
        if flip:
            volume = np.flip(volume, axis=file_axis)
    return np.ascontiguousarray(volume.T), affine  # NIfTI (i, j, k) is the store's (x, y, z)


@pytest.mark.parametrize(("order", "flips"), [((0, 1, 2), (False, False, False)), ((0, 1, 2), (True, False, False)),
                                              ((2, 0, 1), (False, True, False)), ((1, 2, 0), (True, True, True))])
def test_every_storage_of_one_volume_gives_one_view(order, flips):
    rng = np.random.default_rng(0)
    ras = rng.random((5, 6, 7))  # R, A, S
    ras[:, :, 6] = 10.0  # the top slice (most superior)
    ras[:, 5, :] += 100.0  # the front (most anterior)
    ras[4, :, :] += 1000.0  # the subject's right side
    spacing = (1.0, 2.0, 3.0)  # R, A, S
    base, base_affine = _stored(ras, spacing, order=(0, 1, 2), flips=(False, False, False))
    store, affine = _stored(ras, spacing, order=order, flips=flips)
    store_spacing = tuple(spacing[order[n]] for n in (2, 1, 0))  # the store's (z, y, x) = file (k, j, i)
    (view, labels), view_spacing = anatomical_view([store[None], store > 50], affine=affine, source_axes="XYZ", spacing=store_spacing)
    (expected,), _ = anatomical_view([base[None]], affine=base_affine, source_axes="XYZ", spacing=(3.0, 2.0, 1.0))
    np.testing.assert_array_equal(view, expected)
    assert view_spacing == (3.0, 2.0, 1.0)  # superior, anterior, right
    assert np.all(view[0, 0] >= 10.0) and np.all(view[0, :, 0] >= 100.0)  # superior and anterior at the top
    assert np.all(view[0, :, :, 0] >= 1000.0) and np.all(view[0, :, :, 1:] < 1000.0)  # right on the left, as Slicer draws it
    np.testing.assert_array_equal(labels, view[0] > 50)


def test_what_has_no_affine_or_is_flat_is_drawn_as_stored():
    volume = np.zeros((1, 4, 5, 6))
    assert view_of({"affine": None}, (1.0, 1.0, 1.0), [volume])[1] is None
    assert view_of({"affine": np.eye(4).tolist()}, (1.0, 1.0), [np.zeros((1, 5, 6))])[1] is None
