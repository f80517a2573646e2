import re
from pathlib import Path

import pytest

from segpipe.data.catalog import load_catalog
from segpipe.errors import CatalogError

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_catalog_resolves_every_dataset():
    catalog = load_catalog(ROOT / "data_catalog.yaml")
    bbbc = catalog.dataset("bbbc007")
    assert [len(bbbc.split(s)) for s in ("train", "validation", "test")] == [7, 2, 2]
    assert all(r.image.stem == r.labels.stem for r in bbbc.records)
    dsb = catalog.dataset("dsb2018-nuclei")
    regions = {r.split: r.region for r in dsb.records}
    assert regions["test"] == ((368, 512), (0, 512))
    assert "Silver standard" in catalog.entries["bbbc007"].ground_truth


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(body)
    return path


def _entry(extra: str = "", split: str = "split: {train: [a]}") -> str:
    return f"datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    {split}\n{extra}"


@pytest.fixture
def files(tmp_path):
    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir()
        for name in ("a", "b"):
            (tmp_path / sub / f"{name}.tif").write_bytes(b"x")
    return tmp_path


def test_unknown_key_is_named(tmp_path, files):
    path = _write(tmp_path, _entry("    colour: red\n"))
    with pytest.raises(CatalogError, match=r"dataset 'd': colour: unknown field"):
        load_catalog(path).check()


@pytest.mark.parametrize(("key", "value"), [("spacing", "[1, 1, 1]"), ("patch_size", "[16, 64, 64]")])
def test_training_setting_with_the_wrong_number_of_axes_names_the_catalog(tmp_path, files, key, value):
    path = _write(tmp_path, _entry(f"    training: {{{key}: {value}}}\n"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path).check()
    assert str(caught.value) == f"{path}: dataset 'd': training: {key} {value} has 3 values, ndim is 2"


def test_image_in_no_split_is_reported(tmp_path, files):
    with pytest.raises(CatalogError, match="images in no split: b"):
        load_catalog(_write(tmp_path, _entry())).dataset("d")


def test_missing_label_file_names_the_image(tmp_path, files):
    (tmp_path / "lab" / "b.tif").unlink()
    with pytest.raises(CatalogError, match=r"img/b.tif has no label file named b"):
        load_catalog(_write(tmp_path, _entry(split="split: {train: [a, b]}"))).dataset("d")


def test_a_label_file_named_like_its_image_with_an_ending_names_the_suffix_key(tmp_path, files):
    (tmp_path / "lab" / "b.tif").rename(tmp_path / "lab" / "b_mask.tif")
    with pytest.raises(CatalogError, match=r"img/b.tif has no label file named b\.\* \(b_mask.tif is; labels_suffix: _mask "
                                           r"removes that ending before pairing\)$"):
        load_catalog(_write(tmp_path, _entry(split="split: {train: [a, b]}"))).dataset("d")


@pytest.mark.parametrize("labels", ["img/*.tif", "img/a.tif"])
def test_labels_that_are_the_images_themselves_are_refused(tmp_path, files, labels):
    """``labels: img/*.tif`` ingested every image as its own label map (intensities as object ids)."""
    images = "img/*.tif" if labels == "img/*.tif" else "img/a.tif"
    body = f"datasets:\n  d:\n    images: {images}\n    labels: {labels}\n    split: {{train: [a{', b' if '*' in images else ''}]}}\n"
    with pytest.raises(CatalogError, match=r"img/a.tif is both an image and its own label file \(the labels glob matches "
                                           r"the images\); point labels: at the label masks$"):
        load_catalog(_write(tmp_path, body)).dataset("d")


def test_a_split_name_yaml_reads_as_a_number_says_to_quote_it(tmp_path, files):
    path = _write(tmp_path, _entry(split="split: {train: [001, b]}"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path).check()
    assert str(caught.value) == (f"{path}: dataset 'd': split.train.0: Input should be a valid string, got the number 1 "
                                 "(YAML reads unquoted digits as a number, 001 as 1: quote names, '001')")


def test_file_in_two_splits(tmp_path, files):
    with pytest.raises(CatalogError, match="'a' is in both the train and test splits"):
        load_catalog(_write(tmp_path, _entry(split="split: {train: [a, b], test: [a]}"))).dataset("d")


def test_file_named_twice_in_one_split(tmp_path, files):
    with pytest.raises(CatalogError, match="'b' is named twice in the test split"):
        load_catalog(_write(tmp_path, _entry(split="split: {train: [a], test: [b, b]}"))).dataset("d")


def test_class_named_twice(tmp_path, files):
    extra = "    instances: false\n    classes: [background, a, a, c]\n"
    with pytest.raises(CatalogError) as caught:
        load_catalog(_write(tmp_path, _entry(extra))).check()
    assert str(caught.value).endswith("dataset 'd': classes: 'a' named twice (each class needs its own name)")


def test_a_broken_link_among_the_images_is_named(tmp_path, files):
    """A broken symlink was dropped silently, and its label reported as "label files without an image"."""
    (tmp_path / "img" / "b.tif").unlink()
    (tmp_path / "img" / "b.tif").symlink_to("gone.tif")
    with pytest.raises(CatalogError, match=r"img/b.tif is a broken link: its target gone.tif does not exist"):
        load_catalog(_write(tmp_path, _entry(split="split: {train: [a, b]}"))).dataset("d")


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(CatalogError, match="matches no file"):
        load_catalog(_write(tmp_path, _entry())).dataset("d")


def test_path_escaping_root_through_symlink(tmp_path, files):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "c.tif").write_bytes(b"x")
    (tmp_path / "img" / "c.tif").symlink_to(outside / "c.tif")
    (tmp_path / "lab" / "c.tif").write_bytes(b"x")
    body = _entry(split="split: {train: [a, b, c]}")
    with pytest.raises(CatalogError, match="outside the catalog root"):
        load_catalog(_write(tmp_path, body)).dataset("d")
    allowed = load_catalog(_write(tmp_path, body + "    allow_outside_root: true\n")).dataset("d")
    assert len(allowed.records) == 3


def test_unknown_dataset(tmp_path, files):
    with pytest.raises(CatalogError, match=r"no dataset named 'x' \(known: d\)"):
        load_catalog(_write(tmp_path, _entry(split="split: {train: [a, b]}"))).dataset("x")


def test_axes_letters_are_checked(tmp_path, files):
    with pytest.raises(CatalogError, match=r"dataset 'd': axes: String should match pattern"):
        load_catalog(_write(tmp_path, _entry("    axes: TQYX\n"))).check()


@pytest.mark.parametrize(("given", "name"), [("um", "micrometer"), ("µm", "micrometer"), ("nm", "nanometer"), ("mm", "millimeter")])
def test_a_units_short_name_is_read_as_the_unit(tmp_path, files, given, name):
    entry = load_catalog(_write(tmp_path, _entry(f"    spacing: [0.5, 0.5]\n    unit: {given}\n"))).entries["d"]
    assert entry.unit == name


@pytest.mark.parametrize(
    ("spacing", "message"),
    [("[0.5, .nan]", "0.5 x nan is not a pixel size: each size must be a positive number"),
     ("[0, 0.5]", "0 x 0.5 is not a pixel size"),
     ("[0.65, 0.65]\n    unit: m", "0.65 x 0.65 meter is no pixel size of a microscope or scanner image (0.1 nm to 10 cm)"),
     ("[0.00001, 0.00001]\n    unit: nm", "1e-05 x 1e-05 nanometer is no pixel size")],
)
def test_a_spacing_that_is_no_pixel_size_is_refused(tmp_path, files, spacing, message):
    with pytest.raises(CatalogError, match=re.escape(f"dataset 'd': spacing: {message}")):
        load_catalog(_write(tmp_path, _entry(f"    spacing: {spacing}\n"))).check()


def test_a_spacing_without_a_unit_is_held_only_to_being_positive(tmp_path, files):
    """The files may give the unit (a NIfTI in mm, an OME-TIFF in nm): no range applies until it is known."""
    assert load_catalog(_write(tmp_path, _entry("    spacing: [2000, 2000]\n"))).entries["d"].spacing == [2000, 2000]


@pytest.mark.parametrize("given", ["parsec", "pixel"])
def test_a_unit_that_is_no_length_is_refused(tmp_path, files, given):
    with pytest.raises(CatalogError, match=rf"dataset 'd': unit: '{given}' is not a length unit; use one of nanometer, micrometer"):
        load_catalog(_write(tmp_path, _entry(f"    unit: {given}\n"))).check()


def test_channel_named_twice(tmp_path, files):
    with pytest.raises(CatalogError, match=r"channels: \['red', 0\] names a channel twice"):
        load_catalog(_write(tmp_path, _entry("    channels: [red, 0]\n"))).check()


def test_a_negative_channel_is_refused(tmp_path, files):
    """Channels count from 0; -1 would pick the last one by Python's indexing, -3 of two crashed ingest."""
    with pytest.raises(CatalogError, match=r"channels\.0.*greater than or equal to 0"):
        load_catalog(_write(tmp_path, _entry("    channels: [-1]\n"))).check()


def test_images_without_labels_cannot_be_trained_on(tmp_path, files):
    body = "datasets:\n  d:\n    images: img/*.tif\n    split: {train: [a]}\n"
    with pytest.raises(CatalogError, match=r"split: names train or validation images, but the dataset has no labels"):
        load_catalog(_write(tmp_path, body)).check()


def test_ctc_cannot_split_by_region(tmp_path):
    body = "datasets:\n  d:\n    format: ctc\n    images: '01'\n    split: {regions: {train: [[0, 4], [0, 4]]}}\n"
    with pytest.raises(CatalogError, match="a ctc dataset is split by sequence folder"):
        load_catalog(_write(tmp_path, body)).check()


def test_ctc_sequence_without_ground_truth_folder(tmp_path):
    (tmp_path / "01").mkdir()
    (tmp_path / "01" / "t000.tif").write_bytes(b"x")
    body = "datasets:\n  d:\n    format: ctc\n    images: '01'\n    split: {train: ['01']}\n"
    with pytest.raises(CatalogError, match=r"no ground-truth folder .*01_GT/SEG for sequence"):
        load_catalog(_write(tmp_path, body)).dataset("d")


def test_a_ctc_sequence_missing_a_frame_is_refused(tmp_path):
    """A sequence without t006.tif was ingested as 11 frames and exported without mask006.tif,
    which the challenge's validator refuses."""
    from segpipe.data.ctc import sequence_frames
    from segpipe.errors import InputError

    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    for t in (0, 1, 2, 5):
        (tmp_path / "01" / f"t{t:03d}.tif").write_bytes(b"x")
    (tmp_path / "01_GT" / "SEG" / "man_seg000.tif").write_bytes(b"x")
    body = "datasets:\n  d:\n    format: ctc\n    images: '01'\n    split: {train: ['01']}\n"
    message = r"01: frame t003.tif is missing between t000 and t005 \(2 frames missing in all\)"
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, body)).dataset("d")
    with pytest.raises(InputError, match=message):  # segpipe segment's sequences
        sequence_frames(tmp_path / "01")
    for t in (3, 4):
        (tmp_path / "01" / f"t{t:03d}.tif").write_bytes(b"x")
    assert len(load_catalog(_write(tmp_path, body)).dataset("d").records) == 6


def test_suffixes_pair_img_and_masks(tmp_path):
    (tmp_path / "png").mkdir()
    for name in ("001_img.png", "001_masks.png", "002_img.png"):
        (tmp_path / "png" / name).write_bytes(b"x")
    body = ("datasets:\n  d:\n    images: png/*_img.png\n    labels: png/*_masks.png\n"
            "    images_suffix: _img\n    labels_suffix: _masks\n    split: {train: ['001', '002']}\n")
    with pytest.raises(CatalogError, match=r"png/002_img.png has no label file named 002_masks.\*"):
        load_catalog(_write(tmp_path, body)).dataset("d")
    (tmp_path / "png" / "002_masks.png").write_bytes(b"x")
    records = load_catalog(_write(tmp_path, body)).dataset("d").records
    assert [(r.name, r.image.name, r.labels.name) for r in records] == [
        ("001", "001_img.png", "001_masks.png"), ("002", "002_img.png", "002_masks.png")]


def test_ome_zarr_images_are_named_without_their_suffix_and_pair_with_tiff_labels(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "img" / f"{name}.ome.zarr").mkdir(parents=True)
        (tmp_path / "img" / f"{name}.ome.zarr" / "zarr.json").write_text("{}")  # the catalog only pairs names
        (tmp_path / "lab").mkdir(exist_ok=True)
        (tmp_path / "lab" / f"{name}.tif").write_bytes(b"x")
    (tmp_path / "img" / "c.zarr").mkdir()
    (tmp_path / "img" / "c.zarr" / "zarr.json").write_text("{}")
    (tmp_path / "lab" / "c.tif").write_bytes(b"x")
    body = "datasets:\n  d:\n    images: img/*zarr\n    labels: lab/*.tif\n    split: {train: [a, c], test: [b]}\n"
    records = load_catalog(_write(tmp_path, body)).dataset("d").records
    assert sorted((r.name, r.image.name, r.labels.name) for r in records) == [
        ("a", "a.ome.zarr", "a.tif"), ("b", "b.ome.zarr", "b.tif"), ("c", "c.zarr", "c.tif")]


def test_every_example_in_the_catalog_docs_is_a_valid_entry():
    import re

    import yaml

    from segpipe.data.catalog import DatasetEntry

    text = (ROOT / "docs" / "catalog.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8
    for block in blocks:
        for name, body in yaml.safe_load(block).items():
            DatasetEntry.model_validate(body)  # raises on an unknown key or a bad value


def test_images_without_labels_are_to_segment_only(tmp_path, files):
    body = "datasets:\n  d:\n    images: img/*.tif\n    model: runs/other/model\n"
    catalog = load_catalog(_write(tmp_path, body))
    dataset = catalog.dataset("d")
    assert [(r.name, r.labels, r.split) for r in dataset.records] == [("a", None, "test"), ("b", None, "test")]
    assert catalog.entry("d").model == "runs/other/model" and not catalog.entry("d").labelled


def test_labels_need_a_split(tmp_path, files):
    with pytest.raises(CatalogError, match="split: required for a dataset with labels"):
        load_catalog(_write(tmp_path, "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n")).check()


def _region_split(regions: str) -> str:
    return f"split: {{regions: {regions}}}"


def test_overlapping_regions_are_refused(tmp_path, files):
    split = _region_split("{train: [[0, 300], [0, 512]], validation: [[288, 368], [0, 512]], test: [[368, 512], [0, 512]]}")
    with pytest.raises(CatalogError) as info:
        load_catalog(_write(tmp_path, _entry(split=split))).check()
    message = str(info.value)
    assert "dataset 'd'" in message and "regions train" in message and "validation" in message
    assert "overlap in [[288, 300], [0, 512]]" in message and "\n" not in message


def test_regions_touching_at_a_border_are_accepted(tmp_path, files):
    split = _region_split("{train: [[0, 288], [0, 512]], validation: [[288, 368], [0, 512]], test: [[0, 368], [512, 600]]}")
    load_catalog(_write(tmp_path, _entry(split=split))).check()


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        (_region_split("{train: [[10, 10], [0, 512]]}"), "dataset 'd': split.regions: region train: [10, 10] is empty or negative"),
        ("split: {train: []}", "dataset 'd': split: train names no image: name some to train a model on, or set model:"),
        ("split: {test: [a]}", "dataset 'd': split: train names no image: name some to train a model on, or set model:"),
        (_region_split("{test: [[0, 10], [0, 512]]}"), "dataset 'd': split: a region split needs a 'train' region to train a model on, or set model:"),
        ("split: {train: [a], valdation: [b]}", "dataset 'd': split.valdation: unknown field"),
        (_region_split("{train: [[0, 10]], tset: [[10, 20]]}"), "dataset 'd': split.regions.tset: Input should be"),
    ],
)
def test_split_errors_name_one_problem_of_the_split_meant(tmp_path, files, split, expected):
    """No union noise: the problem of the kind of split written (by file or by region), nothing about the other."""
    with pytest.raises(CatalogError) as info:
        load_catalog(_write(tmp_path, _entry(split=split))).check()
    message = str(info.value)
    assert expected in message, message
    for noise in ("function-after", "FileSplit", "RegionSplit", "Field required", "Value error", ";", "\n"):
        assert noise not in message, message


def test_an_unlabelled_region_split_names_only_what_to_segment(tmp_path, files):
    """Without labels nothing is trained, so a test region alone is the whole split (it was told to
    add a train region, which the next check then refused for want of labels)."""
    body = f"datasets:\n  d:\n    images: img/*.tif\n    {_region_split('{test: [[0, 10], [0, 512]]}')}\n"
    entry = load_catalog(_write(tmp_path, body)).entry("d")
    assert list(entry.split.regions) == ["test"]


def test_ome_tiff_images_are_named_as_segment_names_them_and_pair_with_plain_tiff_labels(tmp_path):
    """``x.ome.tif`` is ``x`` in a catalog as in ``segpipe segment`` (a catalog called it ``x.ome``,
    so its split named ``x.ome`` and its outputs differed from segment's)."""
    for sub, suffix in (("img", ".ome.tif"), ("lab", ".tif")):
        (tmp_path / sub).mkdir()
        for name in ("a", "b"):
            (tmp_path / sub / f"{name}{suffix}").write_bytes(b"x")
    body = "datasets:\n  d:\n    images: img/*.ome.tif\n    labels: lab/*.tif\n    split: {train: [a], test: [b]}\n"
    records = load_catalog(_write(tmp_path, body)).dataset("d").records
    assert sorted((r.name, r.image.name, r.labels.name) for r in records) == [
        ("a", "a.ome.tif", "a.tif"), ("b", "b.ome.tif", "b.tif")]
    with pytest.raises(CatalogError, match=r"split train names 'a.ome', but no image has that name \(an OME-TIFF a.ome.tif is "
                                           r"named 'a', without .ome\)$"):  # as such a catalog named it before
        load_catalog(_write(tmp_path, body.replace("[a]", "[a.ome]"))).dataset("d")


@pytest.mark.parametrize("name", ["../../evil", "a/../../b", "/abs", "a//b", "..", ".hidden", "with space"])
def test_a_dataset_name_that_would_leave_its_run_folder_is_refused(tmp_path, files, name):
    """A dataset named ../../evil passed `segpipe catalog`, and `segpipe run` wrote its store, model
    and report two folders above --output."""
    path = _write(tmp_path, f"datasets:\n  {name!r}:\n    images: img/*.tif\n    split: {{test: [a, b]}}\n".replace("'", '"'))
    with pytest.raises(CatalogError, match=r"a dataset's name is a folder of its runs: letters, digits and \. _ \+ -, parts joined by /"):
        load_catalog(path).check()


def test_names_of_letters_digits_dots_and_dashes_are_kept(tmp_path, files):
    path = _write(tmp_path, "datasets:\n  lab/Zellkerne_2024-v1.2:\n    images: img/*.tif\n    split: {test: [a, b]}\n")
    assert list(load_catalog(path).entries) == ["lab/Zellkerne_2024-v1.2"]  # a folder in a folder


def test_an_invalid_entry_stops_only_what_uses_it(tmp_path, files):
    """One lab's typo in its entry stopped every command for every other entry."""
    body = _entry() .replace("split: {train: [a]}", "split: {train: [a], test: [b]}") + "  bad:\n    images: img/*.tif\n    colour: red\n"
    catalog = load_catalog(_write(tmp_path, body))
    assert catalog.names() == ["d"] and "bad" in catalog and "d" in catalog and "x" not in catalog
    assert len(catalog.dataset("d").records) == 2
    with pytest.raises(CatalogError, match=r"catalog.yaml: dataset 'bad': colour: unknown field"):
        catalog.dataset("bad")
    with pytest.raises(CatalogError, match=r"dataset 'bad': colour: unknown field"):
        catalog.check()
    with pytest.raises(CatalogError, match=r"no dataset named 'x' \(known: d\)"):
        catalog.entry("x")
