"""``segpipe segment``: new images of any kind with a trained model, outputs named after the inputs."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

import segpipe
from segpipe.data.store import ImageStore
from segpipe.errors import InputError, ModelError
from segpipe.models.model import Model, save_model
from segpipe.pipeline.segment import segment
from segpipe.pipeline.segment_files import SegmentFolder, SegmentParams
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture
def model(crops_model) -> Model:
    return crops_model


@pytest.fixture
def inputs(tmp_path) -> Path:
    """Unlabelled images of every kind: TIFF, PNG, NIfTI, a CTC sequence, an OME-Zarr, and a broken file."""
    folder = tmp_path / "new"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:120, :150]
    tifffile.imwrite(folder / "field.tif", field)
    from skimage.io import imsave

    imsave(folder / "field_png.png", field, check_contrast=False)
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    affine[:3, 3] = [10.0, -4.0, 2.0]
    nib.save(nib.Nifti1Image(field.T.astype(np.float32), affine), folder / "scan.nii.gz")
    sequence = tmp_path / "01"
    sequence.mkdir()
    for t in range(3):
        tifffile.imwrite(sequence / f"t{t:03d}.tif", np.roll(field, 7 * t, axis=1))
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    return tmp_path


def test_the_labels_in_the_images_ome_zarr_have_its_pyramid_levels(model, tmp_path):
    """The image had levels s0-s2 and its labels s0 only: a viewer zoomed out (napari-ome-zarr) drew
    the full-resolution labels over a coarse level. Each frame of a time series gets its own."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:260, :300]
    tifffile.imwrite(tmp_path / "large.tif", np.tile(field, (3, 2)))  # 780 x 600: levels 1, 2 and 4
    tifffile.imwrite(tmp_path / "movie.tif", np.stack([field, field[::-1]]), photometric="minisblack",
                     metadata={"axes": "TYX"})
    out = SegmentFolder(tmp_path / "out")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    segment([str(tmp_path / "large.tif"), str(tmp_path / "movie.tif")], predictor, out, progress=False)
    for store, name, count in (("large", "large", 3), ("movie", "movie-t001", 2)):
        root = zarr.open_group(str(out.images(store)), mode="r")
        image_levels = [d["path"] for d in root[name].attrs["ome"]["multiscales"][0]["datasets"]]
        labels = root[f"{name}/labels/segmentation"]
        datasets = labels.attrs["ome"]["multiscales"][0]["datasets"]
        assert [d["path"] for d in datasets] == image_levels and len(image_levels) == count
        full = labels["s0"][...]
        assert full.max() > 0
        np.testing.assert_array_equal(labels["s1"][...], full[..., ::2, ::2])  # picked, not averaged: ids stay ids
        scales = [d["coordinateTransformations"][0]["scale"] for d in datasets]
        assert scales[1] == [2 * v for v in scales[0]]
        # ome-zarr-py finds the label image with as many levels as the image
        nodes = list(Reader(parse_url(str(out.images(store) / name / "labels" / "segmentation")))())
        [node] = [n for n in nodes if n.zarr.basename() == "segmentation"]
        assert len(node.data) == len(image_levels) and node.data[1].shape == labels["s1"].shape


def test_every_kind_of_input_gets_its_labels_tables_and_zarr(model, inputs, tmp_path):
    out = SegmentFolder(tmp_path / "out")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    results = segment([str(inputs / "new"), str(inputs / "01")], predictor, out, progress=False)
    by_name = {r.name: r for r in results}
    assert set(by_name) == {"field", "field_png", "scan", "broken", "01"}
    assert by_name["broken"].error.startswith("InputError: not a readable TIFF")  # its path is the result's, said once
    done = [r for r in results if r.error is None]
    assert len(done) == 4 and all(sum(r.objects.values()) > 3 for r in done)

    labels = tifffile.imread(out.labels / "field_labels.tif")
    assert labels.shape == (120, 150) and labels.max() == by_name["field"].objects["field"]
    np.testing.assert_array_equal(tifffile.imread(out.labels / "field_png_labels.tif"), labels)  # same pixels, same model
    scan = nib.load(out.labels / "scan_labels.nii.gz")
    np.testing.assert_allclose(scan.affine, nib.load(inputs / "new" / "scan.nii.gz").affine)
    assert np.asarray(scan.dataobj).T.shape == (120, 150)
    masks = sorted(p.name for p in (out.labels / "01_RES").glob("mask*.tif"))
    assert masks == ["mask000.tif", "mask001.tif", "mask002.tif"] and (out.labels / "01_RES" / "res_track.txt").is_file()

    # The image's OME-Zarr has the labels under the image, as NGFF readers expect.
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(out.images("field") / "field")))())
    assert any("labels" in str(node.zarr) for node in nodes)
    stored = zarr.open_group(str(out.images("field")), mode="r")["field/labels/segmentation/s0"][...]
    np.testing.assert_array_equal(stored, labels)

    # One table for the run; it agrees with scikit-image on the written labels.
    from skimage.measure import regionprops_table

    with open(out.table, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["image"] == "field"]
    reference = regionprops_table(labels, properties=("label", "area", "centroid"))
    assert [int(r["label"]) for r in rows] == list(reference["label"])
    np.testing.assert_allclose([float(r["area"]) for r in rows], reference["area"])  # 1 micrometer pixels
    np.testing.assert_allclose([float(r["centroid-y"]) for r in rows], reference["centroid-0"])
    with open(out.counts, newline="") as handle:
        counts = {row["image"] or row["input"]: row for row in csv.DictReader(handle)}
    assert counts["field"]["objects"] == str(labels.max()) and counts[str(inputs / "new" / "broken.tif")]["status"] == "failed"
    summary = json.loads(out.summary.read_text())
    assert summary["failed"] == [str(inputs / "new" / "broken.tif")]
    assert (out.root / "report.html").is_file()

    again = segment([str(inputs / "new" / "field.tif")], predictor, out, progress=False)
    assert again[0].skipped  # unchanged input, model and settings


def test_segment_json_names_the_model_folder_wherever_it_was_typed_from(model, inputs, tmp_path, monkeypatch):
    """``--model ../m2`` was written as "../m2", which read from the output folder points elsewhere."""
    monkeypatch.chdir(model.folder.parent)
    predictor = Predictor.load(Model.open(Path(model.folder.name)), PredictParams(device="cpu", inference={"flip_tta": False}))
    out = SegmentFolder(tmp_path / "out")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    segment([str(inputs / "new" / "field.tif")], predictor, out, progress=False)
    summary = json.loads(out.summary.read_text())
    assert summary["model"]["folder"] == str(model.folder.resolve())
    # which segpipe wrote it, and when (a rerun that redid nothing was told from the first run by nothing)
    assert summary["segpipe_version"] == segpipe.__version__
    assert before <= datetime.fromisoformat(summary["written"]) <= datetime.now(timezone.utc)


def test_a_model_that_does_not_fit_writes_nothing(model, inputs, tmp_path):
    three = model.card.model_copy(update={"in_channels": 3, "name": "rgb"})
    folder = tmp_path / "rgb"
    save_model(folder, model.state_dict(), three)  # the card is what is checked: the weights are never used
    predictor = Predictor(Model.open(folder), model.load(), PredictParams(device="cpu"), model.card.inference)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="takes 3 channel"):
        segment([str(inputs / "new" / "field.tif")], predictor, SegmentFolder(out), progress=False)
    assert not out.exists()


def test_an_input_the_model_does_not_fit_fails_alone_among_others(model, tmp_path):
    """An RGB PNG beside a grey TIFF, for a one-channel model: the TIFF is segmented, the PNG is
    listed as failed (the reason said once, without its path again); alone, it is refused."""
    from skimage.io import imsave

    folder = tmp_path / "mixed"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    tifffile.imwrite(folder / "grey.tif", field)
    colour = np.stack([field, field[::-1], np.zeros_like(field)], axis=-1)
    imsave(folder / "colour.png", colour, check_contrast=False)
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    results = segment([str(folder)], predictor, out, progress=False)
    by_name = {Path(r.path).name: r for r in results}
    assert [Path(r.path).name for r in results] == ["colour.png", "grey.tif"]
    assert by_name["grey.tif"].error is None and by_name["grey.tif"].objects["grey"] > 3
    assert by_name["colour.png"].error == (
        f"ModelError: model {model.card.name!r} takes 1 channel(s), this image has 3; choose them with --channels"
    )
    assert (out.labels / "grey_labels.tif").is_file() and not (out.labels / "colour_labels.tif").exists()
    with open(out.counts, newline="") as handle:
        statuses = {Path(row["input"]).name: row["status"] for row in csv.DictReader(handle)}
    assert statuses == {"colour.png": "failed", "grey.tif": "segmented"}
    imsave(folder / "colour_2.png", colour, check_contrast=False)
    with pytest.raises(ModelError, match=r"this image has 3; choose them with --channels \(and the 1 other input\(s\)\)"):
        segment([str(folder / "*.png")], predictor, SegmentFolder(tmp_path / "none"), progress=False)
    assert not (tmp_path / "none").exists()


def test_a_grey_image_saved_in_colour_is_segmented_as_grey(model, tmp_path):
    """Red, green and blue alike (and an opaque alpha): before, a one-channel model refused it
    ("this image has 3"), and --channels could not help a folder mixing such files with grey ones."""
    from skimage.io import imsave

    folder = tmp_path / "greys"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    tifffile.imwrite(folder / "grey.tif", field)
    imsave(folder / "rgb.png", np.stack([field] * 3, axis=-1), check_contrast=False)
    imsave(folder / "rgba.png", np.stack([field] * 3 + [np.full_like(field, 255)], axis=-1), check_contrast=False)
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    results = segment([str(folder)], predictor, out, progress=False)
    assert all(r.error is None for r in results), [r.error for r in results]
    grey = tifffile.imread(out.labels / "grey_labels.tif")
    assert grey.max() > 3
    for name in ("rgb", "rgba"):
        np.testing.assert_array_equal(tifffile.imread(out.labels / f"{name}_labels.tif"), grey)


def test_empty_colour_channels_are_left_out_when_the_rest_fit_the_model(model, tmp_path, caplog):
    """A grey field saved in the green channel of an RGB PNG (red and blue zero) gives a one-channel
    model the labels of the grey field; a red-cytoplasm, green-nuclei composite with an empty blue
    channel (or one holding only a scale bar) gives the generalist the labels of the same two
    channels as a two-channel TIFF. Before, all were refused ("this image has 3")."""
    import logging

    from skimage.io import imsave
    from skimage.segmentation import expand_labels

    from segpipe.models.shipped import CELLS_2D, shipped_model

    folder = tmp_path / "colour"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    zeros = np.zeros_like(field)
    tifffile.imwrite(folder / "grey.tif", field)
    imsave(folder / "green.png", np.stack([zeros, field, zeros], axis=-1), check_contrast=False)
    out = SegmentFolder(tmp_path / "out")
    with caplog.at_level(logging.INFO):
        results = segment([str(folder)], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    assert all(r.error is None for r in results), [r.error for r in results]
    grey = tifffile.imread(out.labels / "grey_labels.tif")
    assert grey.max() > 3
    np.testing.assert_array_equal(tifffile.imread(out.labels / "green_labels.tif"), grey)
    assert any("channel(s) [0, 2] one value everywhere: reading channel(s) [1] of 3" in r.getMessage() for r in caplog.records)

    nuclei = tifffile.imread(DATA / "bbbc007" / "images" / "17P1_POS0006_D_1UL.tif")[:128, :128]
    cells = expand_labels(tifffile.imread(DATA / "bbbc007" / "labels" / "17P1_POS0006_D_1UL.tif")[:128, :128], 8)
    cytoplasm = (np.where(cells > 0, 120.0, 20.0) + np.random.default_rng(0).normal(0, 5, cells.shape)).clip(0, 255).astype(np.uint8)
    pair = tmp_path / "pair"
    pair.mkdir()
    tifffile.imwrite(pair / "two.tif", np.stack([cytoplasm, nuclei]), metadata={"axes": "CYX"})
    imsave(pair / "composite.png", np.stack([cytoplasm, nuclei, np.zeros_like(nuclei)], axis=-1), check_contrast=False)
    bar = np.zeros_like(nuclei)
    bar[120:121, 100:120] = 255  # a scale bar burnt into the blue: 20 pixels, under 0.2% of the field
    imsave(pair / "scalebar.png", np.stack([cytoplasm, nuclei, bar], axis=-1), check_contrast=False)
    generalist = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    results = segment([str(pair)], generalist, SegmentFolder(tmp_path / "pair-out"), progress=False)
    assert all(r.error is None for r in results), [r.error for r in results]
    two = tifffile.imread(tmp_path / "pair-out" / "labels" / "two_labels.tif")
    assert two.max() > 3
    for name in ("composite", "scalebar"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "pair-out" / "labels" / f"{name}_labels.tif"), two)


def test_a_few_nuclei_on_a_zero_background_are_a_channel_and_a_mask_fails_alone(tmp_path):
    """Two nuclei (0.2% of the field) on a background subtracted to zero, beside a cytoplasm and an
    empty blue: the generalist keeps the nuclei (its percentiles outside the zero fill are not
    equal), as its own rule feeds them to its nuclear input. A boolean three-channel mask in the
    same folder fails alone (it ended the run with a TypeError)."""
    from skimage.io import imsave

    from segpipe.models.shipped import CELLS_2D, shipped_model
    from segpipe.pipeline.segment import check_input
    from segpipe.data.inputs import find_inputs

    yy, xx = np.mgrid[:256, :256]
    cells = ((yy - 80) ** 2 + (xx - 80) ** 2 < 40**2) | ((yy - 170) ** 2 + (xx - 170) ** 2 < 40**2)
    nuclei = ((yy - 80) ** 2 + (xx - 80) ** 2 < 4**2) | ((yy - 170) ** 2 + (xx - 170) ** 2 < 4**2)
    rng = np.random.default_rng(0)
    cytoplasm = (np.where(cells, 120.0, 20.0) + rng.normal(0, 5, cells.shape)).clip(0, 255).astype(np.uint8)
    nuclear = np.where(nuclei, rng.integers(150, 250, nuclei.shape), 0).astype(np.uint8)
    assert nuclei.mean() < 0.002
    folder = tmp_path / "inbox"
    folder.mkdir()
    imsave(folder / "sparse.png", np.stack([cytoplasm, nuclear, np.zeros_like(nuclear)], axis=-1), check_contrast=False)
    tifffile.imwrite(folder / "mask.tif", np.zeros((3, 64, 64), bool))
    generalist = shipped_model(CELLS_2D)
    by_name = {item.name: item for item in find_inputs([str(folder)])}
    assert check_input(by_name["sparse"], generalist.card, SegmentParams()).channels == (0, 1)
    results = segment([str(folder)], Predictor.load(generalist, PredictParams(device="cpu")), SegmentFolder(tmp_path / "out"),
                      progress=False)
    errors = {r.name: r.error for r in results}
    assert errors["sparse"] is None and errors["mask"] is not None and "TypeError" not in errors["mask"]


def test_sizes_and_pixel_sizes_are_in_the_models_unit_for_every_input(model, tmp_path):
    """Five OME-TIFFs at 0.5 um a pixel, one of them written in nanometres: measurements.csv gives that
    one the same areas in the model's unit as its twin, and the report names every image's pixel
    size (not only the four shown)."""
    folder = tmp_path / "ome"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    for k in range(4):
        size = {"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
        tifffile.imwrite(folder / f"um{k}.ome.tif", np.rot90(field, k).copy(), ome=True, metadata={"axes": "YX", **size})
    nm = {"PhysicalSizeX": 500.0, "PhysicalSizeY": 500.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm"}
    tifffile.imwrite(folder / "nm.ome.tif", field, ome=True, metadata={"axes": "YX", **nm})
    out = SegmentFolder(tmp_path / "out")
    results = segment([str(folder)], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    assert all(r.error is None for r in results) and len(results) == 5
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["unit"] for row in rows} == {"micrometer"} and {row["pixel_size"] for row in rows} == {"file"}
    areas = {name: sorted(float(r["area"]) for r in rows if r["image"] == name) for name in {r["image"] for r in rows}}
    assert sorted(areas) == ["nm", "um0", "um1", "um2", "um3"]  # a.ome.tif is the input a
    assert len(areas["um0"]) > 3 and areas["nm"] == areas["um0"]
    assert (out.labels / "nm_labels.tif").is_file() and out.images("nm").is_dir()
    report = (out.root / "report.md").read_text()
    assert report.count("| 0.5 × 0.5 micrometer (y, x) |") == 5 and "nanometer" not in report
    assert "guessed" not in report.replace('"spacing_guessed"', "")  # the card's field, in its JSON
    captions = re.findall(r"!\[(\S+): ([a-z ]+) \(\d+ objects\)\]", report)  # each sampled image says why it is shown
    reasons = {"fewest objects", "most objects", "first image", "closest to the median count", "next image"}
    assert len(captions) == 4 and all(reason in reasons for _, reason in captions), captions
    assert sorted(p.name for p in (out.root / "figures").glob("sample_*.png")) == sorted(f"sample_{n}.png" for n, _ in captions)


def test_a_model_whose_pixel_size_was_guessed_segments_images_at_their_own_pixels(model, tmp_path, caplog):
    """A model trained on files without a pixel size (ingest took 1 um a pixel) resampled a 0.33 um
    image to that guess, three times smaller: a walk-through found 44 of 60 nuclei. Such an image is
    now segmented at its own pixels, as --no-resample does, and one warning says why."""
    import logging

    assert model.card.spacing_guessed and list(model.card.spacing) == [1.0, 1.0]
    (tmp_path / "in").mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:128, :128]
    tifffile.imwrite(tmp_path / "in" / "a.ome.tif", field, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.33, "PhysicalSizeY": 0.33})
    labels = {}
    for name, resample in (("default", True), ("own", False)):
        out = SegmentFolder(tmp_path / name)
        with caplog.at_level(logging.WARNING, logger="segpipe.pipeline.segment"):
            caplog.clear()
            (result,) = segment([str(tmp_path / "in")], Predictor.load(model, PredictParams(device="cpu", resample=resample)), out,
                                progress=False)
        assert result.error is None
        labels[name] = tifffile.imread(out.labels / "a_labels.tif")
        said = [r.getMessage() for r in caplog.records if "the pixel size the model was trained at is not known" in r.getMessage()]
        assert len(said) == 1 and "1 input(s) with a pixel size" in said[0] and "1 x 1 micrometer per pixel was taken" in said[0]
    assert labels["default"].max() > 3
    np.testing.assert_array_equal(labels["default"], labels["own"])


def test_the_command_line(model, inputs, tmp_path):
    from typer.testing import CliRunner

    from segpipe.cli import app

    out = tmp_path / "cli"
    shutil.copytree(inputs / "01", tmp_path / "seq" / "01")
    result = CliRunner().invoke(app, ["segment", "--model", str(model.folder), str(tmp_path / "seq" / "01"), "--output", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["segmented"] == 1 and summary["failed"] == {} and summary["objects"] > 3
    missing = CliRunner().invoke(app, ["segment", "--model", str(tmp_path / "nope"), str(inputs / "01"), "--output", str(out)])
    assert missing.exit_code != 0 and "no model folder" in str(missing.exception)


def test_measurements_agree_with_regionprops_on_the_written_labels(model, tmp_path):
    """The BBBC007 model on the DSB2018 field (a file without a pixel size, given as 0.5 um):
    every column of the table is scikit-image's, computed from the label file and the input."""
    from skimage.measure import regionprops_table

    from segpipe.pipeline.segment_files import SegmentParams

    field = tifffile.imread(DATA / "dsb2018-nuclei-2d" / "image.tif")[368:, :]
    tifffile.imwrite(tmp_path / "dsb.tif", field)
    out = SegmentFolder(tmp_path / "out")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    params = SegmentParams(spacing=[0.5, 0.5], unit="micrometer")
    (result,) = segment([str(tmp_path / "dsb.tif")], predictor, out, params, progress=False)
    assert result.error is None and result.objects["dsb"] >= 10

    labels = tifffile.imread(out.labels / "dsb_labels.tif")
    assert labels.shape == field.shape
    reference = regionprops_table(
        labels, field, properties=("label", "area", "centroid", "bbox", "intensity_mean"), spacing=(0.5, 0.5)
    )
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["unit"] for row in rows} == {"micrometer"}
    assert [int(r["label"]) for r in rows] == list(reference["label"])
    pairs = {
        "area": "area", "centroid-y": "centroid-0", "centroid-x": "centroid-1", "bbox-y-min": "bbox-0",
        "bbox-x-min": "bbox-1", "bbox-y-max": "bbox-2", "bbox-x-max": "bbox-3", "mean_intensity-0": "intensity_mean",
    }
    for ours, theirs in pairs.items():
        np.testing.assert_allclose([float(r[ours]) for r in rows], reference[theirs], rtol=1e-9, err_msg=ours)
    assert np.isclose(float(rows[0]["area"]), (labels == int(rows[0]["label"])).sum() * 0.25)  # square micrometres


def test_labels_made_beside_the_network_equal_a_plain_prediction(model, inputs, tmp_path):
    """``segment`` runs the network on one input while another thread makes the labels of the one
    before, on all cores but one; the labels equal :func:`predict_stored`'s with the same threads,
    and torch's thread count is as it was afterwards."""
    import torch

    from segpipe.models.device import cpu_threads
    from segpipe.prediction.predict import predict_stored

    threads = torch.get_num_threads()
    out = SegmentFolder(tmp_path / "out")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    segment([str(inputs / "new" / "field.tif"), str(inputs / "new" / "scan.nii.gz")], predictor, out, progress=False)
    assert torch.get_num_threads() == threads

    store = ImageStore.open(out.images("field"))
    torch.set_num_threads(cpu_threads(reserved=1))
    try:
        predictions = predictor.open_store(tmp_path / "plain.zarr")
        predict_stored(store.images()[0], predictor, predictions, attach=False)
    finally:
        torch.set_num_threads(threads)
    expected = predictions.labels(store.names()[0])[...]
    assert expected.max() > 3
    np.testing.assert_array_equal(tifffile.imread(out.labels / "field_labels.tif"), expected)


def test_inputs_without_a_pixel_size_give_one_warning_for_the_run(model, tmp_path, caplog):
    """Three TIFFs with no pixel size: one line naming how many and the first, not one per file."""
    import logging

    folder = tmp_path / "inbox"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    for k in range(3):
        tifffile.imwrite(folder / f"plain_{k}.tif", np.rot90(field, k))
    known = save_model(tmp_path / "known", model.state_dict(), model.card.model_copy(update={"spacing_guessed": False}))
    predictor = Predictor.load(known, PredictParams(device="cpu"))
    with caplog.at_level(logging.WARNING):
        segment([str(folder)], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    spacing = [r.getMessage() for r in caplog.records if "pixel size" in r.getMessage()]
    assert len(spacing) == 1, spacing
    assert "3 of 3 input(s)" in spacing[0] and "plain_0.tif" in spacing[0] and "--spacing" in spacing[0]
    assert "taking the model's, 1 x 1 micrometer per pixel, so the network sees them at their own pixels" in spacing[0]
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.count("| 1 × 1 micrometer (y, x), guessed |") == 3 and "A guessed pixel size: the file gave none" in report
    with open(tmp_path / "out" / "measurements.csv", newline="") as handle:  # the table says it too (only the report did)
        assert {row["pixel_size"] for row in csv.DictReader(handle)} == {"guessed"}


def test_spacing_other_than_a_files_own_is_said_once_for_the_run(model, tmp_path, caplog):
    """--spacing 0.5 (um) over a NIfTI whose header says 1 x 1 um per voxel: one warning naming it and
    the header's size (volumes silently followed --spacing); a TIFF without a pixel size, and a NIfTI
    whose header names no unit, are not counted."""
    import logging

    folder = tmp_path / "inbox"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    tifffile.imwrite(folder / "plain.tif", field)
    scan = nib.Nifti1Image(field.T[:, :, None].astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    scan.header.set_xyzt_units("micron")
    nib.save(scan, folder / "scan.nii.gz")
    nib.save(nib.Nifti1Image(field.T[:, :, None].astype(np.float32), np.eye(4)), folder / "unitless.nii.gz")  # units 0
    params = SegmentParams(spacing=[0.5], unit="um")
    with caplog.at_level(logging.WARNING):
        results = segment([str(folder)], Predictor.load(model, PredictParams(device="cpu")),
                          SegmentFolder(tmp_path / "out"), params, progress=False)
    said = [r.getMessage() for r in caplog.records if "another pixel size" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert said[0].startswith("1 of 3 input(s) give another pixel size in their file than --spacing 0.5 x 0.5 (first: ")
    assert "scan.nii.gz, its file 1 x 1 micrometer); --spacing is used" in said[0]
    # a header's default 1 without a unit claims no size (it read as "its file 1 x 1 micrometer")
    assert {r.name: r.file_spacing for r in results} == {"plain": None, "scan": "1 x 1 micrometer", "unitless": None}


def test_an_input_without_a_pixel_size_is_taken_at_the_models(model, tmp_path):
    """A file with no pixel size was taken as 1 micrometer per pixel and resampled from that guess
    to a model trained at 0.5 (twice the pixels: blobs split, specks found); it is now seen at its
    own pixels, exactly as when the model's pixel size is given, and measured in it (guessed)."""
    import csv

    fine = tmp_path / "fine"
    save_model(fine, model.state_dict(), model.card.model_copy(update={"spacing": (0.5, 0.5), "spacing_guessed": False}))
    folder = tmp_path / "inbox"
    folder.mkdir()
    tifffile.imwrite(folder / "plain.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96])
    predictor = Predictor.load(Model.open(fine), PredictParams(device="cpu"))
    guessed, given = SegmentFolder(tmp_path / "guessed"), SegmentFolder(tmp_path / "given")
    segment([str(folder)], predictor, guessed, progress=False)
    segment([str(folder)], predictor, given, SegmentParams(spacing=[0.5, 0.5]), progress=False)
    labels = tifffile.imread(guessed.labels / "plain_labels.tif")
    assert labels.max() > 3
    np.testing.assert_array_equal(labels, tifffile.imread(given.labels / "plain_labels.tif"))
    (image,) = ImageStore.open(guessed.images("plain")).images()
    assert image.spacing == (0.5, 0.5) and image.info["spacing_source"] == "default"
    with open(guessed.measurements("plain"), newline="") as handle:
        areas = [float(row["area"]) for row in csv.DictReader(handle)]
    pixels = np.bincount(labels.ravel())[1:]
    assert sorted(areas) == pytest.approx(sorted(pixels[pixels > 0] * 0.25))


def test_the_generalist_is_not_said_to_resample_inputs_without_a_pixel_size(tmp_path, caplog):
    """The shipped generalist predicts every image at its own pixels: the pixel size, unknown here,
    serves the measurements only, and the one warning does not promise a resampling that never happens."""
    import logging

    from segpipe.models.shipped import CELLS_2D, shipped_model

    folder = tmp_path / "inbox"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    for k in range(2):
        tifffile.imwrite(folder / f"plain_{k}.tif", np.rot90(field, k))
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    with caplog.at_level(logging.WARNING):
        segment([str(folder)], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    (spacing,) = [r.getMessage() for r in caplog.records if "pixel size" in r.getMessage()]
    assert "2 of 2 input(s)" in spacing and "taking 1 micrometer per pixel for the measurements" in spacing
    assert "resampled" not in spacing and "at its own pixels" in spacing


def test_the_generalist_finds_nothing_in_fields_of_noise_and_the_cells_of_a_real_one(tmp_path, caplog):
    """Camera noise, bright and dark: the shipped generalist drew 60 and 28 objects in them; now
    none, each said at INFO and the run's count in one warning. A real field beside them keeps its cells."""
    import logging

    from segpipe.models.shipped import CELLS_2D, shipped_model

    folder = tmp_path / "inbox"
    folder.mkdir()
    rng = np.random.default_rng(5)
    tifffile.imwrite(folder / "noise.tif", rng.poisson(40, (512, 512)).astype(np.uint16))
    tifffile.imwrite(folder / "dark.tif", rng.poisson(1.5, (300, 400)).astype(np.uint16))
    cells = tifffile.imread(DATA / "bbbc007" / "images" / "17P1_POS0006_D_1UL.tif")
    tifffile.imwrite(folder / "cells.tif", cells)
    half = cells.copy()  # its right half replaced by noise as dark as its background (2 counts)
    half[:, 200:] = np.clip(np.round(rng.normal(0, 2.2, (400, 200))), 0, 255).astype(np.uint8)
    tifffile.imwrite(folder / "half.tif", half)
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    with caplog.at_level(logging.INFO, logger="segpipe.prediction.predict"):
        results = segment([str(folder)], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    objects = {r.name: sum(r.objects.values()) for r in results}
    assert objects["noise"] == 0 and objects["dark"] == 0 and objects["cells"] > 30
    # the quiet half of a field with cells: no objects there (13 before the quiet rule), the cells of the other half kept
    labels = tifffile.imread(tmp_path / "out" / "labels" / "half_labels.tif")
    centres = ndimage.center_of_mass(labels > 0, labels, np.unique(labels[labels > 0]))
    assert sum(x > 215 for _, x in centres) == 0 and sum(x < 185 for _, x in centres) >= 20
    said = sorted(r.getMessage().split(":")[0] for r in caplog.records if "holds only noise" in r.getMessage())
    assert said == ["dark", "noise"] and {r.noise_only.get(r.name) for r in results} == {1, None}
    (warned,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "only noise" in r.getMessage()]
    assert warned.startswith("2 image(s) hold only noise in 2 frame(s) in all (first: ")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "noise (no objects: nothing in it stands out of its noise (an empty or blank field), so it was not predicted; --noise-only 0 predicts it)" in report
    assert "cells (no objects" not in report
    # counts.csv marks them, in this run and in the next, which keeps every input unchanged
    for run in (1, 2):
        with open(tmp_path / "out" / "counts.csv", newline="") as handle:
            rows = {row["image"]: row for row in csv.DictReader(handle)}
        assert {name: row["noise_only_frames"] for name, row in rows.items()} == {"noise": "1", "dark": "1", "cells": "0", "half": "0"}
        assert {row["status"] for row in rows.values()} == {"segmented" if run == 1 else "unchanged"}
        if run == 1:
            segment([str(folder)], predictor, SegmentFolder(tmp_path / "out"), progress=False)


def test_another_pixel_size_given_for_the_same_input_measures_and_attaches_again(tmp_path):
    """The generalist predicts at the image's own pixels, so its predictions stay current when only
    --spacing changes; the input's store is ingested again at the new pixel size, and its areas,
    label files and the labels under its OME-Zarr image follow it (they stayed at the first run's,
    the OME-Zarr without labels)."""
    from segpipe.models.shipped import CELLS_2D, shipped_model

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    tifffile.imwrite(tmp_path / "field.tif", field)
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    folder = SegmentFolder(tmp_path / "out")
    areas = {}
    for size in (1.0, 2.0):
        (result,) = segment([str(tmp_path / "field.tif")], predictor, folder, SegmentParams(spacing=[size, size]), progress=False)
        assert result.status == "segmented" and sum(result.objects.values()) > 3
        with open(folder.measurements("field")) as handle:
            areas[size] = np.array([float(row["area"]) for row in csv.DictReader(handle)])
        group = zarr.open_group(str(folder.images("field")), mode="r")
        assert "segmentation" in group["field/labels"]
        scale = group["field/labels/segmentation"].attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert scale == [size, size]
        with tifffile.TiffFile(folder.labels / "field_labels.tif") as tif:
            pixels, per = tif.pages.first.tags["XResolution"].value  # pixels per unit
        assert per / pixels == pytest.approx(size)
    np.testing.assert_allclose(areas[2.0], 4 * areas[1.0])


def test_a_pixel_size_in_millimetres_is_converted_as_one_in_micrometres(model, tmp_path):
    """--unit mm with --spacing 0.002,0.002 is 2 micrometres a pixel: the same labels as --spacing 2
    --unit um (one value: every axis)."""
    from typer.testing import CliRunner

    from segpipe.cli import app

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:128, :128]
    tifffile.imwrite(tmp_path / "field.tif", field)
    runs = {
        unit: CliRunner().invoke(app, [
            "segment", "-m", str(model.folder), str(tmp_path / "field.tif"), "--spacing", value,
            "--unit", unit, "--no-tta", "-o", str(tmp_path / unit),
        ])
        for unit, value in (("mm", "0.002,0.002"), ("um", "2"))
    }
    assert all(run.exit_code == 0 for run in runs.values()), [run.output for run in runs.values()]
    mm, um = (tifffile.imread(tmp_path / unit / "labels" / "field_labels.tif") for unit in ("mm", "um"))
    assert um.max() > 3
    np.testing.assert_array_equal(mm, um)


def test_a_pixel_size_without_a_unit_is_read_in_the_models_unit(model, tmp_path):
    """A NIfTI file of unknown units (xyzt_units 0) with zooms of 0.001, given to a model trained in
    millimetres at 0.001 mm: read as millimetres, it is predicted at its own pixels, giving the labels of
    the same field as a TIFF with --spacing 0.001 --unit mm (read as micrometres, its pixels were a
    thousandth of the model's and the field was shrunk to a few of them: a fifth of the labels differed)."""
    from typer.testing import CliRunner

    from segpipe.cli import app

    in_mm = tmp_path / "model-mm"
    save_model(in_mm, model.state_dict(), model.card.model_copy(update={"unit": "millimeter", "spacing": (0.001, 0.001), "spacing_guessed": False}))
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:128, :128]
    scan = nib.Nifti1Image(field.T.astype(np.float32), np.diag([0.001, 0.001, 1.0, 1.0]))
    scan.header.set_xyzt_units(0)
    nib.save(scan, tmp_path / "scan.nii.gz")
    tifffile.imwrite(tmp_path / "field.tif", field.astype(np.float32))
    runs = [
        CliRunner().invoke(app, ["segment", "-m", str(in_mm), str(tmp_path / name), *extra, "--no-tta", "-o", str(tmp_path / "out")])
        for name, extra in (("scan.nii.gz", []), ("field.tif", ["--spacing", "0.001,0.001", "--unit", "mm"]))
    ]
    # --spacing without --unit is in the model's unit too (it was in micrometres)
    shutil.copy(tmp_path / "field.tif", tmp_path / "same.tif")
    runs.append(CliRunner().invoke(app, ["segment", "-m", str(in_mm), str(tmp_path / "same.tif"), "--spacing", "0.001,0.001",
                                         "--no-tta", "-o", str(tmp_path / "out")]))
    assert [run.exit_code for run in runs] == [0, 0, 0], [(run.output, repr(run.exception)) for run in runs]
    from_tiff = tifffile.imread(tmp_path / "out" / "labels" / "field_labels.tif")
    from_nifti = np.asarray(nib.load(tmp_path / "out" / "labels" / "scan_labels.nii.gz").dataobj).T
    assert from_tiff.max() > 3
    np.testing.assert_array_equal(from_nifti, from_tiff)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "labels" / "same_labels.tif"), from_tiff)
    # its labels keep the scan's unknown units (they said millimetres, the unit assumed, as if the file had)
    labels_header = nib.load(tmp_path / "out" / "labels" / "scan_labels.nii.gz").header
    assert labels_header.get_xyzt_units()[0] == "unknown" and scan.header.get_xyzt_units()[0] == "unknown"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--spacing", "0,0"], "--spacing: Input should be greater than 0"),
        (["--spacing", "1,1,1"], "--spacing: 3 values for a model of 2D images; give 2 (Y X) or one for every axis"),
        (["--spacing", "1,1", "--unit", "parsec"], "--unit: 'parsec' is not a length unit"),
        (["--spacing", "0.5", "--unit", "m"], "--spacing: 0.5 meter is no pixel size of a microscope or scanner image"),
        (["--spacing", "1e-30"], "--spacing: 1e-30 micrometer is no pixel size"),
        (["--spacing", "1,1,1,1"], "--spacing: 4 values; give 1 (every axis), 2 (Y X) or 3 (Z Y X), separated by commas"),
        (["--axes", "QYX"], "--axes: 'Q' is not an axis; use the letters T C Z Y X (S: colour samples, as C)"),
        (["--axes", "Y X"], "--axes: ' ' is not an axis; use the letters"),
        (["--axes", ""], "--axes: empty; use the letters T C Z Y X"),
        (["--spacing", "2,,0.5"], "--spacing: an empty value in '2,,0.5'; give every value"),  # it was dropped: "2 values"
        (["--spacing", "nan,0.5"], "--spacing: Input should be a finite number"),  # it said "greater than 0"
    ],
)
def test_a_wrong_pixel_size_is_one_line_and_writes_nothing(model, tmp_path, segpipe_cli, options, message):
    tifffile.imwrite(tmp_path / "field.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64])
    result = segpipe_cli("segment", "-m", model.folder, tmp_path / "field.tif", *options, "-o", tmp_path / "out")
    assert result.code == 2 and len(result.errors) == 1 and message in result.errors[0], result.err
    assert not (tmp_path / "out").exists()


def test_a_pixel_size_far_from_the_models_names_the_input_once(model, tmp_path, segpipe_cli):
    """`--spacing 2 --unit mm` for a model trained at 1 um: one line naming the file, not the file and then
    the image's name again ("field.tif: field: its pixel size, ..."), and no empty prediction store left."""
    known = save_model(tmp_path / "known", model.state_dict(), model.card.model_copy(update={"spacing_guessed": False}))
    tifffile.imwrite(tmp_path / "field.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64])
    result = segpipe_cli("segment", "-m", known.folder, tmp_path / "field.tif", "--spacing", "2", "--unit", "mm",
                         "-o", tmp_path / "out")
    assert result.code == 2 and len(result.errors) == 1, result.err
    assert result.errors[0].startswith(f"error: {tmp_path / 'field.tif'}: its pixel size, 2000 x 2000 micrometer, is 2000 "
                                       "times the model's"), result.errors
    # the ingested input is kept for the next run; the prediction store opened for it, still empty, is not
    assert (tmp_path / "out" / "images" / "field.ome.zarr").is_dir() and not (tmp_path / "out" / ".predictions").exists()


def test_several_files_processes_give_what_one_thread_gives(model, inputs, tmp_path):
    """The files' side of three inputs in two processes (as beside a GPU) and in one thread: the same labels and counts."""
    from segpipe.pipeline.segment import _pipelined
    from segpipe.pipeline.segment_files import SegmentParams
    from segpipe.data.inputs import find_inputs
    from segpipe.progress import Progress

    predictor = Predictor.load(model, PredictParams(device="cpu"))
    items = find_inputs([str(inputs / "new" / "field.tif"), str(inputs / "new" / "scan.nii.gz"), str(inputs / "01")])
    outcomes = {}
    for processes in (0, 2):
        folder = SegmentFolder(tmp_path / f"out{processes}")
        with Progress(len(items), desc="segment", enabled=False) as bar:
            results = _pipelined(items, predictor, folder, SegmentParams(), processes=processes, bar=bar, progress=False)
        assert [r.name for r in results] == [item.name for item in items] and not [r for r in results if r.error]
        outcomes[processes] = (results, folder)
    (one, thread_folder), (two, process_folder) = outcomes[0], outcomes[2]
    assert [r.objects for r in one] == [r.objects for r in two] and sum(one[0].objects.values()) > 3
    for name in ("field_labels.tif", "01_RES/mask002.tif"):
        np.testing.assert_array_equal(tifffile.imread(process_folder.labels / name), tifffile.imread(thread_folder.labels / name))


def test_files_side_completes_an_input_without_torch(model, inputs, tmp_path):
    """What the files' process is handed (the input, the model, the stores, the network's output)
    unpickles and completes in a fresh interpreter that never imports torch, with the labels the
    same steps give in this process."""
    import pickle
    import subprocess
    import sys

    from segpipe.data.inputs import find_inputs
    from segpipe.pipeline.segment import predict_input
    from segpipe.pipeline.segment_files import SegmentParams, finish_input, prepare_input

    predictor = Predictor.load(model, PredictParams(device="cpu"))
    (item,) = find_inputs([str(inputs / "new" / "field.tif")])
    here, there = SegmentFolder(tmp_path / "here"), SegmentFolder(tmp_path / "there")
    for folder in (here, there):
        store, predictions = prepare_input(item, predictor.model, folder, SegmentParams())
        made = predict_input(store, predictions, predictor)
        if folder is here:
            expected = finish_input(item, store, predictions, made, predictor.card, folder)
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((item, store, predictions, made, predictor.card, there)))
    code = (
        "import pickle, sys\n"
        "from segpipe.pipeline.segment_files import finish_input\n"
        "result = finish_input(*pickle.loads(open(sys.argv[1], 'rb').read()))\n"
        "print(result.objects['field'], 'torch' in sys.modules, 'monai' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(job)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(expected.objects["field"]), "False", "False"]
    assert expected.objects["field"] > 3
    np.testing.assert_array_equal(
        tifffile.imread(there.labels / "field_labels.tif"), tifffile.imread(here.labels / "field_labels.tif")
    )
    assert (there.measurements("field")).read_text() == (here.measurements("field")).read_text()


def test_a_model_of_one_object_size_predicts_each_image_at_the_scale_it_estimates(model, tmp_path, caplog):
    """A field and its copy enlarged twice, no pixel size in either file: each is predicted at the
    scale the model's first predictions estimate (bounded, logged), the labels come back on the
    file's own grid, and the pixel-size warning speaks of the measurements only."""
    import logging

    from scipy import ndimage

    from segpipe.prediction.object_size import MAX_SCALE

    folder = tmp_path / "inbox"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:160, :160]
    tifffile.imwrite(folder / "field.tif", field)
    tifffile.imwrite(folder / "enlarged.tif", ndimage.zoom(field, 2, order=1))
    sized = save_model(tmp_path / "sized", model.state_dict(), model.card.model_copy(update={"object_size": 20.0}))
    with caplog.at_level(logging.INFO):
        segment([str(folder)], Predictor.load(sized, PredictParams(device="cpu")), SegmentFolder(tmp_path / "out"), progress=False)
    scales = {r.args[0]: r.args[1] for r in caplog.records if "objects predicted at" in r.getMessage()}
    assert sorted(scales) == ["enlarged", "field"]
    assert all(1 / MAX_SCALE <= s <= MAX_SCALE and s != 1.0 for s in scales.values())
    for name, shape in (("field", field.shape), ("enlarged", (320, 320))):
        labels = tifffile.imread(tmp_path / "out" / "labels" / f"{name}_labels.tif")
        assert labels.shape == shape and labels.max() > 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "pixel size" in r.getMessage()]
    assert len(warned) == 1 and "for the measurements" in warned[0] and "resampled" not in warned[0]


def test_a_time_series_file_gets_one_label_file_with_every_frame(model, tmp_path):
    """A TIFF of several frames is stored one image per frame; its label file holds them all again,
    each frame the labels the frame gets segmented alone (was: a traceback, "too many values to unpack")."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :128]
    frames = np.stack([field, np.roll(field, 20, axis=1), field[::-1].copy()])
    tifffile.imwrite(tmp_path / "movie.tif", frames, photometric="minisblack", metadata={"axes": "TYX"})
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    results = segment([str(tmp_path / "movie.tif")], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    assert results[0].error is None, results[0].error
    with tifffile.TiffFile(tmp_path / "out" / "labels" / "movie_labels.tif") as written:
        assert written.series[0].axes == "TYX"
        labels = written.asarray()
    assert labels.shape == frames.shape
    for t, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / f"frame{t}.tif", frame)
        segment([str(tmp_path / f"frame{t}.tif")], predictor, SegmentFolder(tmp_path / f"alone{t}"), progress=False)
        alone = tifffile.imread(tmp_path / f"alone{t}" / "labels" / f"frame{t}_labels.tif")
        np.testing.assert_array_equal(labels[t], alone)
    assert labels[0].max() > 3
    with open(tmp_path / "out" / "counts.csv", newline="") as handle:
        counts = list(csv.DictReader(handle))
    assert [int(row["objects"]) for row in counts] == [len(np.unique(f)) - 1 for f in labels]
    with open(tmp_path / "out" / "measurements.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == [t for t, f in enumerate(labels) for _ in range(len(np.unique(f)) - 1)]
    assert "time" not in rows[0]  # the file gives no time between frames


@pytest.mark.parametrize("how", ["ome", "imagej"])
def test_measurements_of_a_time_lapse_give_each_objects_frame_and_time(model, tmp_path, how):
    """The frame was only in the image's name (movie-t003) and the file's time between frames nowhere,
    so tracking or plotting over time needed the names parsed and the interval typed in again."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :128]
    frames = np.stack([field, np.roll(field, 20, axis=1), field[::-1].copy()])
    if how == "ome":  # two minutes between frames
        tifffile.imwrite(tmp_path / "movie.ome.tif", frames, ome=True,
                         metadata={"axes": "TYX", "TimeIncrement": 2.0, "TimeIncrementUnit": "min"})
    else:
        tifffile.imwrite(tmp_path / "movie.ome.tif", frames, imagej=True, metadata={"axes": "TYX", "finterval": 120.0})
    out = SegmentFolder(tmp_path / "out")
    (result,) = segment([str(tmp_path / "movie.ome.tif")], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    assert result.error is None
    labels = tifffile.imread(out.labels / "movie_labels.tif")
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = [t for t, f in enumerate(labels) for _ in range(len(np.unique(f)) - 1)]
    assert [int(r["frame"]) for r in rows] == expected and len(expected) > 6
    assert [float(r["time"]) for r in rows] == [120.0 * t for t in expected] and {r["time_unit"] for r in rows} == {"second"}


def test_each_position_of_an_ome_tiff_is_segmented_as_its_own_input(model, tmp_path):
    """Three positions in one OME-TIFF (two grey fields, one colour the model cannot take): before, the
    first alone was segmented and the others left out with a warning. Each grey position gets the
    labels it gets saved as a file of its own; the colour one fails alone, named with its series."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")
    fields = [field[:96, :128], field[96:192, 128:256]]
    with tifffile.TiffWriter(tmp_path / "plate.ome.tif", ome=True) as tif:
        for pixels in fields:
            tif.write(pixels, metadata={"axes": "YX"})
        colour = np.stack([fields[0], fields[0][::-1], fields[0][:, ::-1]], axis=-1)  # three channels that differ
        tif.write(colour, photometric="rgb", metadata={"axes": "YXS"})
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    results = segment([str(tmp_path / "plate.ome.tif")], predictor, out, progress=False)
    plate = tmp_path / "plate.ome.tif"
    assert [(r.name, r.path, r.status) for r in results] == [
        ("plate_s0", f"{plate} (series 0)", "segmented"), ("plate_s1", f"{plate} (series 1)", "segmented"),
        ("plate_s2", f"{plate} (series 2)", "failed"),
    ]
    assert results[2].error.startswith(f"ModelError: model {model.card.name!r} takes 1 channel(s)")
    for index, pixels in enumerate(fields):
        tifffile.imwrite(tmp_path / f"alone{index}.tif", pixels)
        segment([str(tmp_path / f"alone{index}.tif")], predictor, SegmentFolder(tmp_path / f"alone{index}"), progress=False)
        alone = tifffile.imread(tmp_path / f"alone{index}" / "labels" / f"alone{index}_labels.tif")
        assert alone.max() > 3
        np.testing.assert_array_equal(tifffile.imread(out.labels / f"plate_s{index}_labels.tif"), alone)
    assert sorted(p.name for p in out.labels.iterdir()) == ["plate_s0_labels.tif", "plate_s1_labels.tif"]
    with open(out.root / "counts.csv", newline="") as handle:
        assert [(row["input"], row["status"]) for row in csv.DictReader(handle)] == [(r.path, r.status) for r in results]


def test_a_sequence_whose_later_frame_the_model_does_not_fit_fails_alone(model, tmp_path):
    """A CTC sequence whose first frame is grey and whose second is RGB: the check passes on the
    first frame, so the sequence fails when its frames are read, as its own input; the TIFF beside
    it is segmented and nothing of the sequence is left behind."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    sequence = tmp_path / "02"
    sequence.mkdir()
    tifffile.imwrite(sequence / "t000.tif", field)
    tifffile.imwrite(sequence / "t001.tif", np.stack([field] * 3, axis=-1), photometric="rgb")
    tifffile.imwrite(tmp_path / "grey.tif", field)
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    results = segment([str(sequence), str(tmp_path / "grey.tif")], predictor, out, progress=False)
    by_name = {Path(r.path).name: r for r in results}
    assert by_name["grey.tif"].error is None and by_name["grey.tif"].objects["grey"] > 3
    assert by_name["02"].error.startswith(f"ModelError: model {model.card.name!r} takes 1 channel(s), image '02-t001' has 3")
    assert not list(out.labels.glob("02*")) and (out.labels / "grey_labels.tif").is_file()


def test_an_ome_zarr_input_is_named_without_its_suffix(model, tmp_path):
    """An OME-Zarr that segment wrote, given back as an input: named ``field``, not ``field.ome.zarr``
    (whose store became ``field.ome.zarr.ome.zarr``)."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    tifffile.imwrite(tmp_path / "field.tif", field)
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    first = SegmentFolder(tmp_path / "first")
    segment([str(tmp_path / "field.tif")], predictor, first, progress=False)
    again = SegmentFolder(tmp_path / "again")
    (result,) = segment([str(first.images("field"))], predictor, again, progress=False)
    assert result.error is None and result.name == "field" and list(result.objects) == ["field"]
    assert again.images("field").is_dir() and not (again.root / "images" / "field.ome.zarr.ome.zarr").exists()


def test_a_2d_nifti_stored_with_one_slice_gets_labels_of_its_shape(model, tmp_path):
    """A 2D NIfTI written as (x, y, 1), as nnU-Net and most converters do, gets labels (x, y, 1) with
    its affine, the same labels as the file written (x, y); before, both got (x, y)."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :112].T.astype(np.float32)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(field[:, :, None], affine), tmp_path / "slice.nii.gz")
    nib.save(nib.Nifti1Image(field, affine), tmp_path / "plane.nii.gz")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    segment([str(tmp_path / "slice.nii.gz"), str(tmp_path / "plane.nii.gz")], predictor, out, progress=False)
    slice_labels = nib.load(out.labels / "slice_labels.nii.gz")
    plane_labels = nib.load(out.labels / "plane_labels.nii.gz")
    assert slice_labels.shape == (112, 96, 1) and plane_labels.shape == (112, 96)
    np.testing.assert_allclose(slice_labels.affine, affine)
    assert np.asarray(plane_labels.dataobj).max() > 3
    np.testing.assert_array_equal(np.asarray(slice_labels.dataobj)[:, :, 0], np.asarray(plane_labels.dataobj))


def test_a_second_run_into_a_folder_being_written_is_refused(model, tmp_path):
    """Two runs into one --output at once both wrote the same files and tables (one run's rows lost)."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    tifffile.imwrite(tmp_path / "a.tif", field)
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    with out.writing():  # another run, in this process
        with pytest.raises(InputError, match=rf"^{out.root}: another segpipe segment is writing here \(process {os.getpid()}\); "):
            segment([str(tmp_path / "a.tif")], predictor, out, progress=False)
        assert not out.counts.exists() and not out.labels.exists()
    results = segment([str(tmp_path / "a.tif")], predictor, out, progress=False)  # once it has ended
    assert results[0].error is None and out.counts.is_file()


def test_a_folder_on_a_filesystem_without_locks_is_written_with_a_warning(model, tmp_path, monkeypatch, caplog):
    """Some cluster mounts refuse flock (ENOLCK): the run goes on unlocked and says so once for the
    folder and once for its image collection (every input failed there, "No locks available")."""
    import errno
    import fcntl
    import logging

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    tifffile.imwrite(tmp_path / "field.tif", tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96])
    monkeypatch.setattr(fcntl, "flock", no_locks)  # no such filesystem here: the call fails as it does there
    with caplog.at_level(logging.WARNING):
        results = segment([str(tmp_path / "field.tif")], Predictor.load(model, PredictParams(device="cpu")),
                          SegmentFolder(tmp_path / "out"), progress=False)
    assert results[0].error is None and results[0].objects["field"] > 3
    (warned,) = [r.getMessage() for r in caplog.records if "cannot lock the folder" in r.getMessage()]
    assert "No locks available" in warned and "not kept out" in warned
    (collection,) = [r.getMessage() for r in caplog.records if "cannot lock the image collection" in r.getMessage()]
    assert "not kept apart" in collection  # the images' OME-Zarr collection, updated per input, said once


def test_a_nifti_time_series_is_refused_with_the_axes_that_read_it(model, tmp_path, segpipe_cli):
    """A 2D time series stored as NIfTI (x, y, 1, t): its 4th axis reads as channels (the Medical
    Segmentation Decathlon's modalities), so a one-channel model refuses it; the line names
    --axes XYZT, which then segments every frame."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96].T.astype(np.float32)
    nib.save(nib.Nifti1Image(np.stack([np.roll(field, 5 * t, axis=0) for t in range(3)], axis=-1)[:, :, None, :], np.eye(4)),
             tmp_path / "movie.nii.gz")
    refused = segpipe_cli("segment", "-m", model.folder, tmp_path / "movie.nii.gz", "--no-tta", "-o", tmp_path / "out")
    assert refused.code == 2
    assert "this image has 3; choose them with --channels; or, if they are time points, give --axes XYZT" in refused.err
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    (result,) = segment([str(tmp_path / "movie.nii.gz")], predictor, SegmentFolder(tmp_path / "out"),
                        SegmentParams(axes="XYZT"), progress=False)
    assert result.error is None and result.images == ["movie-t000", "movie-t001", "movie-t002"]
    assert all(result.objects[name] > 3 for name in result.images)
    labels = nib.load(tmp_path / "out" / "labels" / "movie_labels.nii.gz")
    assert labels.shape[:2] == (96, 96) and labels.shape[-1] == 3



def test_an_input_keeps_its_name_when_another_of_the_same_name_arrives(model, tmp_path):
    """``a.tif`` was segmented as ``a``; when ``a.png`` arrived in the folder the next run named them
    ``in_a`` and ``in_a_``: ``a.tif`` was segmented again under a new name and ``a_labels.tif`` left stale."""
    import csv

    from skimage.io import imsave

    folder = tmp_path / "in"
    folder.mkdir()
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    tifffile.imwrite(folder / "a.tif", field)
    out = SegmentFolder(tmp_path / "out")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    segment([str(folder)], predictor, out, progress=False)
    first = tifffile.imread(out.labels / "a_labels.tif")
    imsave(folder / "a.png", np.rot90(field), check_contrast=False)
    results = {Path(r.path).name: r for r in segment([str(folder)], predictor, out, progress=False)}
    kept, new = results["a.tif"], results["a.png"]
    assert (kept.name, kept.status) == ("a", "unchanged")
    assert new.name == "in_a" and new.status == "segmented"
    np.testing.assert_array_equal(tifffile.imread(out.labels / "a_labels.tif"), first)
    assert sorted(p.name for p in out.labels.iterdir()) == ["a_labels.tif", "in_a_labels.tif"]
    assert sorted(p.name for p in (out.root / "images").iterdir()) == ["a.ome.zarr", "in_a.ome.zarr"]
    with open(out.counts, newline="") as handle:
        assert sorted((row["image"], row["status"]) for row in csv.DictReader(handle)) == [("a", "unchanged"), ("in_a", "segmented")]
    assert segment([str(folder / "a.png")], predictor, out, progress=False)[0].name == "in_a"  # alone, too


def test_a_folder_moved_with_its_output_is_unchanged_under_its_names(model, tmp_path):
    """A project folder moved (inbox and output) was segmented again at its new place, every file
    under a second name (``in_a`` beside ``a``): the names were kept by absolute path, and the
    store's fingerprint held the input's folder."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    for day in ("day1", "day2"):
        (tmp_path / "lab" / "in" / day).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "lab" / "in" / day / "a.tif", field if day == "day1" else field.T.copy())
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    before = {r.path: r.name for r in segment([str(tmp_path / "lab/in/*/*.tif")], predictor,
                                               SegmentFolder(tmp_path / "lab" / "out"), progress=False)}
    labels = {name: tifffile.imread(tmp_path / "lab" / "out" / "labels" / f"{name}_labels.tif") for name in before.values()}
    shutil.move(tmp_path / "lab", tmp_path / "moved")
    out = SegmentFolder(tmp_path / "moved" / "out")
    after = segment([str(tmp_path / "moved/in/*/*.tif")], predictor, out, progress=False)
    assert {r.path.replace(f"{tmp_path}/moved/", f"{tmp_path}/lab/"): r.name for r in after} == before
    assert {r.status for r in after} == {"unchanged"}
    assert sorted(p.name for p in out.labels.iterdir()) == sorted(f"{name}_labels.tif" for name in before.values())
    for name, kept in labels.items():
        np.testing.assert_array_equal(tifffile.imread(out.labels / f"{name}_labels.tif"), kept)
    assert json.loads(out.names.read_text()) == {r.path: r.name for r in after}  # the old places are gone


def test_another_image_of_the_same_size_and_time_at_a_new_place_is_segmented_under_a_new_name(model, tmp_path):
    """A gone file's name went to any file of its name, and the store, keyed by the file's name,
    took the new one on its size and time: another image from the same camera (same size),
    unpacked with the same time, was reported unchanged with the first image's labels."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    for run, image in (("run1", field), ("run2", np.ascontiguousarray(field[::-1]))):
        (tmp_path / run).mkdir()
        tifffile.imwrite(tmp_path / run / "img.tif", image)
        os.utime(tmp_path / run / "img.tif", ns=(10**18, 10**18))
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    out = SegmentFolder(tmp_path / "out")
    (first,) = segment([str(tmp_path / "run1")], predictor, out, progress=False)
    shutil.rmtree(tmp_path / "run1")
    (second,) = segment([str(tmp_path / "run2")], predictor, out, progress=False)
    assert (first.name, second.name, second.status) == ("img", "run2_img", "segmented")
    assert not np.array_equal(tifffile.imread(out.labels / "run2_img_labels.tif"), tifffile.imread(out.labels / "img_labels.tif"))


def test_names_given_by_a_run_that_ended_as_this_one_started_are_not_given_again(model, tmp_path):
    """Names were read before the folder's lock: a run that gave `a` to `old/a.tif` and ended
    between this run's read and its lock left `new/a.tif` named `a` too, and its labels overwritten."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    for folder in ("new", "old"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "a.tif", field)
    other = str(tmp_path / "old" / "a.tif")  # still there: not the same input moved

    class EndedAsThisStarted(SegmentFolder):
        def writing(self):
            self.root.mkdir(parents=True, exist_ok=True)
            self.names.write_text(json.dumps({other: "a"}))  # the other run's last step
            return super().writing()

    out = EndedAsThisStarted(tmp_path / "out")
    (result,) = segment([str(tmp_path / "new" / "a.tif")], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    assert result.error is None and result.name != "a"
    assert json.loads(out.names.read_text()) == {other: "a", str(tmp_path / "new" / "a.tif"): result.name}
    assert (out.labels / f"{result.name}_labels.tif").is_file() and not (out.labels / "a_labels.tif").exists()


def test_an_image_whose_background_is_not_zero_is_warned_about_where_the_model_leaves_zeros_out(model, tmp_path, caplog):
    import logging

    from segpipe.inference.normalize import NormalizationSpec

    spec = NormalizationSpec(method="zscore", low=0.5, high=99.5, nonzero=True)
    mri_like = save_model(tmp_path / "nonzero", model.state_dict(), model.card.model_copy(update={"normalization": spec}))
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96].astype(np.float32)
    field[field < np.percentile(field, 50)] = 0  # a stripped background
    tifffile.imwrite(tmp_path / "stripped.tif", field)
    tifffile.imwrite(tmp_path / "shifted.tif", field + 100)
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        results = segment([str(tmp_path / "stripped.tif"), str(tmp_path / "shifted.tif")],
                          Predictor.load(mri_like, PredictParams(device="cpu")), SegmentFolder(tmp_path / "out"), progress=False)
    assert [r.error for r in results] == [None, None]
    (said,) = [r.getMessage() for r in caplog.records if "background" in r.getMessage() and "is 0" in r.getMessage()]
    assert said.startswith("shifted: 0.0% of the image is 0") and "bring a background at another value (an offset) to 0 first" in said


def test_nifti_objects_are_placed_in_the_files_world_coordinates(model, tmp_path):
    """Centroids were measured from the array's corner only: a scan stored flipped got other
    numbers for the same anatomy. world-x/y/z are where the affine puts them, as Slicer shows them."""
    from nibabel.affines import apply_affine
    from scipy import ndimage

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :128].T.astype(np.float32)  # (x, y)
    plain = np.array([[1.0, 0, 0, -40], [0, 1, 0, 12], [0, 0, 1, 3], [0, 0, 0, 1]])
    flipped = plain.copy()
    flipped[:, 0] *= -1
    flipped[:3, 3] = apply_affine(plain, (field.shape[0] - 1, 0, 0))  # the same world for the flipped array
    nib.save(nib.Nifti1Image(field, plain), tmp_path / "plain.nii.gz")
    nib.save(nib.Nifti1Image(field[::-1].copy(), flipped), tmp_path / "flipped.nii.gz")
    in_microns = nib.Nifti1Image(field, plain)
    in_microns.header.set_xyzt_units("micron")
    nib.save(in_microns, tmp_path / "microns.nii.gz")
    predictor = Predictor.load(model, PredictParams(device="cpu", inference={"flip_tta": False}))
    out = SegmentFolder(tmp_path / "out")
    segment([str(tmp_path / f"{n}.nii.gz") for n in ("plain", "flipped", "microns")], predictor, out, progress=False)
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # the world's unit is the file's, which the unit column (the model's) need not be
    assert {(r["image"], r["world_unit"]) for r in rows} == {("plain", ""), ("flipped", ""), ("microns", "micrometer")}
    for name, affine in (("plain", plain), ("flipped", flipped)):
        labels = np.asarray(nib.load(out.labels / f"{name}_labels.nii.gz").dataobj)
        mine = [r for r in rows if r["image"] == name]
        ids = [int(r["label"]) for r in mine]
        expected = apply_affine(affine, [(*c, 0) for c in ndimage.center_of_mass(labels > 0, labels, ids)])
        got = np.array([[float(r[f"world-{a}"]) for a in "xyz"] for r in mine])
        assert len(ids) > 3
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_nifti_labels_keep_the_space_their_image_was_placed_in(model, tmp_path):
    """Labels were written as ``aligned`` whatever the image said: an image registered to MNI space
    (sform code 4) got labels a viewer no longer showed in MNI space; a scanner-space image
    (qform only, code 1) got ``aligned`` too. A file with neither code gets labels with neither."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64].T.astype(np.float32)
    mni = nib.Nifti1Image(field, np.diag([1.0, 1.0, 1.0, 1.0]))
    mni.set_sform(mni.affine, code="mni")
    mni.set_qform(None, code="unknown")
    scanner = nib.Nifti1Image(field, np.diag([1.0, 1.0, 1.0, 1.0]))
    scanner.set_sform(None, code="unknown")
    scanner.set_qform(scanner.affine, code="scanner")
    bare = nib.Nifti1Image(field, None)
    for name, image in (("mni", mni), ("scanner", scanner), ("bare", bare)):
        nib.save(image, tmp_path / f"{name}.nii.gz")
    predictor = Predictor.load(model, PredictParams(device="cpu", inference={"flip_tta": False}))
    out = SegmentFolder(tmp_path / "out")
    segment([str(tmp_path / f"{n}.nii.gz") for n in ("mni", "scanner", "bare")], predictor, out, progress=False)
    codes = {}
    for name in ("mni", "scanner", "bare"):
        header = nib.load(out.labels / f"{name}_labels.nii.gz").header
        codes[name] = (int(header["sform_code"]), int(header["qform_code"]))
    assert codes == {"mni": (4, 4), "scanner": (1, 1), "bare": (0, 0)}


def test_a_nifti_without_sform_or_qform_gets_labels_placed_as_it_is_and_no_world_columns(model, tmp_path):
    """A file with neither code places nothing; its labels were written with code 2 (aligned) and
    nibabel's stand-in affine (x flipped, centred), which a viewer following the NIfTI spec (voxel
    times pixdim) shows mirrored against the image, and its world columns came from that stand-in."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :80].T.astype(np.float32)  # (x, y)
    bare = nib.Nifti1Image(field[..., None], None)
    bare.header.set_zooms((0.5, 0.5, 2.0))
    nib.save(bare, tmp_path / "bare.nii.gz")
    predictor = Predictor.load(model, PredictParams(device="cpu", inference={"flip_tta": False}))
    out = SegmentFolder(tmp_path / "out")
    segment([str(tmp_path / "bare.nii.gz")], predictor, out, progress=False)
    source, labels = nib.load(tmp_path / "bare.nii.gz"), nib.load(out.labels / "bare_labels.nii.gz")
    assert (int(labels.header["sform_code"]), int(labels.header["qform_code"])) == (0, 0)
    assert labels.header.get_zooms()[:2] == source.header.get_zooms()[:2] and labels.shape == source.shape
    # whatever a reader makes of no codes, it makes of both (the one slice's thickness aside: a 2D model's labels say 1)
    np.testing.assert_allclose(labels.affine[:, [0, 1, 3]], source.affine[:, [0, 1, 3]])
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and "world-x" not in rows[0]


def test_a_sheared_sform_is_kept_exactly_and_no_qform_approximates_it(model, tmp_path):
    """A tilted CT gantry gives an sform with shear, which no qform can hold: the labels got a qform
    (code 1) of nibabel's shear-free approximation, placing voxels up to centimetres from the sform."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64].T.astype(np.float32)
    sheared = np.array([[1.0, 0.3, 0.0, -10.0], [0.0, 1.0, 0.0, 5.0], [0.0, 0.0, 2.0, 0.0], [0, 0, 0, 1.0]])
    scan = nib.Nifti1Image(field[..., None], sheared)
    scan.set_sform(sheared, code="scanner")
    scan.set_qform(None, code="unknown")
    nib.save(scan, tmp_path / "tilted.nii.gz")
    predictor = Predictor.load(model, PredictParams(device="cpu", inference={"flip_tta": False}))
    out = SegmentFolder(tmp_path / "out")
    segment([str(tmp_path / "tilted.nii.gz")], predictor, out, progress=False)
    header = nib.load(out.labels / "tilted_labels.nii.gz").header
    written, code = header.get_sform(coded=True)
    np.testing.assert_allclose(written, sheared, atol=1e-6)
    assert (int(code), int(header["qform_code"])) == (1, 0)
    # a pixel is a parallelogram of edges (1, 0) and (0.3, 1): 1 mm2, not the edges' product 1.044 mm2
    labels = np.asarray(nib.load(out.labels / "tilted_labels.nii.gz").dataobj)[..., 0]
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert len(rows) == len(ids) > 3
    np.testing.assert_allclose([float(r["area"]) for r in rows], counts * 1.0, rtol=1e-5)


def test_a_class_map_models_measurements_name_each_class(model_card, tmp_path):
    """Rows of a class map are classes, not objects: `label` 1/2 alone left the user to look up which."""
    import torch

    from segpipe.models.model import network_from_card

    card = model_card(2, classes=["background", "grey", "white"], instances=False, out_channels=3, postprocess=None,
                      network_options={"features": [4, 4, 4, 4, 4, 4]})
    torch.manual_seed(0)
    tissue = save_model(tmp_path / "tissue", network_from_card(card).state_dict(), card)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    image[16:48, 16:48] += 2.0  # something besides noise (a field of noise alone is background, no classes)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = SegmentFolder(tmp_path / "out")
    (result,) = segment([str(tmp_path / "a.tif")], Predictor.load(tissue, PredictParams(device="cpu")), out, progress=False)
    labels = tifffile.imread(out.labels / "a_labels.tif")
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert result.error is None and rows and [(r["label"], r["class"]) for r in rows] == [
        (str(k), card.classes[k]) for k in np.unique(labels[labels > 0])]
    assert [float(r["area"]) for r in rows] == [float(np.sum(labels == int(r["label"]))) for r in rows]


def test_world_centroids_of_a_volume_read_plane_by_plane_take_the_planes_place():
    """With --axes XYT each plane of a NIfTI volume is a frame: every object got plane 0's world z."""
    from types import SimpleNamespace

    from segpipe.pipeline.segment_files import world_centroids

    affine = [[0.5, 0, 0, 10.0], [0, 0.5, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]]
    columns = {"label": np.array([1, 2]), "centroid-y": np.array([1.0, 3.0]), "centroid-x": np.array([2.0, 4.0])}
    image = SimpleNamespace(info={"affine": affine, "source_axes": "XYT", "world": "scanner"})
    world = world_centroids(columns, image, (0.5, 0.5), frame=7)
    # voxel (i, j, k) = (x / 0.5, y / 0.5, plane 7)
    np.testing.assert_allclose(np.stack([world["world-x"], world["world-y"], world["world-z"]]),
                               [[10 + 2.0, 10 + 4.0], [20 + 1.0, 20 + 3.0], [-30 + 14.0, -30 + 14.0]])


def test_channels_are_chosen_by_the_names_an_ome_tiff_gives_them(model, tmp_path, segpipe_cli):
    """`--channels nuclei` failed with "Input should be a valid integer" though the file names its
    channels: a name now reads that channel, as its number does; a name the file lacks fails in one line."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :128]
    stack = np.stack([field[::-1], field])  # the nuclei second
    tifffile.imwrite(tmp_path / "two.ome.tif", stack, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["cyto", "nuclei"]}})
    args = ["segment", "--model", model.folder, tmp_path / "two.ome.tif", "--device", "cpu"]
    assert segpipe_cli(*args, "--output", tmp_path / "number", "--channels", "1").code == 0
    assert segpipe_cli(*args, "--output", tmp_path / "name", "--channels", "nuclei").code == 0
    by_name = tifffile.imread(tmp_path / "name" / "labels" / "two_labels.tif")
    assert by_name.max() > 3
    np.testing.assert_array_equal(by_name, tifffile.imread(tmp_path / "number" / "labels" / "two_labels.tif"))
    # the intensity column is named as the file names the channel (it was mean_intensity-0: the first read)
    for run in ("number", "name"):
        header = (tmp_path / run / "measurements" / "two.csv").read_text().splitlines()[0].split(",")
        assert [c for c in header if c.startswith("mean_intensity")] == ["mean_intensity-nuclei"], header
    tifffile.imwrite(tmp_path / "plain.tif", stack, metadata={"axes": "CYX"})  # no names: the file's number
    plain = ["segment", "--model", model.folder, tmp_path / "plain.tif", "--device", "cpu", "--output", tmp_path / "plain"]
    assert segpipe_cli(*plain, "--channels", "1").code == 0
    header = (tmp_path / "plain" / "measurements" / "plain.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if c.startswith("mean_intensity")] == ["mean_intensity-1"], header
    refused = segpipe_cli(*args, "--output", tmp_path / "wrong", "--channels", "DAPI")
    assert refused.code == 2 and refused.errors == [
        f"error: {tmp_path / 'two.ome.tif'}: --channels DAPI: no channel of that name (its channels are named cyto, nuclei); "
        "or give numbers, counted from 0"], refused.errors


def test_a_sequence_missing_a_frame_fails_alone(model, tmp_path):
    """A CTC folder without t001.tif stopped the whole run, the good image beside it unsegmented."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    (tmp_path / "in" / "01").mkdir(parents=True)
    for t in (0, 2):
        tifffile.imwrite(tmp_path / "in" / "01" / f"t{t:03d}.tif", field)
    tifffile.imwrite(tmp_path / "in" / "good.tif", field)
    results = segment([str(tmp_path / "in" / "01"), str(tmp_path / "in" / "good.tif")],
                      Predictor.load(model, PredictParams(device="cpu")), SegmentFolder(tmp_path / "out"), progress=False)
    assert [r.status for r in results] == ["failed", "segmented"]
    assert "frame t001.tif is missing between t000 and t002" in results[0].error


def test_measurements_of_a_ctc_sequence_give_each_objects_frame(model, tmp_path):
    """A CTC sequence's frames are files of their own: their rows had no frame, where a time-series
    file's had one."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :96]
    (tmp_path / "02").mkdir()
    for t in (3, 4):  # a sequence need not start at 0
        tifffile.imwrite(tmp_path / "02" / f"t{t:03d}.tif", np.roll(field, 8 * t, axis=1))
    out = SegmentFolder(tmp_path / "out")
    (result,) = segment([str(tmp_path / "02")], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    assert result.error is None
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["image"], r["frame"]) for r in rows} == {("02-t003", "3"), ("02-t004", "4")}


def test_floats_from_0_to_1_are_segmented_as_the_same_image_in_integers(model, tmp_path):
    """Floats from 0 to 1 (a field saved from Python or Fiji's 32-bit) met the training images'
    intensity floor, in their integer units: the whole image read as nearly 0 and a walk-through
    found 16 of 28 nuclei at IoU 0.003. They are now scaled by their own range."""
    from segpipe.scoring.instances import match_instances

    assert model.card.normalization.floor_for == "uint8"  # the crops' type
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:128, :128]
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "counts.tif", field)
    tifffile.imwrite(tmp_path / "in" / "floats.tif", (field / float(np.iinfo(field.dtype).max)).astype(np.float32))
    out = SegmentFolder(tmp_path / "out")
    results = segment([str(tmp_path / "in")], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    assert all(r.error is None for r in results)
    counts, floats = (tifffile.imread(out.labels / f"{name}_labels.tif") for name in ("counts", "floats"))
    assert counts.max() > 5
    assert match_instances(counts, floats, thresh=0.9).f1 > 0.95  # 1.0 here
    from segpipe.models.model import Model, save_model  # the same weights with a card that floors every image

    predictor = Predictor.load(model, PredictParams(device="cpu"))
    everyone = model.card.normalization.model_copy(update={"floor_for": None})
    save_model(tmp_path / "before", predictor.network.state_dict(), model.card.model_copy(update={"normalization": everyone}))
    before = SegmentFolder(tmp_path / "out_before")
    segment([str(tmp_path / "in")], Predictor.load(Model.open(tmp_path / "before"), PredictParams(device="cpu")), before, progress=False)
    # 0.49 with the suite's model trained on one thread per worker, 0.86 with it trained on two (pytest -n 0)
    assert match_instances(counts, tifffile.imread(before.labels / "floats_labels.tif"), thresh=0.9).f1 < 0.9


def test_the_reports_view_of_a_large_image_is_read_every_few_pixels(tmp_path):
    """The report read a 75-megapixel field and its labels whole for one figure (9 GiB); a view
    now holds at most 2048^2 pixels (256^3 voxels), every n-th along each axis."""
    import zarr

    from segpipe.data.store import StoredImage
    from segpipe.pipeline.segment import sample_view
    from segpipe.report.orientation import view_step

    assert view_step((2048, 2048)) == 1 and view_step((3000, 3000)) == 2 and view_step((8192, 9216)) == 5
    assert view_step((200, 1024, 1024)) == 3 and view_step((64, 128, 128)) == 1
    pixels = np.arange(3000 * 3000, dtype=np.uint32).reshape(1, 3000, 3000)
    image = zarr.create_array(str(tmp_path / "i.zarr"), shape=pixels.shape, dtype=pixels.dtype, chunks=(1, 512, 512))
    image[...] = pixels
    labels = zarr.create_array(str(tmp_path / "l.zarr"), shape=(3000, 3000), dtype=np.uint32, chunks=(512, 512))
    labels[...] = pixels[0] % 5
    stored = StoredImage("big", "test", image, None, (0.5, 0.5), {"name": "big"})
    (name, view, plane), turned = sample_view(stored, labels, ndim=2, spacing=(0.5, 0.5))
    assert name == "big" and turned is None and view.shape == (1, 1500, 1500) and plane.shape == (1500, 1500)
    np.testing.assert_array_equal(view, pixels[:, ::2, ::2])
    np.testing.assert_array_equal(plane, pixels[0, ::2, ::2] % 5)


def test_each_frame_of_a_series_is_written_as_soon_as_it_is_predicted(model, tmp_path):
    """Frames predicted in memory were labelled only when the whole series was: a walk-through
    stopped after 14 of 24 planes and the rerun predicted all again. After the network stage each
    frame is complete in the prediction store (a rerun skips it), and the labels are those of the
    frames segmented one by one."""
    from segpipe.data.inputs import find_inputs
    from segpipe.pipeline.segment import predict_input
    from segpipe.pipeline.segment_files import SegmentParams, prepare_input

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "series.tif", np.stack([np.roll(field, 9 * t, axis=1) for t in range(3)]),
                     metadata={"axes": "TYX"}, photometric="minisblack")
    tifffile.imwrite(tmp_path / "in" / "one.tif", np.roll(field, 18, axis=1))
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    (item,) = find_inputs([str(tmp_path / "in" / "series.tif")])
    store, predictions = prepare_input(item, model, SegmentFolder(tmp_path / "out"), SegmentParams())
    made = predict_input(store, predictions, predictor)
    assert len(made) == 3 and all(predictions.stamp(name) == m.stamp for name, m in zip(store.names(), made))
    out = SegmentFolder(tmp_path / "whole")
    segment([str(tmp_path / "in")], predictor, out, progress=False)
    np.testing.assert_array_equal(tifffile.imread(out.labels / "series_labels.tif")[2], tifffile.imread(out.labels / "one_labels.tif"))


def test_a_series_segmented_again_with_other_settings_gets_new_labels_and_measurements(model, tmp_path):
    """Frames written as they were predicted came back as 'current': a rerun with other settings
    reported the series unchanged and kept the first run's label file and measurements."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "series.tif", np.stack([np.roll(field, 9 * t, axis=1) for t in range(3)]),
                     metadata={"axes": "TYX"}, photometric="minisblack")
    out = SegmentFolder(tmp_path / "out")
    for overlap in (0.5, 0.25):
        params = PredictParams(device="cpu", inference={"overlap": overlap})
        (result,) = segment([str(tmp_path / "in")], Predictor.load(model, params), out, progress=False)
        assert result.status == "segmented", result
        alone = SegmentFolder(tmp_path / f"alone{overlap}")
        segment([str(tmp_path / "in")], Predictor.load(model, params), alone, progress=False)
        np.testing.assert_array_equal(tifffile.imread(out.labels / "series_labels.tif"), tifffile.imread(alone.labels / "series_labels.tif"))
        assert (out.measurements("series")).read_text() == alone.measurements("series").read_text()
    (again,) = segment([str(tmp_path / "in")], Predictor.load(model, params), out, progress=False)
    assert again.status == "unchanged"  # the same settings: kept


def test_a_folder_segmented_with_another_model_before_is_warned_of_once(model, tmp_path, caplog):
    """A second model into the first one's folder: its inputs are segmented again, any other input
    there keeps the first model's labels; that was said only per input, at INFO. Now one warning,
    and none when the same model segments there again."""
    import logging

    from segpipe.models.shipped import CELLS_2D, shipped_model

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    tifffile.imwrite(tmp_path / "a.tif", field)
    tifffile.imwrite(tmp_path / "b.tif", np.rot90(field))
    out = SegmentFolder(tmp_path / "out")
    segment([str(tmp_path / "a.tif")], Predictor.load(model, PredictParams(device="cpu")), out, progress=False)
    generalist = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    with caplog.at_level(logging.WARNING):
        segment([str(tmp_path / "b.tif")], generalist, out, progress=False)
        segment([str(tmp_path / "b.tif")], generalist, out, progress=False)
    (warned,) = [r.getMessage() for r in caplog.records if "another model" in r.getMessage()]
    assert warned.startswith(f"{tmp_path / 'out'} was segmented with another model before ({model.card.name}, {model.folder})")
    assert "this run's inputs get the labels of cells-2d" in warned


def test_a_glob_over_the_output_folder_does_not_take_what_segpipe_wrote_as_new_inputs(model, tmp_path):
    """`segment 'data/**/*' -o data/seg`: each rerun segmented the last run's labels (and report
    figures, zarr copies) as new images, `a_labels`, then `a_labels_labels`, ..."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "a.tif", field)
    out = SegmentFolder(tmp_path / "data" / "seg")
    predictor = Predictor.load(model, PredictParams(device="cpu"))
    for _ in range(2):
        results = segment([str(tmp_path / "data" / "**" / "*")], predictor, out, progress=False)
        assert [r.name for r in results] == ["a"], [r.name for r in results]
    assert (out.labels / "a_labels.tif").is_file() and (out.root / "figures").is_dir()
    assert sorted(p.name for p in out.labels.iterdir()) == ["a_labels.tif"]


def test_a_nifti_volumes_planes_read_as_frames_get_labels_in_the_volumes_layout_and_world_z(model, tmp_path):
    """`--axes XYT` on a (x, y, z) scan: the labels came out (x, y, 1, t), which no viewer overlays on
    the scan, and every object's world-z was 0 though the affine puts plane k at z = 2k."""
    import csv

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:96, :96]
    volume = np.stack([np.roll(field, 9 * k, axis=1) for k in range(3)]).astype(np.float32)  # (z, y, x)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), affine), tmp_path / "scan.nii.gz")
    out = SegmentFolder(tmp_path / "out")
    (result,) = segment([str(tmp_path / "scan.nii.gz")], Predictor.load(model, PredictParams(device="cpu")), out,
                        SegmentParams(axes="XYT"), progress=False)
    assert result.error is None, result.error
    labels = nib.load(out.labels / "scan_labels.nii.gz")
    assert labels.shape == (96, 96, 3)
    np.testing.assert_allclose(labels.affine, affine)
    planes = np.asarray(labels.dataobj).transpose(2, 1, 0)
    assert all(planes[k].max() > 3 for k in range(3))
    assert (volume[planes > 0].mean() > 2 * volume[planes == 0].mean())  # the objects lie on the bright nuclei
    with open(out.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["frame"], float(r["world-z"])) for r in rows} == {("0", 0.0), ("1", 2.0), ("2", 4.0)}

    # the same file with neither an sform nor a qform: its labels keep its voxel sizes, the planes' 2 too,
    # so a viewer placing both by pixdim overlays them (they came out 1 apart); no world columns
    bare = nib.Nifti1Image(volume.transpose(2, 1, 0), None)
    bare.header.set_zooms((0.5, 0.5, 2.0))
    nib.save(bare, tmp_path / "bare.nii.gz")
    segment([str(tmp_path / "bare.nii.gz")], Predictor.load(model, PredictParams(device="cpu")), out,
            SegmentParams(axes="XYT"), progress=False)
    labels = nib.load(out.labels / "bare_labels.nii.gz")
    assert labels.header.get_zooms() == (0.5, 0.5, 2.0) and labels.shape == (96, 96, 3)
    assert (int(labels.header["sform_code"]), int(labels.header["qform_code"])) == (0, 0)
    np.testing.assert_allclose(labels.affine, nib.load(tmp_path / "bare.nii.gz").affine)
    with open(out.table, newline="") as handle:
        assert not any(r.get("world-x") for r in csv.DictReader(handle) if r["image"].startswith("bare"))


def test_a_2d_model_on_a_3d_ctc_sequence_writes_one_mask_per_time_point(model, tmp_path, segpipe_cli):
    """--axes TYX read each 3D frame's planes as frames: 02_RES held a mask per plane, t001's planes over t000's."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    (tmp_path / "02").mkdir()
    for t in (0, 1):
        tifffile.imwrite(tmp_path / "02" / f"t{t:03d}.tif", np.stack([np.roll(field, 6 * (t * 3 + z), axis=1) for z in range(3)]),
                         imagej=True, metadata={"axes": "ZYX"})
    result = segpipe_cli("segment", tmp_path / "02", "--model", model.folder, "--axes", "TYX", "--output", tmp_path / "out",
                         "--device", "cpu")
    assert result.code == 0, result.err
    masks = sorted((tmp_path / "out" / "labels" / "02_RES").glob("mask*.tif"))
    assert [m.name for m in masks] == ["mask000.tif", "mask001.tif"]
    second = tifffile.imread(masks[1])
    assert second.shape == (3, 64, 64)
    ids = [set(np.unique(plane[plane > 0])) for plane in second]
    assert all(ids) and not (ids[0] & ids[1]) and not (ids[1] & ids[2])  # each plane's objects numbered apart
    assert not np.array_equal(tifffile.imread(masks[0]) > 0, second > 0)  # t000's own, not t001's


def test_a_2d_model_on_a_z_stack_writes_its_labels_as_the_stack(model, tmp_path, segpipe_cli):
    """--axes TYX on an ImageJ z-stack wrote the labels as 3 time points without the z step: Fiji could not overlay them."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    stack = np.stack([np.roll(field, 6 * z, axis=1) for z in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 2.5, "unit": "um"})
    result = segpipe_cli("segment", tmp_path / "stack.tif", "--model", model.folder, "--axes", "TYX", "--no-resample",
                         "--output", tmp_path / "out", "--device", "cpu")
    assert result.code == 0, result.err
    with tifffile.TiffFile(tmp_path / "out" / "labels" / "stack_labels.tif") as written:
        assert written.series[0].axes == "ZYX" and written.series[0].shape == (3, 64, 64)
        meta = written.imagej_metadata
        assert meta["slices"] == 3 and meta["spacing"] == pytest.approx(2.5) and "frames" not in meta
        x_res = written.pages[0].tags["XResolution"].value
        assert x_res[1] / x_res[0] == pytest.approx(0.5)


def test_the_second_position_of_an_ome_tiff_keeps_its_own_time_series_layout(model, tmp_path, segpipe_cli):
    """A time-lapse second position of an OME-TIFF whose first is a z-stack got its labels written
    as a z-stack with the first position's z step: the export looked at the file's first series."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64]
    planes = np.stack([np.roll(field, 6 * k, axis=1) for k in range(3)])
    with tifffile.TiffWriter(tmp_path / "mixed.ome.tif", ome=True) as tif:
        tif.write(planes, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
        tif.write(planes, metadata={"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "TimeIncrement": 60.0,
                                    "TimeIncrementUnit": "s"})
    result = segpipe_cli("segment", tmp_path / "mixed.ome.tif", "--model", model.folder, "--axes", "TYX", "--no-resample",
                         "--output", tmp_path / "out", "--device", "cpu")
    assert result.code == 0, result.err
    with tifffile.TiffFile(tmp_path / "out" / "labels" / "mixed_s0_labels.tif") as stack:
        assert stack.series[0].axes == "ZYX" and stack.imagej_metadata["spacing"] == pytest.approx(2.0)
    with tifffile.TiffFile(tmp_path / "out" / "labels" / "mixed_s1_labels.tif") as movie:
        meta = movie.imagej_metadata
        assert movie.series[0].axes == "TYX" and meta["frames"] == 3 and "slices" not in meta
        assert meta["finterval"] == pytest.approx(60.0)


def test_a_nifti_time_series_keeps_its_time_step(model, tmp_path, segpipe_cli):
    """A 4D NIfTI's 30 s between frames became pixdim[4] = 1 with no time unit in the labels."""
    import nibabel as nib

    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:64, :64].astype(np.int16)
    movie = np.stack([np.roll(field.T, 5 * t, axis=0) for t in range(3)], axis=-1)[:, :, None, :]  # (x, y, 1, t)
    source = nib.Nifti1Image(movie, np.diag([0.5, 0.5, 1.0, 1.0]))
    source.header.set_zooms((0.5, 0.5, 1.0, 30.0))
    source.header.set_xyzt_units("mm", "sec")
    nib.save(source, tmp_path / "movie.nii.gz")
    result = segpipe_cli("segment", tmp_path / "movie.nii.gz", "--model", model.folder, "--axes", "XYZT", "--no-resample",
                         "--output", tmp_path / "out", "--device", "cpu")
    assert result.code == 0, result.err
    written = nib.load(tmp_path / "out" / "labels" / "movie_labels.nii.gz")
    assert written.shape == (64, 64, 1, 3)
    assert written.header.get_zooms()[3] == pytest.approx(30.0) and written.header.get_xyzt_units() == ("mm", "sec")
