"""Scores of predicted segmentations against ground truth: arrays in, typed results out.

* :func:`seg_score` -- Cell Tracking Challenge SEG of one instance label image.
* :func:`det_score` -- Cell Tracking Challenge DET (AOGM-D) of one frame.
* :func:`match_instances` -- optimal one-to-one IoU matching (precision, recall, F1, AP, PQ).
* :func:`merges_and_splits` -- merge and split errors.
* :func:`score_instances` -- all of the above from one overlap table.
* :func:`semantic_scores` -- per-class IoU and Dice of class maps, with the raw pixel counts.
* :func:`surface_distances` -- per-class HD95 and average surface distance (MONAI), spacing-aware.
* :class:`ScoreAccumulator` -- pools the above over a dataset, with bootstrap intervals.

No function here reads or writes files, except the folder readers in
:mod:`segpipe.scoring.ctc` and :mod:`segpipe.scoring.folders`, and
:mod:`segpipe.scoring.external` (scores a folder of predictions, writes its ``metrics.json``).
"""

from segpipe.scoring.accumulate import ScoreAccumulator
from segpipe.scoring.bootstrap import BootstrapPlan, Resampler
from segpipe.scoring.detection import DetResult, MergeSplitResult, det_score, det_value, merges_and_splits
from segpipe.scoring.image import THRESHOLDS, InstanceScores, score_instances
from segpipe.scoring.instances import MatchResult, SegResult, match_instances, seg_score
from segpipe.scoring.overlap import Overlap, overlap
from segpipe.scoring.semantic import SemanticResult, scores_from_counts, semantic_scores
from segpipe.scoring.surface import SurfaceResult, surface_distances

__all__ = [
    "THRESHOLDS",
    "BootstrapPlan",
    "DetResult",
    "InstanceScores",
    "MatchResult",
    "MergeSplitResult",
    "Overlap",
    "Resampler",
    "ScoreAccumulator",
    "SegResult",
    "SemanticResult",
    "SurfaceResult",
    "det_score",
    "det_value",
    "match_instances",
    "merges_and_splits",
    "overlap",
    "score_instances",
    "scores_from_counts",
    "seg_score",
    "semantic_scores",
    "surface_distances",
]
