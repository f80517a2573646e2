"""Objects' extents in a label map, in physical units."""

import numpy as np

from segpipe.inference.object_size import median_extent, object_extents


def test_object_extents_are_the_longest_side_of_each_box_in_physical_units():
    labels = np.zeros((6, 10, 12), np.uint16)
    labels[1:3, 2:9, 0:4] = 1  # 2 x 7 x 4 voxels
    labels[0:6, 0:2, 10:12] = 4  # 6 x 2 x 2 voxels; ids 2 and 3 absent
    assert sorted(object_extents(labels, (3.0, 1.0, 1.0))) == [7.0, 18.0]  # 7 along y; 6 slices of 3 along z


def test_the_median_extent_of_a_map_and_of_an_empty_one():
    labels = np.zeros((40, 40), np.uint16)
    labels[0:4, 0:2] = 1  # 4 rows
    labels[10:16, 10:13] = 2  # 6 rows
    labels[20:21, 20:30] = 3  # 10 columns
    assert median_extent(labels, (0.5, 0.5)) == 3.0  # 6 pixels of 0.5
    assert median_extent(np.zeros((5, 5), np.uint16), (1.0, 1.0)) is None
