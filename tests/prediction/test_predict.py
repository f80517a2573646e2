"""Predicting a stored dataset zarr to zarr: equal to the in-memory path, skip when current, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.errors import InputError, StoreError
from segpipe.inference import InferenceParams, predict_image
from segpipe.inference.blank import Blank, floors, normalized_floors
from segpipe.inference.normalize import NormalizationSpec, normalize, stream_normalization
from segpipe.inference.postprocess import InstanceParams, instance_labels, semantic_labels
from segpipe.models.card import ModelCard
from segpipe.models.model import Model, network_from_card, save_model
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor, predict_split, predict_stored
from segpipe.prediction.store import PredictionStore

ROOT = Path(__file__).resolve().parents[2]
SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)


TINY_NET = {"network_options": {"features": [4, 4, 4, 4, 4, 4]}}


def write_model(folder: Path, card: ModelCard, *, seed: int = 3) -> Path:
    """A randomly initialised (seeded) network saved with its card, as training would."""
    torch.manual_seed(seed)
    save_model(folder, network_from_card(card).state_dict(), card)
    return folder


def predict(store: Path, model_dir: Path, out: Path, *, split: str | None = "test", **params):
    """Predict ``split`` of ``store`` into ``out/predictions.zarr``, exports into ``out/predictions``."""
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device="cpu", **params))
    predictions = predictor.open_store(out / "predictions.zarr")
    return predict_split(ImageStore.open(store), predictor, predictions, split=split, exports=out / "predictions", progress=False)


@pytest.fixture
def single_thread():
    """Same thread count in this process and in subprocesses, so convolutions round alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def crops(crop_catalog, tmp_path, model_card) -> tuple[Path, Path]:
    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    return store, write_model(tmp_path / "model", model_card(2, patch_size=(32, 32), **TINY_NET))


def test_prediction_equals_the_in_memory_path(crops, tmp_path, single_thread):
    store, model_dir = crops
    out = tmp_path / "run"
    assert [r.name for r in predict(store, model_dir, out)] == ["A9_p9d"]

    model = Model.open(model_dir)
    image = ImageStore.open(store).images("test")[0]
    reference = predict_image(
        model.load(), normalize(np.asarray(image.image), SPEC), roi_size=model.card.patch_size, n_classes=2,
        params=model.card.inference,
    )
    # where the crop is blank (one value at its floor, here along its clipped bottom edge), background
    blank = Blank.for_outputs(floors(stream_normalization(np.asarray(image.image), SPEC)), out_channels=3, n_classes=2)
    where = blank.mask(np.asarray(image.image))
    assert 0 < where.sum() < 50
    reference[:, where] = np.asarray(blank.background, np.float32)[:, None]
    group = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")
    probs = group["s0"][...]
    assert probs.dtype == np.float16 and probs.shape == (3, 160, 160)
    np.testing.assert_allclose(probs.astype(np.float32), reference, rtol=0, atol=1e-3)
    assert np.mean(probs == reference.astype(np.float16)) > 0.999  # float16 of the same float32, bar rounding ties

    prediction = PredictionStore.open(out / "predictions.zarr").read("A9_p9d")
    expected = instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), InstanceParams())
    np.testing.assert_array_equal(prediction.instances, expected)
    assert prediction.instances.max() > 10
    # the class map is the objects' foreground, not the network's likelier class (which keeps specks the objects drop)
    np.testing.assert_array_equal(prediction.semantic, (expected > 0).astype(np.uint8))
    assert (semantic_labels(reference[:2]) != prediction.semantic).sum() > 0
    np.testing.assert_array_equal(tifffile.imread(out / "predictions" / "A9_p9d_instances.tif"), prediction.instances)
    np.testing.assert_array_equal(tifffile.imread(out / "predictions" / "A9_p9d_semantic.tif"), prediction.semantic)

    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    assert Image.from_zarr(group).attributes.ome.version == "0.5"
    assert ImageLabel.from_zarr(group["labels/instances"]).attributes.ome.version == "0.5"
    assert not [k for k in zarr.open_group(str(out / "predictions.zarr"), mode="r").group_keys() if k.startswith(".")]


def test_complete_images_are_skipped_and_missing_exports_rewritten(crops, tmp_path, caplog):
    store, model_dir = crops
    out = tmp_path / "run"
    predict(store, model_dir, out)
    chunk = next((out / "predictions.zarr" / "A9_p9d" / "s0").rglob("c/*/*/*"))
    stamp = chunk.stat().st_mtime_ns
    (out / "predictions" / "A9_p9d_semantic.tif").unlink()
    with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
        (again,) = predict(store, model_dir, out)
    assert again.skipped and "already predicted with these settings, skipping" in caplog.text
    assert chunk.stat().st_mtime_ns == stamp
    assert (out / "predictions" / "A9_p9d_semantic.tif").is_file()


def test_changed_settings_predict_again(crops, tmp_path):
    """A finished prediction is made again when the sliding-window settings change (not skipped)."""
    store, model_dir = crops
    out = tmp_path / "run"
    (first,) = predict(store, model_dir, out)
    before = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")["s0"][...]
    (second,) = predict(store, model_dir, out, inference=InferenceParams(overlap=0.25))
    assert not second.skipped and second.stamp != first.stamp
    after = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")
    assert after.attrs["segpipe_inputs"] == second.stamp
    assert not np.array_equal(after["s0"][...], before)  # other windows, other blend
    (third,) = predict(store, model_dir, out, inference=InferenceParams(overlap=0.25))
    assert third.skipped


def test_options_drop_probabilities_and_export_nifti_and_ctc(crops, tmp_path):
    store, model_dir = crops
    out = tmp_path / "run"
    predict(store, model_dir, out, split="validation", probabilities=False, exports=("nifti", "ctc"))
    group = zarr.open_group(str(out / "predictions.zarr" / "20P1_POS0007_D_1UL"), mode="r")
    assert "s0" not in group and "instances" in group["labels"]
    instances = group["labels/instances/s0"][...]
    import nibabel as nib

    nifti = nib.load(out / "predictions" / "20P1_POS0007_D_1UL_instances.nii.gz")
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), instances.T)
    ctc = tifffile.imread(out / "predictions" / "ctc" / "20P1_POS0007_D_1UL_RES" / "mask000.tif")
    assert ctc.dtype == np.uint16 and np.array_equal(ctc > 0, instances > 0)
    assert not list((out / "predictions").glob("*.tif"))


def test_one_image_by_name_and_unknown_names(crops, tmp_path):
    store, model_dir = crops
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device="cpu"))
    predictions = predictor.open_store(tmp_path / "predictions.zarr")
    images = ImageStore.open(store)
    result = predict_stored(images.image("A9_p5d"), predictor, predictions)
    assert result.name == "A9_p5d" and not result.skipped and result.stream.windows > 0
    assert predict_stored(images.image("A9_p5d"), predictor, predictions).skipped
    with pytest.raises(StoreError, match="no image named 'nope'"):
        images.image("nope")


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from segpipe.data.store import ImageStore
    from segpipe.models.model import Model
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.predict import Predictor, predict_stored

    torch.set_num_threads(1)
    store, model_dir, out = map(Path, sys.argv[1:4])
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device="cpu", in_memory=0))

    class Slow(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            time.sleep(0.1)
            return self.inner(x)

    slow = Predictor(predictor.model, Slow(predictor.network).eval(), predictor.params, predictor.inference)
    predictions = slow.open_store(out / "predictions.zarr")
    image = ImageStore.open(store).images("test")[0]
    predict_stored(image, slow, predictions, exports=out / "predictions", on_rows=lambda f, row: print("rows", row, flush=True))
    print("done", flush=True)
    """
)


def test_a_killed_prediction_resumes_to_an_identical_result(crops, tmp_path, single_thread, caplog):
    """Streamed (and killed, then resumed) against an uninterrupted run in memory: the same arrays;
    the resumed run says where it resumes (it logged "resuming at {'frames': 0, 'rows': 64}")."""
    import logging

    store, model_dir = crops
    out = tmp_path / "killed"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(store), str(model_dir), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )
    try:
        seen = []
        for line in child.stdout:
            if line.startswith("rows"):
                seen.append(int(line.split()[1]))
            if len(seen) == 2:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL and len(seen) == 2
    partial = zarr.open_group(str(out / "predictions.zarr" / ".A9_p9d.partial"), mode="r")
    rows_done = partial.attrs["progress"]["rows"]
    assert 0 < seen[1] <= rows_done < 160 and "A9_p9d" not in zarr.open_group(str(out / "predictions.zarr"), mode="r")

    with caplog.at_level(logging.INFO, logger="segpipe.prediction.complete"):
        predict(store, model_dir, out, in_memory=0)
    assert (f"A9_p9d: resuming the prediction an interrupted run began, after {rows_done} finished row(s) of frame 0"
            in caplog.text), caplog.text
    fresh = tmp_path / "fresh"
    predict(store, model_dir, fresh)  # small enough to be predicted in memory
    resumed = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")
    uninterrupted = zarr.open_group(str(fresh / "predictions.zarr" / "A9_p9d"), mode="r")
    for key in ("s0", "labels/semantic/s0", "labels/instances/s0"):
        np.testing.assert_array_equal(resumed[key][...], uninterrupted[key][...])
    np.testing.assert_array_equal(
        tifffile.imread(out / "predictions" / "A9_p9d_instances.tif"),
        tifffile.imread(fresh / "predictions" / "A9_p9d_instances.tif"),
    )


def test_a_3d_volume_with_slab_wise_instances(tmp_path, single_thread, model_card):
    """The bundled synthetic 3D volume: streamed prediction and slab-wise objects equal the whole-volume path."""
    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(ROOT / "data_catalog.yaml").dataset("synthetic-nuclei-3d"), store, progress=False)
    card = model_card(3, patch_size=(32, 32, 32), **TINY_NET)
    model_dir = write_model(tmp_path / "model", card, seed=1)
    params = InferenceParams(flip_tta=False, batch_size=8)
    predict(
        store, model_dir, tmp_path / "run", inference=params,
        instances={"whole_limit": 0, "slab": 8, "halo": 16}, exports=("tiff",),
    )

    model = Model.open(model_dir).load()
    image = ImageStore.open(store).images("test")[0]
    reference = predict_image(model, normalize(np.asarray(image.image), SPEC), roi_size=(32, 32, 32), n_classes=2, params=params)
    group = zarr.open_group(str(tmp_path / "run" / "predictions.zarr" / image.name), mode="r")
    probs = group["s0"][...]
    np.testing.assert_allclose(probs.astype(np.float32), reference, rtol=0, atol=1e-3)
    expected = instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), InstanceParams())
    np.testing.assert_array_equal(group["labels/instances/s0"][...], expected)
    assert expected.max() > 1
    exported = tifffile.imread(tmp_path / "run" / "predictions" / f"{image.name}_instances.tif")
    np.testing.assert_array_equal(exported, expected)


def test_cli_predict_with_overrides_and_bad_options(crops, tmp_path, single_thread):
    """``segpipe predict`` on a run folder: card settings overridden, CTC export; bad values are InputErrors."""
    import shutil

    from typer.testing import CliRunner

    from segpipe.cli import app

    store, model_dir = crops
    run = tmp_path / "runs" / "crops"
    run.mkdir(parents=True)
    shutil.copytree(store, run / "data.zarr")
    shutil.copytree(model_dir, run / "model")

    def segpipe(*args):
        return CliRunner().invoke(app, ["predict", "crops", "--output", str(tmp_path / "runs"), "--device", "cpu", *args])

    result = segpipe("--no-tta", "--no-amp", "--overlap", "0.25", "--batch-size", "2", "--export", "ctc")
    assert result.exit_code == 0, result.output
    assert "predicted 1 of 1 images" in result.output
    predictor = Predictor.load(
        Model.open(run / "model"),
        PredictParams(device="cpu", inference=InferenceParams(flip_tta=False, amp=False, overlap=0.25, batch_size=2), exports=("ctc",)),
    )
    assert predictor.inference.sigma_scale == predictor.card.inference.sigma_scale
    store_ = PredictionStore.open(run / "predictions.zarr")
    assert store_.stamp("A9_p9d") == predictor.stamp(ImageStore.open(run / "data.zarr").image("A9_p9d"))
    assert (run / "predictions" / "ctc" / "A9_p9d_RES" / "mask000.tif").is_file()

    for args, message in ((("--overlap", "1.5"), "--overlap: "), (("--export", "png"), "--export: ")):
        bad = segpipe(*args)
        assert isinstance(bad.exception, InputError) and message in str(bad.exception)


def test_a_2d_model_predicts_a_time_lapse_frame_by_frame(crops, tmp_path, single_thread):
    """A (c, t, y, x) image and a 2D model: each frame as its own image; TIFF (TYX) and a CTC sequence."""
    from segpipe.data.store import StoredImage
    from segpipe.prediction.predict import export_ctc_sequences

    _, model_dir = crops
    # At its own pixel size (0.5 against the model's 1.0): resampled time-lapses are in test_resampled_predict.py.
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device="cpu", exports=("tiff",), resample=False))
    model, card = predictor.network, predictor.card
    rng = np.random.default_rng(0)
    movie = rng.integers(0, 4000, size=(1, 3, 40, 50)).astype(np.uint16)
    for t in range(3):  # a cell moving right (noise alone would be background: test_a_frame_of_only_noise...)
        movie[0, t, 10:30, 5 + 10 * t : 25 + 10 * t] += 8000
    source = zarr.create_array(str(tmp_path / "movie.zarr"), shape=movie.shape, dtype=np.uint16, chunks=(1, 1, 32, 32))
    source[...] = movie
    image = StoredImage("movie", "test", source, None, (0.5, 0.5), {"name": "movie", "spacing": [0.5, 0.5]})
    out = tmp_path / "run"
    predictions = predictor.open_store(out / "predictions.zarr")
    params = card.inference
    result = predict_stored(image, predictor, predictions, exports=out / "predictions")
    assert result.stream.frames == [0, 1, 2]

    group = zarr.open_group(str(out / "predictions.zarr" / "movie"), mode="r")
    assert group["s0"].shape == (3, 3, 40, 50)  # (t, c, y, x): NGFF puts time first
    axes = [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]]
    assert axes == ["t", "c", "y", "x"]
    from ome_zarr_models.v05.image import Image

    assert Image.from_zarr(group).attributes.ome.version == "0.5"
    whole = normalize(movie, SPEC)  # percentiles over the whole movie, as streamed
    for t in range(3):
        frame = whole[:, t]  # its quiet parts (noise far from the cell) background in both, as streamed
        expected = predict_image(model, frame, roi_size=card.patch_size, n_classes=2, params=params,
                                 blank=Blank.for_card(card, normalized_floors(frame, SPEC)))
        assert (expected[0] == 1).any() or t > 0  # the first frame has quiet pixels
        np.testing.assert_allclose(group["s0"][t].astype(np.float32), expected, rtol=0, atol=1e-3)
        probs = group["s0"][t]
        labels = instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), InstanceParams())
        np.testing.assert_array_equal(group["labels/instances/s0"][t], labels)
    with tifffile.TiffFile(out / "predictions" / "movie_instances.tif") as tif:
        assert tif.series[0].axes == "TYX"
        np.testing.assert_array_equal(tif.asarray(), group["labels/instances/s0"][...])
    (folder,) = export_ctc_sequences(predictions, [image], out / "ctc", ndim=2)
    assert sorted(p.name for p in folder.glob("*.tif")) == ["mask000.tif", "mask001.tif", "mask002.tif"]


def test_a_frame_of_only_noise_is_background_and_the_network_skips_it(crops, tmp_path, single_thread, caplog):
    """A time-lapse whose middle frame is camera noise: that frame's probabilities are background
    (class 0 certain, no distance) and hold no object, the others are predicted, and the warning
    names the frames."""
    from segpipe.data.store import StoredImage

    _, model_dir = crops
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device="cpu", resample=False))
    crop = np.asarray(ImageStore.open(crops[0]).image("A9_p9d").image)[0, :64, :64]
    rng = np.random.default_rng(2)
    noise = rng.poisson(float(np.median(crop)), crop.shape).astype(crop.dtype)
    movie = np.stack([crop, noise, crop[::-1]])[None]
    source = zarr.create_array(str(tmp_path / "movie.zarr"), shape=movie.shape, dtype=movie.dtype, chunks=(1, 1, 32, 32))
    source[...] = movie
    image = StoredImage("movie", "test", source, None, (1.0, 1.0), {"name": "movie", "spacing": [1.0, 1.0]})
    with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
        result = predict_stored(image, predictor, predictor.open_store(tmp_path / "predictions.zarr"))
    assert result.stream.frames == [0, 2] and result.stream.noise_frames == [1]
    assert "movie: 1 of its 3 frames or planes hold only noise" in caplog.text
    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "movie"), mode="r")
    probs = group["s0"][1].astype(np.float32)
    np.testing.assert_array_equal(probs, np.broadcast_to(np.asarray([1.0, 0.0, 0.0], np.float32)[:, None, None], probs.shape))
    labels = group["labels/instances/s0"]
    assert labels[1].max() == 0 and labels[0].max() > 3 and labels[2].max() > 3
    from segpipe.prediction.noise_frames import recorded

    kept = PredictionStore.open(tmp_path / "predictions.zarr")
    assert kept.noise_frames("movie") == [1] and recorded(kept, ["movie"]) == {"movie": 1}  # what the flows say once


def test_an_in_memory_prediction_does_not_resume_a_streamed_leftover(crops, tmp_path, caplog):
    """A streamed run killed early leaves a partial group chunked in row strips; the next run,
    in memory, makes its group afresh in whole-image chunks instead of "resuming" that one."""
    from segpipe.prediction.complete import partial_group

    store, model_dir = crops
    out = tmp_path / "out"
    predictor = Predictor.load(Model.open(model_dir), PredictParams(device="cpu"))
    image = ImageStore.open(store).image("A9_p9d")
    root = predictor.open_store(out / "predictions.zarr").root
    leftover = partial_group(root, image, predictor.card, predictor.stamp(image), overlap=predictor.inference.overlap)
    assert leftover["s0"].chunks[1:] != image.image.shape[1:]  # row strips
    with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
        predict(store, model_dir, out)
    assert "resuming" not in caplog.text
    done = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")
    assert done["s0"].chunks[1:] == image.image.shape[1:]


def test_a_region_is_predicted_inside_the_image_around_it(tmp_path, model_card, single_thread):
    """A test region cut from a larger image: the windows at its edges see the image beyond it (its
    stored surroundings, up to 128 pixels), not padding. Pixels just outside the region change what
    is predicted at its edge; pixels beyond the surroundings change nothing. (Before, a region was
    predicted alone, with its edges padded: synthetic-nuclei-3d's 13-row test region lost 0.03 SEG.)"""
    from segpipe.data.store import IMAGE_LEVEL

    rng = np.random.default_rng(4)
    base = ndimage_blobs(rng, (400, 64))
    model_dir = write_model(tmp_path / "model", model_card(2, patch_size=(32, 32), **TINY_NET))
    regions = {"train": [[0, 150], [0, 64]], "test": [[200, 300], [0, 64]]}

    def test_probabilities(image: np.ndarray, name: str) -> np.ndarray:
        folder = tmp_path / name
        (folder / "img").mkdir(parents=True)
        (folder / "lab").mkdir()
        tifffile.imwrite(folder / "img" / "v.tif", image)
        tifffile.imwrite(folder / "lab" / "v.tif", (image > 600).astype(np.uint8))
        (folder / "catalog.yaml").write_text(
            "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    classes: [background, nucleus]\n"
            f"    split: {{regions: {regions}}}\n")
        ingest_dataset(load_catalog(folder / "catalog.yaml").dataset("d"), folder / "data.zarr", progress=False)
        (result,) = predict(folder / "data.zarr", model_dir, folder / "run")
        return np.asarray(PredictionStore.open(folder / "run" / "predictions.zarr").group(result.name)[IMAGE_LEVEL])

    before = test_probabilities(base, "base")
    near, far = base.copy(), base.copy()
    near[185:200] = base[185:200][::-1] + 300  # just above the region, inside its surroundings
    far[:60] = 0  # more than 128 rows above it
    assert before.shape[1:] == (100, 64)
    assert not np.array_equal(test_probabilities(near, "near")[:, :8], before[:, :8])
    np.testing.assert_array_equal(test_probabilities(far, "far"), before)


def ndimage_blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Bright smoothed blobs on a dim background, uint16."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.random(shape), 4)
    return (200 + 800 * (field > np.percentile(field, 70)) + rng.normal(0, 20, shape)).clip(0, 4000).astype(np.uint16)
