"""Scores of predicted segmentations against ground truth: arrays in, typed results out.

* :func:`seg_score` -- Cell Tracking Challenge SEG of one instance label image.
* :func:`match_instances` -- optimal one-to-one IoU matching (StarDist-style counts, F1, PQ).
* :func:`semantic_scores` -- per-class IoU and Dice of class maps, with the raw pixel counts.
* :class:`ScoreAccumulator` -- pools the above over a dataset into JSON-ready dicts.

No function here reads or writes files.
"""

from segpipe.scoring.accumulate import ScoreAccumulator
from segpipe.scoring.instances import MatchResult, SegResult, match_instances, seg_score
from segpipe.scoring.overlap import Overlap, overlap
from segpipe.scoring.semantic import SemanticResult, scores_from_counts, semantic_scores

__all__ = [
    "MatchResult",
    "Overlap",
    "ScoreAccumulator",
    "SegResult",
    "SemanticResult",
    "match_instances",
    "overlap",
    "scores_from_counts",
    "seg_score",
    "semantic_scores",
]
