"""Derive the bundled 2 mm MNI152 tissue task from nilearn's 1 mm template files.

Usage: ``python data/mni152/derive.py SOURCE_DIR`` where SOURCE_DIR holds nilearn's
``t1.nii.gz``, ``gm_probability.nii.gz`` and ``wm_probability.nii.gz`` (ICBM 2009a nonlinear
symmetric, 1 mm, 197x233x189). Writes ``t1_2mm.nii.gz`` and ``tissue_2mm.nii.gz`` here.

Each 2x2x2 block of the 1 mm grid becomes one voxel: T1 intensities and tissue probabilities
are averaged, and the label is the most probable of background (1 - GM - WM), grey matter (1)
and white matter (2). The affine is scaled by 2 and its origin moved to the block centres, so
both files overlay the 1 mm template exactly in any viewer.
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def block_mean(array: np.ndarray) -> np.ndarray:
    x, y, z = (s // 2 * 2 for s in array.shape)
    a = array[:x, :y, :z].astype(np.float64)
    return a.reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5))


def main(source: Path) -> None:
    here = Path(__file__).resolve().parent
    t1 = nib.load(source / "t1.nii.gz")
    gm = block_mean(np.asanyarray(nib.load(source / "gm_probability.nii.gz").dataobj)) / 255
    wm = block_mean(np.asanyarray(nib.load(source / "wm_probability.nii.gz").dataobj)) / 255
    background = np.clip(1 - gm - wm, 0, 1)
    labels = np.argmax(np.stack([background, gm, wm]), axis=0).astype(np.uint8)
    image = np.round(block_mean(np.asanyarray(t1.dataobj))).astype(np.uint8)
    affine = t1.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.full(3, 0.5)
    affine[:3, :3] *= 2
    for name, array in (("t1_2mm.nii.gz", image), ("tissue_2mm.nii.gz", labels)):
        out = nib.Nifti1Image(array, affine)
        out.header.set_xyzt_units("mm")
        nib.save(out, here / name)
        print(name, array.shape, np.bincount(array.ravel()) if array is labels else (array.min(), array.max()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
