"""Score a Cell Tracking Challenge result folder against its ground-truth folder.

Layout (as in the challenge and in ``py-ctcmetrics``)::

    01_RES/mask000.tif mask001.tif ...     result: instance labels of every frame
    01_GT/TRA/man_track000.tif ...         tracking truth: markers of every object, every frame (DET)
    01_GT/SEG/man_seg005.tif ...           segmentation truth of some frames (SEG and the rest)
    01_GT/SEG/man_seg_005_012.tif          3D sequences: truth of single planes (frame 5, z 12)

SEG, the matching table, merges and splits are scored on the frames with segmentation truth;
DET on every frame of the tracking truth. Intervals follow :mod:`segpipe.scoring.bootstrap`:
frames are the images (resampled when there are enough of them, else the objects); OP_CSB,
``(SEG + DET) / 2``, gets none, because SEG and DET come from different frames. Planes annotated one by one are stacked, in z order,
into one volume and scored against the same planes of the result, as ``py-ctcmetrics`` does
(an object label that appears on two annotated planes of a frame is one object).

This module reads the files; the scores come from :mod:`segpipe.scoring`, frame by frame, so
only one frame is in memory at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from segpipe.errors import InputError
from segpipe.scoring.accumulate import ScoreAccumulator
from segpipe.scoring.accumulate import op_csb
from segpipe.scoring.bootstrap import BootstrapPlan, Resampler, choose_method, no_interval
from segpipe.scoring.detection import det_costs_from_overlap, det_from_overlap, det_from_ratio, det_units, det_value
from segpipe.scoring.overlap import overlap
from segpipe.scoring.image import THRESHOLDS

RESULT = re.compile(r"^mask(\d+)\.tiff?$")
TRACK = re.compile(r"^man_track(\d+)\.tiff?$")
SEG_FULL = re.compile(r"^man_seg(\d+)\.tiff?$")
SEG_PLANE = re.compile(r"^man_seg_(\d+)_(\d+)\.tiff?$")


@dataclass(frozen=True)
class CtcLayout:
    """The frame files of one result folder and its ground truth.

    Attributes:
        results: Result mask of each frame number.
        tracks: Tracking-truth marker file of each frame number (empty without ``TRA/``).
        segs: Segmentation truth of each annotated frame: one file, or ``{z: file}`` for planes.
    """

    results: dict[int, Path]
    tracks: dict[int, Path] = field(default_factory=dict)
    segs: dict[int, Path | dict[int, Path]] = field(default_factory=dict)


def find_ctc_frames(result_dir: str | Path, gt_dir: str | Path) -> CtcLayout:
    """List the frames of a CTC result folder and ground-truth folder (``.../01_GT``).

    Raises:
        InputError: A folder is missing, holds no frames, a frame number appears twice, or a
            ground-truth frame has no result mask.
    """
    result_dir, gt_dir = Path(result_dir), Path(gt_dir)
    if not result_dir.is_dir():
        raise InputError(f"{result_dir}: no such result folder (expected mask000.tif, mask001.tif, ...)")
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: no such ground-truth folder (expected TRA/ and/or SEG/ inside)")
    results = _numbered(result_dir, RESULT)
    if not results:
        raise InputError(f"{result_dir}: no result masks named mask000.tif, mask001.tif, ...")
    tracks = _numbered(gt_dir / "TRA", TRACK) if (gt_dir / "TRA").is_dir() else {}
    segs: dict[int, Path | dict[int, Path]] = {}
    if (gt_dir / "SEG").is_dir():
        segs.update(_numbered(gt_dir / "SEG", SEG_FULL))
        for path in sorted((gt_dir / "SEG").iterdir()):
            match = SEG_PLANE.match(path.name)
            if match:
                t, z = int(match[1]), int(match[2])
                planes = segs.setdefault(t, {})
                if not isinstance(planes, dict):
                    raise InputError(f"{path}: frame {t} has both a full annotation and per-plane ones")
                planes[z] = path
    if not tracks and not segs:
        raise InputError(f"{gt_dir}: no ground truth (TRA/man_trackTTT.tif or SEG/man_segTTT.tif)")
    for kind, frames in (("TRA", tracks), ("SEG", segs)):
        missing = sorted(set(frames) - set(results))
        if missing:
            raise InputError(
                f"{result_dir}: no result mask for frame(s) {missing[:5]} annotated in {gt_dir / kind}"
            )
    return CtcLayout(results=results, tracks=tracks, segs=segs)


def score_ctc_folders(
    result_dir: str | Path,
    gt_dir: str | Path,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    bootstrap: BootstrapPlan | None = None,
) -> dict[str, Any]:
    """Score a CTC result folder: SEG and the rest on SEG frames, DET on TRA frames.

    Args:
        result_dir: Folder of ``maskTTT.tif`` (e.g. ``01_RES``).
        gt_dir: Ground-truth folder holding ``TRA/`` and/or ``SEG/`` (e.g. ``01_GT``).
        thresholds: IoU thresholds of the matching table.
        bootstrap: Plan of the confidence intervals (frames are the images).

    Returns:
        :meth:`ScoreAccumulator.summary` of the SEG frames, with ``det``, ``det_counts``,
        ``op_csb``, ``ci["det"]`` and ``ci_method["det"]`` from the TRA frames (``None``
        without ``TRA/``), plus ``seg_frames`` and ``tra_frames`` (frame numbers) and
        ``per_frame_det``.

    Raises:
        InputError: See :func:`find_ctc_frames`; also unreadable files and shape mismatches.
    """
    layout = find_ctc_frames(result_dir, gt_dir)
    plan = bootstrap or BootstrapPlan()
    acc = ScoreAccumulator(2, ["background", "object"], True, thresholds=thresholds)
    for t in sorted(layout.segs):
        gt, pred = _seg_pair(layout.segs[t], layout.results[t])
        acc.add(f"t{t:03d}", gt, pred)
    summary = acc.summary(bootstrap=plan)

    dets, costs = [], []
    for t in sorted(layout.tracks):
        pred = _read(layout.results[t])
        markers = _read(layout.tracks[t])
        _same_shape(markers, pred, layout.tracks[t], layout.results[t])
        ov = overlap(markers, pred)
        dets.append((t, det_from_overlap(ov)))
        costs.append(det_costs_from_overlap(ov))
    if dets:
        aogm = np.array([d.aogm_d for _, d in dets], np.float64)
        aogm0 = np.array([d.aogm_d0 for _, d in dets], np.float64)
        det = det_value(aogm.sum(), aogm0.sum())
        summary["det"] = None if np.isnan(det) else float(det)
        summary["det_counts"] = {k: int(sum(getattr(d, k) for _, d in dets)) for k in ("tp", "fn", "fp", "ns", "aogm_d", "aogm_d0")}
        units = det_units(np.concatenate(costs), summary["det_counts"]["fp"])
        method = choose_method(
            plan, n_images=len(dets), objects=units[0].size, what="objects: the reference markers and predictions covering none"
        )
        if method.unit is None:
            summary["ci"]["det"] = None
        else:
            values = (aogm, aogm0) if method.unit == "images" else units
            summary["ci"]["det"] = Resampler(method.n, plan).ratio_ci(*values, transform=det_from_ratio)
        summary["ci_method"]["det"] = method.as_dict()
    else:
        summary["det"] = summary["det_counts"] = summary["ci"]["det"] = None
        summary["ci_method"]["det"] = no_interval(plan, n_images=0, reason="no tracking truth").as_dict()
    summary["op_csb"] = op_csb(summary["seg"], summary["det"])
    summary["ci"]["op_csb"] = None
    summary["ci_method"]["op_csb"] = no_interval(
        plan, n_images=summary["n_images"], reason="SEG and DET are scored on different frames"
    ).as_dict()
    by_frame = {f"t{t:03d}": d.det for t, d in dets}
    for row in summary["per_image"]:
        value = by_frame.get(row["name"])
        row["det"] = None if value is None or np.isnan(value) else float(value)
        row["op_csb"] = op_csb(row["seg"], row["det"])
    summary["per_frame_det"] = {name: (None if np.isnan(v) else float(v)) for name, v in by_frame.items()}
    summary["seg_frames"] = sorted(layout.segs)
    summary["tra_frames"] = sorted(layout.tracks)
    return summary


def _numbered(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if match:
            t = int(match[1])
            if t in found:
                raise InputError(f"{folder}: frame {t} appears twice ({found[t].name}, {path.name})")
            found[t] = path
    return found


def _read(path: Path) -> np.ndarray:
    try:
        array = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types for damaged files
        raise InputError(f"{path}: not a readable TIFF ({type(err).__name__}: {err})") from err
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InputError(f"{path}: label image has dtype {array.dtype}; expected integers")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise InputError(f"{path}: label image holds negative labels")
    return array


def _seg_pair(source: Path | dict[int, Path], pred_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A frame's segmentation truth and result; annotated planes are stacked with the same result planes."""
    pred = _read(pred_path)
    if isinstance(source, Path):
        gt = _read(source)
        _same_shape(gt, pred, source, pred_path)
        return gt, pred
    zs = sorted(source)
    planes = [_read(source[z]) for z in zs]
    if pred.ndim != 3:
        raise InputError(f"{pred_path}: per-plane ground truth ({source[zs[0]].name}) needs a 3D result, got shape {pred.shape}")
    if zs[-1] >= pred.shape[0]:
        raise InputError(f"{source[zs[-1]]}: plane z={zs[-1]} is outside {pred_path} ({pred.shape[0]} planes)")
    for z in zs:
        _same_shape(planes[zs.index(z)], pred[z], source[z], pred_path)
    return np.stack(planes), np.ascontiguousarray(pred[zs])


def _same_shape(gt: np.ndarray, pred: np.ndarray, gt_path: Path, pred_path: Path) -> None:
    if gt.shape != pred.shape:
        raise InputError(f"{pred_path}: shape {pred.shape} differs from the ground truth {gt_path} ({gt.shape})")
