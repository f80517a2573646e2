"""Where a NIfTI file's voxels lie in the world, compared with another file's.

Two NIfTI files of one grid can store it in different voxel orders: a tool that reorients (to
RAS, to the radiological convention) flips or permutes the array and moves the affine with it.
Compared voxel by voxel, such a pair is mirrored. :func:`placement_problem` says when a file is
placed otherwise than its reference; :func:`to_reference_order` puts a reoriented array back in
the reference's voxel order, where the two affines then agree.
"""

from __future__ import annotations

import numpy as np

#: Two placements agree when no voxel centre moves by more than this share of a voxel.
TOLERANCE = 0.05


def _codes(affine: np.ndarray) -> str:
    from nibabel.orientations import aff2axcodes

    return "".join(aff2axcodes(affine))


def placement_problem(affine, reference, *, shape) -> str | None:
    """Why voxels of an array of ``shape`` (NIfTI order ``x, y, z``) under ``affine`` do not lie
    where the same voxels under ``reference`` do, or ``None`` when they do (within
    :data:`TOLERANCE` of a voxel at every corner of the grid)."""
    affine, reference = np.asarray(affine, float), np.asarray(reference, float)
    corners = np.array(np.meshgrid(*[[0, max(int(s) - 1, 0)] for s in shape[:3]], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    moved = np.abs((affine @ corners)[:3] - (reference @ corners)[:3]).max()
    voxel = float(np.sqrt((reference[:3, :3] ** 2).sum(axis=0)).min()) or 1.0
    if moved <= TOLERANCE * voxel:
        return None
    if _codes(affine) != _codes(reference):
        return f"its voxels are stored in the orientation {_codes(affine)}, the image's in {_codes(reference)}"
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    wanted = np.sqrt((reference[:3, :3] ** 2).sum(axis=0))
    if not np.allclose(sizes, wanted, rtol=0.01):
        show = lambda v: " x ".join(f"{x:g}" for x in np.round(v, 4))  # noqa: E731
        return f"its voxels measure {show(sizes)}, the image's {show(wanted)}"
    return f"its grid is shifted by up to {moved:.3g} world units from the image's"


def to_reference_order(array: np.ndarray, affine, reference) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (segpipe's order: ``(z, y, x)``, or ``(y, x)``) flipped and permuted from the
    voxel order of ``affine`` into that of ``reference``; returns it with its affine in that order.
    An array already in the reference's orientation comes back as it is."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    affine = np.asarray(affine, float)
    own, wanted = io_orientation(affine), io_orientation(np.asarray(reference, float))
    if np.array_equal(own, wanted):
        return array, affine
    xyz = np.asarray(array).T  # NIfTI order
    if xyz.ndim == 2:
        xyz = xyz[..., np.newaxis]
    transform = ornt_transform(own, wanted)
    moved = apply_orientation(xyz, transform)
    new_affine = affine @ inv_ornt_aff(transform, xyz.shape)
    moved = moved[..., 0] if np.asarray(array).ndim == 2 else moved
    return np.ascontiguousarray(moved.T), new_affine
