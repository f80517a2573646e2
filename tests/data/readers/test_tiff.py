"""TIFF sources: what is read of a file, and what is said of what is not."""

from __future__ import annotations

import logging

import numpy as np
import tifffile

from segpipe.data.readers.tiff import TiffSource


def test_a_file_of_several_series_says_that_only_the_first_is_read(tmp_path, caplog):
    """Before, the second position of a two-position OME-TIFF was dropped without a word."""
    path = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(np.zeros((64, 80), np.uint16), metadata={"axes": "YX"})
        tif.write(np.ones((32, 40), np.uint16), metadata={"axes": "YX"})
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        source = TiffSource(path)
        source.close()
        TiffSource(path).close()  # said once per file
    assert source.shape[-2:] == (64, 80)
    said = [r.getMessage() for r in caplog.records if "image series" in r.getMessage()]
    assert said == [f"{path}: holds 2 image series; segpipe reads the first (64x80) and leaves out the other 1 (32x40)"]


def test_a_file_of_one_series_says_nothing(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((3, 64, 80), np.uint16), photometric="minisblack", metadata={"axes": "ZYX"})
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        TiffSource(tmp_path / "one.tif").close()
    assert not [r for r in caplog.records if "series" in r.getMessage()]
