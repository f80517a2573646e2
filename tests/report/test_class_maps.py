"""The segmentation report of a class-map model: each class's size per image, summed by hand from
the measurements, and the images where a class is missing flagged; no object counts."""

from __future__ import annotations

import numpy as np

from segpipe.report import write_segmentation_report
from segpipe.report.class_maps import class_volumes, missing_classes


def _tissue_card(model_card):
    return model_card(3, classes=["background", "grey", "white"], instances=False, out_channels=3, postprocess=None,
                      spacing=(2.0, 2.0, 2.0), unit="millimeter")


def _tables():
    counts = [{"input": "a.nii.gz", "image": "a", "objects": 2, "status": "segmented", "error": ""},
              {"input": "b.nii.gz", "image": "b", "objects": 1, "status": "segmented", "error": ""},
              {"input": "c.nii.gz", "image": "", "objects": "", "status": "failed", "error": "InputError: c.nii.gz: cut short"}]
    objects = [{"image": "a", "label": 1, "class": "grey", "volume": 640.0, "unit": "millimeter"},
               {"image": "a", "label": 2, "class": "white", "volume": 320.0, "unit": "millimeter"},
               {"image": "b", "label": 2, "class": "white", "volume": 88.0, "unit": "millimeter"}]
    return counts, objects


def test_class_volumes_and_missing_classes_by_hand(model_card):
    counts, objects = _tables()
    volumes = class_volumes(objects, ["a", "b"], _tissue_card(model_card), size_key="volume")
    assert volumes == {"a": {"grey": 640.0, "white": 320.0}, "b": {"grey": 0.0, "white": 88.0}}
    assert missing_classes(volumes) == {"b": "no grey"}


def test_a_class_map_runs_report_gives_each_class_per_image(tmp_path, model_card):
    """The tissue model's report said "14 objects in total, a median of 2 per image", pooled grey and
    white matter into one median volume, and flagged by object counts."""
    counts, objects = _tables()
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:6, 2:6] = 1
    labels[1:3, 3:5, 3:5] = 2
    views = [("a", np.random.default_rng(0).random((1, 4, 8, 8)), labels)]
    report = write_segmentation_report(tmp_path, title="tissue", card=_tissue_card(model_card), counts=counts,
                                       objects=objects, views=views, unit="millimeter", ndim=3)
    (a, b) = report.tables["classes-per-image"]
    assert a == {"image": "a", "input": "a.nii.gz", "grey volume (millimeter³)": "640", "white volume (millimeter³)": "320",
                 "flag": ""}
    assert b["grey volume (millimeter³)"] == "0" and b["white volume (millimeter³)"] == "88" and b["flag"] == "no grey"
    assert report.tables["failed"] == [{"input": "c.nii.gz", "error": "InputError: c.nii.gz: cut short"}]
    assert "objects" not in report.markdown.lower() and "1 of 2 images lack a class the model was trained on: b (no grey)" in report.markdown
    assert (tmp_path / "figures" / "class_volumes.png").is_file() and (tmp_path / "report.html").is_file()
