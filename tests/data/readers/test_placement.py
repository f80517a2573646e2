"""Where a NIfTI file's voxels lie, compared with another's; reoriented arrays put back."""

from __future__ import annotations

import numpy as np

from segpipe.data.readers.placement import placement_problem, to_reference_order


def _affine(sizes, origin):
    affine = np.diag([*sizes, 1.0])
    affine[:3, 3] = origin
    return affine


def test_a_grid_stored_the_other_way_round_is_put_back_in_the_references_order():
    reference = _affine((0.5, 2.0, 3.0), (1.0, 2.0, 3.0))
    volume = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (z, y, x): x has 4 voxels, y 3, z 2
    # the same voxels stored with y running backwards and x and y swapped: affine moved with the array
    xyz = volume.T[:, ::-1, :].transpose(1, 0, 2)  # (y reversed, x, z)
    stored = np.zeros((4, 4))
    stored[:3, 0] = [0.0, -2.0, 0.0]  # the first file axis steps down y
    stored[:3, 1] = [0.5, 0.0, 0.0]
    stored[:3, 2] = [0.0, 0.0, 3.0]
    stored[:3, 3] = [1.0, 2.0 + 2.0 * 2, 3.0]
    stored[3, 3] = 1.0
    assert placement_problem(stored, reference, shape=xyz.shape) is not None
    moved, moved_affine = to_reference_order(np.ascontiguousarray(xyz.T), stored, reference)
    np.testing.assert_array_equal(moved, volume)
    np.testing.assert_allclose(moved_affine, reference)
    assert placement_problem(moved_affine, reference, shape=(4, 3, 2)) is None


def test_what_differs_is_named():
    reference = _affine((0.8, 0.8, 1.5), (0.0, 0.0, 0.0))
    assert placement_problem(_affine((0.8, 0.8, 1.5), (0.01, 0.0, 0.0)), reference, shape=(4, 4, 4)) is None  # within tolerance
    assert placement_problem(_affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), reference, shape=(4, 4, 4)) == (
        "its voxels measure 1 x 1 x 1, the image's 0.8 x 0.8 x 1.5")
    assert placement_problem(_affine((-0.8, 0.8, 1.5), (2.4, 0.0, 0.0)), reference, shape=(4, 4, 4)) == (
        "its voxels are stored in the orientation LAS, the image's in RAS")
    assert placement_problem(_affine((0.8, 0.8, 1.5), (4.0, 0.0, 0.0)), reference, shape=(4, 4, 4)).startswith(
        "its grid is shifted by up to 4")
