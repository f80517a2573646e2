"""Read another tool's predictions from a folder, matched to a dataset's test images.

``segpipe score DATASET --predictions PATH`` scores any of these layouts with the numbers the
pipeline uses for its own predictions:

* **files** (TIFF, NIfTI or PNG): for image ``NAME``, the first of ``NAME_instances``
  (``NAME_semantic`` for semantic datasets), ``NAME_masks``, ``NAME_cp_masks``, ``NAME_labels``,
  ``NAME_label``, ``NAME_pred``, then ``NAME`` itself (last: Cellpose writes its masks beside the
  images), with suffix ``.tif``, ``.tiff``, ``.nii.gz``, ``.nii`` or ``.png``; then the same
  names made from the image's own file name, where the catalog took a suffix off it
  (``images_suffix: _img``: Cellpose names ``000_img.tif``'s masks ``000_img_cp_masks.tif``). An
  image cut from a region of a larger file may instead be predicted on the whole file: then the
  source file's name is looked up and the region cut out; a frame of a time series may be
  predicted in one file of the series' name (``movie_masks.tif``, frames along its first axis).
  ``NAME.ome.zarr`` (an OME-Zarr image with its labels, as ``segpipe segment`` writes them) is
  read as the zarr layout's members are. segpipe's own ``predictions/`` folder
  (``NAME_instances.tif`` and ``NAME_semantic.tif``) is read with both maps. A NIfTI prediction
  whose header places its voxels in the world is put in the image's voxel order (a tool that
  reoriented it flipped its array), and refused where its voxels lie elsewhere.
* **zarr**: a group with one member per image name: segpipe's ``predictions.zarr`` layout
  (``NAME/labels/instances/s0``, ``NAME/labels/semantic/s0``, or ``predicted-instances`` and
  ``predicted-semantic`` as segpipe attaches them to an image's store; a label image of another name
  where it is the only one), an array, or an OME-Zarr image (its first multiscale level; axes
  of length 1 before the spatial ones, as ``tczyx`` writes them, are dropped).
* **Cell Tracking Challenge**: ``maskTTT.tif`` files, in the folder or in its ``SEQ_RES``
  folders. For a dataset ingested from CTC sequences, frame ``T`` is the image cut from
  ``SEQ/tTTT.tif`` (a per-plane annotation takes its plane of the 3D mask), read from
  ``SEQ_RES`` (a folder of masks named for another sequence is refused; one not named
  ``*_RES`` is taken for any); otherwise frame ``T`` is the ``T``-th test image, in catalog order.

Shapes must equal the ground truth's; labels must be non-negative integers. Every problem is an
:class:`~segpipe.errors.InputError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segpipe.errors import InputError

SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".nii.gz", ".nii", ".png")  # x.ome.tif is image x
ZARR_SUFFIXES = (".ome.zarr", ".zarr")
CTC_MASK = re.compile(r"^mask(\d+)\.tiff?$")
CTC_RES = re.compile(r"^(.+)_RES$")
CTC_FRAME = re.compile(r"^t(\d+)\.tiff?$")


@dataclass(frozen=True)
class ExternalPrediction:
    """One image's prediction read from a folder.

    Attributes:
        name: The dataset's image name.
        instances: Instance labels (instance datasets).
        semantic: Class map, when the folder has one (semantic datasets always).
        source: The file or group it came from.
    """

    name: str
    instances: np.ndarray | None
    semantic: np.ndarray | None
    source: str


def folder_layout(path: Path) -> str:
    """``zarr``, ``ctc`` or ``files``.

    Raises:
        InputError: The path does not exist or is not a folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such prediction folder")
    if (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
        return "zarr"
    if _masks(path) or any(CTC_RES.match(p.name) and _masks(p) for p in path.iterdir() if p.is_dir()):
        return "ctc"
    return "files"


def _masks(folder: Path) -> dict[int, Path]:
    """``{T: folder/maskTTT.tif}``."""
    return {int(m[1]): p for p in folder.iterdir() if (m := CTC_MASK.match(p.name))}


class PredictionFolder:
    """A folder of predictions for one dataset's images.

    Args:
        path: The folder.
        ndim: Spatial dimensions of the dataset.
        instances: Whether the dataset has instance labels.
        names: The split's image names in catalog order (CTC frames are matched by position).
    """

    def __init__(self, path: str | Path, *, ndim: int, instances: bool, names: list[str]) -> None:
        self.path = Path(path)
        self.ndim = ndim
        self.instances = instances
        self.names = list(names)
        self.layout = folder_layout(self.path)
        if self.layout == "ctc":  # {sequence: {T: mask}}; None: a folder of masks not named SEQ_RES
            own, masks = CTC_RES.match(self.path.name), _masks(self.path)
            self._sequences = {own[1] if own else None: masks} if masks else {}
            for sub in sorted(p for p in self.path.iterdir() if p.is_dir()):
                if (m := CTC_RES.match(sub.name)) and _masks(sub):
                    self._sequences[m[1]] = _masks(sub)

    def read(self, name: str, *, shape: tuple[int, ...], info: dict | None = None) -> ExternalPrediction:
        """The prediction of image ``name``, checked against the ground truth's ``shape``.

        Args:
            name: Image name in the dataset.
            shape: Spatial shape of its ground truth.
            info: The store's record of the image (``source`` file and ``region``), for
                predictions made on a whole source file.

        Raises:
            InputError: No prediction for the image, unreadable, wrong shape or bad labels.
        """
        if self.layout == "zarr":
            instances, semantic, source = self._read_zarr(name)
        elif self.layout == "ctc":
            array, source = self._read_ctc(name, info or {}, tuple(shape))
            instances, semantic = (array, None) if self.instances else (None, array)
        else:
            instances, semantic, source = self._read_files(name, shape, info or {})
        for array in (instances, semantic):
            if array is not None and array.shape != tuple(shape):
                raise InputError(f"{source}: prediction has shape {array.shape}, the ground truth of {name!r} has {tuple(shape)}")
        return ExternalPrediction(name, instances, semantic, source)

    # --- layouts -----------------------------------------------------------------------

    def _candidates(self, stem: str) -> list[str]:
        """Names a prediction of ``stem`` goes by; the bare name last, as it may be the image itself."""
        kind = "_instances" if self.instances else "_semantic"
        return [stem + kind, stem + "_masks", stem + "_cp_masks", stem + "_labels", stem + "_label", stem + "_pred", stem]

    def _find(self, stem: str) -> Path | None:
        for candidate in self._candidates(stem):
            for suffix in SUFFIXES:
                path = self.path / f"{candidate}{suffix}"
                if path.is_file():
                    return path
            for suffix in ZARR_SUFFIXES:  # an OME-Zarr image with its labels (segpipe segment's copies)
                path = self.path / f"{candidate}{suffix}"
                if path.is_dir():
                    return path
        return None

    def _read_files(self, name: str, shape: tuple[int, ...], info: dict) -> tuple:
        path, window, frame = self._locate(name, info)
        if frame is not None and not path.is_dir():  # a frame of the series' one file
            array = self._read_frame(path, int(frame))
            if info.get("region") and array.shape != tuple(shape):
                array = np.ascontiguousarray(array[tuple(slice(a, b) for a, b in info["region"])])
            where = f"{path} (frame {int(frame)})"
            return (array, None, where) if self.instances else (None, array, where)
        if path.is_dir():
            instances, semantic, where = self._read_group(path, name, frame=frame)
        else:
            instances, semantic, where = self._read_pair(path, info.get("affine"), window)
            window = None  # cut as read
        if window is not None:
            instances, semantic = (None if a is None else np.ascontiguousarray(a[window]) for a in (instances, semantic))
        return instances, semantic, where

    def _locate(self, name: str, info: dict) -> tuple[Path, tuple[slice, ...] | None, int | None]:
        """The prediction of image ``name``: its path, the window of it that is the image (a region
        of a source predicted whole) and the frame (a time series predicted in one file)."""
        path, window, frame = self._find(name), None, None
        source = Path(info["source"]) if info.get("source") else None
        if path is None and source is not None and info.get("plane") is None:
            # named after the image's own file: a suffix taken off, a region's source, a time series in one file
            path, frame = self._find(_stem(source)), info.get("frame")
            if path is not None and frame is None and info.get("region"):
                window = tuple(slice(a, b) for a, b in info["region"])
        if path is not None and source is not None and path.resolve() == source.resolve():
            raise InputError(f"{path}: the image itself, not a prediction of it; give the folder its masks were written to")
        if path is None:
            tried = ", ".join(f"{c}.tif" for c in self._candidates(name)[:3])
            raise InputError(f"{self.path}: no prediction for image {name!r} (looked for {tried}, ... {name}.tif, "
                             "each also .tiff, .nii.gz, .nii and .png)")
        return path, window, frame

    def _read_group(self, path: Path, name: str, *, frame: int | None = None) -> tuple:
        """Labels of an OME-Zarr image, or of the image named ``name`` (or like the folder) inside a
        collection; of its time point ``frame`` where the image is a time series (an image named
        ``name`` inside is that time point's own, as `segpipe segment` writes a series' frames)."""
        import zarr

        root = zarr.open_group(str(path), mode="r")
        inner = next((m for m in (name, _stem(path)) if m in root), None)  # bioformats2raw's layout: the image inside
        node, where = (root[inner], f"{path}/{inner}") if inner is not None else (root, str(path))
        return self._read_node(node, where, frame=None if inner == name else frame)

    def _read_pair(self, path: Path, affine, window) -> tuple:
        """A file of labels, with its ``_semantic`` twin for an ``_instances`` file of an instance model."""
        array = self._read_file(path, affine, window)
        if window is not None:
            array = np.ascontiguousarray(array[window])
        if not self.instances:
            return None, array, str(path)
        semantic = None
        sibling = self.path / path.name.replace("_instances", "_semantic")
        if "_instances" in path.name and sibling.is_file():
            semantic = self._read_file(sibling, affine, window)
            semantic = np.ascontiguousarray(semantic[window]) if window is not None else semantic
        return array, semantic, str(path)

    def _read_ctc(self, name: str, info: dict, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
        match = CTC_FRAME.match(Path(info.get("source") or "").name)
        if match:  # an image of a CTC sequence: its own frame number, in its sequence's masks
            t, why = int(match[1]), f"frame {int(match[1])} of {Path(info['source']).name}"
            frames = self._sequence_masks(Path(info["source"]).parent.name, name)
        else:
            t, why = self.names.index(name), f"test image {self.names.index(name)} in catalog order"
            frames = self._sequence_masks(None, name)
        if t not in frames:
            raise InputError(f"{self.path}: no mask{t:03d}.tif for {name!r} ({why})")
        path = frames[t]
        from segpipe.data.readers import read_image

        array = read_image(path, ndim=3 if info.get("plane") is not None else self.ndim).array
        if info.get("plane") is not None:
            array = array[int(info["plane"])]
        if info.get("region") and array.shape != shape:  # a mask of the whole source file
            array = array[tuple(slice(a, b) for a, b in info["region"])]
        return _check_labels(np.ascontiguousarray(array), str(path)), str(path)

    def _sequence_masks(self, sequence: str | None, name: str) -> dict[int, Path]:
        """The masks of ``sequence`` (``SEQ_RES``), else those of a folder named for no sequence."""
        if sequence in self._sequences:
            return self._sequences[sequence]
        if None in self._sequences:
            return self._sequences[None]
        if sequence is None and len(self._sequences) == 1:
            return next(iter(self._sequences.values()))
        found = ", ".join(f"{s}_RES" for s in self._sequences)
        if sequence is None:
            raise InputError(f"{self.path}: holds {found}; image {name!r} is of no CTC sequence: give the folder of its masks")
        raise InputError(f"{self.path}: no masks of sequence {sequence!r} for image {name!r} (holds {found})")

    def _read_frame(self, path: Path, t: int) -> np.ndarray:
        """Frame ``t`` of a time series' labels in one file (a leading axis not named is time; a 4D
        NIfTI's fourth, which images read as channels, is time in labels of one channel)."""
        from segpipe.data.readers import AxesSpec, open_source

        spec = AxesSpec(fill=("Z" if self.ndim == 3 else "") + "T")
        if path.name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            if len(nib.load(path).shape) == 4:
                spec = AxesSpec(override="XYZT")
        with open_source(path, spec=spec) as source:
            if t >= source.frames:
                raise InputError(f"{path}: no frame {t}: the file holds {source.frames}")
            if source.channels != 1:
                raise InputError(f"{path}: labels have one channel, this file has {source.channels}")
            block = source.read(t, (slice(None),) * 3)[0]
        return _check_labels(block if self.ndim == 3 else block[0], str(path))

    def _read_file(self, path: Path, affine=None, window: tuple[slice, ...] | None = None) -> np.ndarray:
        """Read a prediction file; a NIfTI file that places its voxels in the world is put in the
        voxel order of the image's ``affine`` (of its source file, where ``window`` is the region
        cut from it), and refused where its voxels lie elsewhere."""
        from segpipe.data.readers import read_image

        data = read_image(path, ndim=self.ndim)
        array = data.array
        if data.affine is not None and data.world is not None and affine is not None:
            array = _in_image_order(array, data.affine, _source_affine(np.asarray(affine, float), window), path)
        return _check_labels(array, str(path))

    def _read_zarr(self, name: str) -> tuple:
        import zarr

        root = zarr.open_group(str(self.path), mode="r")
        if name not in root:
            raise InputError(f"{self.path}: no member named {name!r} in the zarr group")
        return self._read_node(root[name], f"{self.path}/{name}")

    def _read_node(self, node, where: str, *, frame: int | None = None) -> tuple:
        """Instances, class map and where they came from, of a zarr array or (OME-Zarr) image group
        (of its time point ``frame`` where it holds a time series)."""
        import zarr

        if isinstance(node, zarr.Array):
            array = _check_labels(self._frame(node, frame, where), where)
            return (array, None, where) if self.instances else (None, array, where)
        if "labels" in node:
            labels = node["labels"]
            wanted = "instances" if self.instances else "semantic"
            named = list(labels.attrs.get("labels") or labels.group_keys())
            found = {}
            for kind in ("instances", "semantic"):
                for label in (kind, f"predicted-{kind}"):  # predictions.zarr's; those attached to an image's store
                    if label in labels and kind not in found:
                        found[kind] = self._level(labels[label], f"{where}/labels/{label}", frame=frame)
            if wanted not in found and len(named) == 1:  # one label image, of another name (ome-zarr-py's write_labels)
                found[wanted] = self._level(labels[named[0]], f"{where}/labels/{named[0]}", frame=frame)
            if wanted not in found:
                raise InputError(f"{where}/labels: no {wanted} labels; it holds {', '.join(named) or 'none'} (segpipe reads "
                                 f"labels/{wanted}, or the only label image there is)")
            return found.get("instances"), found.get("semantic"), where
        array = self._level(node, where, frame=frame)
        return (array, None, where) if self.instances else (None, array, where)

    def _level(self, group, where: str, *, frame: int | None = None) -> np.ndarray:
        """An OME-Zarr image's full-resolution labels (of time point ``frame``), without axes of
        length 1 before the spatial ones."""
        array = self._frame(_first_level(group, where), frame, where)
        while array.ndim > self.ndim and array.shape[0] == 1:
            array = array[0]
        return _check_labels(array, where)

    def _frame(self, array, frame: int | None, where: str) -> np.ndarray:
        """Time point ``frame`` of a zarr array of labels whose one axis longer than 1 before the
        spatial ones is time (ome-zarr-py's tczyx, a plain tyx); the whole array where ``frame`` is
        None, or is 0 of labels with no axis before the spatial ones."""
        leading = array.shape[: max(array.ndim - self.ndim, 0)]
        if frame is None or (not leading and frame == 0):
            return np.asarray(array)
        if not leading:
            raise InputError(f"{where}: no frame {frame}: the labels of shape {array.shape} hold one")
        long = [i for i, n in enumerate(leading) if n > 1]
        if len(long) > 1:
            raise InputError(f"{where}: labels of shape {array.shape} have {len(long)} axes besides the spatial ones; "
                             "one (time) is read")
        axis = long[0] if long else 0
        if frame >= leading[axis]:
            raise InputError(f"{where}: no frame {frame}: the labels hold {leading[axis]}")
        index = [0] * len(leading)
        index[axis] = frame
        return np.asarray(array[tuple(index)])


def _source_affine(affine: np.ndarray, window: tuple[slice, ...] | None) -> np.ndarray:
    """The affine of the file a region ``window`` (store order) was cut from, given the region's."""
    if window is None:
        return affine
    offset = np.zeros(3)
    offset[: len(window)] = [w.start or 0 for w in reversed(window)]  # file order: x, y(, z)
    source = affine.copy()
    source[:3, 3] -= source[:3, :3] @ offset
    return source


def _in_image_order(array: np.ndarray, affine: np.ndarray, reference: np.ndarray, path: Path) -> np.ndarray:
    from segpipe.data.readers.placement import placement_problem, to_reference_order

    moved, moved_affine = to_reference_order(array, affine, reference)
    problem = placement_problem(moved_affine, reference, shape=tuple(reversed(moved.shape)))
    if problem:
        raise InputError(f"{path}: placed in the world otherwise than the image it predicts ({problem}); "
                         "save it on the image's grid, with the image's affine")
    return moved


def _first_level(group, where: str):
    """The full-resolution array of an OME-Zarr image group."""
    multiscales = (group.attrs.get("ome") or {}).get("multiscales") or group.attrs.get("multiscales")
    if not multiscales:
        raise InputError(f"{where}: neither an array nor an OME-Zarr image (no multiscales)")
    return group[multiscales[0]["datasets"][0]["path"]]


def _check_labels(array: np.ndarray, where: str) -> np.ndarray:
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
            raise InputError(f"{where}: prediction holds non-integer values (dtype {array.dtype})")
        if array.size and array.min() < 0:
            raise InputError(f"{where}: prediction holds negative labels")
        return array.astype(np.uint32 if array.size == 0 or array.max() < 2**32 else np.uint64)
    if array.dtype == bool:
        return array.view(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{where}: prediction dtype {array.dtype} is not an integer type")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise InputError(f"{where}: prediction holds negative labels (minimum {array.min()})")
    return array


def _stem(path: Path) -> str:
    for suffix in SUFFIXES + ZARR_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem
