"""NIfTI sources via nibabel (3D and 4D).

NIfTI stores ``(x, y, z[, t or components])`` in Fortran order; segpipe stores ``(z, y, x)``.
The source's affine (voxel ``(i, j, k)`` to world) is kept verbatim in the store, and
:func:`segpipe.prediction.export.export_nifti` writes predictions back with it, so they overlay the source exactly.
The voxel size is that affine's (the length of each voxel axis in world units), so the network
sees the image at the scale its labels are written at; ``pixdim`` alone counts only for a file
without an sform or qform, and a zero there is no voxel size (nibabel would take 1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from segpipe.errors import InputError
from segpipe.data.readers.axes import AxesSpec, canonical_shape
from segpipe.data.readers.source import Metadata, Source, Window, file_index, to_canonical
from segpipe.data.readers.units import sizes_text

# The 4th NIfTI dimension is channels (modalities) unless the catalog says otherwise.
DEFAULT_AXES = {2: "XY", 3: "XYZ", 4: "XYZC", 5: "XYZTC"}
_UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # files whose pixdim and sform disagree, said once per process


class _ZeroPixdimMended(logging.Filter):
    """nibabel's own line on a zero ``pixdim`` (printed twice, and about its repair, not the file):
    :func:`voxel_sizes` reads the header as written and says what the zero means here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be non-zero; setting 0 dims to 1" not in record.getMessage()


def _quiet_nibabel() -> None:
    from nibabel import imageglobals

    if not any(isinstance(f, _ZeroPixdimMended) for f in imageglobals.logger.filters):
        imageglobals.logger.addFilter(_ZeroPixdimMended())


class NiftiSource(Source):
    """A ``.nii`` or ``.nii.gz`` file; slabs are read through nibabel's array proxy."""

    def __init__(self, path: Path, *, spec: AxesSpec = AxesSpec()):
        import nibabel as nib

        _quiet_nibabel()
        self.path = path
        try:
            self._image = nib.load(str(path), keep_file_open=True)
            proxy = self._image.dataobj
            shape = tuple(int(s) for s in proxy.shape)
            raw = np.dtype(self._image.get_data_dtype())
            slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        except Exception as err:
            raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
        for axis, size in enumerate(shape, start=1):
            if size < 0:  # nibabel takes dim[] as written; a negative size is a damaged header
                raise InputError(f"{path}: not a readable NIfTI file (damaged header: dimension {axis} is {size})")
        if len(shape) not in DEFAULT_AXES:
            raise InputError(f"{path}: NIfTI with {len(shape)} dimensions {shape} is not supported (2 to 5)")
        self._scaled = slope not in (1, None) or inter not in (0, None)
        self.dtype = np.dtype(np.float32) if self._scaled and raw.itemsize <= 4 else raw
        if self._scaled and raw.kind == "f" and raw.itemsize > 4:
            self.dtype = raw
        self._mapped = spec.resolve(path, DEFAULT_AXES[len(shape)], shape)
        self.shape = canonical_shape(self._mapped, shape)
        header = self._image.header
        zooms = voxel_sizes(path, self._image) + [None] * 3
        spacing = {"X": zooms[0], "Y": zooms[1], "Z": zooms[2]}
        space_unit = header.get_xyzt_units()[0]
        self.meta = Metadata(
            spacing=tuple(spacing[a] or None for a in "ZYX"),  # type: ignore[arg-type]
            unit=_UNITS.get(space_unit),
            # without an sform or a qform (world None) this is nibabel's stand-in (x flipped, centred):
            # it lays out the labels' voxels, and places nothing in a world
            affine=np.asarray(self._image.affine, dtype=float),
            axes=self._mapped,
            world=world_space(header),
            time_step=_time_step(header, self._mapped),
            **_qform(header),
        )

    def read(self, t: int, window: Window) -> np.ndarray:
        index, kept = file_index(self._mapped, t, window)
        try:
            block = np.asarray(self._image.dataobj[index])
        except Exception as err:
            raise InputError(f"{self.path}: NIfTI data cannot be read ({type(err).__name__}: {err})") from err
        return to_canonical(block.astype(self.dtype, copy=False), kept)

    def close(self) -> None:
        image = getattr(self, "_image", None)
        opener = getattr(getattr(image, "dataobj", None), "_opener", None)
        if opener is not None:
            opener.close_if_mine()


def world_space(header) -> str | None:
    """The space of the affine nibabel places the image with: the sform's when it has a code, else
    the qform's (``mni`` for an image registered to MNI space); ``None`` without either."""
    from nibabel.nifti1 import xform_codes

    for field in ("sform_code", "qform_code"):
        code = int(header[field])
        if code > 0:
            return str(xform_codes.label[code]) if code in xform_codes.value_set() else None
    return None


#: Seconds per NIfTI time unit (``xyzt_units``).
_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def _time_step(header, mapped: str) -> float | None:
    """Seconds between time points: the ``pixdim`` of the file's fourth axis where it is read as
    time, in the header's time unit (``None`` without such an axis, a step, or a time unit). A
    spatial axis read as time (``--axes XYT``) has no time step: its pixdim is a length."""
    if mapped.find("T") != 3:
        return None
    zooms = header.get_zooms()
    factor = _SECONDS.get(header.get_xyzt_units()[1])
    step = float(zooms[3]) if len(zooms) > 3 else 0.0
    return step * factor if factor and step > 0 else None


def _qform(header) -> dict:
    """The header's qform and its space where its code is set (``{}`` otherwise)."""
    from nibabel.nifti1 import xform_codes

    matrix, code = header.get_qform(coded=True)
    if matrix is None or not code or int(code) not in xform_codes.value_set():
        return {}
    return {"qform": np.asarray(matrix, dtype=float), "qform_space": str(xform_codes.label[int(code)])}


def voxel_sizes(path: Path, image) -> list[float | None]:
    """The length of each of the first three voxel axes (x, y, z) in world units; ``None`` where
    the file gives none.

    With an sform or a qform, the affine nibabel chose from them (what the labels are written
    with) gives the sizes; ``pixdim`` values within 1e-4 of them are taken as written, and an
    sform that disagrees with ``pixdim`` is followed, with a warning. Without either, ``pixdim``
    gives them, and a zero there (which nibabel replaces with 1) is none.
    """
    header = image.header
    raw = _pixdim_as_written(path, header)
    if int(header["sform_code"]) > 0 or (int(header["qform_code"]) > 0 and all(p > 0 for p in raw)):
        norms = np.sqrt((np.asarray(image.affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
        agree = [bool(np.isclose(n, p, rtol=1e-4)) for n, p in zip(norms, raw)]
        sizes = [float(p) if p > 0 and same else round(float(n), 6) for n, p, same in zip(norms, raw, agree)]
        if any(p > 0 and not same for p, same in zip(raw, agree)) and str(path) not in _WARNED:
            _WARNED.add(str(path))
            log.warning("%s: the header's pixdim (%s) and its sform (%s) give different voxel sizes; taking the sform's, "
                        "which places the image and its labels in the world", path,
                        sizes_text(raw), sizes_text(sizes))
        return sizes  # type: ignore[return-value]
    return [float(p) if p > 0 else None for p in raw]


def _pixdim_as_written(path: Path, header) -> list[float]:
    """``pixdim[1:4]`` as the file holds it (nibabel's loaded header has zeros set to 1)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as handle:
            written = type(header).from_fileobj(handle, check=False)
        return [abs(float(p)) for p in written["pixdim"][1:4]]  # a negative pixdim's size is its magnitude, as nibabel reads it
    except Exception:  # the header was read once already; fall back to it
        return [abs(float(z)) for z in header.get_zooms()[:3]]
