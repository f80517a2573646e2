"""Prediction folders of other tools: every layout read back exactly; problems named with the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr

from segpipe.errors import InputError
from segpipe.scoring.folders import PredictionFolder, folder_layout

LABELS = np.array([[0, 1, 1, 0], [2, 2, 0, 3], [0, 0, 3, 3]], np.uint16)


def read(folder, name="img", *, instances=True, shape=LABELS.shape, info=None, names=("img",), ndim=2):
    return PredictionFolder(folder, ndim=ndim, instances=instances, names=list(names)).read(name, shape=shape, info=info)


@pytest.mark.parametrize("file_name", ["img.tif", "img_instances.tif", "img_masks.tif", "img_cp_masks.tiff", "img_pred.tif", "img.ome.tif"])
def test_tiff_names(tmp_path, file_name):
    tifffile.imwrite(tmp_path / file_name, LABELS)
    prediction = read(tmp_path)
    assert np.array_equal(prediction.instances, LABELS) and prediction.semantic is None
    assert prediction.source.endswith(file_name) and folder_layout(tmp_path) == "files"


def test_segpipe_tiff_exports_give_both_maps(tmp_path):
    tifffile.imwrite(tmp_path / "img_instances.tif", LABELS)
    tifffile.imwrite(tmp_path / "img_semantic.tif", (LABELS > 0).astype(np.uint8))
    prediction = read(tmp_path)
    assert np.array_equal(prediction.semantic, LABELS > 0)
    semantic = read(tmp_path, instances=False)  # a semantic dataset reads the class map
    assert semantic.instances is None and np.array_equal(semantic.semantic, LABELS > 0)


def test_nifti_in_array_order(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) % 5  # (z, y, x)
    # NIfTI stores (x, y, z); the readers return (z, y, x), as the ground truth was ingested
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.eye(4)), tmp_path / "vol.nii.gz")
    prediction = read(tmp_path, "vol", shape=volume.shape, ndim=3, names=["vol"])
    assert np.array_equal(prediction.instances, volume)


def test_region_of_a_whole_source_file(tmp_path):
    whole = np.arange(48, dtype=np.uint16).reshape(6, 8)
    tifffile.imwrite(tmp_path / "field.tif", whole)
    info = {"source": "/data/field.tif", "region": [[2, 5], [0, 4]], "frame": None, "plane": None}
    prediction = read(tmp_path, "field-test", shape=(3, 4), info=info, names=["field-test"])
    assert np.array_equal(prediction.instances, whole[2:5, 0:4])


def test_zarr_layouts(tmp_path):
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    root.create_array("plain", data=LABELS)
    ome = root.create_group("ome")
    ome.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "s0"}]}]}
    ome.create_array("s0", data=LABELS * 2)
    segpipe = root.create_group("mine")
    for kind, array in (("instances", LABELS * 3), ("semantic", (LABELS > 0).astype(np.uint8))):
        group = segpipe.create_group(f"labels/{kind}")
        group.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "s0"}]}]}
        group.create_array("s0", data=array)
    folder = tmp_path / "p.zarr"
    assert folder_layout(folder) == "zarr"
    names = ["plain", "ome", "mine"]
    assert np.array_equal(read(folder, "plain", names=names).instances, LABELS)
    assert np.array_equal(read(folder, "ome", names=names).instances, LABELS * 2)
    mine = read(folder, "mine", names=names)
    assert np.array_equal(mine.instances, LABELS * 3) and np.array_equal(mine.semantic, LABELS > 0)
    with pytest.raises(InputError, match="no member named 'other'"):
        read(folder, "other", names=names)


def test_ctc_frames_follow_catalog_order(tmp_path):
    tifffile.imwrite(tmp_path / "mask000.tif", LABELS)
    tifffile.imwrite(tmp_path / "mask001.tif", LABELS * 2)
    assert folder_layout(tmp_path) == "ctc"
    assert np.array_equal(read(tmp_path, "second", names=["first", "second"]).instances, LABELS * 2)
    with pytest.raises(InputError, match=r"no mask002.tif for 'third' \(test image 2 in catalog order\)"):
        read(tmp_path, "third", names=["first", "second", "third"])


def test_ctc_frames_of_a_ctc_sequence_dataset(tmp_path):
    big = np.kron(LABELS, np.ones((4, 4), np.uint16))  # (12, 16)
    volume = np.stack([big, big * 2, big * 3, big * 4, big * 5])  # a 3D frame, (z, y, x)
    tifffile.imwrite(tmp_path / "mask005.tif", volume)
    names = ["01-t005", "01-t005-z002"]
    full = read(tmp_path, "01-t005", shape=volume.shape, ndim=3, names=names, info={"source": "/x/01/t005.tif"})
    assert np.array_equal(full.instances, volume)
    plane = read(tmp_path, "01-t005-z002", shape=big.shape, names=names, info={"source": "/x/01/t005.tif", "plane": 2})
    assert np.array_equal(plane.instances, big * 3)
    with pytest.raises(InputError, match=r"no mask007.tif for '01-t007' \(frame 7 of t007.tif\)"):
        read(tmp_path, "01-t007", names=["01-t007"], info={"source": "/x/01/t007.tif"})


def test_ctc_masks_are_read_from_their_own_sequences_res_folder(tmp_path):
    """01_RES scored sequence 02's frames against 01's masks (SEG 0.06, no word); the folder
    holding 01_RES and 02_RES was not read at all."""
    for seq, factor in (("01", 1), ("02", 5)):
        (tmp_path / f"{seq}_RES").mkdir()
        tifffile.imwrite(tmp_path / f"{seq}_RES" / "mask000.tif", LABELS * factor)
    info = {"source": "/data/02/t000.tif"}
    with pytest.raises(InputError, match=r"01_RES: no masks of sequence '02' for image '02-t000' \(holds 01_RES\)"):
        read(tmp_path / "01_RES", "02-t000", names=["01-t000", "02-t000"], info=info)
    assert folder_layout(tmp_path) == "ctc"
    both = [read(tmp_path, f"{seq}-t000", names=["01-t000", "02-t000"], info={"source": f"/data/{seq}/t000.tif"})
            for seq in ("01", "02")]
    assert np.array_equal(both[0].instances, LABELS) and np.array_equal(both[1].instances, LABELS * 5)
    assert both[1].source.endswith("02_RES/mask000.tif")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (LABELS.astype(np.float32) + 0.5, "non-integer values"),
        (LABELS.astype(np.int16) - 1, "negative labels"),
        (LABELS[:2], r"prediction has shape \(2, 4\), the ground truth of 'img' has \(3, 4\)"),
    ],
    ids=["float", "negative", "shape"],
)
def test_bad_predictions_are_named(tmp_path, array, message):
    tifffile.imwrite(tmp_path / "img.tif", array)
    with pytest.raises(InputError, match=message) as error:
        read(tmp_path)
    assert "img.tif" in str(error.value)


def test_missing_folder_and_image(tmp_path):
    with pytest.raises(InputError, match="no such prediction folder"):
        read(tmp_path / "absent")
    with pytest.raises(InputError, match=r"no prediction for image 'img' \(looked for img_instances.tif, img_masks.tif, img_cp_masks.tif, ... img.tif, each also .tiff, .nii.gz, .nii and .png\)"):
        read(tmp_path)


def test_whole_float_labels_are_accepted(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", LABELS.astype(np.float32))
    assert read(tmp_path).instances.dtype == np.uint32


def test_masks_beside_their_images_are_read_not_the_images(tmp_path):
    """Cellpose writes NAME_cp_masks.tif beside NAME.tif: the image itself was scored as the prediction (SEG 0)."""
    tifffile.imwrite(tmp_path / "img.tif", (LABELS * 50 + 7).astype(np.uint16))  # the image: integers too
    tifffile.imwrite(tmp_path / "img_cp_masks.tif", LABELS)
    prediction = read(tmp_path)
    assert np.array_equal(prediction.instances, LABELS) and prediction.source.endswith("img_cp_masks.tif")


def test_masks_named_after_the_images_own_file(tmp_path):
    """images_suffix: _img takes 000_img.tif in as image 000; Cellpose names its masks 000_img_cp_masks.tif."""
    tifffile.imwrite(tmp_path / "000_img_cp_masks.tif", LABELS)
    info = {"source": "/data/img/000_img.tif", "region": None, "frame": None, "plane": None}
    assert np.array_equal(read(tmp_path, "000", info=info, names=["000"]).instances, LABELS)


def test_png_masks(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "img_cp_masks.png", LABELS)
    assert np.array_equal(read(tmp_path).instances, LABELS)


def test_ome_zarr_labels_of_another_name_with_axes_of_length_one(tmp_path):
    """ome-zarr-py writes labels as tczyx, under the name given (cells): both were refused."""
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    labels = root.create_group("img/labels")
    labels.attrs["labels"] = ["cells"]
    cells = labels.create_group("cells")
    cells.attrs["multiscales"] = [{"datasets": [{"path": "0"}]}]
    cells.create_array("0", data=LABELS[None, None, None])
    assert np.array_equal(read(tmp_path / "p.zarr").instances, LABELS)
    labels.attrs["labels"] = ["cells", "nuclei"]
    labels.create_group("nuclei")
    with pytest.raises(InputError, match=r"p.zarr/img/labels: no instances labels; it holds cells, nuclei"):
        read(tmp_path / "p.zarr")


def _nifti(path, volume, affine):
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), affine), path)


def test_a_reoriented_nifti_prediction_is_read_in_the_images_voxel_order(tmp_path):
    """A prediction a tool stored flipped along x, its affine moved with it, was scored mirrored (SEG 0.10)."""
    volume = (np.arange(2 * 3 * 4).reshape(2, 3, 4) % 5).astype(np.uint16)  # (z, y, x)
    image = np.diag([0.8, 0.8, 1.5, 1.0])
    image[:3, 3] = [10.0, -4.0, 2.0]
    flipped = image.copy()
    flipped[:, 0] *= -1  # x runs the other way: voxel i is the image's voxel 3 - i
    flipped[:3, 3] = image[:3, 3] + image[:3, 0] * 3
    _nifti(tmp_path / "vol.nii.gz", volume[:, :, ::-1], flipped)
    info = {"source": "/data/vol.nii.gz", "affine": image.tolist(), "region": None, "frame": None, "plane": None}
    prediction = read(tmp_path, "vol", shape=volume.shape, ndim=3, names=["vol"], info=info)
    assert np.array_equal(prediction.instances, volume)

    shifted = image.copy()
    shifted[:3, 3] += [4.0, 0.0, 0.0]  # five voxels off
    _nifti(tmp_path / "vol.nii.gz", volume, shifted)
    with pytest.raises(InputError, match=r"vol.nii.gz: placed in the world otherwise than the image it predicts \(its grid is shifted"):
        read(tmp_path, "vol", shape=volume.shape, ndim=3, names=["vol"], info=info)
    header_free = nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), None)  # no sform or qform: the image's grid
    nib.save(header_free, tmp_path / "vol.nii.gz")
    assert np.array_equal(read(tmp_path, "vol", shape=volume.shape, ndim=3, names=["vol"], info=info).instances, volume)


def test_ome_zarr_images_with_their_predicted_labels_as_segment_writes_them(tmp_path):
    """`segpipe segment`'s NAME.ome.zarr copies (the image inside, labels/predicted-instances) were not found."""
    image = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w").create_group("img")
    for kind, array in (("predicted-instances", LABELS), ("predicted-semantic", (LABELS > 0).astype(np.uint8))):
        group = image.create_group(f"labels/{kind}")
        group.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "s0"}]}]}
        group.create_array("s0", data=array)
    prediction = read(tmp_path)
    assert np.array_equal(prediction.instances, LABELS) and np.array_equal(prediction.semantic, LABELS > 0)
    assert prediction.source.endswith("img.ome.zarr/img")


@pytest.mark.parametrize("imagej", [True, False])
def test_a_time_series_predicted_in_one_file(tmp_path, imagej):
    """Cellpose and StarDist write a movie's masks as one (T, Y, X) file: its frames were not found."""
    frame = np.kron(LABELS, np.ones((4, 4), np.uint16))  # (12, 16): tifffile takes a last axis of 3 or 4 for colour
    movie = np.stack([frame, frame * 2, frame * 3, frame * 4])
    if imagej:
        tifffile.imwrite(tmp_path / "m2_masks.tif", movie, imagej=True, metadata={"axes": "TYX"})
    else:  # pages of a plain stack, the axes unnamed
        tifffile.imwrite(tmp_path / "m2_masks.tif", movie, photometric="minisblack")
    info = {"source": "/data/movies/m2.tif", "region": None, "frame": 1, "plane": None}
    prediction = read(tmp_path, "m2-t001", info=info, names=["m2-t000", "m2-t001"], shape=frame.shape)
    assert np.array_equal(prediction.instances, frame * 2) and prediction.source.endswith("m2_masks.tif (frame 1)")
    with pytest.raises(InputError, match=r"m2_masks.tif: no frame 5: the file holds 4"):
        read(tmp_path, "m2-t005", info={**info, "frame": 5}, names=["m2-t005"], shape=frame.shape)


def test_the_images_own_folder_is_refused_not_scored(tmp_path):
    """--predictions pointed at the images' folder scored each image as its own prediction (SEG near 0, no word)."""
    tifffile.imwrite(tmp_path / "img.tif", (LABELS * 50 + 7).astype(np.uint16))
    info = {"source": str(tmp_path / "img.tif"), "region": None, "frame": None, "plane": None}
    with pytest.raises(InputError, match=r"img.tif: the image itself, not a prediction of it"):
        read(tmp_path, info=info)


@pytest.mark.parametrize("leading", [(4,), (4, 1, 1)])
def test_a_time_series_predicted_in_one_ome_zarr(tmp_path, leading):
    """A time-lapse OME-Zarr's prediction (labels (T, Y, X), or ome-zarr-py's tczyx) is one group:
    each frame was scored against the whole series and refused for its shape."""
    movie = np.stack([LABELS * (t + 1) for t in range(4)]).reshape(*leading, *LABELS.shape)
    cells = zarr.open_group(str(tmp_path / "m2.ome.zarr"), mode="w").create_group("labels/cells")
    cells.attrs["multiscales"] = [{"datasets": [{"path": "0"}]}]
    cells.create_array("0", data=movie)
    info = {"source": "/data/movies/m2.ome.zarr", "region": None, "frame": 2, "plane": None}
    prediction = read(tmp_path, "m2-t002", info=info, names=["m2-t000", "m2-t002"])
    assert np.array_equal(prediction.instances, LABELS * 3)
    with pytest.raises(InputError, match=r"m2.ome.zarr/labels/cells: no frame 4: the labels hold 4"):
        read(tmp_path, "m2-t004", info={**info, "frame": 4}, names=["m2-t004"])


def test_a_time_series_as_segment_writes_it_one_image_per_frame_in_its_ome_zarr(tmp_path):
    """`segpipe segment` writes a movie's frames as images NAME-tTTT inside NAME.ome.zarr: frame 1's
    own image was read as a series and refused ("no frame 1")."""
    movie = zarr.open_group(str(tmp_path / "m2.ome.zarr"), mode="w")
    for t in range(2):
        group = movie.create_group(f"m2-t{t:03d}/labels/predicted-instances")
        group.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "s0"}]}]}
        group.create_array("s0", data=LABELS * (t + 1))
    info = {"source": "/data/movies/m2.tif", "region": None, "frame": 1, "plane": None}
    prediction = read(tmp_path, "m2-t001", info=info, names=["m2-t000", "m2-t001"])
    assert np.array_equal(prediction.instances, LABELS * 2) and prediction.source.endswith("m2.ome.zarr/m2-t001")


def test_a_time_series_predicted_in_one_4d_nifti(tmp_path):
    """A movie's labels as one (x, y, 1, t) NIfTI (segpipe segment's own) were refused: the fourth
    axis was read as channels."""
    frame = np.kron(LABELS, np.ones((4, 4), np.uint16))  # (y, x)
    movie = np.stack([frame.T * (t + 1) for t in range(3)], axis=-1)[:, :, None, :]  # (x, y, 1, t)
    nib.save(nib.Nifti1Image(movie, np.eye(4)), tmp_path / "m2_labels.nii.gz")
    info = {"source": "/data/movies/m2.nii.gz", "region": None, "frame": 2, "plane": None}
    prediction = read(tmp_path, "m2-t002", info=info, names=["m2-t002"], shape=frame.shape)
    assert np.array_equal(prediction.instances, frame * 3)
