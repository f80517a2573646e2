"""Predictions as viewers read them: levels like the source image's, named channels, class colours, where the
image lies, and the label maps attached under the source image next to its ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from skimage.measure import block_reduce

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.models.model import Model, network_from_card, save_model
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor, predict_split
from segpipe.prediction.store import PredictionStore

TINY_NET = {"network_options": {"features": [4, 4, 4, 4, 4, 4]}}


@pytest.fixture
def region_run(tmp_path, data_dir, model_card):
    """A 160x160 BBBC007 crop split by regions (test: rows 100-160, columns 40-160), ingested with levels
    from 64 px on (160 -> 80 -> 40), and a random tiny instance model."""
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        array = tifffile.imread(data_dir / "bbbc007" / sub / "A9_p9d.tif")[:160, :160]
        tifffile.imwrite(tmp_path / sub / "field.tif", np.ascontiguousarray(array))
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n  cut:\n    images: images/*.tif\n    labels: labels/*.tif\n    ndim: 2\n"
        "    classes: [background, nucleus]\n    spacing: [0.5, 0.5]\n    split:\n      regions:\n"
        "        train: [[0, 100], [0, 160]]\n        test: [[100, 160], [40, 160]]\n"
    )
    store = tmp_path / "data.zarr"
    dataset = load_catalog(tmp_path / "catalog.yaml").dataset("cut")
    ingest_dataset(dataset, store, IngestParams(pyramid_min_size=40), progress=False)
    torch.manual_seed(3)
    card = model_card(2, patch_size=(32, 32), spacing=(0.5, 0.5), **TINY_NET)
    save_model(tmp_path / "model", network_from_card(card).state_dict(), card)
    return store, tmp_path / "model", dataset


def _predict(store: Path, model: Path, out: Path):
    predictor = Predictor.load(Model.open(model), PredictParams(device="cpu"))
    predictions = predictor.open_store(out)
    return predict_split(ImageStore.open(store), predictor, predictions, split="test", progress=False)


def test_prediction_levels_channels_colours_and_place(region_run, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    store, model, _ = region_run
    _predict(store, model, tmp_path / "predictions.zarr")
    group = zarr.open_group(str(tmp_path / "predictions.zarr" / "field-test"), mode="r")
    Image.from_zarr(group)
    for kind in ("semantic", "instances"):
        ImageLabel.from_zarr(group[f"labels/{kind}"])

    nodes = list(Reader(parse_url(str(tmp_path / "predictions.zarr" / "field-test")))())
    probabilities = next(n for n in nodes if not n.load(Label))
    # the test region is 60x120; ingest gave it 60x120 -> 30x60 (30 <= 40: no more)
    assert [tuple(d.shape) for d in probabilities.data] == [(3, 60, 120), (3, 30, 60)]
    s0 = np.asarray(probabilities.data[0]).astype(np.float64)
    expected = block_reduce(s0, (1, 2, 2), np.mean).astype(np.float16)
    np.testing.assert_allclose(np.asarray(probabilities.data[1]).astype(np.float64), expected, atol=1e-3)
    assert probabilities.metadata["channel_names"] == ["background", "nucleus", "distance map"]
    assert probabilities.metadata["name"] == "field-test probabilities"
    # where the region lies: row 100, column 40 at 0.5 micrometer
    assert probabilities.metadata["coordinateTransformations"][0] == [
        {"type": "scale", "scale": [1.0, 0.5, 0.5]}, {"type": "translation", "translation": [0.0, 50.0, 20.0]},
    ]
    assert probabilities.metadata["coordinateTransformations"][1][1] == {
        "type": "translation", "translation": [0.0, 50.25, 20.25],  # plus half a pixel less half a 2x2 block
    }
    labels = {n.zarr.basename(): n for n in nodes if n.load(Label)}
    assert sorted(labels) == ["instances", "semantic"]
    instances = np.asarray(labels["instances"].data[0])
    np.testing.assert_array_equal(np.asarray(labels["instances"].data[1]), instances[::2, ::2])
    assert labels["semantic"].metadata["coordinateTransformations"][1] == [
        {"type": "scale", "scale": [1.0, 1.0]}, {"type": "translation", "translation": [50.0, 20.0]},
    ]
    semantic = group["labels/semantic"].attrs["ome"]["image-label"]
    assert semantic["properties"] == [{"label-value": 0, "class": "background"}, {"label-value": 1, "class": "nucleus"}]
    assert semantic["colors"][0] == {"label-value": 0, "rgba": [0, 0, 0, 0]} and semantic["colors"][1]["rgba"][3] == 255
    assert labels["semantic"].metadata["color"][0] == [0, 0, 0, 0]  # ome-zarr-py reads the colours

    root = zarr.open_group(str(tmp_path / "predictions.zarr"), mode="r")
    assert root["OME"].attrs["ome"]["series"] == ["field-test"]
    assert root.attrs["ome"]["bioformats2raw.layout"] == 3 and root.attrs["segpipe"]["model"] == "demo"


def test_label_maps_are_attached_under_the_source_image_and_again_after_a_new_ingest(region_run, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    store, model, dataset = region_run
    out = tmp_path / "predictions.zarr"
    _predict(store, model, out)
    prediction = PredictionStore.open(out).read("field-test")

    def check() -> None:
        image = zarr.open_group(str(store / "field-test"), mode="r")
        assert image["labels"].attrs["ome"]["labels"] == ["gt", "predicted-semantic", "predicted-instances"]
        Image.from_zarr(image)
        nodes = list(Reader(parse_url(str(store / "field-test")))())
        labels = {n.zarr.basename(): n for n in nodes if n.load(Label)}
        assert sorted(labels) == ["gt", "predicted-instances", "predicted-semantic"]
        for name, expected in (("predicted-semantic", prediction.semantic), ("predicted-instances", prediction.instances)):
            ImageLabel.from_zarr(image[f"labels/{name}"])
            np.testing.assert_array_equal(np.asarray(labels[name].data[0]), expected)
            np.testing.assert_array_equal(np.asarray(labels[name].data[1]), expected[::2, ::2])
            # aligned with the image and its ground truth: same levels, same transforms
            assert labels[name].metadata["coordinateTransformations"] == labels["gt"].metadata["coordinateTransformations"]
        values, sizes = np.unique(prediction.instances[prediction.instances > 0], return_counts=True)
        assert image["labels/predicted-instances"].attrs["ome"]["image-label"]["properties"] == [
            {"label-value": int(v), "class": "nucleus", "voxels": int(n)} for v, n in zip(values, sizes)
        ]
        assert labels["predicted-instances"].metadata["properties"][int(values[0])]["voxels"] == int(sizes[0])

    check()
    ingest_dataset(dataset, store, IngestParams(pyramid_min_size=40, force=True), progress=False)
    assert not (store / "field-test" / "labels" / "predicted-instances").exists()  # a new store: nothing attached
    assert all(r.skipped for r in _predict(store, model, out))  # same image bytes: not predicted again...
    check()  # ...but attached again


def test_no_probabilities_keeps_label_maps_out_of_the_root_list(region_run, tmp_path):
    store, model, _ = region_run
    predictor = Predictor.load(Model.open(model), PredictParams(device="cpu", probabilities=False))
    predict_split(ImageStore.open(store), predictor, predictor.open_store(tmp_path / "p.zarr"), split="test", progress=False)
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert "OME" not in root  # the group is no image without its probabilities: nothing a viewer could open
    assert (store / "field-test" / "labels" / "predicted-instances" / "s1").is_dir()  # still attached to the image
