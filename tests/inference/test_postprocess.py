import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk

from segpipe.inference.postprocess import InstanceParams, edge_labels, instance_labels, semantic_labels
from segpipe.training.targets import distance_target


def _two_touching_disks():
    labels = np.zeros((40, 60), dtype=np.uint16)
    labels[disk((20, 20), 10, shape=labels.shape)] = 1
    rr, cc = disk((20, 38), 10, shape=labels.shape)
    labels[rr, cc] = np.where(labels[rr, cc] == 0, 2, labels[rr, cc])
    return labels


def test_watershed_separates_touching_objects_that_components_would_merge():
    gt = _two_touching_disks()
    foreground = (gt > 0).astype(np.float32)
    from scipy import ndimage

    assert ndimage.label(foreground)[1] == 1  # one blob for connected components
    pred = instance_labels(foreground, distance_target(gt), InstanceParams())
    assert pred.max() == 2
    # each predicted object lies almost entirely inside one ground-truth disk
    for obj in (1, 2):
        counts = np.bincount(gt[pred == obj], minlength=3)
        assert counts.max() / counts.sum() > 0.95


def test_seedless_component_is_kept_and_tiny_ones_dropped():
    foreground = np.zeros((30, 30), dtype=np.float32)
    foreground[2:8, 2:8] = 1  # no seed: distance below threshold
    foreground[20:22, 20:22] = 1  # 4 px, below min_size
    distance = np.zeros_like(foreground)
    labels = instance_labels(foreground, distance, InstanceParams(min_size=8))
    assert labels.max() == 1 and (labels > 0).sum() == 36


@pytest.mark.parametrize("edge", [(slice(0, 2), slice(10, 12)), (slice(28, 30), slice(10, 12)), (slice(10, 12), slice(0, 2)), (slice(10, 12), slice(28, 30))])
def test_objects_on_the_frame_edge_are_held_to_their_own_size(edge):
    """4 px on any edge of the frame (a sliver of an object the frame cuts) are kept under
    edge_min_size 4, the same 4 px inside the frame dropped under min_size 8; without
    edge_min_size both are dropped."""
    foreground = np.zeros((30, 30), dtype=np.float32)
    foreground[edge] = 1
    foreground[14:16, 14:16] = 1
    labels = instance_labels(foreground, np.zeros_like(foreground), InstanceParams(min_size=8, edge_min_size=4))
    assert labels.max() == 1 and (labels[edge] == 1).all() and (labels[14:16, 14:16] == 0).all()
    assert instance_labels(foreground, np.zeros_like(foreground), InstanceParams(min_size=8, edge_min_size=5)).max() == 0
    assert instance_labels(foreground, np.zeros_like(foreground), InstanceParams(min_size=8)).max() == 0


def test_edge_labels_reads_each_face_of_the_frame_it_is_given():
    labels = np.zeros((2, 5, 6, 7), np.uint16)
    labels[1, 2, 3, 3] = 1  # inside
    labels[1, 4, 3, 3], labels[1, 2, 0, 3], labels[1, 2, 3, 6] = 2, 3, 4  # on the last z, the first y, the last x
    labels[0, 0, 0, 0] = 5  # another frame
    assert edge_labels(labels, (1,)).tolist() == [0, 2, 3, 4]
    assert edge_labels(labels[1]).tolist() == [0, 2, 3, 4]


def test_semantic_labels_is_argmax():
    probs = np.array([[[0.7, 0.2]], [[0.3, 0.8]]])
    assert semantic_labels(probs).tolist() == [[0, 1]]


def test_hmaxima_seeds_split_objects_of_different_sizes():
    """A big and a small touching disk: one threshold cannot seed both, h-maxima can."""
    gt = np.zeros((60, 80), dtype=np.uint16)
    gt[disk((30, 25), 18, shape=gt.shape)] = 1
    rr, cc = disk((30, 48), 6, shape=gt.shape)
    gt[rr, cc] = np.where(gt[rr, cc] == 0, 2, gt[rr, cc])
    from scipy import ndimage

    # an un-normalized distance map (as a network might predict), scaled to the big object
    dist = ndimage.distance_transform_edt(gt > 0) / 18.0
    fg = (gt > 0).astype(np.float32)
    by_threshold = instance_labels(fg, dist, InstanceParams(seed_threshold=0.5))
    by_hmaxima = instance_labels(fg, dist, InstanceParams(seed_method="hmaxima", seed_h=0.05))
    assert by_threshold.max() == 1  # the small disk never reaches the threshold: merged
    assert by_hmaxima.max() == 2


def test_smoothing_removes_spurious_maxima():
    rng = np.random.default_rng(0)
    gt = np.zeros((50, 50), dtype=np.uint16)
    gt[disk((25, 25), 15, shape=gt.shape)] = 1
    noisy = distance_target(gt) + rng.normal(0, 0.1, gt.shape).astype(np.float32) * (gt > 0)
    fg = (gt > 0).astype(np.float32)
    raw = instance_labels(fg, noisy, InstanceParams(seed_method="hmaxima", seed_h=0.05))
    smooth = instance_labels(fg, noisy, InstanceParams(seed_method="hmaxima", seed_h=0.05, smoothing=2.0))
    assert raw.max() > 1 and smooth.max() == 1


def test_the_boundary_relief_splits_cells_the_distance_map_joins():
    """Two touching cells whose predicted distance map has no dip between them: only the boundary splits them."""
    from segpipe.inference.postprocess import relief_map

    foreground = np.zeros((20, 40), np.float32)
    foreground[4:16, 2:38] = 1.0
    distance = np.zeros_like(foreground)
    distance[4:16, 2:38] = 0.8  # flat: one plateau over both cells
    boundary = np.zeros_like(foreground)
    boundary[4:16, 19:21] = 1.0
    flat = InstanceParams(relief="distance", seed_threshold=0.5)
    assert instance_labels(foreground, distance, flat).max() == 1
    split = instance_labels(foreground, distance, flat.model_copy(update={"relief": "boundary"}), boundary=boundary)
    assert split.max() == 2 and len(np.unique(split[10, 3:18])) == 1 and split[10, 3] != split[10, 36]
    with pytest.raises(ValueError, match="needs a model with a boundary output"):
        relief_map(distance, None, InstanceParams(relief="boundary"))


def test_holes_are_filled_with_their_object_but_not_other_objects_or_shared_gaps():
    from segpipe.inference.postprocess import fill_holes

    labels = np.zeros((30, 40), np.uint32)
    labels[2:14, 2:14] = 1
    labels[6:9, 6:9] = 0  # a hole of object 1
    labels[2:14, 20:32] = 2
    labels[6:9, 24:27] = 3  # an object inside object 2
    labels[16:28, 2:20], labels[16:28, 20:38] = 4, 5
    labels[20:24, 16:24] = 0  # a gap between objects 4 and 5: enclosed by both, a hole of neither
    filled = fill_holes(labels.copy())
    assert (filled[6:9, 6:9] == 1).all() and (filled[6:9, 24:27] == 3).all()
    assert (filled[20:24, 16:24] == 0).all()
    np.testing.assert_array_equal(filled[labels > 0], labels[labels > 0])


def test_3d_holes_are_filled_plane_by_plane_even_when_open_along_z():
    from segpipe.inference.postprocess import fill_holes

    labels = np.zeros((5, 20, 20), np.uint32)
    labels[:, 4:16, 4:16] = 7
    labels[:, 8:12, 8:12] = 0  # a tunnel through the stack: no 3D hole, a hole in every plane
    assert (fill_holes(labels.copy())[:, 8:12, 8:12] == 7).all()


def test_a_nucleus_with_a_dark_nucleolus_is_one_object_without_a_hole():
    """Fails before hole filling: the foreground's hole stayed out of the object."""
    gt = np.zeros((40, 40), np.uint16)
    gt[disk((20, 20), 12, shape=gt.shape)] = 1
    foreground = (gt > 0).astype(np.float32)
    foreground[disk((18, 22), 3, shape=gt.shape)] = 0.1
    labels = instance_labels(foreground, distance_target(gt), InstanceParams(foreground_threshold=0.5))
    assert labels.max() == 1
    np.testing.assert_array_equal(labels > 0, gt > 0)


def _fill_each_object(labels: np.ndarray) -> np.ndarray:
    """Reference: every object's own mask hole-filled by scipy, in label order, background only."""
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == index
        filled = ndimage.binary_fill_holes(own) if own.ndim < 3 else np.stack([ndimage.binary_fill_holes(p) for p in own])
        labels[box][filled & (labels[box] == 0)] = index
    return labels


@pytest.mark.parametrize("shape", [(48, 48), (4, 32, 32)])
@pytest.mark.parametrize("seed", range(6))
def test_hole_filling_matches_filling_every_object_on_its_own(shape, seed):
    """Only objects beside enclosed background are filled: the result is scipy's per object,
    on label maps full of holes, rings inside rings and gaps shared by two objects."""
    from segpipe.inference.postprocess import enclosed_boxes, fill_holes

    rng = np.random.default_rng(seed)
    labels = ndimage.label(rng.random(shape) < 0.55)[0].astype(np.uint32)  # many small objects, many holes
    labels[labels % 3 == 0] = 0
    reference = _fill_each_object(labels.copy())
    assert (reference != labels).any()  # some hole gets filled: the comparison can fail
    assert len(enclosed_boxes(labels)[0])
    np.testing.assert_array_equal(fill_holes(labels.copy()), reference)


def test_relabelling_numbers_objects_in_label_order():
    from segpipe.inference.postprocess import _relabel

    labels = np.array([[0, 7, 7, 3], [9, 0, 3, 3]], np.uint32)
    np.testing.assert_array_equal(_relabel(labels), [[0, 2, 2, 1], [3, 0, 1, 1]])
    np.testing.assert_array_equal(_relabel(labels + 5), [[1, 3, 3, 2], [4, 1, 2, 2]])  # no background: 1..N
