"""Report tables: what each interval resampled, OP_CSB next to SEG, and how training ended."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.models.card import TrainingRecord
from segpipe.report.tables import (
    card_table,
    checkpoint_choice,
    ci_caption,
    ci_over,
    object_scale,
    per_image_table,
    runs_table,
    summary_table,
    training_end,
    training_start,
)
from segpipe.scoring import BootstrapPlan, ScoreAccumulator


def two_images_metrics(bootstrap: BootstrapPlan | None = None) -> dict:
    """Image a: objects 1 (found exactly) and 2 (missed); image b: one object found exactly."""
    gt_a = np.zeros((4, 4), np.uint16)
    gt_a[0:2, 0:2], gt_a[2:4, 2:4] = 1, 2
    gt_b = np.zeros((4, 4), np.uint16)
    gt_b[:, 0] = 5
    acc = ScoreAccumulator(2, ["background", "nucleus"], True, with_baseline=True)
    acc.add("a", gt_a, np.where(gt_a == 1, 1, 0))
    acc.add("b", gt_b, np.where(gt_b == 5, 9, 0))
    acc.baseline.add("a", gt_a, gt_a)
    acc.baseline.add("b", gt_b, np.zeros_like(gt_b))
    return acc.summary(bootstrap=bootstrap)


def test_summary_table_says_what_each_interval_resampled():
    metrics = two_images_metrics()
    table = summary_table(metrics, metrics["baseline"], unit="px")
    assert table.columns == ["measure", "model [95% CI]", "CI resamples", "baseline [95% CI]"]
    rows = {row[0]: row for row in table.rows}
    assert rows["SEG (CTC; 3 objects)"][2] == "3 ground-truth objects"
    assert rows["F1 @ IoU 0.5"][2] == "3 objects: the ground truth and unmatched predictions"
    assert rows["Dice nucleus"][1:3] == ["0.8000", "no interval: images are too few (2, fewer than 10) to resample"]
    assert rows["merges (predicted objects covering 2+ GT objects)"][2] == ""
    assert "too few to resample (fewer than 10): object-level scores resample objects instead" in table.note
    # OP_CSB next to SEG: SEG (1 + 0 + 1) / 3, DET 1 - 10/30, both 2/3; the baseline: SEG 2/3 and DET 2/3
    assert [row[0] for row in table.rows[:3]] == ["SEG (CTC; 3 objects)", "OP_CSB = (SEG + DET) / 2 (CTC)", "DET (CTC, AOGM-D)"]
    op = rows["OP_CSB = (SEG + DET) / 2 (CTC)"]
    assert op[1:] == ["0.6667", "no interval: SEG and DET resample different objects", "0.6667"]
    # with enough images (here: two suffice), intervals over images, OP_CSB's included
    metrics = two_images_metrics(BootstrapPlan(min_images=2))
    rows = {row[0]: row for row in summary_table(metrics, None, unit="px").rows}
    assert rows["OP_CSB = (SEG + DET) / 2 (CTC)"][1:] == ["0.6667 [0.5000, 1.0000]", "2 images"]


def test_ci_captions():
    metrics = two_images_metrics()
    assert ci_caption(metrics["ci_method"]["seg"]) == (
        "95% CI: bootstrap over 3 ground-truth objects (1000 resamples); images are too few (2) to resample, and "
        "objects within an image are not independent, so the interval is optimistic."
    )
    assert ci_caption(metrics["ci_method"]["mean_dice"]) == "No 95% CI: images are too few (2, fewer than 10) to resample."
    images = two_images_metrics(BootstrapPlan(min_images=2, n_resamples=500))["ci_method"]["seg"]
    assert ci_caption(images) == "95% CI: bootstrap over 2 images (500 resamples)."
    assert ci_over(None) == "not recorded" and ci_caption(None).startswith("What the intervals resampled was not recorded")


def test_per_image_table_has_op_csb():
    metrics = two_images_metrics()
    table = per_image_table(metrics, metrics["baseline"], unit="px")
    records = {r["image"]: r for r in table.records()}
    # image a: SEG 0.5, DET 0.5; b: SEG 1, DET 1; the baseline: a perfect, b nothing found
    assert (records["a"]["SEG"], records["a"]["DET"], records["a"]["OP_CSB"]) == ("0.5000", "0.5000", "0.5000")
    assert records["b"]["OP_CSB"] == "1.0000"
    assert (records["a"]["baseline OP_CSB"], records["b"]["baseline OP_CSB"]) == ("1.0000", "0.0000")


@pytest.mark.parametrize(
    ("ended_by", "expected"),
    [
        ("iterations", "Training ended when its schedule ran out: 12 epochs, 300 iterations, 7.9 minutes."),
        ("time budget", "Training was stopped by the time budget of 8 minutes, before its schedule ran out: "
                        "300 iterations, in epoch 12, 7.9 minutes."),
        (None, "How training ended: not recorded (12 epochs, 300 iterations, 7.9 minutes)."),
    ],
)
def test_training_end(ended_by, expected):
    record = TrainingRecord(epochs=12, iterations=300, seconds=474.0, ended_by=ended_by, config={"max_minutes": 8.0})
    assert training_end(record) == expected


@pytest.mark.parametrize(("after", "said"), [
    ([3], " It was stopped and started again once, going on from its state saved after epoch 3"),
    ([3, 7], " It was stopped and started again 2 times, going on from its state saved after epochs 3, 7"),
])
def test_training_end_says_where_a_stopped_run_was_started_again(after, said):
    record = TrainingRecord(epochs=12, iterations=300, seconds=474.0, ended_by="iterations", resumed_after=after)
    assert training_end(record) == ("Training ended when its schedule ran out: 12 epochs, 300 iterations, 7.9 minutes."
                                    f"{said} (minutes count the runs' training time, not the pauses).")


def test_training_end_of_one_epoch_says_epoch():
    """It said "1 epochs", and "the planned schedule" of epochs the user gave."""
    record = TrainingRecord(epochs=1, iterations=25, seconds=30.0, ended_by="iterations")
    assert training_end(record) == "Training ended when its schedule ran out: 1 epoch, 25 iterations, 0.5 minutes."


def checks(*rows: tuple[int, float | None, float | None]) -> list[dict]:
    """History rows as ``history.csv`` reads back: ``(epoch, OP_CSB, SEG standard error)``, None where not validated."""
    return [{"epoch": float(e), "train_loss": 0.5, "val_score": v, "val_op_csb": v, "val_seg_se": n} for e, v, n in rows]


def test_checkpoint_choice_names_the_case_and_the_scores():
    """The synthetic 3D volume's measured checks (epoch 5: 0.7773 +- 0.0746, epoch 10: 0.6879)."""
    history = checks((4, None, None), (5, 0.7773, 0.0746), (9, None, None), (10, 0.6879, 0.0847))
    assert checkpoint_choice(history, 10) == (
        "The weights of the last validation check were kept (OP_CSB, epoch 10: 0.6879, its SEG's standard error 0.0847): it is within "
        "2 standard errors of the best check (epoch 5: 0.7773, its SEG's standard error 0.0746), closer than a validation split of this "
        "size tells checkpoints apart, and it is the most trained."
    )
    assert checkpoint_choice(history, 5) == (  # a model kept by the one-error rule before 2026-12-03
        "The weights of epoch 5 were kept (OP_CSB, epoch 5: 0.7773, its SEG's standard error 0.0746) by a segpipe that chose checkpoints "
        "otherwise: the rule now, the latest check within 2 standard errors of the best, keeps epoch 10: 0.6879, its SEG's standard error 0.0847."
    )
    clear = checks((5, 0.9612, 0.0209), (10, 0.9, 0.0468))  # 2.9 errors lower
    assert checkpoint_choice(clear, 5) == (
        "An earlier checkpoint was kept (OP_CSB, epoch 5: 0.9612, its SEG's standard error 0.0209): the checks after it scored more than "
        "2 standard errors below it; the last, epoch 10: 0.9000, its SEG's standard error 0.0468."
    )
    within_then_clear = checks((5, 0.80, 0.05), (10, 0.75, 0.05), (15, 0.60, 0.05))  # epoch 10 within 2 errors of 5
    assert checkpoint_choice(within_then_clear, 10) == (
        "An earlier checkpoint was kept (OP_CSB, epoch 10: 0.7500, its SEG's standard error 0.0500): the checks after it scored more than "
        "2 standard errors below the best, epoch 5: 0.8000, its SEG's standard error 0.0500; the last, epoch 15: 0.6000, its SEG's standard error 0.0500."
    )
    best_last = checks((5, 0.70, 0.05), (10, 0.75, 0.04))
    assert checkpoint_choice(best_last, 10) == (
        "The weights of the last validation check were kept; it was also the best (OP_CSB, epoch 10: 0.7500, its SEG's standard error 0.0400)."
    )


def test_checkpoint_choice_of_class_maps_and_of_runs_without_checks():
    dice = [{"epoch": 5.0, "val_score": 0.91, "val_dice": 0.91}, {"epoch": 10.0, "val_score": 0.95, "val_dice": 0.95}]
    assert checkpoint_choice(dice, 10) == (
        "The weights of the last validation check were kept; it was also the best (mean foreground Dice, epoch 10: 0.9500)."
    )
    assert checkpoint_choice(checks((1, None, None), (2, None, None)), 2) is None  # nothing validated
    assert checkpoint_choice(checks((5, 0.7, 0.1)), None) is None
    assert checkpoint_choice(checks((5, 0.7, 0.1)), 7) is None  # the kept epoch is not a check
    assert checkpoint_choice(checks((5, float("nan"), 0.1), (10, 0.6, 0.1)), 10).startswith("The weights of the last")


def test_a_model_of_one_object_size_says_how_images_were_rescaled(model_card):
    assert object_scale(model_card()) is None
    said = object_scale(model_card(object_size=40.0, unit="micrometer"))
    assert said.startswith("Every image was rescaled so its objects measure 40 micrometer across") and "first prediction" in said


def test_training_start_names_random_weights_the_shipped_generalist_or_the_model():
    assert training_start(TrainingRecord()) == "Training started from random weights."
    assert training_start(TrainingRecord(init="cells-2d")).startswith(
        "Training started from cells-2d, the generalist shipped with segpipe (trained on generated cells and nuclei only)"
    )
    assert training_start(TrainingRecord(init="runs/a/model")) == (
        "Training started from the model runs/a/model, not from random weights."
    )
    assert "another order" not in training_start(TrainingRecord(init="cells-2d"))
    assert training_start(TrainingRecord(init="cells-2d", init_inputs=[1, 0])).endswith(
        "The dataset's channels fed its inputs in another order than the file's (channel 0 its input 1, channel 1 "
        "its input 0): the order whose predictions on the training images matched the labels best before training."
    )


def test_training_end_without_numbers():
    assert training_end(TrainingRecord()) == "How training ended: not recorded (n/a epochs, n/a iterations, n/a minutes)."
    budget = TrainingRecord(epochs=3, iterations=30, seconds=60.0, ended_by="time budget")  # no budget in the config
    assert training_end(budget).startswith("Training was stopped by the time budget, before")


TUNED_ON_VALIDATION = "validation with the tuned post-processing (tuned on it: optimistic)"


@pytest.mark.parametrize(
    ("validation", "label", "scores"),
    [
        ({"seg": 0.5, "tuned_on": ["v"]}, "post-processing (tuned on validation)", TUNED_ON_VALIDATION),
        ({"seg": 0.5, "tuned_on": ["v"], "tuned_with_training": ["t1", "t2"]},
         "post-processing (tuned on validation and training images)", TUNED_ON_VALIDATION),
        # a run without validation images: the report said "tuned on validation" all the same
        ({"seg": 0.5, "tuned_on": [], "tuned_with_training": ["t1", "t2"]},
         "post-processing (tuned on training images only: no validation images)",
         "training images with the tuned post-processing (no validation images; trained and tuned on them: optimistic)"),
    ],
)
def test_the_card_table_says_what_the_post_processing_was_tuned_on(model_card, validation, label, scores):
    card = model_card()
    card = card.model_copy(update={"training": card.training.model_copy(update={"validation": validation})})
    rows = {row[0]: row[1] for row in card_table(card).rows}
    assert label in rows and rows[label] == card.postprocess.model_dump_json()
    # the scores once tuned, said to be optimistic; the image lists left out
    assert rows[scores] == "SEG 0.5000"


def test_the_card_table_of_untuned_post_processing_says_so(model_card):
    card = model_card()
    card = card.model_copy(update={"training": card.training.model_copy(update={"validation": {}})})
    rows = {row[0]: row[1] for row in card_table(card).rows}
    assert rows["post-processing (tuned on nothing: the defaults)"] == card.postprocess.model_dump_json()


def test_a_class_map_models_validation_is_its_dice_per_class(model_card):
    """Nothing is tuned for a class map: its row does not call the scores optimistic, and names each class."""
    from segpipe.models.card import TrainingRecord

    validation = {"dice": 0.86, "dice_by_class": {"grey": 0.88, "white": 0.84}, "scored_on": ["v"]}
    card = model_card(3, classes=["background", "grey", "white"], instances=False, out_channels=3, postprocess=None,
                      training=TrainingRecord(dataset="mni", epochs=4, best_epoch=4, validation=validation))
    rows = {row[0]: row[1] for row in card_table(card).rows}
    assert rows["validation (the kept weights; Dice per class in brackets)"] == "Dice 0.8600 (grey 0.8800, white 0.8400)"
    assert not any("optimistic" in label for label in rows)


def test_the_pixel_size_row_says_which_models_do_not_resample(model_card):
    """The shipped generalist's report said "pixel size trained at (others are resampled to it) [1.0, 1.0]",
    while it takes every image at its own pixels."""
    from segpipe.models.shipped import shipped_model

    rows = {row[0]: row[1] for row in card_table(shipped_model("cells-2d").card).rows}
    assert rows["pixel size"].startswith("each image's own: a generalist takes images as they are")
    sized = {row[0]: row[1] for row in card_table(model_card(object_size=30.0)).rows}
    assert sized["pixel size"].startswith("each image is rescaled by the size of its objects")
    plain = {row[0]: row[1] for row in card_table(model_card()).rows}
    assert plain["pixel size trained at (others are resampled to it)"] == "[1.0, 1.0] micrometer"


def test_a_class_maps_notes_speak_of_pixels_not_objects():
    """A class-map report said object scores resample objects, and that predicted objects in the pixels
    marked not annotated were not counted, "and SEG leaves those pixels out": it has no objects, no SEG."""
    from segpipe.report.tables import ci_policy
    from segpipe.report.write import left_out_text

    metrics = {"seg": None, "n_images": 2, "split": "test", "ignored_pixels": 5, "ignored_pred": 0,
               "bootstrap": {"min_images": 10, "n_resamples": 1000, "seed": 0}}
    assert ci_policy(metrics) == ("Intervals: percentile bootstrap, 1000 resamples, seed 0. The 2 test images are too few to "
                                  "resample (fewer than 10): the pixel scores get no interval.")
    assert left_out_text(metrics, {"images": []}) == "Left out of the scores: 5 pixel(s) marked not annotated were left out of IoU and Dice."


def test_an_instance_models_pixel_scores_say_which_map_they_score():
    from segpipe.report.tables import summary_table

    metrics = two_images_metrics()
    note = summary_table(metrics, metrics["baseline"], unit="px").note
    assert "IoU and Dice score the foreground of the objects, the model's and the baseline's alike." in note
    assert "class map" not in note


def test_a_change_across_runs_scored_on_other_files_says_the_data_changed():
    """Test labels edited between two runs of one cached model: the history showed "-0.0654" as if
    the model had got worse."""
    def run(run_id, seg, data):
        return {"run_id": run_id, "timestamp": run_id, "model": "unet", "epochs": 2, "scores": {"seg": seg},
                "data_fingerprint": data}

    runs = [run("r1", 0.6625, "aaa"), run("r2", 0.5971, "bbb"), run("r3", 0.6071, "bbb"), run("r4", 0.6171, None)]
    table = runs_table(runs, current="r4")
    changes = [row[-1] for row in table.rows]  # newest first
    assert changes == ["+0.0100", "+0.0100", "data changed (-0.0654)", "n/a"]
    assert "\"data changed\" where the dataset's files (images, ground truth) changed" in table.note
