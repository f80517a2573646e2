"""Export label maps from a prediction group to TIFF, NIfTI and Cell Tracking Challenge folders.

Arrays are read slab by slab, so exports of large volumes stay within a few chunks of memory.
Every file is written under a temporary name and renamed when complete.

Geometry: the store keeps spatial axes in ``(z, y, x)`` order; NIfTI keeps ``(x, y, z)``. Its data
block is x fastest, then y, z (and t), which is the C order of the stored ``(t, z, y, x)`` arrays,
so slabs are written as they are read. The affine is the one ingest recorded for the stored grid
(a NIfTI source's matrix, moved to a region split's corner), else the spacing on the diagonal;
a label voxel then maps to the same world point as the source voxel it was predicted from.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from segpipe.errors import InputError
from segpipe.temporary import replacing

CTC_LIMIT = np.iinfo(np.uint16).max


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        yield tmp


def _blocks(array, tail: int, *, budget: int = 64 << 20) -> Iterator[np.ndarray]:
    """The array in C order, as blocks of whole trailing ``tail``-axis parts (about ``budget`` bytes each)."""
    shape = tuple(array.shape)
    if len(shape) <= tail:
        yield np.asarray(array[...])
        return
    outer, n = shape[: len(shape) - tail - 1], shape[len(shape) - tail - 1]
    per_row = math.prod(shape[len(shape) - tail :]) * np.dtype(array.dtype).itemsize
    rows = max(1, budget // max(per_row, 1))
    for index in np.ndindex(*outer):
        for start in range(0, n, rows):
            yield np.asarray(array[(*index, slice(start, min(start + rows, n)))])


class FrameStack:
    """Label arrays of one shape (the frames of a time series, stored as one image each) read as one
    array with a leading frame axis, a frame at a time: what :func:`export_tiff` and
    :func:`export_nifti` take."""

    def __init__(self, frames: list):
        if not frames or len({tuple(f.shape) for f in frames}) != 1:
            raise ValueError("frames must be one or more arrays of one shape")
        self.frames = list(frames)
        self.shape = (len(self.frames), *frames[0].shape)
        self.dtype = np.result_type(*(f.dtype for f in self.frames))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        head, rest = key[0], key[1:] or (Ellipsis,)
        if isinstance(head, (int, np.integer)):
            return np.asarray(self.frames[head][rest], dtype=self.dtype)
        return np.stack([np.asarray(frame[rest], dtype=self.dtype) for frame in self.frames[head]])


#: ImageJ's names of NGFF spatial units.
IMAGEJ_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m"}
#: NIfTI's spatial units (``xyzt_units``).
NIFTI_UNITS = {"micrometer": "micron", "millimeter": "mm", "meter": "meter"}
#: Largest label a float32 TIFF holds exactly (ImageJ shows uint8, uint16 and float32 images only).
FLOAT32_EXACT = 1 << 24


def export_tiff(
    array, path: str | Path, *, axes: str, spacing=None, unit: str | None = None, time_step: float | None = None
) -> Path:
    """Write a label array as an ImageJ hyperstack TIFF (zlib-compressed), page by page.

    Fiji, ImageJ and QuPath open it calibrated (pixel size and unit from ``spacing`` and
    ``unit``, the z step for stacks) with its axes (``T``, ``Z``). ImageJ shows 8- and 16-bit
    and float images only: labels are written as uint16 when there are at most 65,535 of them,
    else as float32 (exact up to 16,777,216), else as a plain uint32 TIFF (ImageJ cannot show it).

    Args:
        array: zarr or numpy labels, e.g. ``(y, x)`` or ``(z, y, x)``.
        path: Destination ``.tif``.
        axes: tifffile axes string for the array, e.g. ``"YX"``, ``"ZYX"``, ``"TYX"``.
        spacing: Pixel size per spatial axis (``[z,] y, x``).
        unit: NGFF unit of ``spacing``.
        time_step: Seconds between frames (``T``), written as ImageJ's frame interval.
    """
    path = Path(path)
    shape = tuple(array.shape)
    high = max((int(block.max(initial=0)) for block in _blocks(array, 2)), default=0)
    dtype = np.dtype(np.uint16 if high <= 65535 else np.float32 if high < FLOAT32_EXACT else np.uint32)
    imagej = dtype != np.uint32
    options: dict = {"compression": "zlib", "photometric": "minisblack"}
    metadata: dict = {"axes": axes}
    if imagej:
        options["imagej"] = True
        if spacing is not None:
            spatial = [float(s) for s in spacing]
            options["resolution"] = (1.0 / spatial[-1], 1.0 / spatial[-2])
            if "Z" in axes and len(spatial) == 3:
                metadata["spacing"] = spatial[0]
        if unit:
            metadata["unit"] = IMAGEJ_UNITS.get(unit, unit)
        if time_step and "T" in axes:
            metadata.update(finterval=float(time_step), tunit="sec")
    else:
        options["bigtiff"] = math.prod(shape) * dtype.itemsize > (2 << 30)
    pages = (page.astype(dtype, copy=False) for block in _blocks(array, 2) for page in block.reshape(-1, *shape[-2:]))
    with _atomic(path) as tmp:
        tifffile.imwrite(tmp, data=pages, shape=shape, dtype=dtype, metadata=metadata, **options)
    return path


#: The spaces NIfTI's sform and qform codes name (``unknown`` is none: labels are placed anyway).
WORLD_SPACES = ("scanner", "aligned", "talairach", "mni", "template")
#: NIfTI's name for an xform code of 0: labels placed nowhere, as their source (neither sform nor qform).
UNPLACED = "unknown"


def labels_space(info: dict) -> str | None:
    """The space NIfTI labels of a stored image are placed in (``world`` of :func:`export_nifti`): the
    source's; :data:`UNPLACED` for a NIfTI source with neither an sform nor a qform (its affine is
    nibabel's stand-in, its world none), except for a region cut from one, which needs a coded
    affine to lie where it was cut (``None``: ``aligned``)."""
    world = info.get("world")
    if world is None and info.get("affine") is not None:
        return None if info.get("region") else UNPLACED
    return world


def affine_unit(info: dict) -> str | None:
    """The unit of a stored image's affine (:func:`source_affine`), which NIfTI written on its grid
    names: a NIfTI source's own (``None`` where its header says unknown, though its sizes were read
    in a model's unit); the store's unit for an affine made from the pixel size, and for a store
    made before ``world_unit``."""
    if info.get("affine") is not None and "world_unit" in info:
        return info["world_unit"]
    return info.get("unit")


def _rotation_and_zoom(affine: np.ndarray) -> bool:
    """Whether ``affine``'s linear part is a rotation (or reflection) times voxel sizes, which a
    NIfTI qform can hold; a sheared one it cannot."""
    linear = np.asarray(affine, dtype=float)[:3, :3]
    rotation = linear / np.sqrt((linear**2).sum(axis=0))
    return bool(np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-5))


def source_affine(info: dict, *, ndim: int) -> np.ndarray:
    """Voxel-to-world 4x4 matrix (NIfTI ``(x, y, z)`` order) of a stored image's voxel grid.

    A NIfTI source's affine is recorded by ingest already moved to the stored grid's first voxel
    (a region split's corner). Without one, the spacing is the diagonal and a region split's
    corner the origin, so voxels keep the positions they had in the source file.

    Args:
        info: The image's entry in the store record (``images[]``).
        ndim: Spatial axes.
    """
    if info.get("affine") is not None:
        return np.asarray(info["affine"], dtype=np.float64)
    spacing = list(reversed([float(s) for s in info.get("spacing") or [1.0] * ndim]))
    affine = np.diag(spacing + [1.0] * (4 - len(spacing)))
    region = info.get("region")
    if region:
        corner = np.zeros(4)
        corner[:ndim] = [start for start, _ in reversed(region)]
        corner[3] = 1.0
        affine[:, 3] = affine @ corner
    return affine


def export_nifti(
    array,
    path: str | Path,
    *,
    affine: np.ndarray,
    ndim: int,
    unit: str | None = None,
    source_dims: int | None = None,
    world: str | None = None,
    qform: np.ndarray | None = None,
    qform_space: str | None = None,
    time_step: float | None = None,
) -> Path:
    """Write labels as NIfTI-1 (``.nii`` or ``.nii.gz``), streaming the data block.

    Args:
        array: ``(*frames, *spatial)`` labels with spatial axes ``(z, y, x)`` or ``(y, x)``; at most
            one frame axis, written as NIfTI's t.
        path: Destination.
        affine: 4x4 voxel-to-world matrix in NIfTI order.
        ndim: Spatial axes of ``array``.
        unit: NGFF unit of the affine's coordinates (``millimeter`` for scans); NIfTI knows
            meter, millimeter and micrometer, anything else is written as unknown.
        source_dims: Dimensions of the NIfTI file the labels were made from: a 2D image stored as
            ``(x, y, 1)`` gets labels of that shape, so viewers overlay them (default: ``ndim``).
        world: The space ``affine`` maps to, as NIfTI names it (the source's, so labels of an
            image in MNI space say ``mni``; ``unknown`` for a source with neither an sform nor a
            qform, whose labels then have neither); ``aligned`` when not given.
        qform, qform_space: The source's qform and its space, where it has one of its own
            (written as the qform; otherwise the qform repeats the sform where it can: an sform
            with shear, as a tilted CT gantry gives, leaves the qform unset).
        time_step: Seconds between frames, for labels with a frame axis (written as its pixdim).
    """
    import nibabel as nib

    path = Path(path)
    shape = tuple(int(s) for s in array.shape)
    frames = shape[: len(shape) - ndim]
    if len(frames) > 1:
        raise InputError(f"{path}: NIfTI holds at most one frame axis, the labels have shape {shape}")
    spatial = list(reversed(shape[len(frames) :]))
    singles = 3 - ndim if frames else max(0, min(3, source_dims or ndim) - ndim)
    nifti_shape = spatial + [1] * singles + list(frames)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.dtype(array.dtype))
    header.set_data_shape(nifti_shape)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    rest = [1.0] * (len(nifti_shape) - ndim)
    if frames and time_step:
        rest[-1] = float(time_step)
    header.set_zooms(tuple(zooms[:ndim]) + tuple(rest))
    code = world if world in (*WORLD_SPACES, UNPLACED) else "aligned"
    header.set_sform(affine, code=code)
    if qform is not None:
        header.set_qform(np.asarray(qform, dtype=float), code=qform_space if qform_space in WORLD_SPACES else "aligned")
    elif code != UNPLACED and _rotation_and_zoom(affine):
        header.set_qform(affine, code=code)
    else:  # a qform holds no shear: the sform places the labels alone, as it does the source
        header.set_qform(None)
    header.set_xyzt_units(NIFTI_UNITS.get(unit or "", "unknown"), "sec" if frames and time_step else "unknown")
    opener = gzip.open if path.name.endswith(".gz") else open
    with _atomic(path) as tmp:
        with opener(tmp, "wb") as handle:
            header.write_to(handle)
            for block in _blocks(array, 1):
                handle.write(np.ascontiguousarray(block, dtype=header.get_data_dtype()).tobytes())
    return path


def export_ctc(frames: Iterable[tuple[int, object]], folder: str | Path, *, sequence: str = "01") -> Path:
    """Write a Cell Tracking Challenge result folder ``<folder>/<sequence>_RES``.

    One uint16 ``maskTTT.tif`` per frame (a 2D image or a 3D stack; three digits, four past 999
    frames). Objects are numbered uniquely over the sequence and listed as one-frame tracks in
    ``res_track.txt``, so the folder passes the challenge's validation. Frames are read and
    written plane by plane.

    Args:
        frames: ``(t, labels)`` pairs, ``labels`` a zarr or numpy ``([z,] y, x)`` array.
        folder: The sequence's dataset folder.
        sequence: Sequence number (``01``).

    Raises:
        InputError: More objects over the sequence than uint16 labels allow.
    """
    folder = Path(folder) / f"{sequence}_RES"
    frames = sorted(frames, key=lambda pair: pair[0])
    digits = max(3, len(str(frames[-1][0]))) if frames else 3
    folder.mkdir(parents=True, exist_ok=True)
    lines, offset = [], 0
    for t, labels in frames:
        ids = np.unique(np.concatenate([np.unique(block) for block in _blocks(labels, 2)]))
        positive = ids[ids > 0]
        if offset + positive.size > CTC_LIMIT:
            raise InputError(f"{folder}: more than {CTC_LIMIT} objects over the sequence; CTC masks are uint16")
        new = np.zeros(ids.size, dtype=np.uint16)
        new[ids > 0] = np.arange(offset + 1, offset + positive.size + 1)
        lines += [f"{label} {t} {t} 0" for label in range(offset + 1, offset + positive.size + 1)]
        offset += positive.size
        shape = tuple(labels.shape)
        with _atomic(folder / f"mask{t:0{digits}d}.tif") as tmp:
            if len(shape) == 2:
                mask = new[np.searchsorted(ids, np.asarray(labels[...]))]
                tifffile.imwrite(tmp, mask, compression="zlib", photometric="minisblack")
            else:
                pages = (new[np.searchsorted(ids, page)] for block in _blocks(labels, 2) for page in block)
                tifffile.imwrite(
                    tmp, data=pages, shape=shape, dtype=np.uint16, compression="zlib", photometric="minisblack"
                )
    with _atomic(folder / "res_track.txt") as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines))
    return folder


def tiff_axes(ndim: int, frames: int) -> str:
    """tifffile axes of a label array with ``frames`` leading frame axes."""
    return "T" * frames + ("ZYX" if ndim == 3 else "YX")
