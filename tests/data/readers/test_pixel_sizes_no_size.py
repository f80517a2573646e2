"""A file's pixel size that is no size (0, negative, not a number) is taken as not given, with a
warning: it divided by zero in resampling, broke the TIFF export, and went into the store as NaN."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import tifffile

from segpipe.data.readers import open_source

PIXELS = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)


@pytest.mark.parametrize("size", [0.0, -0.5, float("nan")])
def test_an_ome_tiff_pixel_size_that_is_no_size(tmp_path, caplog, size):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, PIXELS, ome=True, metadata={"axes": "YX", "PhysicalSizeX": size, "PhysicalSizeY": 0.5})
    with caplog.at_level(logging.WARNING, logger="segpipe.data.readers"), open_source(path) as source:
        assert source.meta.spacing[1:] == (0.5, None)
    assert f"{path}: the file's pixel size along x ({size:g} micrometer) is no size of a microscope or scanner image" in caplog.text


def test_an_imagej_pixel_size_in_metres_called_micrometres(tmp_path, caplog):
    """0.65e-6 "micron" (a writer that put metres under ImageJ's micron) was taken as a pixel of
    0.65 pm, and a model's resampling would have blown each pixel up a million times."""
    path = tmp_path / "metres.tif"
    tifffile.imwrite(path, PIXELS, imagej=True, resolution=(1 / 0.65e-6, 1 / 0.5), metadata={"unit": "micron"})
    with caplog.at_level(logging.WARNING, logger="segpipe.data.readers"), open_source(path) as source:
        assert source.meta.spacing[1:] == (0.5, None)
    assert (f"{path}: the file's pixel size along x (6.5e-07 micrometer) is no size of a microscope or scanner image "
            "(positive, 0.1 nm to 10 cm); taken as not given") in caplog.text


def test_a_nifti_sform_with_a_zero_voxel_size(tmp_path, caplog):
    affine = np.diag([0.0, 1.0, 1.0, 1.0])
    image = nib.Nifti1Image(np.ones((6, 5, 4), np.int16), np.eye(4))
    image.set_qform(np.eye(4), code=0)
    image.set_sform(affine, code=1)
    nib.save(image, tmp_path / "flat.nii.gz")
    with caplog.at_level(logging.WARNING, logger="segpipe.data.readers"), open_source(tmp_path / "flat.nii.gz") as source:
        assert source.meta.affine is None and source.meta.spacing == (1.0, 1.0, None)  # (z, y, x)
    assert "maps its voxels to no volume" in caplog.text


@pytest.mark.parametrize(("dtype", "read_as"), [(np.float16, np.float32), (bool, np.uint8)])
def test_half_floats_and_one_bit_images_are_read_in_a_wider_type(tmp_path, dtype, read_as):
    """A float16 TIFF crashed the blank rule (scipy: "array type dtype('<f2') not supported") and a
    1-bit TIFF was refused as not numeric; they are read as float32 and uint8, values unchanged."""
    pixels = (PIXELS % 7 == 0) if dtype is bool else (PIXELS / 64).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", pixels)
    with open_source(tmp_path / "a.tif") as source:
        assert source.dtype == np.dtype(read_as)
        array = source.read_all()[0, 0, 0]
    assert array.dtype == np.dtype(read_as)
    np.testing.assert_array_equal(array, pixels.astype(read_as))


def test_an_ome_zarr_copied_in_part_is_one_line(tmp_path):
    """Its metadata names s0, which is not there yet: a KeyError traceback refused the whole run."""
    import shutil

    import zarr

    from segpipe.errors import InputError

    root = zarr.open_group(str(tmp_path / "half.ome.zarr"), mode="w")
    root.create_array("s0", shape=(12, 16), dtype="uint16")
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                                                           "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}]}]}
    shutil.rmtree(tmp_path / "half.ome.zarr" / "s0")
    with pytest.raises(InputError, match=r"half.ome.zarr: an OME-Zarr image without its full-resolution array \(s0\): copied in part\?$"):
        open_source(tmp_path / "half.ome.zarr")
