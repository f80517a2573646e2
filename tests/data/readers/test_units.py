"""Unit names: what users and files write, as NGFF names, and lengths converted between them."""

from __future__ import annotations

import pytest

from segpipe.data.readers.units import length_factor, length_unit


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
