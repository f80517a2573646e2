"""Choose checkpoints (validation split) and post-processing (it and training images), never on the test split.

Both are chosen by the Cell Tracking Challenge's overall measure, OP_CSB = (SEG + DET) / 2:
SEG rewards how well each true object is covered and ignores extra objects, DET counts them
(an extra object, a missed one, a merge), so specks in empty background lower the score.

Checkpoints are chosen on the validation split alone (:mod:`segpipe.training.selection`: the
latest within two standard errors of the best). The post-processing can also hear from
training images: a small validation split (a strip of one volume, a few fields) holds few
objects, so many settings score within a merge of each other there and the best of them is
chosen by chance; the training images hold more objects of the same kind. Each setting is then
ranked by the mean of its validation and its training OP_CSB, half weight each, because the
network's outputs on images it was trained on are cleaner than on new ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from segpipe.inference.postprocess import InstanceParams, instance_labels, output_maps
from segpipe.scoring import overlap
from segpipe.scoring.detection import det_from_overlap, det_value
from segpipe.scoring.ignore import annotated_only
from segpipe.scoring.instances import seg_from_overlap

#: Foreground thresholds tried, the central one first.
FOREGROUND_GRID = (0.5, 0.4, 0.6)
#: Seeding rules tried: h-maxima of the distance map (after smoothing), then thresholds of it.
#: The order breaks ties (see :func:`tune_instance_params`): h-maxima first, as it does not
#: depend on object size, and the central values of each rule first.
SEED_GRID = tuple(
    {"seed_method": "hmaxima", "seed_h": h, "smoothing": sigma} for h in (0.1, 0.05, 0.15, 0.2) for sigma in (1.0, 0.0, 2.0)
) + tuple({"seed_method": "threshold", "seed_threshold": t} for t in (0.5, 0.4, 0.6, 0.3, 0.7))
#: Sink sizes tried for the flow's grouping (models with a flow output), the central one first.
SINK_GRID = (10, 4, 25)
#: Smallest objects kept, tried after the grid on its best setting: the fixed ``min_size``, then
#: these shares of the median true object's size in the tuning images. A speck a twentieth of a
#: cell's area is noise or a fragment, never a cell of that dataset; which share a dataset takes
#: is its validation's (and training images') OP_CSB's call, ties keeping the smallest. Objects
#: on the frame's edge keep the fixed size (``edge_min_size``): the edge cuts real ones small.
MIN_SIZE_SHARES = (0.025, 0.05)


@dataclass(frozen=True)
class ValidationScores:
    """Object-weighted SEG, pooled DET and their mean OP_CSB over the validation images (NaN
    without objects), and the standard error of the SEG (:func:`seg_standard_error`)."""

    seg: float
    det: float
    seg_se: float = float("nan")

    @property
    def op_csb(self) -> float:
        return (self.seg + self.det) / 2

    def as_dict(self) -> dict[str, float]:
        return {"seg": self.seg, "det": self.det, "op_csb": self.op_csb}


def validation_scores(
    predictions: list[tuple[np.ndarray, np.ndarray]], params: InstanceParams, n_classes: int
) -> ValidationScores:
    """SEG, DET and OP_CSB of ``params`` applied to the validation predictions.

    Args:
        predictions: ``(probabilities, ground-truth instances)`` pairs, or triples with the
            pixels the ground truth leaves unannotated (``None``: none), scored as
            :mod:`segpipe.scoring.ignore` says; probabilities are ``(n_classes + 1, *spatial)``
            with the distance map next (and a boundary map last, for models with one).
        params: Post-processing to apply.
        n_classes: Number of class channels.
    """
    return scores_of_settings(predictions, [params], n_classes)[0]


def scores_of_settings(
    predictions: list[tuple[np.ndarray, ...]], settings: list[InstanceParams], n_classes: int
) -> list[ValidationScores]:
    """:func:`validation_scores` of each of ``settings``, image by image: the maps settings
    share on one image (its smoothed reliefs, their h-maxima, the flow's paths) are made once."""
    # per setting and image: summed Jaccard, its summed squares, true objects, AOGM-D, AOGM-D of an empty result
    tallies = np.zeros((len(settings), len(predictions), 5))
    for image, (probs, gt, *ignore) in enumerate(predictions):
        maps = output_maps(probs, n_classes)
        reuse: dict = {}
        for row, params in zip(tallies[:, image], settings):
            truth, pred = _labelled(maps, gt, ignore[0] if ignore else None, params, reuse)
            table = overlap(truth, pred)
            seg, det = seg_from_overlap(table), det_from_overlap(table)
            row += (float(np.sum(seg.jaccard)), float(np.sum(np.square(seg.jaccard))), seg.n_gt, det.aogm_d, det.aogm_d0)
    scores = []
    for images in tallies:
        j, _, n, d, d0 = images.sum(axis=0)
        seg = float(j / n) if n else float("nan")
        scores.append(ValidationScores(seg, det_value(float(d), float(d0)), seg_standard_error(images[:, :3])))
    return scores


def seg_standard_error(images: np.ndarray) -> float:
    """The SEG's standard error from each image's summed Jaccard, summed squares and objects (rows).

    The larger of two: the objects' (the spread of their Jaccard indices over the square root of
    their number) and, with two or more images holding objects, the images' (the standard error
    of a ratio of sums over images drawn at random: each image's summed Jaccard minus the SEG
    times its objects, spread over the images). The objects of one image share its contrast and
    crowding, so a split of a few images varies by more than as many objects drawn one by one
    would; with one image, or images alike, the objects' spread is what is left. One object: 0;
    none: NaN.
    """
    total, squares, n = images.sum(axis=0)
    if n < 1:
        return float("nan")
    if n < 2:
        return 0.0
    objects = float(np.sqrt(max(squares - total * total / n, 0.0) / (n - 1) / n))
    held = images[images[:, 2] > 0]
    m = len(held)
    if m < 2:
        return objects
    residuals = held[:, 0] - (total / n) * held[:, 2]
    between = float(np.sqrt(m / (m - 1) * np.sum(np.square(residuals))) / n)
    return max(objects, between)


def labelled_pairs(
    predictions: list[tuple[np.ndarray, np.ndarray]], params: InstanceParams, n_classes: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ground truth, objects)`` of each prediction with ``params`` applied, the pixels the
    ground truth leaves unannotated taken out of both (``predictions`` as :func:`validation_scores` takes them)."""
    for probs, gt, *ignore in predictions:
        yield _labelled(output_maps(probs, n_classes), gt, ignore[0] if ignore else None, params, None)


def _labelled(maps: tuple, gt: np.ndarray, ignore: np.ndarray | None, params: InstanceParams, reuse: dict | None):
    foreground, distance, boundary, flow = maps
    pred = instance_labels(foreground, distance, params, boundary=boundary, flow=flow, reuse=reuse)
    if ignore is not None:
        kept = annotated_only(gt, pred, ignore)
        return kept.gt, kept.pred
    return gt, pred


def candidates(predictions: list[tuple[np.ndarray, ...]], *, n_classes: int, min_size: int = 8) -> Iterator[InstanceParams]:
    """The settings the tuning tries, in the order that breaks its ties: the distance relief, the
    boundary one for models with a boundary output (``predictions`` show it), each with the
    foreground thresholds and seeding rules; then, for models with a flow output, the flow's
    grouping with the foreground thresholds and sink sizes."""
    _, _, boundary, flow = output_maps(predictions[0][0], n_classes) if predictions else (None,) * 4
    reliefs = ("distance", "boundary") if boundary is not None else ("distance",)
    for relief, fg, seed in itertools.product(reliefs, FOREGROUND_GRID, SEED_GRID):
        yield InstanceParams(relief=relief, foreground_threshold=fg, min_size=min_size, **seed)
    if flow is not None:
        for fg, sink in itertools.product(FOREGROUND_GRID, SINK_GRID):
            yield InstanceParams(relief="flow", foreground_threshold=fg, sink_size=sink, min_size=min_size)


def tune_instance_params(
    predictions: list[tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
    min_size: int = 8,
    training: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[InstanceParams, ValidationScores]:
    """Grid-search the relief, the foreground threshold and the seeding rule for the best OP_CSB,
    then the smallest object kept (:func:`min_sizes`) for that setting.

    Without ``training``, settings are ranked by their validation OP_CSB; with it, by the mean
    of their validation and training OP_CSB (see the module's docstring), or by the validation
    one alone where the training images hold no object.

    The relief is the distance map, and, for models with a boundary output, the distance map
    lowered on boundaries; models with a flow output can also group pixels by their flow's
    sinks: which one separates a dataset's objects better is decided here.

    A small validation split often scores many settings exactly alike (they differ only where
    it has no objects), so the order of the grid matters: ties keep the earlier setting, which
    is the size-independent h-maxima seeding and the central thresholds.

    Args:
        predictions: The validation images' ``(probabilities, ground truth[, unannotated])``,
            as :func:`validation_scores` takes them.
        n_classes: Number of class channels.
        min_size: Smallest object kept, pixels, in the grid; the least :func:`min_sizes` tries.
        training: The same for training images, or ``None``.

    Returns:
        The best parameters and their validation scores.
    """
    settings = list(candidates(predictions, n_classes=n_classes, min_size=min_size))
    best, _ = _best_of(settings, predictions, training, n_classes)
    sizes = min_sizes(predictions + (training or []), smallest=min_size)
    sized = [best.model_copy(update={"min_size": size, "edge_min_size": None if size == min_size else min_size}) for size in sizes]
    return _best_of(sized, predictions, training, n_classes)


def _best_of(settings: list[InstanceParams], predictions: list, training: list | None, n_classes: int) -> tuple[InstanceParams, ValidationScores]:
    """The best of ``settings`` by :func:`_rank` and its validation scores; ties keep the earlier one."""
    validation = scores_of_settings(predictions, settings, n_classes)
    trained = scores_of_settings(training, settings, n_classes) if training else [None] * len(settings)
    best, best_rank = 0, -np.inf
    for index, (scores, on_training) in enumerate(zip(validation, trained)):
        rank = _rank(scores, on_training)
        if index == 0 or rank > best_rank + 1e-9:
            best, best_rank = index, rank
    return settings[best], validation[best]


def min_sizes(predictions: list[tuple[np.ndarray, ...]], *, smallest: int) -> list[int]:
    """The smallest object sizes tried: ``smallest``, then each of ``MIN_SIZE_SHARES`` of the
    median size (pixels or voxels) of the true objects in ``predictions``, where larger."""
    sizes = [np.bincount(np.asarray(gt, dtype=np.int64).ravel())[1:] for _, gt, *_ in predictions]
    sizes = np.concatenate([s[s > 0] for s in sizes]) if sizes else np.zeros(0)
    if not sizes.size:
        return [smallest]
    median = float(np.median(sizes))
    return sorted({smallest, *(int(round(share * median)) for share in MIN_SIZE_SHARES if share * median > smallest)})


def _rank(validation: ValidationScores, training: ValidationScores | None) -> float:
    """What a setting is ranked by: the validation OP_CSB, or its mean with a defined training one."""
    if training is None or np.isnan(training.op_csb):
        return validation.op_csb
    return (validation.op_csb + training.op_csb) / 2
