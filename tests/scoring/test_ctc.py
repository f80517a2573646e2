"""CTC-layout folders: SEG and DET agree with py-ctcmetrics' ``evaluate_sequence`` to 1e-9.

Sequences are built from the real label images in ``data/``: 2D (the BBBC007 fields as frames,
segmentation truth on some frames only) and 3D (the synthetic nuclei volume, with a full
annotation on one frame and single annotated planes, ``man_seg_TTT_ZZZ.tif``, on others).
Tracking truth holds markers (objects eroded to their cores), as in the challenge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from ctc_metrics.scripts.evaluate import evaluate_sequence
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from segpipe.errors import InputError
from segpipe.scoring import ScoreAccumulator, det_score
from segpipe.scoring.ctc import find_ctc_frames, score_ctc_folders


def markers(labels: np.ndarray, radius: int) -> np.ndarray:
    """Each object's core: the object eroded ``radius`` times (objects that vanish are dropped)."""
    out = np.zeros_like(labels)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        core = ndi.binary_erosion(labels[box] == index, iterations=radius)
        out[box][core] = index
    return out


def write_sequence(root: Path, frames: list[dict]) -> tuple[Path, Path]:
    """Write ``01_RES`` and ``01_GT`` with track files that py-ctcmetrics accepts.

    Each frame dict holds ``pred``, ``tra`` and optionally ``seg`` (an array) or ``planes``
    (``{z: 2D array}``). Prediction and marker ids are made unique over the sequence (every
    object a one-frame track), so ``res_track.txt`` and ``man_track.txt`` are valid.
    """
    res, gt = root / "01_RES", root / "01_GT"
    for folder in (res, gt / "TRA", gt / "SEG"):
        folder.mkdir(parents=True)
    res_lines, tra_lines = [], []
    offset_res = offset_tra = 0
    for t, frame in enumerate(frames):
        pred = relabel_sequential(frame["pred"])[0].astype(np.uint32)
        pred[pred > 0] += offset_res
        ids = np.unique(pred[pred > 0])
        res_lines += [f"{i} {t} {t} 0" for i in ids.tolist()]
        offset_res = int(ids.max()) if ids.size else offset_res
        tifffile.imwrite(res / f"mask{t:03d}.tif", pred)

        tra = relabel_sequential(frame["tra"])[0].astype(np.uint16)
        tra[tra > 0] += offset_tra
        ids = np.unique(tra[tra > 0])
        tra_lines += [f"{i} {t} {t} 0" for i in ids.tolist()]
        offset_tra = int(ids.max()) if ids.size else offset_tra
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", tra)

        if "seg" in frame:
            tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", frame["seg"].astype(np.uint16))
        for z, plane in frame.get("planes", {}).items():
            tifffile.imwrite(gt / "SEG" / f"man_seg_{t:03d}_{z:03d}.tif", plane.astype(np.uint16))
    (res / "res_track.txt").write_text("\n".join(res_lines) + "\n")
    (gt / "TRA" / "man_track.txt").write_text("\n".join(tra_lines) + "\n")
    return res, gt


def reference(res: Path, gt: Path) -> dict:
    return evaluate_sequence(str(res), str(gt), metrics=["SEG", "DET"], threads=1)


KINDS_2D = ("erode", "merge", "split", "drop", "dilate", "shift", "noisy", "identity", "flip", "merge", "split")


@pytest.fixture(scope="module")
def sequence_2d(tmp_path_factory, real_labels, perturb):
    """Eleven BBBC007 fields as frames; segmentation truth on frames 0, 2, 3, 7 and 10 only."""
    names = sorted(n for n in real_labels if n.startswith("bbbc007/"))
    frames = []
    for t, name in enumerate(names):
        gt = real_labels[name]
        frame = {"pred": perturb(gt, KINDS_2D[t], t), "tra": markers(gt, 3)}
        if t in (0, 2, 3, 7, 10):
            frame["seg"] = gt
        frames.append(frame)
    root = tmp_path_factory.mktemp("ctc2d")
    res, gt_dir = write_sequence(root, frames)
    return res, gt_dir, reference(res, gt_dir)


def test_2d_sparse_seg_and_det_agree(sequence_2d):
    res, gt, expected = sequence_2d
    ours = score_ctc_folders(res, gt)
    assert ours["seg"] == pytest.approx(expected["SEG"], abs=1e-9)
    assert ours["det"] == pytest.approx(expected["DET"], abs=1e-9)
    assert ours["seg_frames"] == [0, 2, 3, 7, 10] and ours["tra_frames"] == list(range(11))
    # the interesting parts of AOGM-D are exercised: merges need splitting, drops are misses
    counts = ours["det_counts"]
    assert counts["ns"] > 0 and counts["fn"] > 0 and counts["fp"] > 0
    assert 0 < ours["det"] < 1
    # intervals: DET resamples its 11 frames, SEG (5 frames, too few) its ground-truth objects;
    # OP_CSB mixes two sets of frames, so it has a value but no interval
    assert (ours["ci_method"]["det"]["unit"], ours["ci_method"]["det"]["n"]) == ("images", 11)
    assert (ours["ci_method"]["seg"]["unit"], ours["ci_method"]["seg"]["n"]) == ("objects", ours["n_objects"])
    assert ours["ci"]["det"][0] <= ours["det"] <= ours["ci"]["det"][1]
    assert ours["op_csb"] == pytest.approx((expected["SEG"] + expected["DET"]) / 2, abs=1e-9)
    assert ours["ci"]["op_csb"] is None and ours["ci_method"]["op_csb"]["reason"] == "SEG and DET are scored on different frames"
    for row in ours["per_image"]:
        assert row["op_csb"] == pytest.approx((row["seg"] + row["det"]) / 2, abs=1e-15)


def test_det_uses_the_tracking_markers_not_the_segmentation(sequence_2d):
    res, gt, expected = sequence_2d
    (gt_copy := gt.parent / "seg_only").mkdir()
    for path in (gt / "SEG").iterdir():
        (gt_copy / "SEG").mkdir(exist_ok=True)
        (gt_copy / "SEG" / path.name).write_bytes(path.read_bytes())
    seg_only = score_ctc_folders(res, gt_copy)
    assert seg_only["det"] is None and seg_only["seg"] == pytest.approx(expected["SEG"], abs=1e-9)


KINDS_3D = ("shift", "merge", "split", "noisy", "erode")


def sequence_3d(root: Path, gt: np.ndarray, perturb, truth: dict[int, object]) -> tuple[Path, Path]:
    """The 3D volume as five frames; ``truth[t]`` is ``"full"`` or a list of annotated planes."""
    frames = []
    for t, kind in enumerate(KINDS_3D):
        frame = {"pred": perturb(gt, kind, t), "tra": markers(gt, 2)}
        if truth.get(t) == "full":
            frame["seg"] = gt
        elif t in truth:
            frame["planes"] = {z: gt[z] for z in truth[t]}
        frames.append(frame)
    return write_sequence(root, frames)


@pytest.mark.parametrize(
    "truth",
    [
        {1: "full", 3: "full"},  # sparse full annotations
        {1: "full", 2: [12], 4: [5]},  # one annotated plane per frame, mixed with a full frame
        {2: [5, 12, 20], 4: [3, 14, 26]},  # several planes per frame, the same number in each
    ],
    ids=["full", "one-plane", "three-planes"],
)
def test_3d_seg_and_det_agree(tmp_path, real_labels, perturb, truth):
    res, gt = sequence_3d(tmp_path, real_labels["nuclei3d"], perturb, truth)
    expected = reference(res, gt)
    ours = score_ctc_folders(res, gt)
    assert ours["seg"] == pytest.approx(expected["SEG"], abs=1e-9)
    assert ours["det"] == pytest.approx(expected["DET"], abs=1e-9)
    assert ours["seg_frames"] == sorted(truth)
    assert 0 < ours["seg"] < 1 and 0 < ours["det"] < 1
    # five frames are too few to resample: DET resamples the markers and the spurious objects
    det_units = ours["det_counts"]["aogm_d0"] // 10 + ours["det_counts"]["fp"]
    assert (ours["ci_method"]["det"]["unit"], ours["ci_method"]["det"]["n"]) == ("objects", det_units)
    assert ours["ci"]["det"][0] <= ours["det"] <= ours["ci"]["det"][1]


def test_planes_counted_once_unlike_py_ctcmetrics(tmp_path, real_labels, perturb):
    """py-ctcmetrics 1.3 lists a frame with k annotated planes k times (``parse_masks`` compares a
    file name with full paths), so such a frame weighs k times in its SEG. We count it once; its
    number is reproduced exactly by weighting our per-frame sums by the plane counts."""
    truth = {1: "full", 2: [5, 12, 20], 4: [14, 26]}
    res, gt = sequence_3d(tmp_path, real_labels["nuclei3d"], perturb, truth)
    expected = reference(res, gt)
    ours = score_ctc_folders(res, gt)
    rows = {r["name"]: r for r in ours["per_image"]}
    weights = {"t001": 1, "t002": 3, "t004": 2}
    jaccard = {name: rows[name]["seg"] * rows[name]["n_objects"] for name in weights}
    once = sum(jaccard.values()) / sum(rows[n]["n_objects"] for n in weights)
    weighted = sum(weights[n] * jaccard[n] for n in weights) / sum(weights[n] * rows[n]["n_objects"] for n in weights)
    assert ours["seg"] == pytest.approx(once, abs=1e-12)
    assert expected["SEG"] == pytest.approx(weighted, abs=1e-9)
    assert abs(ours["seg"] - expected["SEG"]) > 1e-4
    assert ours["det"] == pytest.approx(expected["DET"], abs=1e-9)


def test_per_plane_truth_is_stacked_against_the_same_planes(tmp_path, real_labels, perturb):
    res, gt = sequence_3d(tmp_path, real_labels["nuclei3d"], perturb, {2: [5, 12, 20]})
    pred = tifffile.imread(res / "mask002.tif")
    truth = np.stack([tifffile.imread(gt / "SEG" / f"man_seg_002_{z:03d}.tif") for z in (5, 12, 20)])
    acc = ScoreAccumulator(2, ["background", "object"], True)
    acc.add("t002", truth, pred[[5, 12, 20]])
    ours = score_ctc_folders(res, gt)
    row = next(r for r in ours["per_image"] if r["name"] == "t002")
    assert row["seg"] == acc.summary()["per_image"][0]["seg"]
    assert row["det"] == det_score(tifffile.imread(gt / "TRA" / "man_track002.tif"), pred).det


def test_layout_errors_name_the_file(tmp_path, real_labels):
    gt = real_labels["bbbc007/A9_p7d"]
    res, gt_dir = write_sequence(tmp_path, [{"pred": gt, "tra": gt, "seg": gt}, {"pred": gt, "tra": gt}])
    (res / "mask001.tif").unlink()
    with pytest.raises(InputError, match=r"no result mask for frame\(s\) \[1\]"):
        find_ctc_frames(res, gt_dir)
    tifffile.imwrite(res / "mask001.tif", gt[:10])
    with pytest.raises(InputError, match="mask001.tif: shape"):
        score_ctc_folders(res, gt_dir)
    with pytest.raises(InputError, match="no such result folder"):
        find_ctc_frames(tmp_path / "missing", gt_dir)
