"""Volumes from NIfTI files turned to the anatomical orientation readers expect in a figure.

segpipe stores a NIfTI volume in the file's voxel order, so a report drew a brain as the array
lay: coronal and sagittal planes upside down, left and right wherever the scanner put them. A
view made here has its axes in the order superior, anterior, right (RAS, from the file's affine,
as nibabel's ``io_orientation`` reads it), each reversed so that every plane is drawn as 3D
Slicer draws it: superior and anterior at the top, the subject's right on the left of the figure
(the radiological convention), the nose to the left in a sagittal plane.
"""

from __future__ import annotations

import math

from collections.abc import Sequence

import numpy as np

#: The planes of an anatomical view, in the order ``figures`` draws the (yx, zx, zy) planes.
PLANES = ("axial", "coronal", "sagittal")


def anatomical_view(
    volumes: Sequence[np.ndarray], *, affine, source_axes: str | None, spacing: Sequence[float]
) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """``volumes`` (each ``(..., Z, Y, X)`` in the store's order, leading axes such as channels
    kept) turned to the anatomical view, and the pixel size along its axes.

    Args:
        volumes: An image and its labels, the same spatial shape.
        affine: The file's 4x4 voxel-to-world matrix (for the stored region).
        source_axes: The file's axes as ingest read them (``XYZ`` for a plain NIfTI volume).
        spacing: Pixel size along the store's (z, y, x).
    """
    from nibabel.orientations import io_orientation

    file_axes = [a for a in (source_axes or "XYZ") if a in "ZYX"][:3]
    if len(file_axes) != 3:
        return list(volumes), tuple(spacing)
    ornt = io_orientation(np.asarray(affine, dtype=float))  # per file axis: (world axis R/A/S, 1 or -1)
    store_of_file = ["ZYX".index(a) for a in file_axes]  # the store axis holding each file axis
    world_of_store = {store_of_file[n]: int(ornt[n, 0]) for n in range(3)}
    flip_of_store = {store_of_file[n]: ornt[n, 1] < 0 for n in range(3)}
    order = [next(s for s in range(3) if world_of_store[s] == w) for w in (2, 1, 0)]  # S, A, R
    shown = []
    for volume in volumes:
        volume = np.asarray(volume)
        lead = volume.ndim - 3
        for store_axis in range(3):
            if flip_of_store[store_axis]:  # the file's axis runs against the world's
                volume = np.flip(volume, axis=lead + store_axis)
        volume = np.moveaxis(volume, [lead + s for s in order], [lead, lead + 1, lead + 2])
        shown.append(np.ascontiguousarray(volume[..., ::-1, ::-1, ::-1]))  # superior, anterior up; right on the left
    return shown, tuple(float(spacing[s]) for s in order)


def view_of(info: dict, spacing: Sequence[float], volumes: Sequence[np.ndarray]) -> tuple[list[np.ndarray], tuple[float, ...] | None]:
    """The volumes of a stored image (``info``: its record, with ``affine`` and ``source_axes`` for a
    NIfTI source) in the anatomical view, with the view's pixel size; anything else as it is,
    with ``None`` (the figure draws the store's planes)."""
    spatial = np.ndim(volumes[-1])
    if info.get("affine") is None or spatial != 3 or len(spacing) != 3:
        return list(volumes), None
    return anatomical_view(volumes, affine=info["affine"], source_axes=info.get("source_axes"), spacing=spacing)


#: The most pixels (2D) or voxels (3D) a report's view of an image is read at: a figure shows far
#: fewer, and a 75-megapixel field read whole took 9 GiB.
VIEW_PIXELS = {2: 2048**2, 3: 256**3}


def view_step(shape: tuple[int, ...]) -> int:
    """Every how many pixels along each axis an image of ``shape`` is read for its view."""
    size = int(np.prod(shape, dtype=np.int64))
    return max(1, math.ceil((size / VIEW_PIXELS[len(shape)]) ** (1 / len(shape))))
