"""Predicting a stored dataset zarr to zarr: equal to the in-memory path, skip-if-done, resume after SIGKILL."""

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

from segpipe.catalog import load_catalog
from segpipe.checkpoint import load_model, network_from_card, save_model
from segpipe.errors import InputError, StoreError
from segpipe.inference import InferenceParams, predict_image
from segpipe.ingest import ingest_dataset
from segpipe.postprocess import InstanceParams, instance_labels, semantic_labels
from segpipe.predict import PredictOptions, predict_dataset, predict_one, read_prediction
from segpipe.store import list_images
from segpipe.transforms import normalize

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"method": "percentile", "low": 1.0, "high": 99.8}


def make_card(*, ndim: int = 2, patch=(32, 32), seed: int = 3) -> dict:
    return {
        "dataset": "crops" if ndim == 2 else "synthetic-nuclei-3d",
        "config_key": f"test-{ndim}d-{seed}",
        "best_epoch": 1,
        "model": "unet",
        "model_options": {"features": [4, 4, 4, 4, 4, 4]},
        "spatial_dims": ndim,
        "in_channels": 1,
        "out_channels": 3,
        "classes": ["background", "nucleus"],
        "n_classes": 2,
        "instances": True,
        "patch_size": list(patch),
        "normalization": SPEC,
        "inference": InferenceParams().model_dump(),
        "postprocess": InstanceParams().model_dump(),
    }


def write_model(folder: Path, card: dict, *, seed: int = 3) -> Path:
    """A randomly initialised (seeded) network saved with its card, as training would."""
    torch.manual_seed(seed)
    save_model(folder, network_from_card(card).state_dict(), card)
    return folder


@pytest.fixture
def single_thread():
    """Same thread count in this process and in subprocesses, so convolutions round alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def crops(crop_catalog, tmp_path) -> tuple[Path, Path]:
    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), store, progress=False)
    return store, write_model(tmp_path / "model", make_card())


def test_prediction_equals_the_in_memory_path(crops, tmp_path, single_thread):
    store, model_dir = crops
    out = tmp_path / "run"
    assert predict_dataset(store, model_dir, out, split="test", device="cpu", progress=False) == ["A9_p9d"]

    model, card = load_model(model_dir)
    image = list_images(store, "test")[0]
    reference = predict_image(
        model, normalize(np.asarray(image.image), SPEC), roi_size=card["patch_size"], n_classes=2,
        params=InferenceParams(**card["inference"]),
    )
    group = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")
    probs = group["s0"][...]
    assert probs.dtype == np.float16 and probs.shape == (3, 160, 160)
    np.testing.assert_allclose(probs.astype(np.float32), reference, rtol=0, atol=1e-3)
    assert np.mean(probs == reference.astype(np.float16)) > 0.999  # float16 of the same float32, bar rounding ties

    prediction = read_prediction(out / "predictions.zarr", "A9_p9d")
    decided = np.abs(reference[1] - reference[0]) > 1e-4
    np.testing.assert_array_equal(prediction.semantic[decided], semantic_labels(reference[:2])[decided])
    expected = instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), InstanceParams())
    np.testing.assert_array_equal(prediction.instances, expected)
    assert prediction.instances.max() > 10
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
    predict_dataset(store, model_dir, out, device="cpu", progress=False)
    chunk = next((out / "predictions.zarr" / "A9_p9d" / "s0").rglob("c/*/*/*"))
    stamp = chunk.stat().st_mtime_ns
    (out / "predictions" / "A9_p9d_semantic.tif").unlink()
    with caplog.at_level("INFO", logger="segpipe.predict"):
        predict_dataset(store, model_dir, out, device="cpu", progress=False)
    assert "already predicted, skipping" in caplog.text
    assert chunk.stat().st_mtime_ns == stamp
    assert (out / "predictions" / "A9_p9d_semantic.tif").is_file()


def test_options_drop_probabilities_and_export_nifti_and_ctc(crops, tmp_path):
    store, model_dir = crops
    out = tmp_path / "run"
    options = PredictOptions(probabilities=False, exports=("nifti", "ctc"))
    predict_dataset(store, model_dir, out, split="validation", device="cpu", progress=False, options=options)
    group = zarr.open_group(str(out / "predictions.zarr" / "20P1_POS0007_D_1UL"), mode="r")
    assert "s0" not in group and "instances" in group["labels"]
    instances = group["labels/instances/s0"][...]
    import nibabel as nib

    nifti = nib.load(out / "predictions" / "20P1_POS0007_D_1UL_instances.nii.gz")
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), instances.T)
    ctc = tifffile.imread(out / "predictions" / "ctc" / "20P1_POS0007_D_1UL" / "01_RES" / "mask000.tif")
    assert ctc.dtype == np.uint16 and np.array_equal(ctc > 0, instances > 0)
    assert not list((out / "predictions").glob("*.tif"))


def test_one_image_by_name_and_unknown_names(crops, tmp_path):
    store, model_dir = crops
    result = predict_one(store, model_dir, tmp_path / "run", "A9_p5d", device="cpu")
    assert result.name == "A9_p5d" and not result.skipped and result.stream.windows > 0
    assert predict_one(store, model_dir, tmp_path / "run", "A9_p5d", device="cpu").skipped
    with pytest.raises(StoreError, match="no image named 'nope'"):
        predict_one(store, model_dir, tmp_path / "run", "nope", device="cpu")


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from segpipe.checkpoint import load_model
    from segpipe.predict import open_predictions, predict_stored_image
    from segpipe.store import list_images

    torch.set_num_threads(1)
    store, model_dir, out = map(Path, sys.argv[1:4])
    model, card = load_model(model_dir)

    class Slow(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            time.sleep(0.1)
            return self.inner(x)

    root = open_predictions(out / "predictions.zarr", card)
    image = list_images(store, "test")[0]
    predict_stored_image(image, Slow(model).eval(), card, root, out, on_rows=lambda f, row: print("rows", row, flush=True))
    print("done", flush=True)
    """
)


def test_a_killed_prediction_resumes_to_an_identical_result(crops, tmp_path, single_thread):
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

    predict_dataset(store, model_dir, out, device="cpu", progress=False)
    fresh = tmp_path / "fresh"
    predict_dataset(store, model_dir, fresh, device="cpu", progress=False)
    resumed = zarr.open_group(str(out / "predictions.zarr" / "A9_p9d"), mode="r")
    uninterrupted = zarr.open_group(str(fresh / "predictions.zarr" / "A9_p9d"), mode="r")
    for key in ("s0", "labels/semantic/s0", "labels/instances/s0"):
        np.testing.assert_array_equal(resumed[key][...], uninterrupted[key][...])
    np.testing.assert_array_equal(
        tifffile.imread(out / "predictions" / "A9_p9d_instances.tif"),
        tifffile.imread(fresh / "predictions" / "A9_p9d_instances.tif"),
    )


def test_a_3d_volume_with_slab_wise_instances(tmp_path, single_thread):
    """The bundled synthetic 3D volume: streamed prediction and slab-wise objects equal the whole-volume path."""
    store = tmp_path / "data.zarr"
    ingest_dataset(load_catalog(ROOT / "data_catalog.yaml").dataset("synthetic-nuclei-3d"), store, progress=False)
    card = make_card(ndim=3, patch=(32, 32, 32), seed=1)
    model_dir = write_model(tmp_path / "model", card, seed=1)
    options = PredictOptions(instances={"whole_limit": 0, "slab": 8, "halo": 16}, exports=("tiff",))
    params = InferenceParams(flip_tta=False, batch_size=8)
    predict_dataset(store, model_dir, tmp_path / "run", device="cpu", progress=False, params=params, options=options)

    model, _ = load_model(model_dir)
    image = list_images(store, "test")[0]
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

    result = segpipe("--no-tta", "--overlap", "0.25", "--batch-size", "2", "--export", "ctc")
    assert result.exit_code == 0, result.output
    assert "predicted 1 images" in result.output
    plan = zarr.open_group(str(run / "predictions.zarr" / "A9_p9d"), mode="r").attrs["plan"]["inference"]
    assert plan["overlap"] == 0.25 and plan["batch_size"] == 2 and not plan["flip_tta"]
    assert (run / "predictions" / "ctc" / "A9_p9d" / "01_RES" / "mask000.tif").is_file()

    for args, message in ((("--overlap", "1.5"), "bad --overlap"), (("--export", "png"), "bad --exports")):
        bad = segpipe(*args)
        assert isinstance(bad.exception, InputError) and message in str(bad.exception)


def test_a_2d_model_predicts_a_time_lapse_frame_by_frame(crops, tmp_path, single_thread):
    """A (c, t, y, x) image and a 2D model: each frame as its own image; TIFF (TYX) and a CTC sequence."""
    from segpipe.predict import export_ctc_sequences, open_predictions, predict_stored_image
    from segpipe.store import StoredImage

    _, model_dir = crops
    model, card = load_model(model_dir)
    rng = np.random.default_rng(0)
    movie = rng.integers(0, 4000, size=(1, 3, 40, 50)).astype(np.uint16)
    source = zarr.create_array(str(tmp_path / "movie.zarr"), shape=movie.shape, dtype=np.uint16, chunks=(1, 1, 32, 32))
    source[...] = movie
    image = StoredImage("movie", "test", source, None, (0.5, 0.5), {"name": "movie", "spacing": [0.5, 0.5]})
    out = tmp_path / "run"
    root = open_predictions(out / "predictions.zarr", card)
    params = InferenceParams(**card["inference"])
    options = PredictOptions(exports=("tiff",))
    result = predict_stored_image(image, model, card, root, out, params=params, options=options)
    assert result.stream.frames == [0, 1, 2]

    group = zarr.open_group(str(out / "predictions.zarr" / "movie"), mode="r")
    assert group["s0"].shape == (3, 3, 40, 50)  # (t, c, y, x): NGFF puts time first
    axes = [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]]
    assert axes == ["t", "c", "y", "x"]
    from ome_zarr_models.v05.image import Image

    assert Image.from_zarr(group).attributes.ome.version == "0.5"
    whole = normalize(movie, SPEC)  # percentiles over the whole movie, as streamed
    for t in range(3):
        frame = whole[:, t]
        expected = predict_image(model, frame, roi_size=card["patch_size"], n_classes=2, params=params)
        np.testing.assert_allclose(group["s0"][t].astype(np.float32), expected, rtol=0, atol=1e-3)
        probs = group["s0"][t]
        labels = instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), InstanceParams())
        np.testing.assert_array_equal(group["labels/instances/s0"][t], labels)
    with tifffile.TiffFile(out / "predictions" / "movie_instances.tif") as tif:
        assert tif.series[0].axes == "TYX"
        np.testing.assert_array_equal(tif.asarray(), group["labels/instances/s0"][...])
    (folder,) = export_ctc_sequences(root, [image], out / "ctc", ndim=2)
    assert sorted(p.name for p in folder.glob("*.tif")) == ["mask000.tif", "mask001.tif", "mask002.tif"]
