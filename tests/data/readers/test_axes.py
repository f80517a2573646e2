"""Axis letters of a file, as the catalog's axes: or segment's --axes override them."""

from pathlib import Path

import pytest

from segpipe.data.readers.axes import resolve_axes
from segpipe.errors import InputError


def test_an_override_replaces_the_files_own_letters():
    assert resolve_axes(Path("s.tif"), "ZYX", (5, 64, 64), override="TYX") == "TYX"


def test_an_override_of_another_length_says_it_applies_to_every_file():
    """A folder of 2D images and one ZYX stack with --axes TYX: each 2D image failed with a line that
    did not say --axes is applied to every input."""
    with pytest.raises(InputError) as caught:
        resolve_axes(Path("a.tif"), "YX", (64, 64), override="TYX")
    assert str(caught.value) == (
        "a.tif: axes 'TYX' (the catalog's axes:, or --axes) name 3 axes, the file has 2 (shape (64, 64), axes 'YX'); "
        "they apply to every file, so give files of other axes an entry (or a segment run) of their own"
    )


def test_a_file_of_a_few_values_on_its_last_axis_is_suggested_channels_last():
    """A (256, 256, 2) TIFF saved without saying its axes (tifffile: 'QYX'): the line suggested ZYX,
    TYX or CYX, not the YXC that reads it."""
    with pytest.raises(InputError, match=r"e\.g\. axes: YXC \(channels last, as the shape suggests\) or ZYX"):
        resolve_axes(Path("two.tif"), "QYX", (256, 256, 2))
    with pytest.raises(InputError, match=r"e\.g\. axes: ZYX or TYX or CYX \(T frames"):
        resolve_axes(Path("stack.tif"), "QYX", (5, 256, 256))
