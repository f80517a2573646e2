"""Pool scores over the images of a dataset, as the Cell Tracking Challenge and MONAI do.

Every dataset score is pooled from per-image sums, weighting images by what they hold:

* SEG: summed Jaccard indices over summed ground-truth objects (not a mean of image SEGs);
* DET: ``1 - min(sum AOGM-D, sum AOGM-D0) / sum AOGM-D0``, as the CTC pools frames;
* matching at each IoU threshold: TP, FP and FN summed over images, then the ratios
  (precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)``, F1 ``2TP/(2TP+FP+FN)``, average
  precision ``TP/(TP+FP+FN)`` as StarDist and Cellpose define it, panoptic quality
  ``sum matched IoU / (TP + FP/2 + FN/2)``);
* IoU and Dice per class: summed intersections over summed unions (pixel-weighted);
* HD95 and ASD per class: mean over the images where both maps hold the class;
* OP_CSB, the Cell Tracking Challenge's overall segmentation measure: ``(SEG + DET) / 2``.

Images of sparse ground truth come with an ``ignore`` mask: every score then leaves out what
the ground truth does not annotate (:mod:`segpipe.scoring.ignore`), and the summary counts the
ignored pixels and the predicted objects left out (``ignored_pixels``, ``ignored_pred``).

Each comes with a percentile bootstrap interval (:mod:`segpipe.scoring.bootstrap`): over the
images when there are enough of them; with fewer, over the objects for object-level scores
(SEG, DET, the matching table) and none for the others. ``ci_method`` says, for each interval,
what was resampled, how many units, how many resamples and the level. OP_CSB gets an interval
only when SEG and DET are resampled with the same draws (over images).

Every value :meth:`ScoreAccumulator.summary` returns is a plain ``int``, ``float``, ``str``,
``bool``, ``None``, ``list`` or ``dict``, ready for :func:`json.dumps` with ``allow_nan=False``:
undefined scores (NaN: no ground-truth objects, a class in neither map) are ``None``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segpipe.scoring.bootstrap import BootstrapPlan, CiMethod, Resampler, choose_method, no_interval
from segpipe.scoring.detection import det_from_ratio, det_units, det_value
from segpipe.scoring.ignore import check_ignore
from segpipe.scoring.image import THRESHOLDS, score_instances
from segpipe.scoring.instances import MatchResult
from segpipe.scoring.semantic import scores_from_counts, semantic_scores
from segpipe.scoring.surface import surface_distances

# Bins of the per-object IoU histogram: [0, 0.05), [0.05, 0.1), ..., [0.95, 1].
IOU_BINS = 20


@dataclass
class _ImageStats:
    """Per-image sums that dataset scores and their bootstrap are pooled from."""

    name: str
    intersection: list[int]
    gt_count: list[int]
    pred_count: list[int]
    hd95: list[float] = field(default_factory=list)
    asd: list[float] = field(default_factory=list)
    jaccard_sum: float = 0.0
    n_gt: int = 0
    n_pred: int = 0
    det: dict[str, int] = field(default_factory=dict)
    tp: list[int] = field(default_factory=list)
    fp: list[int] = field(default_factory=list)
    fn: list[int] = field(default_factory=list)
    iou_sum: list[float] = field(default_factory=list)
    merge_split: dict[str, int] = field(default_factory=dict)
    ignored_pixels: int = 0
    ignored_pred: int = 0
    iou_hist: np.ndarray | None = None
    # per ground-truth object, for the object bootstrap: Jaccard index, AOGM-D share, and
    # matched IoU at each threshold (0 when unmatched), shape (thresholds, objects)
    jaccard: np.ndarray = field(default_factory=lambda: np.zeros(0))
    det_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    matched_iou: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


class ScoreAccumulator:
    """Score images one at a time, then summarise the dataset with confidence intervals.

    Instance datasets get CTC SEG and DET, the matching table, merges and splits, plus
    per-class IoU and Dice of the semantic maps (by default foreground vs background,
    ``labels > 0``). Semantic datasets get IoU and Dice. With ``surface=True`` every image
    also gets HD95 and ASD per foreground class, in the units of its spacing.

    A second method scored on the same images (the classical baseline) goes into
    :attr:`baseline`, an accumulator of the same kind; :meth:`summary` then holds its summary
    under ``"baseline"``. Accumulators of single images merge into a dataset's with :meth:`merge`
    (per-image tasks score in parallel, one pools).

    Args:
        n_classes: Number of semantic classes, including background (class 0).
        class_names: Name of each class, in class order; keys of the per-class dicts.
        instances: Whether the labels are instance ids (instance scores) or class maps.
        thresholds: IoU thresholds of the matching table.
        surface: Also compute surface distances (meant for 3D volumes; pass ``spacing``).
        with_baseline: Create :attr:`baseline` (an accumulator without a baseline of its own).

    Example:
        >>> acc = ScoreAccumulator(2, ["background", "nucleus"], True)
        >>> row = acc.add("img0", gt_labels, pred_labels)
        >>> acc.summary()["seg"]
    """

    def __init__(
        self,
        n_classes: int,
        class_names: list[str],
        instances: bool,
        *,
        thresholds: Sequence[float] = THRESHOLDS,
        surface: bool = False,
        with_baseline: bool = False,
    ) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        if len(class_names) != n_classes:
            raise ValueError(f"{len(class_names)} class names given for {n_classes} classes")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class names must be unique, got {class_names}")
        if any(not 0 < t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be in (0, 1], got {list(thresholds)}")
        self.n_classes = n_classes
        self.class_names = [str(name) for name in class_names]
        self.instances = bool(instances)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.surface = bool(surface)
        self.baseline: ScoreAccumulator | None = (
            ScoreAccumulator(n_classes, class_names, instances, thresholds=thresholds, surface=surface)
            if with_baseline
            else None
        )
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far (the baseline's too)."""
        self._images: list[_ImageStats] = []
        self._rows: list[dict[str, Any]] = []
        self.seconds = 0.0
        if self.baseline is not None:
            self.baseline.reset()

    @property
    def n_images(self) -> int:
        """Images added so far."""
        return len(self._images)

    def merge(self, other: ScoreAccumulator) -> ScoreAccumulator:
        """Append another accumulator's images (and its baseline's) after this one's; returns ``self``.

        Raises:
            ValueError: The two were made for different classes, kinds, thresholds or surface settings.
        """
        mine = (self.class_names, self.instances, self.thresholds, self.surface, self.baseline is None)
        theirs = (other.class_names, other.instances, other.thresholds, other.surface, other.baseline is None)
        if mine != theirs:
            raise ValueError(f"cannot merge accumulators made for different settings: {mine} and {theirs}")
        self._images.extend(other._images)
        self._rows.extend(other._rows)
        self.seconds += other.seconds
        if self.baseline is not None and other.baseline is not None:
            self.baseline.merge(other.baseline)
        return self

    def add(
        self,
        name: str,
        gt_labels: np.ndarray,
        pred_labels: np.ndarray,
        gt_semantic: np.ndarray | None = None,
        pred_semantic: np.ndarray | None = None,
        *,
        spacing: Sequence[float] | None = None,
        ignore: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Score one image and add it to the dataset totals.

        Args:
            name: Image name, copied into the returned row.
            gt_labels: Ground truth: instance ids for instance datasets, else the class map.
            pred_labels: Prediction, same shape and kind as ``gt_labels``.
            gt_semantic: Ground-truth class map; default ``gt_labels > 0`` for instance
                datasets and ``gt_labels`` itself for semantic ones.
            pred_semantic: Predicted class map, defaulted the same way.
            spacing: Pixel or voxel size per axis, for the surface distances.
            ignore: Pixels the ground truth does not annotate (nonzero), same shape: left out
                of every score (:mod:`segpipe.scoring.ignore`).

        Returns:
            The image's row (see :meth:`summary`, ``per_image``).

        Raises:
            TypeError: A dtype that is not integer or bool.
            ValueError: Shapes differ, a label is negative, or a class is ``>= n_classes``.
        """
        start = time.perf_counter()
        if self.instances:
            gt_semantic = _default_semantic(gt_semantic, gt_labels)
            pred_semantic = _default_semantic(pred_semantic, pred_labels)
        else:
            gt_semantic = gt_labels if gt_semantic is None else gt_semantic
            pred_semantic = pred_labels if pred_semantic is None else pred_semantic
        if ignore is not None:
            ignore = check_ignore(ignore, np.shape(gt_labels))
        sem = semantic_scores(gt_semantic, pred_semantic, n_classes=self.n_classes, ignore=ignore)
        stats = _ImageStats(str(name), sem.intersection, sem.gt_count, sem.pred_count)
        stats.ignored_pixels = int(np.count_nonzero(ignore)) if ignore is not None else 0
        row: dict[str, Any] = {
            "name": str(name),
            "seg": None,
            "n_objects": None,
            "iou": self._by_class(sem.iou),
            "dice": self._by_class(sem.dice),
            "ignored_pixels": stats.ignored_pixels,
        }
        if self.surface:
            if ignore is not None:  # ignored pixels are background in both maps
                gt_semantic, pred_semantic = np.where(ignore, 0, gt_semantic), np.where(ignore, 0, pred_semantic)
            dist = surface_distances(gt_semantic, pred_semantic, n_classes=self.n_classes, spacing=spacing)
            stats.hd95, stats.asd = dist.hd95, dist.asd
            row["hd95"], row["asd"] = self._by_class(dist.hd95), self._by_class(dist.asd)
        if self.instances:
            row.update(self._add_instances(stats, gt_labels, pred_labels, ignore))
        self._images.append(stats)
        self._rows.append(row)
        self.seconds += time.perf_counter() - start
        return _copy_row(row)

    def _add_instances(self, stats: _ImageStats, gt: np.ndarray, pred: np.ndarray, ignore) -> dict[str, Any]:
        scores = score_instances(gt, pred, thresholds=self.thresholds, ignore=ignore)
        stats.ignored_pred = int(scores.ignored_pred.size)
        det = scores.det
        stats.jaccard_sum, stats.n_gt, stats.n_pred = scores.seg.jaccard_sum, scores.seg.n_gt, det.n_pred
        stats.det = {k: getattr(det, k) for k in ("tp", "fn", "fp", "ns", "aogm_d", "aogm_d0")}
        stats.tp = [m.tp for m in scores.matches]
        stats.fp = [m.fp for m in scores.matches]
        stats.fn = [m.fn for m in scores.matches]
        stats.iou_sum = [float(m.matched_iou.sum()) for m in scores.matches]
        stats.merge_split = vars(scores.merge_split).copy()
        stats.iou_hist = np.histogram(scores.best_iou, bins=IOU_BINS, range=(0.0, 1.0))[0]
        stats.jaccard, stats.det_cost = scores.seg.jaccard, scores.det_cost
        matched = [_iou_per_gt(scores.seg.gt_ids, m) for m in scores.matches]
        stats.matched_iou = np.array(matched).reshape(len(matched), stats.n_gt)
        seg, det_score = _json_float(scores.seg.seg), _json_float(det.det)
        return {
            "seg": seg,
            "n_objects": scores.seg.n_gt,
            "n_pred": det.n_pred,
            "det": det_score,
            "op_csb": op_csb(seg, det_score),
            "ignored_pred": stats.ignored_pred,
            **stats.merge_split,
            "matching": [
                _matching_entry(t, stats.n_gt, det.n_pred, tp, fp, fn, s)
                for t, tp, fp, fn, s in zip(self.thresholds, stats.tp, stats.fp, stats.fn, stats.iou_sum, strict=True)
            ],
        }

    def summary(self, *, bootstrap: BootstrapPlan | None = None) -> dict[str, Any]:
        """Dataset-level scores with bootstrap intervals (see the module docstring).

        Args:
            bootstrap: Resamples, seed and level of the intervals (default 1000, seed 0, 95%).

        Returns:
            ``{"n_images", "instances", "classes", "seg", "n_objects", "n_pred", "det",
            "op_csb", "det_counts", "iou", "dice", "mean_iou", "mean_dice", "ignored_pixels", "ignored_pred", ["hd95", "asd",]
            "matching", "merges", "merged_gt", "splits", "split_pred", "iou_histogram", "ci",
            "ci_method", "bootstrap", "per_image"}``. Instance-only values are ``None``
            (``matching`` empty) for semantic datasets; ``ci`` mirrors the scores with
            ``[low, high]`` or ``None`` (no draws under the policy, or undefined);
            ``ci_method`` has the same keys as ``ci`` (``matching`` by threshold, one entry for
            the five scores of a threshold; one entry for all classes of a per-class score),
            each a :class:`~segpipe.scoring.bootstrap.CiMethod` as a dict. With a baseline that
            scored images, also ``"baseline"``: its own summary, made with the same plan.
        """
        plan = bootstrap or BootstrapPlan()
        images = self._images
        by_images = choose_method(plan, n_images=len(images))
        rs = Resampler(len(images), plan, draw=by_images.unit == "images")  # no draws: too few images
        inter = _matrix([s.intersection for s in images], self.n_classes)
        gt_count = _matrix([s.gt_count for s in images], self.n_classes)
        pred_count = _matrix([s.pred_count for s in images], self.n_classes)
        iou, dice = scores_from_counts(inter.sum(0).tolist(), gt_count.sum(0).tolist(), pred_count.sum(0).tolist())
        union = gt_count + pred_count - inter
        iou_samples = [rs.ratios(inter[:, c], union[:, c]) for c in range(self.n_classes)]
        dice_samples = [rs.ratios(2 * inter[:, c], (gt_count + pred_count)[:, c]) for c in range(self.n_classes)]
        ci: dict[str, Any] = {
            "iou": self._by_class_ci(rs, iou_samples),
            "dice": self._by_class_ci(rs, dice_samples),
            "mean_iou": rs.interval(_mean_over_classes(iou_samples[1:])),
            "mean_dice": rs.interval(_mean_over_classes(dice_samples[1:])),
        }
        methods: dict[str, Any] = dict.fromkeys(ci, by_images)
        out: dict[str, Any] = {
            "n_images": len(images),
            "instances": self.instances,
            "classes": list(self.class_names),
            "seg": None,
            "n_objects": None,
            "n_pred": None,
            "det": None,
            "det_counts": None,
            "iou": self._by_class(iou),
            "dice": self._by_class(dice),
            "mean_iou": _mean_defined(iou[1:]),
            "mean_dice": _mean_defined(dice[1:]),
            "ignored_pixels": int(sum(s.ignored_pixels for s in images)),
            "ignored_pred": int(sum(s.ignored_pred for s in images)) if self.instances else None,
        }
        if self.surface:
            for key in ("hd95", "asd"):
                values = _matrix([getattr(s, key) for s in images], self.n_classes, dtype=np.float64)
                defined = ~np.isnan(values)
                filled = np.where(defined, values, 0.0)
                n_defined = defined.sum(0)
                means = [float(filled[:, c].sum() / n_defined[c]) if n_defined[c] else math.nan for c in range(self.n_classes)]
                out[key] = self._by_class(means)
                ci[key] = self._by_class_ci(rs, [rs.ratios(filled[:, c], defined[:, c]) for c in range(self.n_classes)])
                methods[key] = by_images
        out.update({"op_csb": None, "matching": [], "merges": None, "merged_gt": None, "splits": None, "split_pred": None})
        out["iou_histogram"] = None
        if self.instances:
            self._instance_summary(out, ci, methods, rs, by_images)
        out["ci"] = ci
        out["ci_method"] = _method_dicts(methods)
        out["bootstrap"] = {"n_resamples": plan.n_resamples, "seed": plan.seed, "level": plan.level, "min_images": plan.min_images}
        out["per_image"] = [_copy_row(row) for row in self._rows]
        if self.baseline is not None and self.baseline.n_images:
            out["baseline"] = self.baseline.summary(bootstrap=plan)
        return out

    def _instance_summary(
        self, out: dict[str, Any], ci: dict[str, Any], methods: dict[str, Any], rs: Resampler, by_images: CiMethod
    ) -> None:
        """SEG, DET, OP_CSB, the matching table, merges, splits and the IoU histogram; intervals
        over ``rs``'s images when there are enough of them, else over objects."""
        images = self._images
        self._seg_det_summary(out, ci, methods, rs, by_images)
        self._matching_summary(out, ci, methods, rs, by_images)
        for key in ("merges", "merged_gt", "splits", "split_pred"):
            out[key] = int(sum(s.merge_split[key] for s in images))
        hist = np.zeros(IOU_BINS, np.int64)
        for s in images:
            hist += s.iou_hist
        out["iou_histogram"] = {
            "edges": [round(i / IOU_BINS, 10) for i in range(IOU_BINS + 1)],
            "counts": hist.tolist(),
            "what": "largest IoU of each ground-truth object with any predicted object",
        }

    def _seg_det_summary(
        self, out: dict[str, Any], ci: dict[str, Any], methods: dict[str, Any], rs: Resampler, by_images: CiMethod
    ) -> None:
        """SEG, DET and OP_CSB with their intervals (``rs.interval`` only takes percentiles of
        whichever draws made the samples)."""
        images, plan = self._images, rs.plan
        n_images = len(images)
        over_images = by_images.unit == "images"
        jaccard = np.array([s.jaccard_sum for s in images], np.float64)
        n_gt = np.array([s.n_gt for s in images], np.float64)
        n_objects = int(n_gt.sum())
        out["seg"] = float(jaccard.sum() / n_objects) if n_objects else None
        out["n_objects"] = n_objects
        out["n_pred"] = int(sum(s.n_pred for s in images))
        per_gt = {key: np.concatenate([getattr(s, key) for s in images]) if images else np.zeros(0) for key in ("jaccard", "det_cost")}
        if over_images:
            methods["seg"], seg_samples = by_images, rs.ratios(jaccard, n_gt)
        else:
            methods["seg"], seg_samples = _object_draws(
                plan, n_images, "ground-truth objects", per_gt["jaccard"], np.ones(per_gt["jaccard"].size)
            )
        ci["seg"] = rs.interval(seg_samples)

        det = {k: np.array([s.det.get(k, 0) for s in images], np.float64) for k in ("tp", "fn", "fp", "ns", "aogm_d", "aogm_d0")}
        out["det"] = _json_float(det_value(det["aogm_d"].sum(), det["aogm_d0"].sum()))
        out["det_counts"] = {k: int(v.sum()) for k, v in det.items()}
        if over_images:
            methods["det"], det_ratio = by_images, rs.ratios(det["aogm_d"], det["aogm_d0"])
        else:  # the ground-truth objects and the predicted objects covering none of them
            methods["det"], det_ratio = _object_draws(
                plan, n_images, "objects: the ground truth and predictions covering none",
                *det_units(per_gt["det_cost"], int(det["fp"].sum())),
            )
        det_samples = None if det_ratio is None else det_from_ratio(det_ratio)
        ci["det"] = rs.interval(det_samples)

        out["op_csb"] = op_csb(out["seg"], out["det"])
        if over_images:  # SEG and DET from the same image draws: OP_CSB draw by draw
            methods["op_csb"] = by_images
            ci["op_csb"] = rs.interval(None if seg_samples is None or det_samples is None else (seg_samples + det_samples) / 2)
        else:
            reason = methods["seg"].reason or methods["det"].reason or "SEG and DET resample different objects"
            methods["op_csb"], ci["op_csb"] = no_interval(plan, n_images=n_images, reason=reason), None

    def _matching_summary(
        self, out: dict[str, Any], ci: dict[str, Any], methods: dict[str, Any], rs: Resampler, by_images: CiMethod
    ) -> None:
        """The matching table at every IoU threshold, with its intervals."""
        images, n_objects = self._images, out["n_objects"]
        matching, matching_ci, matching_methods = [], {}, {}
        for k, thresh in enumerate(self.thresholds):
            tp, fp, fn, iou_sum = (np.array([getattr(s, a)[k] for s in images], np.float64) for a in ("tp", "fp", "fn", "iou_sum"))
            matching.append(
                _matching_entry(thresh, n_objects, out["n_pred"], int(tp.sum()), int(fp.sum()), int(fn.sum()), float(iou_sum.sum()))
            )
            key = f"{thresh:g}"
            if by_images.unit == "images":
                matching_methods[key], sums = by_images, rs.totals(np.stack([tp, fp, fn, iou_sum]))
            else:
                matching_methods[key], sums = self._matching_object_draws(rs.plan, k, int(fp.sum()))
            matching_ci[key] = _matching_ci(rs, sums)
        out["matching"] = matching
        ci["matching"] = matching_ci
        methods["matching"] = matching_methods

    def _matching_object_draws(self, plan: BootstrapPlan, k: int, n_fp: int) -> tuple[CiMethod, np.ndarray | None]:
        """Resampled TP, FP, FN and matched-IoU sums at threshold ``k`` over the ground-truth
        objects (matched or missed) and the predicted objects left unmatched."""
        images = self._images
        iou = np.concatenate([s.matched_iou[k] for s in images]) if images else np.zeros(0)
        found = (iou > 0).astype(np.float64)  # a matched pair has IoU >= threshold > 0
        spurious = np.zeros(n_fp)
        units = np.stack([
            np.concatenate([found, spurious]),
            np.concatenate([0 * found, spurious + 1]),
            np.concatenate([1 - found, spurious]),
            np.concatenate([iou, spurious]),
        ])
        method = choose_method(
            plan, n_images=len(images), objects=units.shape[1], what="objects: the ground truth and unmatched predictions"
        )
        return method, Resampler(method.n, plan).totals(units) if method.unit == "objects" else None

    def _by_class(self, values: Sequence[float]) -> dict[str, float | None]:
        return {name: _json_float(v) for name, v in zip(self.class_names, values, strict=True)}

    def _by_class_ci(self, rs: Resampler, samples: list[np.ndarray | None]) -> dict[str, list[float] | None]:
        return {name: rs.interval(s) for name, s in zip(self.class_names, samples, strict=True)}


def op_csb(seg: float | None, det: float | None) -> float | None:
    """The Cell Tracking Challenge's overall segmentation measure ``(SEG + DET) / 2`` (``None`` without both)."""
    return None if seg is None or det is None else (seg + det) / 2


def _object_draws(
    plan: BootstrapPlan, n_images: int, what: str, numerator: np.ndarray, denominator: np.ndarray
) -> tuple[CiMethod, np.ndarray | None]:
    """The method and resampled ratios of an object-level score (``None`` when it gets no interval)."""
    method = choose_method(plan, n_images=n_images, objects=numerator.size, what=what)
    if method.unit != "objects":
        return method, None
    return method, Resampler(method.n, plan).ratios(numerator, denominator)


def _matching_ci(rs: Resampler, sums: np.ndarray | None) -> dict[str, list[float] | None]:
    """Intervals of precision, recall, F1, AP and PQ from resampled ``(TP, FP, FN, IoU sum)`` totals."""
    if sums is None:
        return dict.fromkeys(("precision", "recall", "f1", "ap", "panoptic_quality"))
    tp, fp, fn, iou_sum = sums.T
    return {
        "precision": rs.interval(_ratios(tp, tp + fp)),
        "recall": rs.interval(_ratios(tp, tp + fn)),
        "f1": rs.interval(_ratios(2 * tp, 2 * tp + fp + fn)),
        "ap": rs.interval(_ratios(tp, tp + fp + fn)),
        "panoptic_quality": rs.interval(_ratios(iou_sum, tp + fp / 2 + fn / 2)),
    }


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)


def _iou_per_gt(gt_ids: np.ndarray, match: MatchResult) -> np.ndarray:
    """IoU of each ground-truth object's matched pair (sorted ``gt_ids``), 0 when unmatched."""
    iou = np.zeros(gt_ids.size, np.float64)
    iou[np.searchsorted(gt_ids, match.matched_gt)] = match.matched_iou
    return iou


def _method_dicts(methods: dict[str, Any]) -> dict[str, Any]:
    return {k: _method_dicts(v) if isinstance(v, dict) else v.as_dict() for k, v in methods.items()}


def _matching_entry(thresh: float, n_true: int, n_pred: int, tp: int, fp: int, fn: int, iou_sum: float) -> dict[str, Any]:
    return {
        "thresh": thresh,
        "n_true": n_true,
        "n_pred": n_pred,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "ap": _ratio(tp, tp + fp + fn),
        "panoptic_quality": _ratio(iou_sum, tp + fp / 2 + fn / 2),
        "mean_matched_iou": _ratio(iou_sum, tp),
    }


def _matrix(rows: list[list[float]], n_cols: int, dtype=np.int64) -> np.ndarray:
    return np.array(rows, dtype=dtype).reshape(len(rows), n_cols)


def _mean_over_classes(samples: list[np.ndarray | None]) -> np.ndarray | None:
    """Per resample, the mean of the classes defined in it (NaN when none is)."""
    if not samples or samples[0] is None:
        return None
    stacked = np.stack(samples)
    defined = ~np.isnan(stacked)
    count = defined.sum(0)
    total = np.where(defined, stacked, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _copy_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out[key] = dict(value)
        elif isinstance(value, list):
            out[key] = [dict(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def _default_semantic(semantic: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    return (np.asarray(labels) > 0).view(np.uint8) if semantic is None else semantic


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _mean_defined(values: list[float]) -> float | None:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None
