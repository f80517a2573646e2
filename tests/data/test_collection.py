"""A store root's list of images: written whole, added to by concurrent writers, never clashing with an image."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zarr

from segpipe.data.collection import Entry, add_to_collection, read_collection, write_collection
from segpipe.data.store import write_ome_metadata


def _image(root: zarr.Group, name: str, shape=(2, 5, 30, 40)) -> None:
    group = root.create_group(name)
    group.create_array("s0", shape=shape, dtype=np.uint16)
    write_ome_metadata(group, ndim=3, channels=True, spacing=(1, 1, 1), unit="micrometer", name=name)


def test_the_list_reads_back_with_each_image_size_in_ome_xml(tmp_path):
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    for name in ("b", "a"):
        _image(root, name)
    write_collection(root, [Entry.of(root, "b"), Entry.of(root, "a")])
    assert [e.path for e in read_collection(tmp_path / "s.zarr")] == ["b", "a"]  # the order given, not sorted
    assert zarr.open_group(str(tmp_path / "s.zarr/OME"), mode="r").attrs["ome"] == {"version": "0.5", "series": ["b", "a"]}
    xml = ET.parse(tmp_path / "s.zarr/OME/METADATA.ome.xml").getroot()
    pixels = xml.find("{http://www.openmicroscopy.org/Schemas/OME/2016-06}Image/{http://www.openmicroscopy.org/Schemas/OME/2016-06}Pixels")
    assert {k: pixels.get(k) for k in ("SizeX", "SizeY", "SizeZ", "SizeC", "SizeT", "Type")} == {
        "SizeX": "40", "SizeY": "30", "SizeZ": "5", "SizeC": "2", "SizeT": "1", "Type": "uint16",
    }
    assert zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs["ome"]["bioformats2raw.layout"] == 3


def test_concurrent_writers_lose_no_image_and_gone_images_drop_out(tmp_path):
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    names = [f"im{i}" for i in range(12)]
    for name in names:
        _image(root, name, shape=(1, 1, 8, 8))

    def add(name: str) -> None:
        mine = zarr.open_group(str(tmp_path / "s.zarr"), mode="a")  # each writer its own handle, as tasks have
        add_to_collection(mine, Entry.of(mine, name))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(add, names))
    assert sorted(e.path for e in read_collection(tmp_path / "s.zarr")) == sorted(names)
    del root["im3"]
    add("im0")  # refreshed, moved to the end; the deleted image is dropped
    paths = [e.path for e in read_collection(tmp_path / "s.zarr")]
    assert paths[-1] == "im0" and sorted(paths) == sorted(set(names) - {"im3"})


def test_an_image_named_like_the_list_folder_gets_no_list(tmp_path, caplog):
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    _image(root, "OME")
    with caplog.at_level(logging.WARNING):
        write_collection(root, [Entry.of(root, "OME")])
    assert "the store gets no list" in caplog.text
    assert "multiscales" in zarr.open_group(str(tmp_path / "s.zarr/OME"), mode="r").attrs["ome"]  # the image is untouched


def test_an_error_in_an_unlocked_collection_update_is_not_chained_to_the_lock(tmp_path, monkeypatch):
    """Without flock, an error inside the update is its own, not "during handling of" the lock's OSError."""
    import errno
    import fcntl

    from segpipe.data.collection import _locked

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ValueError) as raised, _locked(tmp_path):
        raise ValueError("inside")
    assert raised.value.__context__ is None
