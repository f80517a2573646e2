"""OME-Zarr images (NGFF 0.4 and 0.5), read from their full-resolution level.

The image is the group's first ``multiscales`` entry; its axes (``t``, ``c``, ``z``, ``y``, ``x``
by type and name) map onto segpipe's ``TCZYX`` and the full-resolution level's scale gives the
spacing (with the multiscale's own scale, when it has one). A store that segpipe wrote (one
image per child group) is read from its first image that is not a label image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.data.readers.axes import AxesSpec, canonical_shape
from segpipe.data.readers.source import Metadata, Source, Window, file_index, to_canonical
from segpipe.data.readers.units import normalize_unit
from segpipe.errors import InputError


def is_ome_zarr(path: Path) -> bool:
    """A folder holding a zarr group (v3 ``zarr.json`` or v2 ``.zgroup``/``.zattrs``)."""
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zattrs"))


def multiscales_of(attrs: dict) -> list | None:
    """The ``multiscales`` list of NGFF 0.5 (under ``ome``) or 0.4 attributes."""
    return (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")


#: Seconds per NGFF time unit (an axis without a unit gives no time step).
SECONDS = {"second": 1.0, "millisecond": 1e-3, "microsecond": 1e-6, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


class OmeZarrSource(Source):
    """The full-resolution level of an OME-Zarr image, read lazily."""

    def __init__(self, path: Path, *, spec: AxesSpec = AxesSpec()):
        import zarr

        self.path = path
        try:
            group = zarr.open_group(str(path), mode="r")
            group, multiscales = _image_group(group)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{path}: not a readable OME-Zarr image ({type(err).__name__}: {err})") from None
        if multiscales is None:
            raise InputError(f"{path}: a zarr group without an OME-Zarr image (no multiscales metadata)")
        first = multiscales[0]
        try:
            level = first["datasets"][0]
            self._array = group[level["path"]]
        except (KeyError, IndexError, TypeError):
            named = (first.get("datasets") or [{}])[0].get("path") if isinstance(first, dict) else None
            raise InputError(f"{path}: an OME-Zarr image without its full-resolution array "
                             f"({named or 'none named'}): copied in part?") from None
        axes = first.get("axes") or [{"name": n} for n in "tczyx"[-len(self._array.shape):]]
        letters = "".join(_letter(axis) for axis in axes)
        self._mapped = spec.resolve(path, letters, tuple(self._array.shape))
        self.shape = canonical_shape(self._mapped, tuple(self._array.shape))
        self.dtype = np.dtype(self._array.dtype)
        scale = np.broadcast_to(_scale(level) * _scale(first), (len(self._mapped),))
        sizes = {letter: float(s) for letter, s in zip(self._mapped, scale) if letter in "ZYX"}
        units = {_letter(a): normalize_unit(a.get("unit")) for a in axes if isinstance(a, dict)}
        time_unit = next((a.get("unit") for a in axes if isinstance(a, dict) and _letter(a) == "T"), None)
        step = next((float(s) for letter, s in zip(self._mapped, scale) if letter == "T"), None)
        self.meta = Metadata(
            spacing=tuple(sizes.get(a) for a in "ZYX"),  # type: ignore[arg-type]
            unit=units.get("X") or units.get("Y"),
            axes=self._mapped,
            time_step=step * SECONDS[time_unit] if step and time_unit in SECONDS else None,
        )

    def read(self, t: int, window: Window) -> np.ndarray:
        index, kept = file_index(self._mapped, t, window)
        return to_canonical(np.asarray(self._array[index]), kept)


def _image_group(group):
    """``group`` itself when it is an image, else its first child image (not a label image)."""
    multiscales = multiscales_of(dict(group.attrs))
    if multiscales:
        return group, multiscales
    for name, child in sorted(group.groups()):
        if name == "labels" or name.startswith("."):
            continue
        found = multiscales_of(dict(child.attrs))
        if found:
            return child, found
    return group, None


def _letter(axis) -> str:
    """``T``, ``C``, ``Z``, ``Y``, ``X`` (or ``?``) for an NGFF axis."""
    if isinstance(axis, str):
        name, kind = axis, ""
    else:
        name, kind = str(axis.get("name", "")), str(axis.get("type", ""))
    if kind == "time" or name.lower() == "t":
        return "T"
    if kind == "channel" or name.lower() == "c":
        return "C"
    return name.upper() if name.upper() in "ZYX" and len(name) == 1 else "?"


def _scale(node: dict) -> np.ndarray:
    for transform in node.get("coordinateTransformations") or []:
        if transform.get("type") == "scale":
            return np.asarray(transform["scale"], dtype=float)
    return np.asarray(1.0)
