"""Spatial unit names as NGFF wants them (UDUNITS-2 names such as ``micrometer``)."""

from __future__ import annotations

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


def normalize_unit(unit: str | None) -> str | None:
    """The NGFF name of a spatial unit from file metadata; ``None`` if absent or unknown."""
    if unit is None:
        return None
    return _ALIASES.get(str(unit).strip().lower(), None)
