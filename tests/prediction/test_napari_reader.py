"""What napari shows when a user opens a run's stores: napari-ome-zarr's reader, run without a window.

napari-ome-zarr (with napari) is in the test extra. napari installs pytest plugins whose imports
warn (pydantic deprecations), which this project's warnings-as-errors would turn into a failed
start: ``pyproject.toml`` keeps them off (``-p no:napari -p no:npe2 -p no:napari-plugin-engine``).
The test skips where napari-ome-zarr is not installed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # napari's own imports warn (pydantic deprecations): not ours to fix
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr is not installed")
    from napari_ome_zarr._reader import napari_get_reader

from test_prediction_layers import _predict, region_run  # noqa: E402,F401  (the fixture)


def _layers(path):
    reader = napari_get_reader(str(path))
    assert reader is not None
    return reader(str(path))


def test_napari_opens_the_dataset_store_root_with_images_truth_and_predictions(region_run, tmp_path, capsys):
    store, model, _ = region_run
    _predict(store, model, tmp_path / "predictions.zarr")
    layers = _layers(store)
    capsys.readouterr()  # the reader prints the root's attributes
    images = {meta["name"][0]: (data, meta) for data, meta, kind in layers if kind == "image"}
    labels = {meta["name"]: (data, meta) for data, meta, kind in layers if kind == "labels"}
    assert sorted(images) == ["field-test: image", "field-train: image"]
    assert sorted(labels) == [
        "labels/field-test/labels/gt", "labels/field-test/labels/predicted-instances",
        "labels/field-test/labels/predicted-semantic", "labels/field-train/labels/gt",
    ]
    data, meta = images["field-test: image"]
    assert [d.shape for d in data] == [(1, 60, 120), (1, 30, 60)]  # both levels, as a pyramid
    assert meta["scale"] == [0.5, 0.5] and meta["units"] == ("micrometer", "micrometer")
    data, meta = labels["labels/field-test/labels/predicted-semantic"]
    assert [d.shape for d in data] == [(60, 120), (30, 60)]
    assert meta["properties"] == {"class": ["background", "nucleus"], "index": [0, 1]}
    assert meta["colormap"][0] == [0, 0, 0, 0]
    np.testing.assert_array_equal(np.asarray(labels["labels/field-test/labels/gt"][0][0]).shape, (60, 120))


def test_napari_opens_the_prediction_store_root_with_named_channels(region_run, tmp_path, capsys):
    store, model, _ = region_run
    _predict(store, model, tmp_path / "predictions.zarr")
    layers = _layers(tmp_path / "predictions.zarr")
    capsys.readouterr()
    image = [(data, meta) for data, meta, kind in layers if kind == "image"]
    assert len(image) == 1
    assert image[0][1]["name"] == [
        "field-test probabilities: background", "field-test probabilities: nucleus", "field-test probabilities: distance map",
    ]
    assert sorted(meta["name"] for _, meta, kind in layers if kind == "labels") == [
        "labels/field-test/labels/instances", "labels/field-test/labels/semantic",
    ]
