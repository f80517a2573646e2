"""End to end: the Prefect pipeline flow on real crops, 2 epochs, on a temporary Prefect API."""

import json

import numpy as np
import tifffile
import zarr

from same_metrics import assert_same_metrics

from segpipe.models.model import Model
from segpipe.training.params import TrainParams


def test_pipeline_flow_writes_every_output(prefect_harness, crop_catalog, tmp_path):
    from prefect.client.orchestration import get_client

    from segpipe.flows.pipeline import segpipe_pipeline

    out = tmp_path / "runs"
    summary = segpipe_pipeline(dataset="crops", catalog=str(crop_catalog), output=str(out), train=TrainParams(epochs=2))
    run = out / "crops"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["seg"] <= 1 and summary["seg"] == metrics["seg"]
    assert set(metrics["iou"]) == {"background", "nucleus"}
    assert all(0 <= v <= 1 for v in (*metrics["iou"].values(), *metrics["dice"].values()))
    assert [row["name"] for row in metrics["per_image"]] == ["A9_p9d"]
    assert {"seg", "iou", "dice", "name"} <= set(metrics["per_image"][0])

    instances = tifffile.imread(run / "predictions" / "A9_p9d_instances.tif")
    stored = zarr.open_group(str(run / "predictions.zarr"), mode="r")["A9_p9d"]
    np.testing.assert_array_equal(stored["labels/instances/s0"][...], instances)
    card = Model.open(run / "model").card
    assert card.extra_outputs == ("distance", "boundary", "flow")
    assert stored["s0"].shape == (6, 160, 160)  # background, nucleus, distance, boundary, flow y, flow x
    assert card.training.dataset == "crops" and card.training.epochs == 2
    report = (run / "report.md").read_text()
    assert "SEG" in report and "silver standard" in report
    for name in ("overlay_A9_p9d.png", "training_curve.png"):
        assert (run / "figures" / name).read_bytes()[:4] == b"\x89PNG"

    import asyncio

    async def keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    assert {"crops-report", "crops-metrics"} <= asyncio.run(keys())


def test_fcn_in_3d_through_the_pipeline(prefect_harness, data_dir, tmp_path):
    """The FCN-8s in 3D, end to end on the bundled synthetic volume (a few iterations: it must run, not learn)."""
    import shutil

    shutil.copytree(data_dir / "synthetic-nuclei-3d", tmp_path / "vol")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "datasets:\n"
        "  vol:\n"
        "    images: vol/image.tif\n"
        "    labels: vol/labels.tif\n"
        "    ndim: 3\n"
        "    classes: [background, nucleus]\n"
        "    instances: true\n"
        "    split:\n"
        "      regions:\n"
        "        train: [[0, 31], [0, 36], [0, 57]]\n"
        "        validation: [[0, 31], [36, 48], [0, 57]]\n"
        "        test: [[0, 31], [48, 61], [0, 57]]\n"
        "    training: {patch_size: [16, 32, 32], batch_size: 1, iterations_per_epoch: 2, val_every: 1}\n"
    )
    out = tmp_path / "runs"
    from segpipe.flows.pipeline import segpipe_pipeline

    summary = segpipe_pipeline(dataset="vol", catalog=str(catalog), output=str(out), train=TrainParams(network="fcn", epochs=1))
    card = Model.open(out / "vol" / "model").card
    assert card.network == "fcn" and card.spatial_dims == 3 and card.patch_size == (16, 32, 32)
    stored = zarr.open_group(str(out / "vol" / "predictions.zarr"), mode="r")["image-test"]
    assert card.extra_outputs == ("distance", "boundary", "flow")  # the flow: one channel per axis
    assert stored["s0"].shape == (2 + 2 + 3, 31, 13, 57)
    assert stored["labels/instances/s0"].shape == (31, 13, 57)
    assert 0 <= summary["seg"] <= 1


def test_two_runs_with_one_seed_give_the_same_metrics(prefect_harness, crop_catalog, tmp_path):
    """Training runs a planned number of steps (no clock), so the same seed gives the same scores."""
    from segpipe.flows.pipeline import segpipe_pipeline

    metrics = []
    for name in ("first", "second"):
        out = tmp_path / name
        segpipe_pipeline(dataset="crops", catalog=str(crop_catalog), output=str(out), train=TrainParams(epochs=2, seed=5))
        metrics.append(json.loads((out / "crops" / "metrics.json").read_text()))
    assert_same_metrics(metrics[0], metrics[1])
    assert metrics[0]["per_image"] and metrics[0]["run"]["run_id"] != metrics[1]["run"]["run_id"]
