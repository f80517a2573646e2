"""Completing a prediction: an instance model's class map is written from its objects."""

from __future__ import annotations

import numpy as np
import zarr

from segpipe.prediction.complete import objects_class_map


def test_the_class_map_is_the_objects_foreground_block_by_block(tmp_path):
    labels = np.zeros((10, 7), np.uint32)
    labels[1:3, 1:4] = 5
    labels[6:10, 2:7] = 70_000  # ids above 255 are foreground too, not wrapped to 0 by a uint8 cast
    stored = zarr.create_array(str(tmp_path / "labels.zarr"), shape=labels.shape, dtype=np.uint32, chunks=(3, 7))
    stored[...] = labels
    semantic = zarr.create_array(str(tmp_path / "semantic.zarr"), shape=labels.shape, dtype=np.uint8, chunks=(3, 7))
    semantic[...] = 1  # the argmax's rim everywhere: each block must be overwritten, background included

    objects_class_map(stored, semantic)

    expected = np.zeros((10, 7), np.uint8)
    expected[1:3, 1:4] = 1
    expected[6:10, 2:7] = 1
    np.testing.assert_array_equal(semantic[...], expected)


def test_labels_in_memory_are_written_whole(tmp_path):
    labels = np.array([[0, 3], [4, 0]], np.int32)
    semantic = zarr.create_array(str(tmp_path / "semantic.zarr"), shape=(2, 2), dtype=np.uint8)
    objects_class_map(labels, semantic)
    np.testing.assert_array_equal(semantic[...], [[0, 1], [1, 0]])
