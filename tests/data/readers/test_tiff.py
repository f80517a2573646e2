"""TIFF sources: what is read of a file, and what is said of what is not."""

from __future__ import annotations

import logging

import numpy as np
import tifffile

import pytest

from segpipe.data.readers import open_source
from segpipe.data.readers.tiff import TiffSource, image_series
from segpipe.errors import InputError


def _positions(path, sizes=(0.5, 1.5)):
    """An OME-TIFF of one position per pixel size, each position's pixels its index plus 1."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        for index, size in enumerate(sizes):
            tif.write(np.full((30 + index, 40), index + 1, np.uint16),
                      metadata={"axes": "YX", "PhysicalSizeY": size, "PhysicalSizeX": size})
    return path


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
    assert said == [f"{path}: holds 2 image series; segpipe reads the first (64x80) and leaves out the other 1 (32x40); "
                    "a catalog entry's series: names another"]


def test_a_file_of_one_series_says_nothing(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((3, 64, 80), np.uint16), photometric="minisblack", metadata={"axes": "ZYX"})
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        TiffSource(tmp_path / "one.tif").close()
    assert not [r for r in caplog.records if "series" in r.getMessage()]


def test_a_series_asked_for_is_read_with_its_own_pixel_size_and_nothing_said(tmp_path, caplog):
    """Each OME ``Image`` is its own series, with its own shape and ``PhysicalSize``: before, only
    the first could be read, at the first image's pixel size."""
    path = _positions(tmp_path / "positions.ome.tif")
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        for index, size in enumerate((0.5, 1.5)):
            with open_source(path, series=index) as source:
                assert source.shape[-2:] == (30 + index, 40)
                assert source.meta.spacing[1:] == (size, size)
                assert np.unique(source.read_all()).tolist() == [index + 1]
    assert not [r for r in caplog.records if "series" in r.getMessage()]


def test_a_series_that_is_not_there_and_a_series_of_a_png_are_one_line(tmp_path):
    path = _positions(tmp_path / "positions.ome.tif")
    with pytest.raises(InputError, match=r"positions.ome.tif: has 2 image series; series 2 does not exist \(they count from 0\)$"):
        open_source(path, series=2)
    from skimage.io import imsave

    imsave(tmp_path / "a.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    with pytest.raises(InputError, match="a.png: series 1 asked for, but only a TIFF file holds several image series"):
        open_source(tmp_path / "a.png", series=1)


def test_which_files_count_as_several_images(tmp_path):
    """OME-TIFF positions and tifffile's own shaped series are images; one series, or a file that
    does not open, is one image (it fails when read)."""
    assert image_series(_positions(tmp_path / "positions.ome.tif", sizes=(1, 1, 1))) == 3
    with tifffile.TiffWriter(tmp_path / "shaped.tif") as tif:
        tif.write(np.zeros((8, 8), np.uint8))
        tif.write(np.zeros((4, 4), np.uint8))
    assert image_series(tmp_path / "shaped.tif") == 2
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    assert image_series(tmp_path / "stack.tif") == 1
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 not really")
    assert image_series(tmp_path / "broken.tif") == 1


@pytest.mark.parametrize("kind", ["imagej", "ome", "bigtiff"])
def test_a_time_lapse_cut_short_after_its_first_page_is_refused(tmp_path, kind):
    """A copy that stopped after the first frame's pixels was read as one 2D image (tifffile falls
    back to the pages before the cut, saying so only in its log): later frames and the pixel size
    were lost without a word."""
    movie = np.random.default_rng(0).integers(0, 1000, (5, 64, 64)).astype(np.uint16)
    path = tmp_path / "movie.tif"
    if kind == "imagej":
        tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX", "finterval": 1.0})
    else:
        tifffile.imwrite(path, movie, ome=True, bigtiff=kind == "bigtiff", metadata={"axes": "TYX"})
    with TiffSource(path) as whole:
        assert whole.shape[0] == 5
    with tifffile.TiffFile(path) as tif:
        end = tif.pages[0].dataoffsets[0] + tif.pages[0].databytecounts[0]  # the first frame's pixels, whole
    data = path.read_bytes()
    assert end < len(data)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:end + 100])
    with pytest.raises(InputError, match=r"cut.tif: cut short: after its 1 page\(s\) the file points to another past its end"):
        TiffSource(cut)


@pytest.mark.parametrize(("unit", "seconds"), [("s", 2.0), ("d", 172800.0), ("µs", 2e-6), ("ns", 2e-9), ("h", 7200.0)])
def test_an_ome_time_increment_in_each_ome_unit_gives_the_time_step(tmp_path, unit, seconds):
    """Days and microseconds, OME units both, left the time column out without a word."""
    path = tmp_path / "movie.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 16, 16), np.uint16), ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 2.0, "TimeIncrementUnit": unit})
    with TiffSource(path) as source:
        assert source.meta.time_step == pytest.approx(seconds)


@pytest.mark.parametrize("given", ["X", "Y"])
def test_an_ome_pixel_size_given_for_one_axis_is_taken_for_both(tmp_path, caplog, given):
    """PhysicalSizeX alone: y took the 1 um default, the pixel became 1 x 0.5 um, the image was
    resampled 2:1 and every area came out twice too large."""
    path = tmp_path / "field.ome.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint16), ome=True,
                     metadata={"axes": "YX", f"PhysicalSize{given}": 0.5, f"PhysicalSize{given}Unit": "nm"})
    with caplog.at_level(logging.WARNING), TiffSource(path) as source:
        assert source.meta.spacing[1:] == (0.5, 0.5) and source.meta.unit == "nanometer"
    assert f"gives PhysicalSize{given} alone; taken for {'Y' if given == 'X' else 'X'} too" in caplog.text
