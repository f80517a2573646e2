"""Stages asked for what a dataset cannot give: one line, exit 2, nothing written; a report of what it can."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile


def _unlabelled(tmp_path, model_folder):
    (tmp_path / "raw").mkdir()
    tifffile.imwrite(tmp_path / "raw" / "a.tif", np.random.default_rng(0).integers(0, 200, (48, 48)).astype(np.uint8))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  seg:\n    images: raw/*.tif\n    ndim: 2\n    classes: [background, nucleus]\n"
                       f"    instances: true\n    model: {model_folder}\n")
    return catalog


def test_a_dataset_without_ground_truth_is_not_scored_and_its_report_is_the_segmentation_report(tmp_path, crops_model, segpipe_cli):
    """Before: `score` exited 0 with "No scores." and a metrics.json of nulls, and `report` wrote an
    empty evaluation report with a matplotlib warning; `segpipe run` writes the segmentation report."""
    catalog, out = _unlabelled(tmp_path, crops_model.folder), tmp_path / "runs"
    assert segpipe_cli("ingest", "seg", "--catalog", catalog, "--output", out).code == 0
    scored = segpipe_cli("score", "seg", "--output", out)
    assert scored.code == 2 and len(scored.errors) == 1 and "has no ground truth" in scored.errors[0], scored.err
    assert not (out / "seg" / "metrics.json").exists()
    assert segpipe_cli("predict", "seg", "--catalog", catalog, "--output", out, "--device", "cpu").code == 0
    reported = segpipe_cli("report", "seg", "--output", out, "--catalog", catalog)  # -c as for every stage
    assert reported.code == 0, reported.err
    report = (out / "seg" / "report.md").read_text()
    assert "objects" in report.lower() and "No scores" not in report and not (out / "seg" / "metrics.json").exists()


def test_run_checks_the_catalog_before_prefect_starts(tmp_path, segpipe_cli):
    """A key typo made `segpipe run` start Prefect's server and say the error three times in 8 lines."""
    (tmp_path / "img").mkdir()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  d:\n    images: img/*.tif\n    image_suffix: _img\n")
    result = segpipe_cli("run", "d", "--catalog", catalog, "--output", tmp_path / "runs")
    assert result.code == 2 and len(result.errors) == 1 and "image_suffix" in result.errors[0], result.err
    assert "prefect" not in result.err.lower() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("split", ["", "    split: {test: [a, b]}\n"])
def test_a_labelled_dataset_with_a_model_is_scored_without_a_training_split(tmp_path, crops_model, segpipe_cli, split):
    """Scoring an existing model on every labelled image was refused: "split.train: Field required"."""
    import json

    for folder in ("raw", "gt"):
        (tmp_path / folder).mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        image = np.random.default_rng(seed).integers(0, 50, (64, 64)).astype(np.uint8)
        labels = np.zeros((64, 64), np.uint8)
        labels[10:22, 10:22], labels[35:50, 30:44] = 1, 2
        image[labels > 0] += 150
        tifffile.imwrite(tmp_path / "raw" / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / "gt" / f"{name}.tif", labels)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  scored:\n    images: raw/*.tif\n    labels: gt/*.tif\n    ndim: 2\n"
                       f"    classes: [background, nucleus]\n    instances: true\n    model: {crops_model.folder}\n{split}")
    out = tmp_path / "runs"
    for stage in (("ingest", "scored", "--catalog", catalog), ("predict", "scored", "--catalog", catalog, "--device", "cpu"),
                  ("score", "scored")):
        result = segpipe_cli(*stage, "--output", out)
        assert result.code == 0, result.err
    assert json.loads((out / "scored" / "metrics.json").read_text())["n_images"] == 2


def test_a_region_split_with_a_model_needs_no_training_region(tmp_path, crops_model, segpipe_cli):
    """A large labelled image scored by an existing model on a test region was refused: "a region
    split needs a 'train' region"."""
    import json

    for folder in ("raw", "gt"):
        (tmp_path / folder).mkdir()
    image = np.random.default_rng(1).integers(0, 50, (128, 64)).astype(np.uint8)
    labels = np.zeros((128, 64), np.uint8)
    labels[10:22, 10:22], labels[75:90, 30:44], labels[100:115, 5:20] = 1, 2, 3
    image[labels > 0] += 150
    tifffile.imwrite(tmp_path / "raw" / "big.tif", image)
    tifffile.imwrite(tmp_path / "gt" / "big.tif", labels)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  scored:\n    images: raw/*.tif\n    labels: gt/*.tif\n    ndim: 2\n"
                       f"    classes: [background, nucleus]\n    instances: true\n    model: {crops_model.folder}\n"
                       "    split: {regions: {test: [[64, 128], [0, 64]]}}\n")
    out = tmp_path / "runs"
    for stage in (("ingest", "scored", "--catalog", catalog), ("predict", "scored", "--catalog", catalog, "--device", "cpu"),
                  ("score", "scored")):
        result = segpipe_cli(*stage, "--output", out)
        assert result.code == 0, result.err
    metrics = json.loads((out / "scored" / "metrics.json").read_text())
    assert metrics["n_images"] == 1 and metrics["n_objects"] == 2  # the two objects inside the test region
    assert [row["name"] for row in metrics["per_image"]] == ["big-test"]


@pytest.mark.parametrize("stage", ["score", "report"])
def test_score_and_report_name_a_dataset_the_catalog_lacks(tmp_path, crops_model, segpipe_cli, stage):
    """`report` took no --catalog (a script giving -c to every stage got a usage error), and both
    said "no zarr store here; run segpipe ingest first" for a dataset name with a typo."""
    catalog = _unlabelled(tmp_path, crops_model.folder)
    result = segpipe_cli(stage, "sge", "--output", tmp_path / "runs", "--catalog", catalog)
    assert result.code == 2 and result.errors == [f"error: {catalog}: no dataset named 'sge' (known: seg)"], result.err
    assert not (tmp_path / "runs").exists()


def test_report_of_a_known_dataset_not_ingested_says_to_ingest(tmp_path, crops_model, segpipe_cli):
    """The catalog is asked for the name only: images gone from disk are ingest's business."""
    catalog = _unlabelled(tmp_path, crops_model.folder)
    (tmp_path / "raw" / "a.tif").unlink()
    result = segpipe_cli("report", "seg", "--output", tmp_path / "runs", "--catalog", catalog)
    assert result.code == 2 and len(result.errors) == 1 and "run `segpipe ingest` first" in result.errors[0], result.err


def test_an_entry_applying_a_model_takes_its_pixel_size_for_files_without_one(tmp_path, crops_model, segpipe_cli):
    """As `segment` does: a PNG or plain TIFF of an entry with model: was taken as 1 per pixel and
    resampled from that guess to the model's grid; a training entry keeps 1 per pixel."""
    from segpipe.data.store import ImageStore
    from segpipe.models.model import save_model

    fine = save_model(tmp_path / "fine", crops_model.state_dict(), crops_model.card.model_copy(update={"spacing": (0.5, 0.5), "spacing_guessed": False}))
    catalog, out = _unlabelled(tmp_path, fine.folder), tmp_path / "runs"
    assert segpipe_cli("ingest", "seg", "--catalog", catalog, "--output", out).code == 0
    (image,) = ImageStore.open(out / "seg" / "data.zarr").images()
    assert image.spacing == (0.5, 0.5) and image.info["spacing_source"] == "default"
    (tmp_path / "lab").mkdir()
    labels = np.zeros((48, 48), np.uint8)
    labels[10:20, 10:20] = 1
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    catalog.write_text(catalog.read_text().replace(f"    model: {fine.folder}\n", "    labels: lab/*.tif\n    split: {train: [a]}\n"))
    assert segpipe_cli("ingest", "seg", "--catalog", catalog, "--output", out).code == 0
    (image,) = ImageStore.open(out / "seg" / "data.zarr").images()
    assert image.spacing == (1.0, 1.0)


def test_an_entry_applying_a_catalog_model_not_trained_yet_is_ingested_at_one_per_pixel(tmp_path, crops_model, segpipe_cli):
    """Ingest goes on: the model's pixel size is known only once it is trained."""
    from segpipe.data.store import ImageStore

    catalog, out = _unlabelled(tmp_path, crops_model.folder), tmp_path / "runs"
    text = catalog.read_text().replace(f"    model: {crops_model.folder}\n", "    model: other\n")
    catalog.write_text(text + "  other:\n    images: raw/*.tif\n    labels: raw/*.tif\n    ndim: 2\n"
                       "    classes: [background, nucleus]\n    instances: true\n    split: {train: [a]}\n")
    assert segpipe_cli("ingest", "seg", "--catalog", catalog, "--output", out).code == 0
    (image,) = ImageStore.open(out / "seg" / "data.zarr").images()
    assert image.spacing == (1.0, 1.0)



def test_score_reads_the_labels_as_the_files_hold_them_and_refuses_a_prediction_of_an_older_image(tmp_path, crops_model, segpipe_cli):
    """`score` used the store as first ingested: after a label file was edited it scored the old
    labels, and after a test image was replaced it scored the old image's prediction against the new
    store (a helper's run: SEG 0.96 reported where a prediction of the new image gave 0.11)."""
    import json

    for folder in ("raw", "gt"):
        (tmp_path / folder).mkdir()
    image = np.random.default_rng(1).integers(0, 50, (64, 64)).astype(np.uint8)
    labels = np.zeros((64, 64), np.uint8)
    labels[10:22, 10:22], labels[35:50, 30:44] = 1, 2
    image[labels > 0] += 150
    tifffile.imwrite(tmp_path / "raw" / "a.tif", image)
    tifffile.imwrite(tmp_path / "gt" / "a.tif", labels)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  scored:\n    images: raw/*.tif\n    labels: gt/*.tif\n    ndim: 2\n"
                       f"    classes: [background, nucleus]\n    instances: true\n    model: {crops_model.folder}\n")
    out, where = tmp_path / "runs", ("--catalog", catalog, "--output", tmp_path / "runs")
    assert segpipe_cli("predict", "scored", *where, "--device", "cpu").code == 0
    assert segpipe_cli("score", "scored", *where).code == 0
    metrics = out / "scored" / "metrics.json"
    assert json.loads(metrics.read_text())["per_image"][0]["n_objects"] == 2

    labels[50:60, 5:15] = 3  # a third object drawn in the label file
    tifffile.imwrite(tmp_path / "gt" / "a.tif", labels)
    assert segpipe_cli("score", "scored", *where).code == 0
    assert json.loads(metrics.read_text())["per_image"][0]["n_objects"] == 3

    tifffile.imwrite(tmp_path / "raw" / "a.tif", np.roll(image, 20, axis=1))  # the image replaced
    before = metrics.read_bytes()
    refused = segpipe_cli("score", "scored", *where)
    assert refused.code == 2 and len(refused.errors) == 1, refused.err
    assert "the prediction of 'a' was made from another version of its image" in refused.errors[0]
    assert "segpipe predict scored" in refused.errors[0] and metrics.read_bytes() == before
    assert segpipe_cli("predict", "scored", *where, "--device", "cpu").code == 0
    assert segpipe_cli("score", "scored", *where).code == 0


def test_an_empty_test_split_is_refused_by_predict_and_report_leaving_nothing(tmp_path, crops_model, segpipe_cli):
    """`predict` refused but left an empty predictions.zarr, and `report` then wrote a report of
    "0 images from 0 inputs segmented" and exited 0."""
    for folder in ("raw", "gt"):
        (tmp_path / folder).mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        image = np.random.default_rng(seed).integers(0, 50, (64, 64)).astype(np.uint8)
        labels = np.zeros((64, 64), np.uint8)
        labels[10:22, 10:22] = 1
        image[labels > 0] += 150
        tifffile.imwrite(tmp_path / "raw" / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / "gt" / f"{name}.tif", labels)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets:\n  notest:\n    images: raw/*.tif\n    labels: gt/*.tif\n    ndim: 2\n"
                       "    classes: [background, nucleus]\n    instances: true\n    split: {train: [a], validation: [b]}\n"
                       f"    model: {crops_model.folder}\n")
    out, where = tmp_path / "runs", ("--catalog", catalog, "--output", tmp_path / "runs")
    for stage in ("predict", "report"):
        result = segpipe_cli(stage, "notest", *where)
        assert result.code == 2 and len(result.errors) == 1 and "the test split is empty" in result.errors[0], result.err
    assert sorted(p.name for p in (out / "notest").iterdir()) == ["data.zarr"]
    assert not (out / "index.html").exists()


def test_another_models_exported_labels_go_with_its_predictions(tmp_path, crops_model, segpipe_cli):
    """predict --model B after model A kept A's NIfTI labels beside B's TIFF ones in predictions/."""
    import shutil

    catalog, out = _unlabelled(tmp_path, crops_model.folder), tmp_path / "runs"
    other = tmp_path / "other-model"
    shutil.copytree(crops_model.folder, other)
    (other / "model_card.json").write_text((other / "model_card.json").read_text().replace('"name": "', '"name": "other ', 1))
    first = segpipe_cli("predict", "seg", "--catalog", catalog, "--output", out, "--device", "cpu", "--export", "nifti")
    assert first.code == 0, first.err
    exports = out / "seg" / "predictions"
    assert (exports / "a_instances.nii.gz").is_file()
    again = segpipe_cli("predict", "seg", "--catalog", catalog, "--output", out, "--device", "cpu", "--model", other)
    assert again.code == 0, again.err
    assert sorted(p.name for p in exports.iterdir()) == ["a_instances.tif", "a_semantic.tif"]
