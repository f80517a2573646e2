"""The predict flow: one task per image, then the exports that take a whole split (CTC sequences)."""

import numpy as np
import tifffile
import zarr

from segpipe.data.catalog import load_catalog
from segpipe.pipeline import stages
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.params import PredictParams


def test_the_predict_flow_writes_the_ctc_folders_it_is_asked_for(prefect_harness, crop_catalog, crops_model, tmp_path):
    """Before, the flows' per-image tasks wrote TIFF and NIfTI exports only: `ctc` was ignored."""
    from segpipe.flows.predict import segpipe_predict

    run = RunFolder.of(tmp_path / "runs", "crops")
    stages.ingest(load_catalog(crop_catalog), "crops", run)
    summary = segpipe_predict(dataset="crops", output=str(tmp_path / "runs"), split="validation",
                              model=str(crops_model.folder), predict=PredictParams(exports=("tiff", "ctc")))
    assert summary["predicted"] == ["20P1_POS0007_D_1UL"]
    stored = zarr.open_group(str(run.predictions), mode="r")["20P1_POS0007_D_1UL/labels/instances/s0"][...]
    mask = tifffile.imread(run.exports / "ctc" / "20P1_POS0007_D_1UL_RES" / "mask000.tif")
    assert mask.dtype == np.uint16 and mask.max() > 0
    np.testing.assert_array_equal(mask > 0, stored > 0)
    assert len(np.unique(mask)) == len(np.unique(stored))
    tracks = (run.exports / "ctc" / "20P1_POS0007_D_1UL_RES" / "res_track.txt").read_text().splitlines()
    assert len(tracks) == len(np.unique(stored)) - 1
    np.testing.assert_array_equal(tifffile.imread(run.exports / "20P1_POS0007_D_1UL_instances.tif"), stored)
