"""Read image and label files (TIFF, NIfTI) into arrays in ``(z)yx`` order, with spacing.

Readers only read; checks of the content (NaN, label dtype, shapes) live in
:mod:`segpipe.validate`, so every format gets the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segpipe.errors import InputError


@dataclass(frozen=True)
class ImageData:
    """An array read from a file.

    Attributes:
        array: Pixel data; spatial axes last, in ``(z)yx`` order, channels (if any) first.
        spacing: Size of a pixel along each spatial axis, or ``None`` when the file does not say.
        affine: The 4x4 voxel-to-world matrix of a NIfTI source (in its own ``xyz`` order).
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None


def detect_format(path: Path) -> str:
    """``tiff`` or ``nifti`` from the file name."""
    name = path.name.lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    raise InputError(f"{path}: unknown image format (expected .tif, .tiff, .nii or .nii.gz)")


def read_image(path: Path, *, fmt: str = "auto", ndim: int, channel_axis: int | None = None) -> ImageData:
    """Read one file.

    Args:
        path: The file.
        fmt: ``tiff``, ``nifti`` or ``auto`` (from the suffix).
        ndim: Expected spatial dimensions.
        channel_axis: Axis holding channels in the file's array, moved to the front.

    Raises:
        InputError: The file is missing, empty, not of its format, or has the wrong rank.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    fmt = detect_format(path) if fmt == "auto" else fmt
    data = _read_tiff(path) if fmt == "tiff" else _read_nifti(path)
    array = data.array
    if channel_axis is not None:
        array = np.moveaxis(array, channel_axis, 0)
    expected = (ndim,) if channel_axis is None else (ndim + 1,)
    if array.ndim not in expected:
        # A single-channel stack stored with a length-1 channel axis is common; drop it.
        squeezed = np.squeeze(array) if channel_axis is None else array
        if squeezed.ndim != expected[0]:
            raise InputError(
                f"{path}: array has shape {array.shape} ({array.ndim} axes); "
                f"the catalog says {ndim} spatial axes" + (" plus channels" if channel_axis is not None else "")
            )
        array = squeezed
    spacing = data.spacing
    if spacing is not None and len(spacing) != ndim:
        spacing = None
    return ImageData(array=array, spacing=spacing, affine=data.affine)


def _read_tiff(path: Path) -> ImageData:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            array = tif.asarray()
            spacing = _tiff_spacing(tif)
    except Exception as err:  # tifffile raises many types for damaged files
        raise InputError(f"{path}: not a readable TIFF ({type(err).__name__}: {err})") from err
    return ImageData(array=array, spacing=spacing)


def _tiff_spacing(tif) -> tuple[float, ...] | None:
    """Physical pixel size from OME or ImageJ metadata, ``None`` when absent."""
    page = tif.pages.first
    ij = tif.imagej_metadata or {}
    try:
        x_res = page.tags["XResolution"].value
        y_res = page.tags["YResolution"].value
    except KeyError:
        return None
    if not (x_res[0] and y_res[0]) or (x_res == (1, 1) and y_res == (1, 1)):
        return None
    if not ij and page.tags.get("ResolutionUnit") is not None and page.tags["ResolutionUnit"].value == 2:
        return None  # dots per inch: a print resolution, not a physical pixel size
    yx = (y_res[1] / y_res[0], x_res[1] / x_res[0])
    if "spacing" in ij:
        return (float(ij["spacing"]), *yx)
    return yx


def _read_nifti(path: Path) -> ImageData:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)
        if image.dataobj.slope not in (1, None) or image.dataobj.inter not in (0, None):
            array = image.get_fdata(dtype=np.float32)
    except Exception as err:
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    zooms = tuple(float(z) for z in image.header.get_zooms()[: array.ndim])
    # NIfTI arrays are (x, y, z[, t]); store spatial axes as (z, y, x) like every other format.
    spatial = min(array.ndim, 3)
    order = tuple(reversed(range(spatial))) + tuple(range(spatial, array.ndim))
    array = np.ascontiguousarray(np.transpose(array, order))
    if array.ndim > spatial:
        array = np.moveaxis(array, -1, 0)
    return ImageData(array=array, spacing=tuple(reversed(zooms[:spatial])), affine=image.affine)
