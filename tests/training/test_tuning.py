"""Post-processing tuned on validation (and training images): the best OP_CSB wins, ties go to h-maxima seeding."""

from __future__ import annotations

import numpy as np

from segpipe.inference.postprocess import instance_labels
from segpipe.scoring import seg_score
from segpipe.training.tuning import min_sizes, tune_instance_params, validation_scores


def _probabilities(foreground: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """``(background, nucleus, distance)`` channels as the network's activated output."""
    fg = foreground.astype(np.float32)
    return np.stack([1.0 - fg, fg, distance.astype(np.float32)])


def test_a_tie_keeps_the_size_independent_seeding():
    params, scores = tune_instance_params([_disc()], n_classes=2)
    assert scores.op_csb == 1.0  # every setting finds the one disc: all tie
    assert (params.seed_method, params.seed_h, params.smoothing, params.foreground_threshold) == ("hmaxima", 0.1, 1.0, 0.5)
    assert params.min_size == 8 and params.edge_min_size is None  # every smallest size ties too: the least is kept


def _disc() -> tuple[np.ndarray, np.ndarray]:
    """One disc and its distance map: every setting tried finds it."""
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 15**2
    distance = np.clip(1.0 - np.sqrt((yy - 32) ** 2 + (xx - 32) ** 2) / 15, 0, 1) * disc
    return _probabilities(disc, distance), disc.astype(np.uint16)


def _bumpy_object() -> tuple[np.ndarray, np.ndarray]:
    """One long object whose distance map has a broad spurious bump 0.35 above a dip, more than
    every h tried, even after smoothing, so h-maxima splits it; thresholds from 0.6 see one seed."""
    gt = np.zeros((40, 90), np.uint16)
    gt[10:30, 10:80] = 1
    x = np.arange(90, dtype=np.float32)
    profile = np.interp(x, [10, 25, 50, 65, 80], [0.0, 1.0, 0.2, 0.55, 0.0])
    distance = np.where(gt > 0, profile[None, :], 0.0)
    return _probabilities(gt > 0, distance), gt


def test_the_better_rule_wins_over_the_preferred_one():
    probs, gt = _bumpy_object()
    params, scores = tune_instance_params([(probs, gt)], n_classes=2)
    assert params.seed_method == "threshold" and params.seed_threshold == 0.6
    assert scores.seg == seg_score(gt, instance_labels(1.0 - probs[0], probs[2], params)).seg == 1.0
    split = params.model_copy(update={"seed_method": "hmaxima", "seed_h": 0.2, "smoothing": 2.0})
    assert seg_score(gt, instance_labels(1.0 - probs[0], probs[2], split)).seg < 1.0


def test_false_objects_lose_even_when_seg_ties():
    """Specks in the background leave SEG at 1 but lower DET: the threshold that drops them wins."""
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 12**2
    foreground = np.where(disc, 0.9, 0.0)
    for y, x in ((5, 5), (5, 55), (55, 5), (55, 55)):
        foreground[y - 2 : y + 3, x - 2 : x + 3] = 0.55  # above the first threshold tried (0.5), below 0.6
    distance = np.clip(1.0 - np.sqrt((yy - 32) ** 2 + (xx - 32) ** 2) / 12, 0, 1) * disc
    gt = disc.astype(np.uint16)
    params, scores = tune_instance_params([(_probabilities(foreground, distance), gt)], n_classes=2, min_size=4)
    assert params.foreground_threshold == 0.6 and scores.det == 1.0 and scores.seg == 1.0
    specks = validation_scores([(_probabilities(foreground, distance), gt)], params.model_copy(update={"foreground_threshold": 0.5}), 2)
    assert specks.seg == 1.0 and specks.det < 1.0 and specks.op_csb < scores.op_csb


def test_training_images_decide_what_validation_leaves_open():
    """The validation disc ties every setting; the training object is split by h-maxima, so the
    mean of the two OP_CSB picks the threshold that keeps it whole; validation scores are reported."""
    alone, _ = tune_instance_params([_disc()], n_classes=2)
    assert alone.seed_method == "hmaxima"
    params, scores = tune_instance_params([_disc()], n_classes=2, training=[_bumpy_object()])
    assert (params.seed_method, params.seed_threshold) == ("threshold", 0.6)
    assert scores.op_csb == 1.0 and scores.seg == 1.0


def test_training_images_without_objects_leave_validation_alone():
    empty = (np.stack([np.ones((32, 32), np.float32), np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32)]),
             np.zeros((32, 32), np.uint16))
    probs, gt = _bumpy_object()
    alone = tune_instance_params([(probs, gt)], n_classes=2)
    assert tune_instance_params([(probs, gt)], n_classes=2, training=[empty]) == alone


def test_settings_scored_together_score_as_each_alone():
    """The tuning keeps the maps settings share on an image (reliefs, h-maxima, flow paths):
    every setting still scores what it scores alone, with a flow and a boundary output too."""
    from segpipe.training.targets import centre_heat, flow_from_heat
    from segpipe.training.tuning import candidates, scores_of_settings, validation_scores

    rng = np.random.default_rng(0)
    gt = np.zeros((64, 64), np.uint16)
    gt[8:30, 8:30], gt[8:30, 30:52], gt[36:58, 14:44] = 1, 2, 3  # two touching squares and a bar
    noisy = lambda a: np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1).astype(np.float32)  # noqa: E731
    heat = centre_heat(gt)
    flow = (flow_from_heat(heat, gt > 0) + 1) / 2
    boundary = (gt > 0) & ~(np.roll(gt, 1, 1) == gt)
    probs = np.concatenate([noisy(np.stack([gt == 0, gt > 0])), noisy(heat)[None], noisy(boundary)[None], noisy(flow)])
    predictions = [(probs, gt), (probs[:, ::-1, :].copy(), gt[::-1].copy())]
    settings = list(candidates(predictions, n_classes=2))
    assert {s.relief for s in settings} == {"distance", "boundary", "flow"}
    together = scores_of_settings(predictions, settings, 2)
    alone = [validation_scores(predictions, s, 2) for s in settings]
    assert together == alone
    assert all(type(v) is float for s in together for v in s.as_dict().values())  # plain floats: last.pt loads with weights_only
    assert len({s.op_csb for s in alone}) > 3  # the settings differ on these images: the comparison can fail


def _four_squares(shift: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Four square objects predicted ``shift`` pixels off, with pixels dropped at random: Jaccard indices below 1."""
    from scipy import ndimage

    from segpipe.training.targets import distance_target

    gt = np.zeros((64, 64), np.uint16)
    for k, (y, x) in enumerate(((16, 16), (16, 48), (48, 16), (48, 48)), start=1):
        gt[y - 8 : y + 8, x - 8 : x + 8] = k
    fg = np.roll(gt > 0, shift, axis=1) & (rng.random((64, 64)) > 0.1 * shift)  # uneven overlaps
    return _probabilities(fg, distance_target(ndimage.label(fg)[0])), gt


def _jaccards(predictions, params) -> list[list[float]]:
    """Each image's objects' Jaccard indices, from the scoring module."""
    from segpipe.scoring import overlap
    from segpipe.scoring.instances import seg_from_overlap

    return [
        list(seg_from_overlap(overlap(gt, instance_labels(1.0 - probs[0], probs[2], params))).jaccard)
        for probs, gt in predictions
    ]


def test_the_seg_standard_error_counts_images_that_differ_as_the_unit():
    """Two images, one predicted well and one badly: the images' standard error (a ratio of sums
    over two draws, by hand) exceeds the objects' and is the one given."""
    rng = np.random.default_rng(3)
    predictions = [_four_squares(0, rng), _four_squares(3, rng)]
    params = tune_instance_params(predictions, n_classes=2)[0]
    per_image = _jaccards(predictions, params)
    pooled = per_image[0] + per_image[1]
    seg = np.mean(pooled)
    objects = np.std(pooled, ddof=1) / np.sqrt(8)
    residuals = [np.sum(j) - seg * len(j) for j in per_image]
    images = np.sqrt(2 / 1 * np.sum(np.square(residuals))) / 8
    scores = validation_scores(predictions, params, 2)
    assert len(pooled) == 8 and np.isclose(scores.seg, seg)
    assert images > 1.5 * objects  # the two images differ: the figures the test tells apart
    assert np.isclose(scores.seg_se, images)
    assert validation_scores([_disc()], params, 2).seg_se == 0.0  # one object: no spread to measure


def test_the_seg_standard_error_of_images_alike_is_the_objects_spread():
    """The same image twice: the images agree exactly, so the objects' spread of their Jaccard indices is what is left."""
    probs, gt = _four_squares(3, np.random.default_rng(3))
    predictions = [(probs, gt), (probs.copy(), gt.copy())]
    params = tune_instance_params(predictions, n_classes=2)[0]
    pooled = [j for image in _jaccards(predictions, params) for j in image]
    assert len(pooled) == 8 and np.std(pooled) > 0.01
    assert np.isclose(validation_scores(predictions, params, 2).seg_se, np.std(pooled, ddof=1) / np.sqrt(8))
    single = validation_scores(predictions[:1], params, 2).seg_se  # one image: its objects only
    assert np.isclose(single, np.std(pooled[:4], ddof=1) / 2)


def test_min_sizes_are_shares_of_the_median_true_object():
    gt = np.zeros((40, 40), np.uint16)
    gt[0:10, 0:10], gt[20:30, 0:20], gt[0:20, 20:40] = 1, 2, 3  # 100, 200 and 400 pixels: median 200
    assert min_sizes([(None, gt)], smallest=8) == [8, 10]  # 2.5% (5) is below 8; 5% is 10
    assert min_sizes([(None, gt), (None, 4 * gt)], smallest=3) == [3, 5, 10]  # labels 4, 8, 12 too: same sizes
    assert min_sizes([(None, np.zeros((8, 8), np.uint16))], smallest=8) == [8]  # no objects: the fixed size


def test_confident_specks_are_dropped_by_the_size_their_objects_make_small():
    """Specks as sure as the object (no threshold drops them) and larger than the fixed 8 pixels:
    the smallest size kept, 5% of the true objects' median, drops them and DET reaches 1."""
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 12**2
    foreground = np.where(disc, 0.95, 0.0)
    distance = np.clip(1.0 - np.sqrt((yy - 32) ** 2 + (xx - 32) ** 2) / 12, 0, 1) * disc
    for y, x in ((4, 4), (4, 56), (56, 4), (56, 56)):  # inside the frame: an edge would spare them
        foreground[y : y + 3, x : x + 4] = 0.95  # 12 pixels: above 2.5% of the disc (11), below 5% (22)
        distance[y : y + 3, x : x + 4] = 0.3
    gt = disc.astype(np.uint16)
    params, scores = tune_instance_params([(_probabilities(foreground, distance), gt)], n_classes=2)
    assert params.min_size == round(0.05 * disc.sum()) == 22  # the disc: 437 pixels
    assert params.edge_min_size == 8  # objects the frame's edge cuts keep the fixed size
    assert scores.det == 1.0 and scores.seg == 1.0
    kept = validation_scores([(_probabilities(foreground, distance), gt)], params.model_copy(update={"min_size": 8}), 2)
    assert kept.seg == 1.0 and kept.det < 1.0  # the fixed size keeps the specks as objects
