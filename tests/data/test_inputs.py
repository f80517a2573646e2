"""Inputs named on the command line: files, folders, globs, CTC sequences, OME-Zarr images."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

from segpipe.data.inputs import find_inputs, input_dataset
from segpipe.errors import InputError


@pytest.fixture
def inbox(tmp_path):
    (tmp_path / "new").mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "new" / f"{name}.tif", np.zeros((8, 9), np.uint8))
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    seq = tmp_path / "01"
    seq.mkdir()
    for t in range(3):
        tifffile.imwrite(seq / f"t{t:03d}.tif", np.zeros((8, 9), np.uint8))
    (tmp_path / "other").mkdir()
    tifffile.imwrite(tmp_path / "other" / "a.tif", np.zeros((8, 9), np.uint8))
    return tmp_path


def test_files_folders_globs_and_sequences(inbox):
    found = find_inputs(["new", "01", "new/b.tif", "other/*.tif"], base=inbox)
    assert [(i.name, i.kind) for i in found] == [("new_a", "tiff"), ("b", "tiff"), ("01", "ctc"), ("other_a", "tiff")]
    assert all(i.path.is_absolute() for i in found)


def test_a_sequence_is_one_dataset_of_its_frames(inbox):
    (item,) = find_inputs(["01"], base=inbox)
    dataset = input_dataset(item, ndim=2, classes=["background", "cell"], instances=True)
    assert [(r.name, r.image.name, r.labels, r.split) for r in dataset.records] == [
        (f"01-t00{t}", f"t00{t}.tif", None, "test") for t in range(3)
    ]


def test_names_that_lose_characters_stay_apart_and_keep_their_names(tmp_path):
    """Non-ASCII names became ``image`` or a stripped stem and were told apart by ``_`` suffixes that
    moved when another input arrived: each now keeps a digest of its own name."""
    for name in ("細胞", "核", "Zelle_ö", "Zelle_ä", "plain"):
        tifffile.imwrite(tmp_path / f"{name}.tif", np.zeros((8, 9), np.uint8))
    first = {i.path.name: i.name for i in find_inputs(["細胞.tif", "Zelle_ö.tif", "plain.tif"], base=tmp_path)}
    every = {i.path.name: i.name for i in find_inputs(["*.tif"], base=tmp_path)}
    assert every["plain.tif"] == "plain" and len(set(every.values())) == 5
    assert all(first[name] == every[name] for name in first)
    assert every["細胞.tif"].startswith("image-") and every["Zelle_ö.tif"].startswith("Zelle_ö"[:5] + "-")
    assert all(re.fullmatch(r"[A-Za-z0-9._+-]+", name) for name in every.values())


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["nothing/*.tif"], r"^nothing/\*\.tif: the pattern matches no file or folder$"),
        (["new/*.xyz"], r"^new/\*\.xyz: the pattern matches no file or folder$"),
        (["new/missing.tif"], r"^new/missing.tif: no such file or folder$"),
        (["new/notes.txt"], "not an image"),
        # before, "" named the working folder: every image in it was segmented
        (["new/a.tif", ""], "^'': an empty input path"),
        (["  "], "^'  ': an empty input path"),
    ],
)
def test_bad_inputs_are_named(inbox, patterns, message):
    with pytest.raises(InputError, match=message):
        find_inputs(patterns, base=inbox)


def test_each_series_of_a_file_of_several_images_is_an_input(tmp_path):
    """An OME-TIFF of twelve positions: twelve inputs named by series, the width of the largest
    index, each reading its own series; a file of one series stays one input named by its stem."""
    with tifffile.TiffWriter(tmp_path / "plate.ome.tif", ome=True) as tif:
        for index in range(12):
            tif.write(np.full((8, 9), index, np.uint8), metadata={"axes": "YX"})
    tifffile.imwrite(tmp_path / "single.ome.tif", np.zeros((8, 9), np.uint8), metadata={"axes": "YX"})
    found = find_inputs(["*.ome.tif"], base=tmp_path)
    assert [(i.name, i.series) for i in found] == [(f"plate_s{k:02d}", k) for k in range(12)] + [("single", None)]
    assert found[3].where == f"{tmp_path / 'plate.ome.tif'} (series 3)" and found[-1].where == str(tmp_path / "single.ome.tif")
    dataset = input_dataset(found[3], ndim=2, classes=["background", "cell"], instances=True)
    assert dataset.entry.series == 3 and [r.name for r in dataset.records] == ["plate_s03"]


def test_a_folder_of_subfolders_says_how_to_name_them(tmp_path):
    """A folder of dated runs (images one level down) said only "no images found"."""
    for day in ("day1", "day2"):
        (tmp_path / "runs" / day).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "runs" / day / "a.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError) as info:
        find_inputs(["runs"], base=tmp_path)
    assert str(info.value) == ("runs: no images found (TIFF, NIfTI, PNG, OME-Zarr or CTC sequences); folders are not "
                               "searched below their own files, and runs's subfolders hold images: name them, e.g. "
                               "'runs/*/*' (quoted)")
    assert [item.path for item in find_inputs(["runs/*/*"], base=tmp_path)] == [
        tmp_path / "runs" / "day1" / "a.tif", tmp_path / "runs" / "day2" / "a.tif"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"^empty: no images found \(TIFF, NIfTI, PNG, OME-Zarr or CTC sequences\)$"):
        find_inputs(["empty"], base=tmp_path)


@pytest.mark.parametrize(
    "name, write, ndim, assumed, expected",
    [
        ("plain", lambda p: tifffile.imwrite(p, np.zeros((32, 32), np.uint8)), 2, (0.5, 0.5), (0.5, 0.5)),
        # y and x from the file (4 pixels per micrometer), the missing z step from the model
        ("stack", lambda p: tifffile.imwrite(p, np.zeros((5, 32, 32), np.uint8), imagej=True, resolution=(4.0, 4.0),
                                             metadata={"unit": "um", "axes": "ZYX"}), 3, (2.0, 0.5, 0.5), (2.0, 0.25, 0.25)),
    ],
)
def test_axes_a_file_leaves_without_a_pixel_size_take_the_assumed_one(tmp_path, name, write, ndim, assumed, expected):
    """``segment`` assumes the model's pixel size where a file gives none (it was 1 per pixel); a
    size the file does give is kept, and the image is marked guessed."""
    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.store import ImageStore

    write(tmp_path / f"{name}.tif")
    (item,) = find_inputs([f"{name}.tif"], base=tmp_path)
    dataset = input_dataset(item, ndim=ndim, classes=["background", "cell"], instances=True,
                            assumed_spacing=(assumed, "micrometer"))
    ingest_dataset(dataset, tmp_path / "store.zarr", progress=False, warn_spacing=False)
    (image,) = ImageStore.open(tmp_path / "store.zarr").images()
    assert image.spacing == pytest.approx(expected) and image.info["spacing_source"] == "default"
    assert image.info["unit"] == "micrometer"


def test_one_file_reached_by_two_paths_is_one_input_of_one_name(tmp_path):
    """``../d`` from a subfolder and ``d`` named the same files apart (`d_a` against `a`) once names were kept."""
    (tmp_path / "d").mkdir()
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "d" / "a.tif", np.zeros((8, 8), np.uint8))
    (first,) = find_inputs(["d"], base=tmp_path)
    (again,) = find_inputs(["../d"], base=tmp_path / "sub", given={first.where: first.name})
    assert again.path == first.path == tmp_path / "d" / "a.tif" and again.name == first.name == "a"


def _write(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full((8, 8), value, np.uint8))
    return path


def _made_from(**files: Path):
    """``recorded`` for :func:`find_inputs`: each name's input made from the file given (by its content)."""
    from segpipe.data.ingest.fingerprint import file_digest

    sources = {name: {path.name: {"size": path.stat().st_size, "sha256": file_digest(path)}} for name, path in files.items()}
    return sources.get


def test_an_input_found_at_a_new_place_keeps_the_name_of_its_gone_old_place(tmp_path):
    """The gone file of the same content and name gives the name; one still there is another input."""
    old = tmp_path / "old"
    given = {str(old / "day1" / "a.tif"): "day1_a", str(old / "day2" / "a.tif"): "day2_a", str(old / "b.tif"): "b"}
    day1, day2 = _write(tmp_path / "new" / "day1" / "a.tif", 1), _write(tmp_path / "new" / "day2" / "a.tif", 2)
    recorded = _made_from(day1_a=day1, day2_a=day2, b=_write(old / "b.tif"))  # b: still in its place
    named = {str(i.path.relative_to(tmp_path)): i.name
             for i in find_inputs(["new/*/a.tif"], base=tmp_path, given=given, recorded=recorded)}
    assert named == {"new/day1/a.tif": "day1_a", "new/day2/a.tif": "day2_a"}
    (copy,) = find_inputs([str(_write(tmp_path / "elsewhere" / "b.tif"))], base=tmp_path, given=given, recorded=recorded)
    assert copy.name == "elsewhere_b"
    afresh = [i.name for i in find_inputs(["new/*/a.tif"], base=tmp_path, given=given)]  # nothing recorded
    assert afresh == ["day1_a_tif", "day2_a_tif"]


def test_another_image_of_a_gone_files_name_is_a_new_input_wherever_it_is_named(tmp_path):
    """``day2/a.tif`` deleted and ``day3/a.tif`` arriving took ``day2_a`` (its labels overwritten); and a
    new file named before the moved one took the moved one's name."""
    given = {str(tmp_path / "day2" / "a.tif"): "day2_a", str(tmp_path / "inbox" / "a.tif"): "a"}
    moved = _write(tmp_path / "inbox2" / "a.tif", 1)
    recorded = _made_from(day2_a=_write(tmp_path / "gone" / "a.tif", 2), a=moved)
    _write(tmp_path / "day3" / "a.tif", 3)
    _write(tmp_path / "new" / "a.tif", 4)
    found = find_inputs(["day3", "new", "inbox2"], base=tmp_path, given=given, recorded=recorded)
    named = {i.path.parent.name: i.name for i in found}
    assert named == {"day3": "day3_a", "new": "new_a", "inbox2": "a"}


def test_moved_inputs_are_matched_alike_in_any_order_and_each_read_once(tmp_path, monkeypatch):
    """Two gone copies of one image, ``d/day1/a.tif`` and ``d/day2/a.tif``: ``q/day1/a.tif`` fits day1
    best, ``r/a.tif`` both alike. Named ``r`` first, ``r/a.tif`` was named afresh; ``q`` first, it took
    ``day2_a``. And each input was read once for every gone file of its name (200 moved
    ``posNN/img.tif`` read 20,100 times)."""
    from segpipe.data import inputs

    q, r = _write(tmp_path / "q" / "day1" / "a.tif"), _write(tmp_path / "r" / "a.tif")
    given = {str(tmp_path / "d" / "day1" / "a.tif"): "day1_a", str(tmp_path / "d" / "day2" / "a.tif"): "day2_a"}
    recorded = _made_from(day1_a=q, day2_a=q)
    read = []
    monkeypatch.setattr(inputs, "file_digest", lambda path: read.append(path) or _made_from(x=path)("x")[path.name]["sha256"])
    for order in (["r", "q/day1"], ["q/day1", "r"]):
        read.clear()
        named = {i.path.parent.name: i.name for i in find_inputs(order, base=tmp_path, given=given, recorded=recorded)}
        assert named == {"day1": "day1_a", "r": "day2_a"}, order
        assert sorted(read) == sorted([q, r])


def test_an_input_two_gone_ones_fit_equally_is_named_afresh(tmp_path):
    flat = _write(tmp_path / "flat" / "a.tif")
    given = {str(tmp_path / "x" / "day1" / "a.tif"): "day1_a", str(tmp_path / "x" / "day2" / "a.tif"): "day2_a"}
    (item,) = find_inputs([str(flat)], base=tmp_path, given=given, recorded=_made_from(day1_a=flat, day2_a=flat))
    assert item.name == "a"


def test_a_moved_file_of_several_series_keeps_each_series_name(tmp_path):
    old = tmp_path / "old" / "p.ome.tif"
    given = {f"{old} (series 0)": "well_p_s0", f"{old} (series 1)": "well_p_s1"}
    with tifffile.TiffWriter(_write(tmp_path / "new" / "p.ome.tif"), ome=True) as tif:
        for _ in range(2):
            tif.write(np.zeros((8, 8), np.uint8), metadata={"axes": "YX"})
    recorded = _made_from(well_p_s0=tmp_path / "new" / "p.ome.tif", well_p_s1=tmp_path / "new" / "p.ome.tif")
    assert [i.name for i in find_inputs(["new/p.ome.tif"], base=tmp_path, given=given, recorded=recorded)] == ["well_p_s0", "well_p_s1"]


def test_two_files_of_one_stem_in_one_folder_are_told_apart_by_their_kind(tmp_path):
    """``x.png`` and ``x.tif`` side by side were ``day1_x`` and ``day1_x_``."""
    from skimage.io import imsave

    (tmp_path / "day1").mkdir()
    tifffile.imwrite(tmp_path / "day1" / "x.tif", np.zeros((8, 8), np.uint8))
    imsave(tmp_path / "day1" / "x.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    tifffile.imwrite(tmp_path / "day1" / "y.ome.tif", np.zeros((8, 8), np.uint8))
    named = {item.path.name: item.name for item in find_inputs(["day1"], base=tmp_path)}
    assert named == {"x.png": "day1_x", "x.tif": "day1_x_tif", "y.ome.tif": "y"}


def test_images_of_formats_segpipe_does_not_read_are_named_in_a_warning(tmp_path, caplog):
    """A NIfTI pair (.hdr/.img) in a folder of scans was left out without a word: the run said
    nothing of it and its tables lacked it. Other files of a folder are said at INFO, as a glob's."""
    import logging

    from segpipe.errors import InputError, NoInputs

    scans = tmp_path / "scans"
    scans.mkdir()
    tifffile.imwrite(scans / "a.tif", np.zeros((8, 8), np.uint8))
    for name in ("b.hdr", "b.img", "notes.txt"):
        (scans / name).write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="segpipe.data.inputs"):
        assert [i.path.name for i in find_inputs(["scans"], base=tmp_path)] == ["a.tif"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"1 image(s) in a format segpipe does not read, passed over: {scans / 'b.hdr'} (an Analyze or NIfTI "
                      "pair: save it as one .nii.gz file (nibabel, fslchfiletype NIFTI_GZ))"]  # the pair is one image
    assert "1 file(s) matched that are not images, passed over: notes.txt" in caplog.text
    (scans / "a.tif").unlink()
    with pytest.raises(NoInputs, match=r"; 1 file\(s\) that are not images passed over \(notes.txt, \.\.\.\); 1 image\(s\) in a "
                       r"format segpipe does not read \(b.hdr: an Analyze or NIfTI pair"):
        find_inputs(["scans"], base=tmp_path)
    with pytest.raises(InputError, match=r"b.hdr: not an image segpipe reads .*; an Analyze or NIfTI pair: save it as one .nii.gz"):
        find_inputs(["scans/b.hdr"], base=tmp_path)


def test_the_outputs_own_files_are_not_listed_among_the_files_passed_over(tmp_path, caplog):
    """An output folder inside the input folder, read by a recursive glob: segpipe's own tables were
    listed at INFO as files that are not images, on every run."""
    import logging

    inbox = tmp_path / "inbox"
    (inbox / "out").mkdir(parents=True)
    tifffile.imwrite(inbox / "a.tif", np.zeros((8, 8), np.uint8))
    for name in ("measurements.csv", "segment.json"):
        (inbox / "out" / name).write_text("x")
    (inbox / "notes.txt").write_text("x")
    with caplog.at_level(logging.INFO, logger="segpipe.data.inputs"):
        found = find_inputs(["inbox/**/*"], base=tmp_path, skip=[inbox / "out"])
    assert [item.path.name for item in found] == ["a.tif"]
    said = [r.getMessage() for r in caplog.records if "not images" in r.getMessage()]
    assert said == ["1 file(s) matched that are not images, passed over: notes.txt"]


def test_a_glob_passes_over_files_that_are_not_images(inbox, caplog):
    """`new/*` matched notes.txt and refused the whole run; a file named on its own still must be an image."""
    import logging

    from segpipe.errors import NoInputs

    with caplog.at_level(logging.INFO, logger="segpipe.data.inputs"):
        assert [i.path.name for i in find_inputs(["new/*"], base=inbox)] == ["a.tif", "b.tif"]
    assert "1 file(s) matched that are not images, passed over: notes.txt" in caplog.text
    (inbox / "notes").mkdir()
    (inbox / "notes" / "n.txt").write_text("x")
    with pytest.raises(NoInputs, match=r"^notes/\*: no images found .*; 1 file\(s\) that are not images passed over \(n.txt, \.\.\.\)$"):
        find_inputs(["notes/*"], base=inbox)
    with pytest.raises(InputError, match="not an image") as named:
        find_inputs(["new/notes.txt"], base=inbox)
    assert not isinstance(named.value, NoInputs)  # a broken input, not an empty inbox


def test_inputs_changed_within_the_settling_time_wait(inbox):
    import os

    from segpipe.data.inputs import settled_inputs

    items = find_inputs(["new/a.tif", "new/b.tif", "01"], base=inbox)
    now = os.stat(inbox / "new" / "a.tif").st_mtime + 100
    os.utime(inbox / "new" / "b.tif", (now - 5, now - 5))  # written 5 s ago
    os.utime(inbox / "01" / "t002.tif", (now - 1, now - 1))  # a sequence's newest frame is still arriving
    ready, waiting = settled_inputs(items, seconds=30, now=now)
    assert [i.path.name for i in ready] == ["a.tif"] and [i.path.name for i in waiting] == ["b.tif", "01"]
    assert settled_inputs(items, seconds=0, now=now) == (items, [])


def test_a_folder_changes_when_a_file_deep_in_it_does(tmp_path):
    """An OME-Zarr's chunks lie folders deep: only the top entries were looked at, so a store still
    being copied in counted as settled."""
    import os

    from segpipe.data.inputs import _changed

    chunk = tmp_path / "x.ome.zarr" / "0" / "c" / "0" / "0"
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(b"x")
    for root, dirs, files in os.walk(tmp_path / "x.ome.zarr"):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.utime(name, (1000.0, 1000.0))
    os.utime(chunk, (5000.0, 5000.0))
    assert _changed(tmp_path / "x.ome.zarr") == 5000.0


def test_a_pipe_or_device_named_as_an_image_is_not_read(tmp_path):
    """A FIFO named x.tif blocked the run forever in open(); a .png link to /dev/zero was read
    without end. Named, it is refused in one line; in a folder or a glob it is passed over."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", np.zeros((8, 8), np.uint8))
    os.mkfifo(folder / "pipe.tif")
    (folder / "zero.png").symlink_to("/dev/zero")
    assert [i.name for i in find_inputs([str(folder)])] == ["good"]
    assert [i.name for i in find_inputs([str(folder / "*")])] == ["good"]
    for name in ("pipe.tif", "zero.png"):
        with pytest.raises(InputError, match=rf"{name}: not a file or folder \(a pipe, socket or device\); name image files$"):
            find_inputs([str(folder / name)])


def test_a_pipe_among_a_sequences_frames_is_refused_not_read(tmp_path):
    """A FIFO t001.tif in a CTC folder hung the run while its files' digests were read."""
    import os

    from segpipe.data.ingest.fingerprint import file_digest

    os.mkfifo(tmp_path / "t001.tif")
    with pytest.raises(InputError, match=r"t001.tif: not a file \(a pipe, socket or device\); name image files$"):
        file_digest(tmp_path / "t001.tif")
    tifffile.imwrite(tmp_path / "t000.tif", np.zeros((4, 4), np.uint8))
    assert len(file_digest(tmp_path / "t000.tif")) == 64


def test_the_warning_names_the_pixel_size_taken(tmp_path, caplog):
    """A catalog entry segmented with a model of 0.5 micrometer was warned "taking 1 micrometer per pixel"
    while the model's 0.5 was taken."""
    import logging

    from segpipe.data.ingest import ingest_dataset

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((32, 32), np.uint8))
    (item,) = find_inputs(["plain.tif"], base=tmp_path)
    dataset = input_dataset(item, ndim=2, classes=["background", "cell"], instances=True, assumed_spacing=((0.5, 0.5), "micrometer"))
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        ingest_dataset(dataset, tmp_path / "store.zarr", progress=False)
    assert "taking the model's pixel size, 0.5 x 0.5 micrometer. If that is wrong" in caplog.text
    assert "taking 1 micrometer" not in caplog.text
