"""NIfTI voxel sizes: the affine's, as the labels are written with it; pixdim only without a form."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segpipe.data.readers import nifti
from segpipe.data.readers.nifti import NiftiSource

PIXDIM_1 = 80  # byte offset of pixdim[1] in a NIfTI-1 header


def _write(path: Path, affine: np.ndarray, *, sform: int, qform: int, pixdim: tuple[float, float, float] | None = None) -> Path:
    """A small volume with the given forms; ``pixdim`` written into the header as is (nibabel
    would make it agree with the affine, or mend a zero)."""
    image = nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), affine)
    image.set_sform(affine if sform else None, code=sform)
    image.set_qform(affine if qform else None, code=qform)
    nib.save(image, path)
    if pixdim is not None:
        with open(path, "r+b") as handle:
            handle.seek(PIXDIM_1)
            handle.write(struct.pack("<3f", *pixdim))
    return path


def _spacing(path: Path) -> tuple:
    source = NiftiSource(path)
    try:
        return source.meta.spacing
    finally:
        source.close()


def test_an_sform_that_disagrees_with_pixdim_gives_the_voxel_size_with_one_warning(tmp_path, caplog):
    """The sform (2 mm) places the labels; pixdim said 1 mm and the network saw the brain at half its size."""
    path = _write(tmp_path / "a.nii", np.diag([2.0, 2.0, 3.0, 1.0]), sform=2, qform=0, pixdim=(1.0, 1.0, 1.0))
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        assert _spacing(path) == (3.0, 2.0, 2.0) and _spacing(path) == (3.0, 2.0, 2.0)
    (said,) = [r.getMessage() for r in caplog.records if "different voxel sizes" in r.getMessage()]
    assert said.startswith(f"{path}: the header's pixdim (1 x 1 x 1) and its sform (2 x 2 x 3)")


def test_a_rotated_affine_keeps_the_written_voxel_size(tmp_path):
    """Column lengths of a rotation come out a rounding away from pixdim; pixdim is taken as written."""
    turn = np.radians(15)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]], np.float32)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.7, 2.0])
    path = _write(tmp_path / "a.nii", affine, sform=1, qform=1)
    assert _spacing(path) == (2.0, pytest.approx(0.7, abs=1e-7), pytest.approx(0.7, abs=1e-7))
    assert _spacing(path)[1] == float(nib.load(path).header["pixdim"][2])


def test_a_zero_pixdim_without_a_form_is_no_voxel_size(tmp_path, capfd):
    """nibabel takes it as 1 (and says so twice); here the file gives none, so segment takes the model's."""
    path = _write(tmp_path / "a.nii", np.eye(4), sform=0, qform=0, pixdim=(0.0, 0.0, 0.0))
    assert _spacing(path) == (None, None, None)
    assert "should be non-zero" not in capfd.readouterr().err


def test_a_zero_pixdim_beside_an_sform_takes_the_sforms(tmp_path):
    path = _write(tmp_path / "a.nii", np.diag([2.0, 2.0, 2.0, 1.0]), sform=2, qform=0, pixdim=(0.0, 0.0, 0.0))
    assert _spacing(path) == (2.0, 2.0, 2.0)


def test_pixdim_without_a_form_gives_the_voxel_size(tmp_path):
    path = _write(tmp_path / "a.nii", np.eye(4), sform=0, qform=0, pixdim=(0.5, 0.6, 0.7))
    assert _spacing(path) == (pytest.approx(0.7), pytest.approx(0.6), pytest.approx(0.5))


def test_only_the_pixdim_line_is_dropped_from_nibabels_logger():
    from nibabel import imageglobals

    nifti._quiet_nibabel()
    nifti._quiet_nibabel()
    mended = [f for f in imageglobals.logger.filters if isinstance(f, nifti._ZeroPixdimMended)]
    assert len(mended) == 1
    record = logging.LogRecord("nibabel.global", logging.WARNING, "", 0, "%s", ("qform_code 5 not valid",), None)
    assert imageglobals.logger.filter(record)


def test_a_negative_pixdim_is_its_magnitude(tmp_path):
    """Read as written, a negative pixdim counted as none: that axis was taken at a guessed size."""
    path = _write(tmp_path / "a.nii", np.eye(4), sform=0, qform=0, pixdim=(-0.8, 0.8, 2.0))
    assert _spacing(path) == (2.0, pytest.approx(0.8), pytest.approx(0.8))


def test_a_truncated_nifti_is_one_line(tmp_path):
    """nibabel's own message breaks its line ("...got 8016 bytes from ...\\n - could the file be
    damaged?"): the error printed and written to counts.csv took two lines."""
    from segpipe.data.readers import open_source
    from segpipe.errors import InputError

    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.int16), np.eye(4)), tmp_path / "vol.nii")
    data = (tmp_path / "vol.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as caught:
        with open_source(tmp_path / "cut.nii") as source:
            source.read_all()
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{tmp_path / 'cut.nii'}: "), str(caught.value)
    assert "could the file be damaged" in str(caught.value) or "NIfTI" in str(caught.value)


def test_only_the_fourth_axis_read_as_time_has_a_time_step(tmp_path):
    """A 3D volume's planes read as frames (--axes XYT) got the z voxel size, 2 mm, as 2 s between
    frames where the header's time unit was seconds; the fourth axis's pixdim is the time step."""
    from segpipe.data.readers.axes import AxesSpec

    volume = nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    volume.header.set_xyzt_units("mm", "sec")
    nib.save(volume, tmp_path / "volume.nii.gz")
    with NiftiSource(tmp_path / "volume.nii.gz", spec=AxesSpec(override="XYT")) as planes:
        assert planes.frames == 4 and planes.meta.time_step is None
    movie = nib.Nifti1Image(np.zeros((6, 5, 1, 3), np.float32), np.eye(4))
    movie.header.set_zooms((1.0, 1.0, 1.0, 30.0))
    movie.header.set_xyzt_units("mm", "msec")
    nib.save(movie, tmp_path / "movie.nii.gz")
    with NiftiSource(tmp_path / "movie.nii.gz", spec=AxesSpec(override="XYZT")) as frames:
        assert frames.frames == 3 and frames.meta.time_step == pytest.approx(0.03)
