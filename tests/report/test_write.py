"""The written report: the baseline warning, the headline text, the ranking of the shown images,
what the intervals resampled, OP_CSB, and how training ended, on metrics scored from real arrays."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.report import rank_images, write_report
from segpipe.report.write import baseline_notice, headline_text
from segpipe.scoring import ScoreAccumulator
from segpipe.scoring.dataset import dataset_metrics

RECORD = {"classes": ["background", "nucleus"], "instances": True, "ndim": 2, "unit": "micrometer"}


def squares(n: int = 3) -> np.ndarray:
    """``n`` 4x4 objects in a row, 4 pixels apart, on a 12 x 8n image."""
    gt = np.zeros((12, 8 * n), np.uint16)
    for k in range(n):
        gt[4:8, 8 * k + 2:8 * k + 6] = k + 1
    return gt


def shrunk(gt: np.ndarray) -> np.ndarray:
    """Each 4x4 object cut to its left 3 columns: Jaccard 12/16 = 0.75, IoU 0.75 (matched at 0.5)."""
    out = gt.copy()
    for k in np.unique(gt[gt > 0]):
        cols = np.flatnonzero((gt == k).any(0))
        out[:, cols[-1]][out[:, cols[-1]] == k] = 0
    return out


def crowded(gt: np.ndarray) -> np.ndarray:
    """Every object found exactly, plus one 1-pixel false positive per object."""
    out = gt.copy()
    for k in range(int(gt.max())):
        out[0, 8 * k] = 100 + k
    return out


def scored(model: list, baseline: list) -> dict:
    """``metrics.json`` of a model and a baseline, each a list of ``(name, gt, pred)``."""
    acc = ScoreAccumulator(2, RECORD["classes"], True, with_baseline=True)
    for name, gt, pred in model:
        acc.add(name, gt, pred)
    for name, gt, pred in baseline:
        acc.baseline.add(name, gt, pred)
    return dataset_metrics(acc, dataset="demo", split="test")


def test_ranking_counts_false_positives(tmp_path, model_card):
    """The crowded image has the higher SEG (1 against 0.75) but three false positives: by F1 at
    IoU 0.5 (2*3 / (2*3 + 3) = 2/3 against 1) it is the worst image, not the best."""
    gt = squares()
    images = [("clean", gt, shrunk(gt)), ("crowded", gt, crowded(gt))]
    metrics = scored(images, images)
    rows = {r["name"]: r for r in metrics["per_image"]}
    assert rows["crowded"]["seg"] == 1.0 > rows["clean"]["seg"] == 0.75
    assert rank_images(metrics, n=1) == [("clean", "best", 1.0), ("crowded", "worst", pytest.approx(2 / 3))]
    views = [(name, np.stack([np.zeros(gt.shape), gt > 0]).astype(np.float32), gt, pred) for name, gt, pred in images]
    report = write_report(tmp_path, dataset="demo", record=RECORD, metrics=metrics, card=model_card(), history=[], views=views)
    titles = [line[2:line.index("](")] for line in report.markdown.splitlines() if line.startswith("![demo /")]
    assert titles == [
        "demo / clean: best image (F1 @ IoU 0.5 1.0000, SEG 0.7500; 3 predicted / 3 true objects)",
        "demo / crowded: worst image (F1 @ IoU 0.5 0.6667, SEG 1.0000; 6 predicted / 3 true objects)",
    ]
    assert "Images ranked by F1 @ IoU 0.5" in report.markdown
    assert "The 2 channels are drawn as a colour composite (channel 1 green, channel 2 magenta)" in report.markdown


@pytest.mark.parametrize("loses", [True, False], ids=["model-loses", "model-wins"])
def test_baseline_notice_exactly_when_the_model_loses(tmp_path, model_card, loses):
    gt = squares(4)
    good, poor = [("a", gt, gt)], [("a", gt, shrunk(gt))]  # SEG 1 and 0.75
    metrics = scored(poor, good) if loses else scored(good, poor)
    assert metrics["beats_baseline"] is (not loses)
    report = write_report(tmp_path, dataset="demo", record=RECORD, metrics=metrics, card=model_card(), history=[], views=[])
    html = report.html_path.read_text()
    expected = ("The model does not beat the classical baseline on SEG, the headline measure: 0.7500 against the "
                "baseline's 1.0000 (0.2500 lower).")
    if loses:
        # at the top of both reports, and first in the headline text the flow logs and publishes
        assert report.markdown.splitlines()[2].startswith(f"> **Warning:** {expected}")
        notice = '<div class="notice" role="alert"><strong>Warning:</strong> ' + expected.replace("'", "&#39;")  # escaped
        assert html.index(notice) < html.index("<p>") < html.index("<section")
        assert report.summary.startswith(f"WARNING: {expected}") and headline_text(metrics) == report.summary
    else:
        assert baseline_notice(metrics) is None
        assert "Warning" not in report.markdown and 'class="notice"' not in html and "WARNING" not in report.summary


def test_notice_for_semantic_datasets_and_ties():
    metrics = {"instances": False, "mean_dice": 0.6, "baseline": {"mean_dice": 0.65}, "n_images": 1}
    assert baseline_notice(metrics).startswith(
        "The model does not beat the classical baseline on mean foreground Dice, the headline measure: 0.6000 against "
        "the baseline's 0.6500 (0.0500 lower)."
    )
    tie = {"instances": True, "seg": 0.5, "baseline": {"seg": 0.5}}
    assert "(the same score)" in baseline_notice(tie)
    assert baseline_notice({"instances": True, "seg": 0.5}) is None  # no baseline: nothing to compare


def test_headline_says_what_the_intervals_resampled():
    """Two images with 3 ground-truth objects: SEG's interval resamples those objects."""
    gt = squares()
    metrics = scored([("a", gt, gt), ("b", gt, shrunk(gt))], [("a", gt, shrunk(gt)), ("b", gt, shrunk(gt))])
    text = headline_text(metrics)
    assert text.endswith(
        "SEG: 95% CI: bootstrap over 6 ground-truth objects (1000 resamples); images are too few (2) to resample, "
        "and objects within an image are not independent, so the interval is optimistic."
    )
    # OP_CSB next to SEG: image a SEG 1 and DET 1; b SEG 0.75 and DET 1; pooled (0.875 + 1) / 2;
    # the baseline: SEG 0.75, DET 1
    assert metrics["op_csb"] == pytest.approx(0.9375, abs=1e-15)
    assert text.startswith("On 2 test images: SEG 0.8750 [") and "OP_CSB 0.9375 (baseline 0.8750)" in text
    assert "WARNING" not in text and metrics["beats_baseline"] is True


def test_the_report_says_what_the_scores_leave_out(tmp_path, model_card):
    """metrics.json counted the pixels marked not annotated and the predictions lying in them, and the
    store a test frame without ground truth; the report said neither, and an overlay's title gave 3
    predicted objects where its panel drew 4."""
    gt = squares()
    ignore = np.zeros(gt.shape, bool)
    ignore[:, -4:] = True  # the right edge not annotated
    pred = gt.copy()
    pred[0:3, -3:] = 50  # an object found there: left out
    acc = ScoreAccumulator(2, RECORD["classes"], True, with_baseline=True)
    acc.add("a", gt, pred, ignore=ignore)
    acc.baseline.add("a", gt, gt, ignore=ignore)
    metrics = dataset_metrics(acc, dataset="demo", split="test")
    assert metrics["ignored_pixels"] == 48 and metrics["ignored_pred"] == 1
    record = {**RECORD, "images": [{"name": "a", "split": "test", "labels_source": "a.tif"},
                                   {"name": "b", "split": "test", "labels_source": None},
                                   {"name": "c", "split": "train", "labels_source": None}]}
    report = write_report(tmp_path, dataset="demo", record=record, metrics=metrics, card=model_card(), history=[], views=[])
    intro = report.markdown.split("## ")[0]
    assert ("Left out of the scores: 1 test image(s) without ground truth were predicted, not scored; 48 pixel(s) marked "
            "not annotated were left out: 1 predicted object(s) lying mostly in them are not counted") in intro
    from segpipe.report.write import _image_scores

    assert _image_scores(metrics["per_image"][0], "F1@0.5", 1.0).endswith(
        "3 predicted / 3 true objects (1 more predicted in areas not annotated, not scored)")


def test_training_section_says_how_training_ended(tmp_path, model_card):
    from segpipe.models.card import TrainingRecord

    gt = squares()
    metrics = scored([("a", gt, gt)], [("a", gt, gt)])
    training = TrainingRecord(epochs=40, iterations=1000, best_epoch=35, seconds=480.0, ended_by="time budget",
                              config={"max_minutes": 8.0})
    history = [{"epoch": float(e), "train_loss": 1.0 / e, "val_score": None, "val_seg": None, "val_dice": None} for e in range(1, 41)]
    report = write_report(tmp_path, dataset="demo", record=RECORD, metrics=metrics, card=model_card(training=training),
                          history=history, views=[])
    section = report.markdown.split("## Training")[1].split("## ")[0]
    assert ("Training was stopped by the time budget of 8 minutes, before its schedule ran out: "
            "1000 iterations, in epoch 40, 8.0 minutes.") in section
    assert "the dashed line marks epoch 35, whose weights were kept" in section
    assert {"field": "training ended by", "value": "time budget"} in report.tables["model-card"]
    assert "validation check" not in section and "checkpoint was kept" not in section  # nothing validated


def test_training_section_of_a_run_without_validation_images_says_so(tmp_path, model_card):
    """The curve's caption spoke of validation scores and nothing said the last weights were kept unchecked."""
    from segpipe.models.card import TrainingRecord

    gt = squares()
    metrics = scored([("a", gt, gt)], [("a", gt, gt)])
    training = TrainingRecord(epochs=4, iterations=100, best_epoch=4, seconds=60.0, ended_by="iterations",
                              validation={"seg": 0.9, "tuned_on": [], "tuned_with_training": ["t"]})
    history = [{"epoch": float(e), "train_loss": 1.0 / e} for e in range(1, 5)]
    report = write_report(tmp_path, dataset="demo", record=RECORD, metrics=metrics, card=model_card(training=training),
                          history=history, views=[])
    section = report.markdown.split("## Training")[1].split("## ")[0]
    assert "No validation images: the last epoch's weights were kept" in section
    assert "Training loss per epoch (no validation images); the dashed line marks epoch 4" in section
    assert "validation scores" not in section


def test_training_section_says_why_an_earlier_checkpoint_was_kept(tmp_path, model_card):
    from segpipe.models.card import TrainingRecord

    gt = squares()
    metrics = scored([("a", gt, gt)], [("a", gt, gt)])
    training = TrainingRecord(epochs=10, iterations=2000, best_epoch=5, seconds=160.0, ended_by="iterations")
    history = [{"epoch": float(e), "train_loss": 1.0 / e, "val_score": None, "val_op_csb": None, "val_seg": None,
                "val_seg_se": None, "val_dice": None} for e in range(1, 11)]
    history[4].update(val_score=0.9612, val_op_csb=0.9612, val_seg=0.9225, val_seg_se=0.0209, val_dice=0.98)
    history[9].update(val_score=0.9, val_op_csb=0.9, val_seg=0.85, val_seg_se=0.0468, val_dice=0.985)
    report = write_report(tmp_path, dataset="demo", record=RECORD, metrics=metrics, card=model_card(training=training),
                          history=history, views=[])
    section = report.markdown.split("## Training")[1].split("## ")[0]
    assert ("An earlier checkpoint was kept (OP_CSB, epoch 5: 0.9612, its SEG's standard error 0.0209): the checks after it scored more than "
            "2 standard errors below it; the last, epoch 10: 0.9000, its SEG's standard error 0.0468.") in section
    # the card's validation row (after tuning) differs from these checks: a walk-through asked which was which
    assert "the model card's validation row scores the kept weights after the post-processing was tuned" in section


@pytest.mark.parametrize("source", ["default", "file"])
def test_a_pixel_size_the_training_files_did_not_give_is_called_guessed(tmp_path, model_card, source):
    """Every training image took 1 per pixel: the card's row said "[1.0, 1.0] micrometer" as if measured."""
    gt = squares()
    metrics = scored([("a", gt, gt)], [("a", gt, gt)])
    record = {**RECORD, "images": [{"name": "t", "split": "train", "spacing_source": source},
                                   {"name": "a", "split": "test", "spacing_source": "file"}]}
    report = write_report(tmp_path, dataset="demo", record=record, metrics=metrics, card=model_card(), history=[], views=[])
    row = {r["field"]: r["value"] for r in report.tables["model-card"]}["pixel size trained at (others are resampled to it)"]
    assert row.endswith(", guessed: the training images' files gave none and 1 per pixel was taken (set spacing: in the catalog)") \
        is (source == "default")


def test_the_scores_names_are_explained(tmp_path, model_card):
    gt = squares()
    metrics = scored([("a", gt, gt)], [("a", gt, gt)])
    report = write_report(tmp_path, dataset="demo", record=RECORD, metrics=metrics, card=model_card(), history=[], views=[])
    assert "Terms: SEG (the Cell Tracking Challenge's segmentation measure): each ground-truth object's IoU" in report.markdown
    assert "HD95" not in report.markdown.split("Terms:")[1].split("\n")[0]  # 2D objects without distances: not named


@pytest.mark.parametrize("source", ["default", "file"])
def test_distances_on_images_without_a_pixel_size_are_in_pixels(tmp_path, model_card, source):
    """A volume whose file gave no voxel size is scored at 1 per voxel: HD95 was headed "(micrometer)"."""
    gt = np.zeros((6, 12, 12), np.uint16)
    gt[1:5, 2:6, 2:6], gt[1:5, 6:10, 6:10] = 1, 2
    pred = np.roll(gt, 1, axis=2)
    acc = ScoreAccumulator(2, RECORD["classes"], True, surface=True)
    acc.add("v", gt, pred, spacing=(1.0, 1.0, 1.0))
    metrics = dataset_metrics(acc, dataset="demo", split="test")
    record = {**RECORD, "ndim": 3, "images": [{"name": "v", "split": "test", "spacing_source": source}]}
    report = write_report(tmp_path, dataset="demo", record=record, metrics=metrics, card=model_card(3), history=[], views=[])
    rows = [row["measure"] for row in report.tables["summary"] if row["measure"].startswith(("HD95", "ASD"))]
    unit = "px" if source == "default" else "micrometer"
    assert rows == [f"HD95 nucleus ({unit})", f"ASD nucleus ({unit})"] and metrics["hd95"]["nucleus"] == 1.0


def test_the_overlays_fill_false_objects_except_where_nothing_was_annotated(tmp_path, model_card):
    """A false object in the top rows is filled in the false colour, unless the view marks those
    rows not annotated (then it is scored as nothing, and drawn as no error)."""
    import matplotlib.image as mpimg

    from segpipe.report.figures import ERROR_ALPHA, ERROR_COLOURS

    gt = squares()
    pred = gt.copy()
    pred[0:3, 0:3] = 100
    false = ERROR_ALPHA * np.array(ERROR_COLOURS["false"][1])
    ignore = np.zeros(gt.shape, bool)
    ignore[:3] = True
    for name, view in (("all", (pred,)), ("sparse", (pred, ignore))):
        metrics = scored([("crowded", gt, pred)], [("crowded", gt, gt)])
        folder = tmp_path / name
        report = write_report(folder, dataset="demo", record=RECORD, metrics=metrics, card=model_card(), history=[],
                              views=[("crowded", np.zeros((1, *gt.shape), np.float32), gt, *view)])
        rgb = mpimg.imread(folder / "figures" / "overlay_crowded.png")[..., :3]
        drawn = bool(np.any(np.all(np.abs(rgb - false) < 0.02, axis=-1)))
        assert drawn == (name == "all"), name
        assert "purple, a predicted object matching no true one at IoU 0.5 (false)" in report.markdown
