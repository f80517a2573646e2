"""NIfTI sources via nibabel (3D and 4D).

NIfTI stores ``(x, y, z[, t or components])`` in Fortran order; segpipe stores ``(z, y, x)``.
The source's affine (voxel ``(i, j, k)`` to world) is kept verbatim in the store, and
:func:`segpipe.prediction.export.export_nifti` writes predictions back with it, so they overlay the source exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.errors import InputError
from segpipe.data.readers.axes import AxesSpec, canonical_shape
from segpipe.data.readers.source import Metadata, Source, Window, file_index, to_canonical

# The 4th NIfTI dimension is channels (modalities) unless the catalog says otherwise.
DEFAULT_AXES = {2: "XY", 3: "XYZ", 4: "XYZC", 5: "XYZTC"}
_UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}


class NiftiSource(Source):
    """A ``.nii`` or ``.nii.gz`` file; slabs are read through nibabel's array proxy."""

    def __init__(self, path: Path, *, spec: AxesSpec = AxesSpec()):
        import nibabel as nib

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
        zooms = [float(z) for z in header.get_zooms()[:3]] + [None] * 3
        spacing = {"X": zooms[0], "Y": zooms[1], "Z": zooms[2]}
        space_unit = header.get_xyzt_units()[0]
        self.meta = Metadata(
            spacing=tuple(spacing[a] or None for a in "ZYX"),  # type: ignore[arg-type]
            unit=_UNITS.get(space_unit),
            affine=np.asarray(self._image.affine, dtype=float),
            axes=self._mapped,
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
