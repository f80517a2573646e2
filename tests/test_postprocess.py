import numpy as np
from skimage.draw import disk

from segpipe.postprocess import InstanceParams, instance_labels, semantic_labels
from segpipe.transforms import distance_target


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


def test_semantic_labels_is_argmax():
    probs = np.array([[[0.7, 0.2]], [[0.3, 0.8]]])
    assert semantic_labels(probs).tolist() == [[0, 1]]
