"""Read image and label files (TIFF, NIfTI, PNG, folders of slices) as lazy sources.

:func:`open_source` gives a :class:`~segpipe.data.readers.source.Source`: shape ``(T, C, Z, Y, X)``,
dtype and metadata known up front, pixels read window by window. Readers only read; checks of
the content (NaN, label values, shapes) live in :mod:`segpipe.data.validate`, so every format gets
the same checks. :func:`read_image` reads a whole file at once (small files, tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from segpipe.errors import InputError
from segpipe.data.readers.axes import AxesSpec
from segpipe.data.readers.omezarr import is_ome_zarr
from segpipe.data.readers.slices import SliceStack, natural_key
from segpipe.data.readers.source import WIDER, Metadata, SelectedSource, Source, WidenedSource
from segpipe.data.readers.units import PIXEL_SIZE_RANGE_TEXT, pixel_size_problem

__all__ = [
    "AxesSpec",
    "ImageData",
    "Metadata",
    "SelectedSource",
    "Source",
    "SliceStack",
    "detect_format",
    "natural_key",
    "open_source",
    "read_image",
]

log = logging.getLogger(__name__)
_SAID: set[tuple] = set()  # (file, its time, what) warned about once per process: a file is opened more than once

SUFFIXES = {".tif": "tiff", ".tiff": "tiff", ".nii": "nifti", ".nii.gz": "nifti", ".png": "png"}


@dataclass(frozen=True)
class ImageData:
    """An array read from a file.

    Attributes:
        array: Pixel data; spatial axes last, in ``(z)yx`` order, channels (if any) first.
        spacing: Size of a pixel along each spatial axis, or ``None`` when the file does not say.
        affine: The 4x4 voxel-to-world matrix of a NIfTI source (in its own ``xyz`` order).
        world: The space that affine maps to (NIfTI's sform or qform code name); ``None`` when the
            file places its voxels nowhere (both codes 0: the affine is only its voxel sizes).
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    world: str | None = None


def detect_format(path: Path) -> str:
    """``tiff``, ``nifti`` or ``png`` from the file name."""
    name = Path(path).name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(f"{path}: unknown image format (expected .tif, .tiff, .nii, .nii.gz or .png)")


def open_source(
    path: str | Path, *, fmt: str = "auto", spec: AxesSpec = AxesSpec(), slice_glob: str = "*", series: int | None = None
) -> Source:
    """Open a file, or a folder of 2D slices, as a lazy ``(T, C, Z, Y, X)`` source.

    Args:
        path: The file, or a folder whose files matching ``slice_glob`` are the planes of a stack.
        fmt: ``tiff``, ``nifti``, ``png``, ``omezarr`` or ``auto`` (from the suffix; a folder
            holding a zarr group is OME-Zarr).
        spec: How to interpret the file's axes.
        slice_glob: For a folder: which files are slices (natural sort order).
        series: For a TIFF: which image series to read (from 0); ``None``: the first, saying so
            when there are others. Other formats hold one image and take only ``None`` or 0.

    Raises:
        InputError: Missing, empty or damaged file, wrong format, or axes that cannot be told.
    """
    source = _sizes_checked(_opened(Path(path), fmt=fmt, spec=spec, slice_glob=slice_glob, series=series))
    return WidenedSource(source) if np.dtype(source.dtype) in WIDER else source


def _sizes_checked(source: Source) -> Source:
    """``source``, its file's pixel sizes that are no size (0, negative, not a number, or in a known
    unit outside :data:`~segpipe.data.readers.units.PIXEL_SIZE_RANGE`: metres written as
    micrometres) taken as not given and an affine that maps no volume (a zero voxel size in a NIfTI sform) as none, each with
    a warning: the pixels are good, and a size of 0 divided by zero further on."""
    meta = source.meta
    bad = {a: s for a, s in zip("zyx", meta.spacing) if s is not None and pixel_size_problem([s], meta.unit)}
    if bad:
        if _once(source.path, "spacing"):
            log.warning("%s: the file's pixel size along %s (%s%s) is no size of a microscope or scanner image "
                        "(positive, %s); taken as not given", source.path, ", ".join(bad),
                        ", ".join(f"{s:g}" for s in bad.values()), f" {meta.unit}" if meta.unit else "",
                        PIXEL_SIZE_RANGE_TEXT)
        meta = replace(meta, spacing=tuple(None if a in bad else s for a, s in zip("zyx", meta.spacing)))
    if meta.affine is not None:
        linear = np.asarray(meta.affine, dtype=float)[:3, :3]
        if not np.all(np.isfinite(meta.affine)) or abs(float(np.linalg.det(linear))) < 1e-12:
            if _once(source.path, "affine"):
                log.warning("%s: the file's affine maps its voxels to no volume (a voxel size of 0); its world position "
                            "is left out", source.path)
            meta = replace(meta, affine=None)
    if meta is not source.meta:
        source.meta = meta
    return source


def _once(path: Path, what: str) -> bool:
    """Whether to warn about ``what`` of ``path`` (not yet said of this version of the file)."""
    try:
        version = Path(path).stat().st_mtime_ns
    except OSError:
        version = None
    key = (str(path), version, what)
    if key in _SAID:
        return False
    _SAID.add(key)
    return True


def _opened(path: Path, *, fmt: str, spec: AxesSpec, slice_glob: str, series: int | None) -> Source:
    if series and (path.is_dir() or is_ome_zarr(path)):
        _no_series(path, series)
    if fmt == "omezarr" or (fmt == "auto" and is_ome_zarr(path)):
        from segpipe.data.readers.omezarr import OmeZarrSource

        return OmeZarrSource(path, spec=spec)
    if path.is_dir():
        files = sorted(
            (p for p in path.glob(slice_glob) if p.is_file() and _supported(p)), key=natural_key
        )
        plane_spec = AxesSpec(override=None, fill="", channel_axis=spec.channel_axis)
        return SliceStack(path, files, opener=lambda p: open_source(p, fmt=fmt, spec=plane_spec))
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    fmt = detect_format(path) if fmt in ("auto", "ctc") else fmt
    if series and fmt != "tiff":
        _no_series(path, series)
    if fmt == "tiff":
        from segpipe.data.readers.tiff import TiffSource

        return TiffSource(path, spec=spec, series=series)
    if fmt == "nifti":
        from segpipe.data.readers.nifti import NiftiSource

        return NiftiSource(path, spec=spec)
    if fmt == "png":
        from segpipe.data.readers.png import PngSource

        return PngSource(path, spec=spec)
    raise InputError(f"{path}: unknown format {fmt!r}")


def _no_series(path: Path, series: int):
    raise InputError(f"{path}: series {series} asked for, but only a TIFF file holds several image series")


def _supported(path: Path) -> bool:
    return any(path.name.lower().endswith(s) for s in SUFFIXES)


def read_image(
    path: Path, *, fmt: str = "auto", ndim: int, channel_axis: int | None = None, expected_by: str = "the catalog"
) -> ImageData:
    """Read one whole file as ``(C, (z,) y, x)`` (channels only when ``channel_axis`` is set).

    Args:
        path: The file.
        fmt: ``tiff``, ``nifti``, ``png`` or ``auto`` (from the suffix).
        ndim: Expected spatial dimensions.
        channel_axis: Axis holding channels in the file's array, moved to the front.
        expected_by: Who expects ``ndim``, as a wrong rank's message names it.

    Raises:
        InputError: The file is missing, empty, not of its format, or has the wrong rank.
    """
    spec = AxesSpec(fill="Z" if ndim == 3 else "", channel_axis=channel_axis)
    with open_source(path, fmt=fmt, spec=spec) as source:
        t, c, z, _, _ = source.shape
        if t != 1 or (ndim == 2 and z != 1):
            raise InputError(f"{path}: array has shape {source.shape} (T, C, Z, Y, X); {expected_by} says {ndim}D")
        array = source.read_all()[0]
        meta = source.meta
    array = array if ndim == 3 else array[:, 0]
    if channel_axis is None:
        if c != 1:
            raise InputError(f"{path}: the file has {c} channels; set channel_axis or axes in the catalog")
        array = array[0]
    spacing = meta.spacing[3 - ndim :]
    return ImageData(
        array=array,
        spacing=tuple(spacing) if all(s is not None for s in spacing) else None,  # type: ignore[arg-type]
        affine=meta.affine,
        world=meta.world,
    )
