"""Unit names: what users and files write, as NGFF names, and lengths converted between them."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from segpipe.data.readers.units import length_factor, length_unit, pixel_size_problem, sizes_text


@pytest.mark.parametrize(("given", "name"), [("um", "micrometer"), ("µm", "micrometer"), ("Micron", "micrometer"),
                                             ("nm", "nanometer"), ("mm", "millimeter"), ("cm", "centimeter"), ("m", "meter")])
def test_short_names_are_the_ngff_names(given, name):
    assert length_unit(given) == name


@pytest.mark.parametrize("given", ["parsec", "pixel", "inch"])
def test_what_is_no_length_unit_is_refused(given):
    with pytest.raises(ValueError, match=f"'{given}' is not a length unit"):
        length_unit(given)


@pytest.mark.parametrize(
    ("unit", "to", "factor"),
    [("micrometer", "nanometer", 1000.0), ("nm", "um", 1e-3), ("millimeter", "um", 1000.0), ("um", "micrometer", 1.0),
     ("pixel", "micrometer", 1.0), (None, "nm", 1.0)],
)
def test_length_factor_converts_any_spelling_and_leaves_what_it_does_not_know(unit, to, factor):
    """A store written before unit names were checked may hold 'um' or 'nm' as typed."""
    assert length_factor(unit, to) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("sizes", "unit"),
    [((0.65, 0.65), "micrometer"), ((2.0, 0.5, 0.5), "um"), ((1.0, 1.0, 1.0), "mm"), ((0.1, 0.1), "nanometer"),
     ((10.0,), "centimeter"), ((5.0, 5.0), None), ((1e9,), "pixel")],
)
def test_pixel_sizes_of_microscopes_and_scanners_are_accepted(sizes, unit):
    """0.1 nm (electron microscopy) to 10 cm; where the unit is not known only the sign and finiteness count."""
    assert pixel_size_problem(sizes, unit) is None


@pytest.mark.parametrize(
    ("sizes", "unit", "message"),
    [((0.0, 1.0), "um", "0 x 1 is not a pixel size: each size must be a positive number"),
     ((-1.0,), None, "-1 is not a pixel size"),
     ((float("nan"),), "um", "nan is not a pixel size"),
     ((float("inf"),), "um", "inf is not a pixel size"),
     ((0.65, 0.65), "m", "0.65 x 0.65 meter is no pixel size of a microscope or scanner image (0.1 nm to 10 cm)"),
     ((1e-30,), "um", "1e-30 micrometer is no pixel size"),
     ((0.09,), "nm", "0.09 nanometer is no pixel size"),
     ((11.0,), "cm", "11 centimeter is no pixel size")],
)
def test_what_no_image_has_as_a_pixel_is_named(sizes, unit, message):
    assert message in pixel_size_problem(sizes, unit)


def test_sizes_are_printed_one_way():
    assert sizes_text((0.5, 0.65)) == "0.5 x 0.65"
    assert sizes_text([2]) == "2"


@pytest.mark.parametrize(("write", "expected", "unit"), [
    # ImageJ's unit as Fiji users type it: 2000 x 300 x 300 nanometers is 2 x 0.3 x 0.3 micrometres
    (lambda p, a: tifffile.imwrite(p, a, imagej=True, resolution=(1 / 300, 1 / 300),
                                   metadata={"unit": "nanometers", "spacing": 2000.0, "axes": "ZYX"}), (2000.0, 300.0, 300.0), "nanometer"),
    (lambda p, a: tifffile.imwrite(p, a, ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 20000.0, "PhysicalSizeZUnit": "Å",
                                                            "PhysicalSizeY": 3000.0, "PhysicalSizeYUnit": "Å",
                                                            "PhysicalSizeX": 3000.0, "PhysicalSizeXUnit": "Å"}),
     (20000.0, 3000.0, 3000.0), "angstrom"),
    # each axis in its own unit: all in micrometres
    (lambda p, a: tifffile.imwrite(p, a, ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeZUnit": "µm",
                                                            "PhysicalSizeY": 300.0, "PhysicalSizeYUnit": "nm",
                                                            "PhysicalSizeX": 300.0, "PhysicalSizeXUnit": "nm"}),
     (2.0, 0.3, 0.3), "micrometer"),
])
def test_pixel_sizes_in_the_units_files_write(tmp_path, write, expected, unit):
    """nanometers, Å and mixed units were read as micrometres: volumes 10^9 to 10^12 times too large."""
    from segpipe.data.readers import open_source

    write(tmp_path / "v.tif", np.zeros((3, 16, 16), np.uint8))
    with open_source(tmp_path / "v.tif") as source:
        assert source.meta.spacing == pytest.approx(expected) and source.meta.unit == unit


def test_a_unit_segpipe_does_not_know_is_no_pixel_size(tmp_path, caplog):
    import logging

    from segpipe.data.readers import open_source

    tifffile.imwrite(tmp_path / "v.tif", np.zeros((3, 16, 16), np.uint8), imagej=True, resolution=(1 / 3, 1 / 3),
                     metadata={"unit": "furlong", "spacing": 2.0, "axes": "ZYX"})
    with caplog.at_level(logging.WARNING, logger="segpipe"), open_source(tmp_path / "v.tif") as source:
        assert source.meta.spacing == (None, None, None) and source.meta.unit is None
    assert "v.tif: its pixel size is in 'furlong', a unit segpipe does not know; taken as not given" in caplog.text
