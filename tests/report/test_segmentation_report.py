"""The report of a segmentation run without ground truth: the outlier rule, the sample choice,
the written numbers and flags, the page in Chromium, and a 3D run.

The runs are made from real pixels: crops of BBBC007 fields (and one full field, crowded next to
the crops) segmented by a fixed Otsu threshold, and halves of the bundled 3D nuclei with their
labels; measured by the pipeline's own :func:`measure_objects` and written to ``counts.csv``
and ``measurements.csv`` by ``segment``'s own table writer. A blank field gives an image with
no objects, and one input fails to read.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import tifffile
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.segmentation import relabel_sequential

from segpipe.pipeline.segment import write_tables
from segpipe.pipeline.segment_files import InputResult, SegmentFolder, _plain, write_csv
from segpipe.prediction.measure import measure_objects
from segpipe.report import choose_sample, flag_outliers, read_tables, write_segmentation_report
from segpipe.report.figures import PRED_COLOUR, needs_log_axis
from segpipe.report.segmentation import RULE, count_limits, pixel_size_item, sample_reasons

ERROR = "InputError: /data/plate1/broken.tif: not a TIFF file (it starts with b'GIF89a')"
SINCE = "2026-12-01T06:15:00+00:00"


def test_outlier_rule_by_hand():
    counts = {"a": 10, "b": 12, "c": 0, "d": 40, "e": 11}  # median 11: flagged above 33, below 11/3
    assert flag_outliers(counts) == {"c": "no objects", "d": "40 objects, more than 3 times the median (11)"}
    assert count_limits(counts) == (pytest.approx(11 / 3), 33.0)
    # counts.csv rows give the same, failed inputs skipped
    rows = [{"input": f"{k}.tif", "image": k, "objects": str(n), "status": "segmented", "error": ""} for k, n in counts.items()]
    rows.insert(2, {"input": "x.tif", "image": "", "objects": "", "status": "failed", "error": ERROR})
    assert flag_outliers(rows) == flag_outliers(counts)
    # exactly 3 times the median is not more than it
    assert flag_outliers({"a": 10, "b": 10, "c": 30}) == {}
    # two images are too few for a median: only an empty image is flagged
    assert flag_outliers({"a": 10, "b": 40}) == {}
    assert flag_outliers({"a": 0, "b": 40}) == {"a": "no objects"}
    assert count_limits({"a": 10, "b": 40}) == (None, None)
    # far fewer than the median (10.5 / 3 = 3.5), unless only far more is asked for
    few = {"a": 10, "b": 12, "c": 3, "d": 11}
    assert flag_outliers(few) == {"c": "3 objects, fewer than the median (10.5) divided by 3"}
    assert flag_outliers(few, few=False) == {}
    # a median below 1 (mostly empty images): only the empty ones
    assert flag_outliers({"a": 0, "b": 0, "c": 0, "d": 5}) == {"a": "no objects", "b": "no objects", "c": "no objects"}
    assert flag_outliers({}) == {}


def test_sample_choice():
    counts = {"a": 10, "b": 12, "c": 0, "d": 40, "e": 11}
    # the flagged first; fewest (c) and most (d) are those; then the first image, then the typical one
    assert choose_sample(counts) == ["c", "d", "a", "e"]
    assert choose_sample(counts, n=2) == ["c", "d"]
    assert sample_reasons(counts) == {
        "c": "flagged: no objects", "d": "flagged: 40 objects, more than 3 times the median (11)",
        "a": "first image", "e": "closest to the median count",
    }
    calm = {"a": 5, "b": 7, "c": 6, "d": 9, "e": 6}  # median 6, nothing flagged
    assert sample_reasons(calm) == {"a": "fewest objects", "d": "most objects", "c": "closest to the median count",
                                    "b": "next image"}
    assert choose_sample({"a": 3, "b": 3}) == ["a", "b"]  # ties go to the earlier image
    assert choose_sample({"only": 4}, n=4) == ["only"]
    assert choose_sample({}) == []


def test_needs_log_axis():
    assert needs_log_axis([10.0, 20.0, 5000.0])
    assert not needs_log_axis([10.0, 20.0, 900.0])
    assert not needs_log_axis([]) and not needs_log_axis([0.0, 5.0])


# ---- a 2D run from real pixels ---------------------------------------------------------------

SPACING = (0.65, 0.65)
CROPS = [("17P1_POS0006_D_1UL", "crop-a"), ("A9_p5d", "crop-b"), ("20P1_POS0007_D_1UL", "crop-c"), ("A9_p9d", "crop-d")]
FULL = "17P1_POS0013_D_1UL"


def segmented(image: np.ndarray, threshold: float, *, min_pixels: int = 10) -> np.ndarray:
    """Objects above ``threshold``, fragments under ``min_pixels`` dropped: a plausible prediction."""
    labels = label(image > threshold)
    small = np.bincount(labels.ravel()) < min_pixels
    small[0] = False
    return label(np.where(small[labels], 0, labels)).astype(np.uint32)


def write_run(root, images: dict[str, tuple[np.ndarray, np.ndarray]], spacing, *, failed: str | None = ERROR) -> SegmentFolder:
    """``counts.csv`` and ``measurements.csv`` as ``segment`` writes them, one input per image."""
    folder = SegmentFolder(root)
    results = []
    for name, (image, labels) in images.items():
        columns = measure_objects(labels, image[np.newaxis], spacing=spacing)
        rows = [{"image": name, **{k: _plain(v[i]) for k, v in columns.items()}, "unit": "micrometer"}
                for i in range(columns["label"].size)]
        folder.measurements(name).parent.mkdir(parents=True, exist_ok=True)
        write_csv(folder.measurements(name), rows, empty_fields=["image", "label"])
        results.append(InputResult(name, f"/data/plate1/{name}.tif", "tiff", images=[name], objects={name: int(labels.max())}))
    if failed:
        results.insert(1, InputResult("broken", "/data/plate1/broken.tif", "tiff", error=failed, failing_since=SINCE))
    write_tables(folder, results)
    return folder


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory, data_dir, model_card):
    """A 2D run: four crops, one full field, a blank field; one broken input."""
    fields = {name: tifffile.imread(data_dir / "bbbc007" / "images" / f"{source}.tif")[100:220, 100:220]
              for source, name in CROPS}
    fields["full-field"] = tifffile.imread(data_dir / "bbbc007" / "images" / f"{FULL}.tif")
    threshold = threshold_otsu(np.concatenate([f.ravel() for f in fields.values()]))
    background = np.percentile(fields["crop-a"], 5)
    noise = np.random.default_rng(0).normal(0, 2, (120, 120))
    fields = {**dict(list(fields.items())[:2]), "blank": np.clip(background + noise, 0, 255).astype(np.uint8),
              **dict(list(fields.items())[2:])}
    images = {name: (image, segmented(image, threshold)) for name, image in fields.items()}
    folder = write_run(tmp_path_factory.mktemp("run2d"), images, SPACING)
    counts, objects = read_tables(folder.root)
    sample = choose_sample(counts)
    views = [(name, images[name][0], images[name][1]) for name in sample]
    card = model_card(2, name="nuclei-kc167", spacing=(0.65, 0.65))
    report = write_segmentation_report(
        folder.root / "report", title="segpipe segment: plate1", card=card, counts=counts, objects=objects, views=views,
        unit="micrometer", ndim=2, spacing_by_image={name: SPACING for name in images},
    )
    return {"images": images, "counts": counts, "objects": objects, "sample": sample, "report": report}


def test_tables_read_as_segment_writes_them(run_2d):
    counts, objects, images = run_2d["counts"], run_2d["objects"], run_2d["images"]
    assert [(r["image"], r["objects"], r["status"]) for r in counts] == [
        ("crop-a", int(images["crop-a"][1].max()), "segmented"), ("", None, "failed"),
        *[(name, int(labels.max()), "segmented") for name, (_, labels) in list(images.items())[1:]],
    ]
    assert counts[1] == {"input": "/data/plate1/broken.tif", "image": "", "objects": None, "noise_only_frames": None, "status": "failed",
                         "error": ERROR, "failing_since": SINCE}
    assert [r["noise_only_frames"] for r in counts if r["status"] != "failed"] == [0] * len(images)
    assert len(objects) == sum(int(labels.max()) for _, labels in images.values())
    first = objects[0]
    assert first["image"] == "crop-a" and first["label"] == 1 and first["unit"] == "micrometer"
    assert isinstance(first["label"], int) and isinstance(first["area"], float)
    assert first["area"] == pytest.approx((images["crop-a"][1] == 1).sum() * 0.65 * 0.65)


def test_written_report_has_the_numbers_and_flags(run_2d):
    report, counts, images = run_2d["report"], run_2d["counts"], run_2d["images"]
    by_image = {name: int(labels.max()) for name, (_, labels) in images.items()}
    median = float(np.median(list(by_image.values())))
    # the real fields: the blank one is empty, the full field holds far more nuclei than a crop
    assert by_image["blank"] == 0 and by_image["full-field"] > 3 * median >= 3
    assert flag_outliers(counts) == {
        "blank": "no objects",
        "full-field": f"{by_image['full-field']} objects, more than 3 times the median ({median:g})",
    }
    md = report.markdown
    lines = md.splitlines()
    # the notices first: the flagged images, then the failed input with its error
    assert lines[2].startswith(f"> **Outliers:** 2 of 6 images flagged as outliers: blank (no objects); full-field ({by_image['full-field']} objects")
    assert RULE in lines[2]
    # when it first failed so: a known failure of an inbox reads as one, with its date (counts.csv had it not)
    assert lines[4] == f"> **Failed:** 1 input could not be segmented: /data/plate1/broken.tif ({ERROR}; failing since {SINCE})."
    total = sum(by_image.values())
    summary = {r["item"]: r["value"] for r in report.tables["segmentation"]}
    assert summary == {
        "model": "nuclei-kc167 (unet, 2D, nucleus)", "trained on": "demo", "pixel size trained at": "0.65 × 0.65 micrometer (y, x)",
        "inputs": "7", "images segmented": "6", "inputs failed": "1", "objects in total": str(total),
        "median objects per image": f"{median:g}", "images flagged as outliers": "2",
    }
    assert report.summary == (f"6 images from 6 inputs segmented with the model nuclei-kc167: {total} objects in total, "
                              f"a median of {median:g} per image; 2 flagged as outliers; 1 input failed.")
    assert report.tables["failed"] == [{"input": "/data/plate1/broken.tif", "error": ERROR, "failing since (UTC)": SINCE}]
    assert f"| /data/plate1/broken.tif | {ERROR} | {SINCE} |" in md
    rows = {r["image"]: r for r in report.tables["objects-per-image"]}
    assert list(rows) == list(by_image)  # every segmented image, in order
    for name, n in by_image.items():
        row = rows[name]
        areas = [o["area"] for o in run_2d["objects"] if o["image"] == name]
        assert row["objects"] == str(n) and row["input"] == f"/data/plate1/{name}.tif"
        assert row["median area (micrometer²)"] == (f"{np.median(areas):.4g}" if areas else "n/a")
        assert row["mean area (micrometer²)"] == (f"{np.mean(areas):.4g}" if areas else "n/a")
        assert row["pixel size"] == "0.65 × 0.65 micrometer (y, x)"
        assert row["flag"] == flag_outliers(counts).get(name, "")
        assert "| " + " | ".join(row.values()) + " |" in md
    # figures: the bar chart, the size plot, one overlay per sampled image (flagged first)
    assert run_2d["sample"][:2] == ["blank", "full-field"] and len(run_2d["sample"]) == 4
    assert [p.name for p in report.figures] == ["objects_per_image.png", "object_sizes.png",
                                                *[f"sample_{n}.png" for n in run_2d["sample"]]]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in report.figures)
    every = [o["area"] for o in run_2d["objects"]]
    assert ("on a log axis" in md) == needs_log_axis(every)
    assert "![blank: flagged: no objects](figures/sample_blank.png)" in md
    assert report.html_path.read_text().count("data:image/png;base64,") == len(report.figures)


def test_report_in_chromium(run_2d, chromium):
    report = run_2d["report"]
    page = chromium(report.html_path)
    assert page.errors == []
    assert all(url.startswith(("file:", "data:")) for url in page.requests), [u[:60] for u in page.requests]
    assert page.title == "segpipe segment: plate1"
    assert len(page.images) == len(report.figures) == 6
    for image in page.images:
        assert image["scheme"] == "data" and image["complete"] and image["decoded"], image
        assert image["width"] > 200 and image["height"] > 200, image
    for heading in ("Summary", "Per image", "Counts and sizes", "Sample", "Model card", "Outliers:", "Failed:", ERROR):
        assert heading in page.text, heading
    for key, records in report.tables.items():
        header, *rows = page.tables[f"table-{key}"]
        assert header == list(records[0]) and rows == [list(r.values()) for r in records], key
    # the overlay draws the predicted outlines; the blank image has none
    drawn = {p.name: mpimg.imread(p)[..., :3] for p in report.figures if p.name.startswith("sample_")}
    magenta = {name: int(np.all(np.abs(rgb - np.array(PRED_COLOUR)) < 0.02, axis=-1).sum()) for name, rgb in drawn.items()}
    assert magenta["sample_blank.png"] == 0 and magenta["sample_full-field.png"] > 1000


def test_a_run_where_every_input_failed(tmp_path, model_card):
    counts = [{"input": "/data/a.tif", "image": "", "objects": None, "status": "failed", "error": ERROR}]
    report = write_segmentation_report(tmp_path, title="nothing", card=model_card(2), counts=counts, objects=[], views=[],
                                       unit="micrometer", ndim=2)
    assert report.figures == [] and report.summary.endswith("0 objects in total, no median; 0 flagged as outliers; 1 input failed.")
    assert "> **Failed:** 1 input could not be segmented" in report.markdown and "No images shown." in report.markdown
    assert report.tables["objects-per-image"] == []
    with pytest.raises(ValueError, match="has no volume"):
        write_segmentation_report(tmp_path, title="x", card=model_card(2), counts=counts,
                                  objects=[{"image": "a", "label": 1, "area": 3.0}], views=[], unit="micrometer", ndim=3)


def test_sizes_in_another_unit_are_called_out(tmp_path, model_card):
    counts = [{"input": "a.tif", "image": "a", "objects": "2", "status": "segmented", "error": ""}]
    objects = [{"image": "a", "label": "1", "area": "3.5", "unit": "micrometer"},
               {"image": "a", "label": "2", "area": "0.004", "unit": "millimeter"}]
    report = write_segmentation_report(tmp_path, title="units", card=model_card(2), counts=counts, objects=objects, views=[],
                                       unit="micrometer", ndim=2)
    assert "> **Units:** Some objects were measured in millimeter, not micrometer" in report.markdown
    assert report.tables["objects-per-image"][0]["median area (micrometer²)"] == "1.752"
    assert flag_outliers(counts) == {} and "Outliers" not in report.markdown


def test_a_report_made_again_keeps_only_the_sample_it_shows(tmp_path, run_2d, model_card):
    """Segmenting one file into a folder left the earlier run's sample figures beside the new one."""
    images, counts, objects = run_2d["images"], run_2d["counts"], run_2d["objects"]
    card = model_card(2, name="nuclei-kc167", spacing=(0.65, 0.65))

    def write(names):
        views = [(name, images[name][0], images[name][1]) for name in names]
        rows = [row for row in counts if row["image"] in names]
        return write_segmentation_report(tmp_path, title="again", card=card, counts=rows,
                                         objects=[o for o in objects if o["image"] in names], views=views,
                                         unit="micrometer", ndim=2)

    write(["crop-a", "crop-b"])
    assert sorted(p.name for p in (tmp_path / "figures").glob("sample_*.png")) == ["sample_crop-a.png", "sample_crop-b.png"]
    report = write(["crop-c"])
    assert sorted(p.name for p in (tmp_path / "figures").glob("sample_*.png")) == ["sample_crop-c.png"]
    assert all(Path(f).is_file() for f in report.figures)


# ---- a 3D run --------------------------------------------------------------------------------


def test_3d_report(tmp_path, data_dir, model_card, chromium):
    """Two halves of the 3D nuclei with their bundled labels as the prediction (thresholding
    fuses these crowded nuclei) and a blank volume, two channels (the first empty), voxels four
    times as deep as wide: sizes are volumes, overlays show orthogonal planes at that aspect."""
    volume = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "image.tif")
    nuclei = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "labels.tif")
    blank = np.full((31, 61, 28), np.percentile(volume, 5), volume.dtype)
    images = {
        "left": (volume[:, :, :28], relabel_sequential(nuclei[:, :, :28])[0]),
        "right": (volume[:, :, 28:], relabel_sequential(nuclei[:, :, 28:])[0]),
        "blank": (blank, np.zeros(blank.shape, np.uint32)),
    }
    spacing = (2.0, 0.5, 0.5)
    folder = write_run(tmp_path / "run3d", images, spacing, failed=None)
    counts, objects = read_tables(folder.root)
    assert "volume" in objects[0] and objects[0]["volume"] == pytest.approx((images["left"][1] == 1).sum() * 0.5)
    assert flag_outliers(counts) == {"blank": "no objects"}  # three volumes: the median rule applies, nothing else stands out
    views = [(name, np.stack([np.zeros_like(images[name][0]), images[name][0]]), images[name][1]) for name in choose_sample(counts)]
    assert views[0][0] == "blank" and sorted(name for name, _, _ in views) == ["blank", "left", "right"]
    card = model_card(3, spacing=spacing, in_channels=2, channel_names=["membrane", "dna"])
    report = write_segmentation_report(tmp_path / "report", title="3D run", card=card, counts=counts, objects=objects,
                                       views=views, unit="micrometer", ndim=3, spacing_by_image={n: spacing for n in images})
    md = report.markdown
    assert "median volume (micrometer³)" in md and "pixel size trained at | 2 × 0.5 × 0.5 micrometer (z, y, x)" in md
    assert "The 2 channels are drawn as a colour composite (membrane green, dna magenta)" in md
    assert ("3D volumes: orthogonal planes through the planes holding the most predicted objects, at the physical aspect "
            "ratio of each image's pixel size.") in md
    page = chromium(report.html_path)
    assert page.errors == [] and len(page.images) == len(report.figures) == 2 + len(views)
    assert all(i["decoded"] and i["scheme"] == "data" for i in page.images)
    # three rows of planes (yx, zx, zy), the z planes drawn four times as thick: taller than wide
    left = mpimg.imread(next(p for p in report.figures if p.name == "sample_left.png"))
    assert left.shape[0] > left.shape[1]
    assert np.all(np.abs(left[..., :3] - np.array(PRED_COLOUR)) < 0.02, axis=-1).sum() > 100
    flat = write_segmentation_report(tmp_path / "flat", title="3D run", card=card, counts=counts, objects=objects,
                                     views=[v for v in views if v[0] == "left"], unit="micrometer", ndim=3)
    assert "one pixel per voxel along every axis" in flat.markdown
    assert mpimg.imread(flat.figures[-1]).shape[0] < left.shape[0]


def test_counts_are_compared_at_one_image_size_where_sizes_differ():
    """Every 1024 x 1024 field among 256 x 256 ones was flagged for its count (11 of 28 images),
    and the sample showed only those; a field 16 times the area holds 16 times the cells."""
    from segpipe.report.segmentation import scaled_counts

    counts = {"s1": 10, "s2": 12, "s3": 11, "big": 170, "big_empty_half": 40}
    sizes = {"s1": 256**2, "s2": 256**2, "s3": 256**2, "big": 1024**2, "big_empty_half": 1024**2}
    assert scaled_counts(counts, sizes) == {"s1": 10, "s2": 12, "s3": 11, "big": 170 / 16, "big_empty_half": 40 / 16}
    # at the median size (256^2): 10, 12, 11, 10.6, 2.5; the median 10.6 and the limits 3.54 and 31.9
    assert flag_outliers(counts, sizes=sizes) == {
        "big_empty_half": "40 objects in 16 times the median image's size (2.5 at that size), fewer than the median at that "
                          "size (10.6) divided by 3"}
    assert list(flag_outliers(counts)) == ["big", "big_empty_half"]  # without sizes, as before: both large fields
    same = {name: 256**2 for name in counts}
    assert scaled_counts(counts, same) is None and flag_outliers(counts, sizes=same) == flag_outliers(counts)
    assert choose_sample(counts, sizes=sizes)[0] == "big_empty_half"
    small = {"s1": 10, "s2": 12, "s3": 11, "tiny": 1}
    assert flag_outliers(small, sizes={"s1": 4.0, "s2": 4.0, "s3": 4.0, "tiny": 0.04}) == {
        "tiny": "1 object in 1/100 of the median image's size (100 at that size), more than 3 times the median at that size (11.5)"}


def test_a_field_imaged_at_another_pixel_size_is_compared_by_its_area(tmp_path):
    """The same 128 x 128 um field with 4 discs, twice at 0.5 um and once at 1 um per pixel (OME-TIFFs,
    ingested): each holds 4 objects, and none is flagged (by pixel counts the 1 um field was 4 times
    smaller, so its 4 read as 16 at the median size and it was flagged)."""
    from segpipe.data.catalog import load_catalog
    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.store import ImageStore
    from segpipe.pipeline.segment import image_sizes

    (tmp_path / "img").mkdir()
    for name, side, size in (("a", 256, 0.5), ("b", 256, 0.5), ("c", 128, 1.0)):
        tifffile.imwrite(tmp_path / "img" / f"{name}.tif", np.zeros((side, side), np.uint8), ome=True,
                         metadata={"axes": "YX", "PhysicalSizeX": size, "PhysicalSizeY": size})
    (tmp_path / "catalog.yaml").write_text("datasets:\n  fields:\n    images: img/*.tif\n")
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("fields"), tmp_path / "data.zarr", progress=False)
    sizes = image_sizes([ImageStore.open(tmp_path / "data.zarr")], "micrometer", {"a", "b", "c"})
    assert sizes.extent == {"a": 128.0**2, "b": 128.0**2, "c": 128.0**2}
    assert flag_outliers({"a": 4, "b": 4, "c": 4}, sizes=sizes.extent) == {}
    assert "c" in flag_outliers({"a": 4, "b": 4, "c": 4}, sizes={"a": 256**2, "b": 256**2, "c": 128**2})  # by pixels
    # a field whose file gives no pixel size (1 um taken) among them: its area means nothing, so every image
    # is compared by its pixels (the taken size made a 0.25 um field read as 1/16 of the others' area)
    tifffile.imwrite(tmp_path / "img" / "d.tif", np.zeros((256, 256), np.uint8))
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("fields"), tmp_path / "data.zarr", progress=False)
    sizes = image_sizes([ImageStore.open(tmp_path / "data.zarr")], "micrometer", {"a", "b", "c", "d"})
    assert sizes.guessed == {"d"} and sizes.extent == {"a": 256.0**2, "b": 256.0**2, "c": 128.0**2, "d": 256.0**2}


def test_the_summary_gives_no_training_pixel_size_for_a_model_that_takes_each_image_at_its_own(model_card):
    """The shipped generalist's segmentation report said "pixel size trained at | 1 × 1 micrometer",
    where it takes every image at its own pixels (as `segpipe models` says)."""
    assert pixel_size_item(model_card(spacing=(0.65, 0.65))) == ("pixel size trained at", "0.65 × 0.65 micrometer (y, x)")
    assert pixel_size_item(model_card(generalist=True)) == ("pixel size", "each image's own: a generalist takes images as they are")
    assert pixel_size_item(model_card(object_size=40.0)) == ("pixel size", "each image's own, rescaled by the size of its objects")


def test_the_shipped_generalists_scores_are_said_to_be_on_its_own_kinds_of_images():
    """The report's card gave the generalist's SEG 0.909 as a validation score like any model's."""
    from segpipe.models.shipped import CELLS_2D, shipped_model
    from segpipe.report.tables import card_table

    rows = dict(card_table(shipped_model(CELLS_2D).card).rows)
    (label,) = [k for k, v in rows.items() if v.startswith("OP_CSB")]
    assert label.startswith("validation on the generalist's own kinds of images (those it was trained on)")
    assert label.endswith("optimistic, and no measure of how it does on yours")


def test_the_summary_says_how_many_images_this_run_predicted_and_how_many_it_kept(tmp_path, model_card):
    """A rerun that predicted nothing wrote the same report as the first run: "3 images segmented"."""
    counts = [{"input": f"{name}.tif", "image": name, "objects": 1, "noise_only_frames": 0, "status": status, "error": ""}
              for name, status in (("a", "segmented"), ("b", "unchanged"), ("c", "unchanged"))]
    objects = [{"image": name, "label": 1, "area": 10.0, "unit": "micrometer"} for name in "abc"]
    report = write_segmentation_report(tmp_path, title="rerun", card=model_card(2), counts=counts, objects=objects,
                                       views=[], unit="micrometer", ndim=2)
    summary = {r["item"]: r["value"] for r in report.tables["segmentation"]}
    assert summary["of them predicted in this run / kept from an earlier run (unchanged)"] == "1 / 2"
