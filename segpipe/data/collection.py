"""A store's root as a list of its OME-Zarr images, so that a viewer opening the root shows them all.

NGFF has no plain "collection" yet; its transitional ``bioformats2raw.layout`` is what
napari-ome-zarr follows from a root (it reads the image paths from the ``ID`` of each
``Image`` in ``OME/METADATA.ome.xml``). Layout::

    <store>/zarr.json            attributes.ome: {"version": "0.5", "bioformats2raw.layout": 3}
    <store>/OME/zarr.json        attributes.ome: {"version": "0.5", "series": [<image path>, ...]}
    <store>/OME/METADATA.ome.xml one <Image ID="Image:<image path>" Name="..."> per image, in series order

Images keep their own names as paths (the layout allows any paths when ``series`` lists
them). Readers that only number images ``0, 1, ...`` (ome-zarr-models' bioformats2raw model,
ome-zarr-py's ``finder``) see the root's metadata but no image; every image group is a
valid OME-Zarr image by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import zarr

from segpipe.data.locks import exclusive
from segpipe.data.ngff import VERSION
from segpipe.temporary import replacing

FOLDER = "OME"
XML_NAME = "METADATA.ome.xml"
OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
LAYOUT_KEY = "bioformats2raw.layout"

log = logging.getLogger(__name__)

_TYPES = {"uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "int8": "int8", "int16": "int16",
          "int32": "int32", "float16": "float", "float32": "float", "float64": "double"}


@dataclass(frozen=True)
class Entry:
    """One image of the collection: its group path, the name shown, and its full-resolution array's size."""

    path: str
    name: str
    sizes: dict[str, int]  # per OME dimension X, Y, Z, C, T
    dtype: str

    @classmethod
    def of(cls, group: zarr.Group, path: str, name: str | None = None) -> Entry:
        """The entry of the image group at ``path`` in ``group`` (sizes from its ``s0`` and its axes)."""
        image = group[path]
        multiscale = image.attrs["ome"]["multiscales"][0]
        array = image[multiscale["datasets"][0]["path"]]
        sizes = {"X": 1, "Y": 1, "Z": 1, "C": 1, "T": 1}
        for axis, size in zip(multiscale["axes"], array.shape):
            sizes[axis["name"].upper()] = int(size)
        return cls(path, name or multiscale.get("name") or path, sizes, str(array.dtype))

    @classmethod
    def of_info(cls, info: dict) -> Entry:
        """The entry of an ingested image from its record (``shape`` is ``(c, [z,] y, x)``)."""
        shape = list(info["shape"])
        channels, spatial = shape[0], shape[1:]
        sizes = {"X": spatial[-1], "Y": spatial[-2], "Z": spatial[0] if len(spatial) == 3 else 1, "C": channels, "T": 1}
        return cls(info["name"], info["name"], sizes, info["dtype"])


def root_attrs() -> dict:
    """The ``ome`` attributes of a collection's root."""
    return {"version": VERSION, LAYOUT_KEY: 3}


def write_collection(root: zarr.Group, entries: Sequence[Entry]) -> None:
    """Make ``root`` (a local store's root group) list ``entries``, replacing any list there was."""
    _write(Path(str(root.store.root)) / root.path, root, list(entries))


def add_to_collection(root: zarr.Group, entry: Entry) -> None:
    """Add (or refresh) ``entry`` in ``root``'s list, dropping images whose group is gone.

    Safe to call from concurrent writers of one local store (a lock file serialises them).
    """
    folder = Path(str(root.store.root)) / root.path
    with _locked(folder):
        kept = [e for e in read_collection(folder) if e.path != entry.path and (folder / e.path / "zarr.json").is_file()]
        _write(folder, root, [*kept, entry])


def read_collection(folder: str | Path) -> list[Entry]:
    """The entries listed in the store at ``folder`` (none when it has no list)."""
    xml = Path(folder) / FOLDER / XML_NAME
    if not xml.is_file():
        return []
    entries = []
    for image in ET.parse(xml).getroot().findall(f"{{{OME_NS}}}Image"):
        pixels = image.find(f"{{{OME_NS}}}Pixels")
        sizes = {d: int(pixels.get(f"Size{d}", 1)) for d in "XYZCT"} if pixels is not None else {}
        dtype = pixels.get("Type", "uint8") if pixels is not None else "uint8"
        entries.append(Entry(image.get("ID", "").removeprefix("Image:"), image.get("Name", ""), sizes, dtype))
    return entries


def _write(folder: Path, root: zarr.Group, entries: list[Entry]) -> None:
    if any(e.path == FOLDER for e in entries):
        log.warning("%s: an image is named %r, which the list of images needs: the store gets no list", folder, FOLDER)
        return
    if root.attrs.get("ome", {}).get(LAYOUT_KEY) != 3:
        root.attrs["ome"] = {**root.attrs.get("ome", {}), **root_attrs()}
    ome = zarr.open_group(str(folder / FOLDER), mode="a")
    ome.attrs["ome"] = {"version": VERSION, "series": [e.path for e in entries]}
    _replace(folder / FOLDER / XML_NAME, _xml(entries))


def _xml(entries: list[Entry]) -> bytes:
    ET.register_namespace("", OME_NS)
    ome = ET.Element(f"{{{OME_NS}}}OME", {"Creator": "segpipe"})
    for entry in entries:
        image = ET.SubElement(ome, f"{{{OME_NS}}}Image", {"ID": f"Image:{entry.path}", "Name": entry.name})
        sizes = {d: entry.sizes.get(d, 1) for d in "XYZCT"}
        pixels = ET.SubElement(image, f"{{{OME_NS}}}Pixels", {
            "ID": f"Pixels:{entry.path}", "DimensionOrder": "XYZCT", "Type": _TYPES.get(entry.dtype, entry.dtype),
            **{f"Size{d}": str(n) for d, n in sizes.items()},
        })
        ET.SubElement(pixels, f"{{{OME_NS}}}MetadataOnly")
    return ET.tostring(ome, encoding="utf-8", xml_declaration=True)


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a reader never sees half a file)."""
    with replacing(path) as partial:
        partial.write_bytes(data)


#: Folders already said to be written without a lock (one warning each per process).
_UNLOCKED: set[Path] = set()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s collection for one update; on a filesystem without locks (some cluster
    mounts refuse flock), go on without and say so once."""
    (folder / FOLDER).mkdir(parents=True, exist_ok=True)
    with open(folder / FOLDER / ".lock", "a") as handle:  # inside OME/, which no one lists as a zarr group
        refused = exclusive(handle)
        if refused is not None and folder not in _UNLOCKED:
            _UNLOCKED.add(folder)
            log.warning("%s: cannot lock the image collection (%s); writers at the same time are not kept apart",
                        folder, refused.strerror or refused)
        try:
            yield
        finally:
            if refused is None:
                fcntl.flock(handle, fcntl.LOCK_UN)
