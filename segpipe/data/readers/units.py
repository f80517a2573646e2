"""Spatial unit names as NGFF wants them (UDUNITS-2 names such as ``micrometer``)."""

from __future__ import annotations

import math

_ALIASES = {
    "micron": "micrometer",
    "microns": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "\\u00b5m": "micrometer",
    "micrometer": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "m": "meter",
    "meter": "meter",
    "pixel": None,
    "pixels": None,
    "": None,
}
for _name in ("nanometer", "micrometer", "millimeter", "centimeter", "meter"):  # plurals, British spellings
    _ALIASES[_name + "s"] = _name
    _ALIASES[_name[:-2] + "re"] = _ALIASES[_name[:-2] + "res"] = _name
_ALIASES.update({"\u00e5": "angstrom", "\u212b": "angstrom", "angstrom": "angstrom", "angstroms": "angstrom",
                 "\\u00c5": "angstrom"})  # inches: a print resolution (72 dpi), no pixel size
#: What files say where they have no unit (ImageJ's word for uncalibrated, an empty field).
NO_UNIT = ("pixel", "pixels", "")


def normalize_unit(unit: str | None) -> str | None:
    """The NGFF name of a spatial unit from file metadata; ``None`` if absent or unknown."""
    if unit is None:
        return None
    return _ALIASES.get(str(unit).strip().lower(), None)


def unknown_unit(unit: str | None) -> bool:
    """Whether a file names a unit segpipe does not know (its pixel sizes cannot be read as lengths)."""
    return unit is not None and str(unit).strip().lower() not in NO_UNIT and normalize_unit(unit) is None


#: The length units a pixel size may be given in (their NGFF names).
LENGTH_UNITS = ("nanometer", "micrometer", "millimeter", "centimeter", "meter")


def length_unit(unit: str | None) -> str | None:
    """The NGFF name of a unit a user gave for a pixel size (``um``, ``µm``, ``nm``, ``mm``, ...).

    Raises:
        ValueError: ``unit`` is no length unit (a pixel size in pixels is no pixel size: leave it out).
    """
    if unit is None:
        return None
    name = normalize_unit(unit)
    if name is None:
        raise ValueError(
            f"{unit!r} is not a length unit; use one of {', '.join(LENGTH_UNITS)} (or nm, um, µm, mm, cm, m)"
        )
    return name


_MICROMETRES = {"angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}


def length_factor(unit: str | None, to: str | None) -> float:
    """What a length in ``unit`` is multiplied by to be in ``to`` (NGFF names); 1 where either is
    not a length unit this module knows (nothing to convert)."""
    unit, to = normalize_unit(unit), normalize_unit(to)
    if unit in _MICROMETRES and to in _MICROMETRES:
        return _MICROMETRES[unit] / _MICROMETRES[to]
    return 1.0


def sizes_text(values) -> str:
    """Pixel sizes as segpipe prints them: ``0.5 x 0.65``."""
    return " x ".join(f"{float(v):g}" for v in values)


#: The physical pixel sizes segpipe accepts from a user, in micrometres: from 0.1 nm (the finest an
#: electron microscope resolves) to 10 cm (coarser than any scanner's voxel).
PIXEL_SIZE_RANGE = (1e-4, 1e5)
#: :data:`PIXEL_SIZE_RANGE` as messages give it.
PIXEL_SIZE_RANGE_TEXT = "0.1 nm to 10 cm"


def pixel_size_problem(values, unit: str | None) -> str | None:
    """Why ``values`` (one size per axis) in ``unit`` are no pixel size of an image, or ``None``.

    Every size must be positive and finite; where the unit is known, within :data:`PIXEL_SIZE_RANGE`
    (a size in the wrong unit, ``0.65 m`` meant as 0.65 um, reads as a typing error, not a scale).
    """
    values = [float(v) for v in values]
    if any(not (math.isfinite(v) and v > 0) for v in values):
        return f"{sizes_text(values)} is not a pixel size: each size must be a positive number"
    name = normalize_unit(unit)
    if name not in _MICROMETRES:
        return None
    low, high = PIXEL_SIZE_RANGE
    micrometres = [v * _MICROMETRES[name] for v in values]
    if all(low <= v <= high for v in micrometres):
        return None
    return (f"{sizes_text(values)} {name} is no pixel size of a microscope or scanner image ({PIXEL_SIZE_RANGE_TEXT}); "
            "check the number and its unit")
