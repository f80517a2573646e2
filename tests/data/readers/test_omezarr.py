"""OME-Zarr images as inputs: axes, pixel sizes and time from their NGFF metadata."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from segpipe.data.readers import open_source


def test_an_ome_zarr_time_axis_gives_the_time_step(tmp_path):
    """An OME-Zarr time-lapse with a t scale of 0.5 minute got no time column in measurements.csv."""
    for unit, expected in (("minute", 30.0), ("millisecond", 0.0005), (None, None)):
        root = zarr.open_group(str(tmp_path / f"{unit}.ome.zarr"), mode="w")
        root.create_array("s0", data=np.zeros((3, 12, 16), np.uint16))
        t_axis = {"name": "t", "type": "time", **({"unit": unit} if unit else {})}
        root.attrs["ome"] = {"version": "0.5", "multiscales": [{
            "axes": [t_axis, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 1.0, 1.0]}]}]}]}
        with open_source(tmp_path / f"{unit}.ome.zarr") as source:
            assert source.frames == 3 and source.meta.time_step == (pytest.approx(expected) if expected else None), unit
