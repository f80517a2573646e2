"""The report of a segmentation run without ground truth (``segpipe segment``): how many objects
the model found in each image, how large they are, what a sample looks like, and which images
to look at first.

* :func:`write_segmentation_report` -- ``report.md``, a self-contained ``report.html`` and
  ``figures/`` in a folder, from the run's tables (``counts.csv``, ``measurements.csv``), the
  model card and a sample of images with their labels.
* :func:`read_tables` -- ``counts.csv`` and ``measurements.csv`` as ``segment`` writes them,
  numbers parsed.
* :func:`flag_outliers` -- the images whose object count stands out (the rule below).
* :func:`choose_sample` -- which images to show (load only those for the overlays).

Outlier rule. With no ground truth, a count that stands out is the cheapest sign of a failure
(an empty field, a different stain or magnification, a model that splits everything). Among
the images that were segmented (failed inputs are listed apart), an image is flagged when

* it has no objects (always); or, when there are at least :data:`MIN_IMAGES` images and their
  median count is at least 1,
* it has more than :data:`FACTOR` (3) times the median count, or
* it has fewer than the median divided by :data:`FACTOR` (``few=True``, the default).

The median is taken over every segmented image, empty ones included. Flagged images are listed
in a notice at the top of the report, marked in the per-image table and drawn in another
colour in the bar chart and the size plot.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

from segpipe.models.card import ModelCard
from segpipe.report import figures as fig
from segpipe.report.document import Details, Document, Figure, Notice, Section, Table, Text, to_html, to_markdown
from segpipe.report.orientation import PLANES
from segpipe.report.tables import SET_AFTER_TRAINING, card_table
from segpipe.report.write import Report, _atomic_write

#: An image with more than FACTOR times the median count (or fewer than the median / FACTOR) is flagged.
FACTOR = 3.0
#: The count rule relative to the median needs at least this many segmented images.
MIN_IMAGES = 3
#: Images whose sizes differ by more than this factor have their counts compared per median-sized image.
SIZES_APART = 2.0
#: Images shown by default (:func:`choose_sample`).
SAMPLE_SIZE = 4
#: The notices at the top name at most this many images (the tables list them all).
MAX_LISTED = 20

RULE = (
    f"An image is flagged as an outlier when it has no objects, or, when at least {MIN_IMAGES} images were "
    f"segmented and their median count is at least 1, when it has more than {FACTOR:g} times the median count "
    f"or fewer than the median divided by {FACTOR:g}. The median is taken over every segmented image, empty ones included; "
    f"where the images differ in size by more than {SIZES_APART:g} times, each count is first scaled to the median image size."
)

#: How the sample was chosen, in the legend of the overlays.
SAMPLE_CHOICE = (" The sample shows the flagged images first, then the images with the fewest and the most objects, the "
                 "first image and the one closest to the median count; each caption says why its image was chosen.")

# Columns of counts.csv and measurements.csv that hold text; the others hold numbers.
_TEXT_COLUMNS = {"input", "image", "status", "error", "failing_since", "unit", "class", "time_unit", "pixel_size"}


def read_tables(folder: Path) -> tuple[list[dict], list[dict]]:
    """``counts.csv`` and ``measurements.csv`` of a ``segment`` run folder, numbers parsed.

    Returns:
        ``(counts, objects)``: one row per image (``input``, ``image``, ``objects``, ``status``,
        ``error``; ``objects`` is ``None`` for a failed input) and one row per object (the
        measurement columns: ``label``, ``area`` or ``volume``, ``centroid-*``, ``bbox-*``,
        ``mean_intensity-*`` as numbers; ``input``, ``image``, ``unit`` as text).

    Raises:
        FileNotFoundError: A table is missing.
    """
    folder = Path(folder)
    return _read_csv(folder / "counts.csv"), _read_csv(folder / "measurements.csv")


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: v if k in _TEXT_COLUMNS else _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str | None) -> int | float | str | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _failed(row: Mapping) -> bool:
    return row.get("status") == "failed"


def image_counts(counts: list[dict] | Mapping[str, int]) -> dict[str, int]:
    """``{image: objects}`` of the segmented images, in order (counts rows or such a mapping)."""
    if isinstance(counts, Mapping):
        return {str(name): int(n) for name, n in counts.items()}
    return {str(row["image"]): int(row["objects"]) for row in counts if not _failed(row)}


def median_count(counts: list[dict] | Mapping[str, int]) -> float | None:
    """The median objects per segmented image (``None`` without any)."""
    values = list(image_counts(counts).values())
    return float(statistics.median(values)) if values else None


def scaled_counts(by_image: Mapping[str, int], sizes: Mapping[str, float] | None) -> dict[str, float] | None:
    """Each image's count scaled to the median image size, where the images' sizes (``sizes``: each
    image's area or volume over its frames, in any one unit) differ by more than :data:`SIZES_APART`
    times; else ``None`` (counts compare as they are)."""
    known = [sizes[name] for name in by_image if sizes and sizes.get(name)]
    if len(known) < len(by_image) or not known or max(known) <= SIZES_APART * min(known):
        return None
    middle = statistics.median(known)
    return {name: n * middle / sizes[name] for name, n in by_image.items()}  # type: ignore[index]


def _against_median_size(ratio: float) -> str:
    """`` in 16 times the median image's size`` (or ``1/4 of``): an image's size over the median's."""
    return f" in {ratio:.3g} times the median image's size" if ratio >= 1 else f" in 1/{1 / ratio:.3g} of the median image's size"


def count_limits(
    counts: list[dict] | Mapping[str, int], *, factor: float = FACTOR, few: bool = True, sizes: Mapping[str, float] | None = None,
) -> tuple[float | None, float | None]:
    """``(low, high)``: an image with more than ``high`` or fewer than ``low`` objects (scaled to the
    median image size where sizes differ, :func:`scaled_counts`) is flagged; ``None`` where the rule
    does not apply (fewer than :data:`MIN_IMAGES` images, a median below 1)."""
    by_image = image_counts(counts)
    return _limits(by_image, _median(scaled_counts(by_image, sizes) or by_image), factor=factor, few=few)


def _objects(n: int) -> str:
    return f"{n} object{'' if n == 1 else 's'}"


def _median(values: Mapping[str, float]) -> float | None:
    return float(statistics.median(values.values())) if values else None


def _limits(by_image: Mapping[str, int], median: float | None, *, factor: float, few: bool) -> tuple[float | None, float | None]:
    if median is None or len(by_image) < MIN_IMAGES or median < 1:
        return None, None
    return (median / factor if few else None), median * factor


def flag_outliers(
    counts: list[dict] | Mapping[str, int], *, factor: float = FACTOR, few: bool = True, sizes: Mapping[str, float] | None = None,
) -> dict[str, str]:
    """The images flagged by the outlier rule (module docstring), with why, in image order.

    Args:
        counts: ``counts.csv`` rows (failed inputs are skipped) or ``{image: objects}``.
        factor: How far from the median a count must be to stand out.
        few: Flag far fewer objects than the median too (not only far more).
        sizes: Each image's area (volume) over its frames, in the tables' unit: where sizes differ
            by more than :data:`SIZES_APART` times, counts are compared scaled to the median image
            size (a field four times as large holds four times the cells; a field of the same area at
            half the pixel size holds as many).

    Returns:
        ``{image: reason}``, e.g. ``{"a": "no objects", "b": "40 objects, more than 3 times the median (11)"}``.
    """
    by_image = image_counts(counts)
    scaled = scaled_counts(by_image, sizes)
    compared = scaled or by_image
    median = _median(compared)
    low, high = _limits(by_image, median, factor=factor, few=few)
    middle = statistics.median(sizes[name] for name in by_image) if scaled else None  # type: ignore[index]
    flags = {}
    for name, n in by_image.items():
        said = _objects(n) + (f"{_against_median_size(sizes[name] / middle)} ({compared[name]:.3g} at that size)"  # type: ignore[index]
                              if middle else "")
        of = "the median at that size" if scaled else "the median"
        if n == 0:
            flags[name] = "no objects"
        elif high is not None and compared[name] > high:
            flags[name] = f"{said}, more than {factor:g} times {of} ({median:.3g})"
        elif low is not None and compared[name] < low:
            flags[name] = f"{said}, fewer than {of} ({median:.3g}) divided by {factor:g}"
    return flags


def sample_reasons(counts: list[dict] | Mapping[str, int], *, n: int = SAMPLE_SIZE,
                   sizes: Mapping[str, float] | None = None) -> dict[str, str]:
    """:func:`choose_sample` with why each image was chosen: ``{image: reason}``."""
    by_image = image_counts(counts)
    chosen: dict[str, str] = {}

    def add(name: str, reason: str) -> None:
        if name not in chosen and len(chosen) < n:
            chosen[name] = reason

    for name, why in flag_outliers(by_image, sizes=sizes).items():
        add(name, f"flagged: {why}")
    if by_image:
        names = list(by_image)
        add(min(names, key=by_image.__getitem__), "fewest objects")
        add(max(names, key=by_image.__getitem__), "most objects")
        add(names[0], "first image")
        median = median_count(by_image)
        add(min(names, key=lambda k: abs(by_image[k] - median)), "closest to the median count")
        for name in names:
            add(name, "next image")
    return chosen


def choose_sample(counts: list[dict] | Mapping[str, int], *, n: int = SAMPLE_SIZE,
                  sizes: Mapping[str, float] | None = None) -> list[str]:
    """The images to show, at most ``n``: the flagged ones first (in image order), then the image
    with the fewest objects, the one with the most, the first image, the one closest to the
    median count, then the others in order (ties go to the earlier image).

    Args:
        counts: ``counts.csv`` rows (failed inputs are skipped) or ``{image: objects}``.
        n: How many images at most.
        sizes: Each image's area (volume), for the outlier rule (:func:`flag_outliers`).
    """
    return list(sample_reasons(counts, n=n, sizes=sizes))


def _size(value: float | None) -> str:
    """A size for a cell: 4 significant digits, whole numbers from 10000 on."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


#: What the pixel-size row adds for a model whose training files gave no pixel size.
GUESSED = ": not known, the training images' files gave none; each image was taken at 1 per pixel, as they were"
def pixel_size_item(card) -> tuple[str, str]:
    """The summary's pixel size row: the size the model resamples images to, and whether it was a
    guess or set after training; a generalist's, or a model rescaling by object size, is none."""
    if card.generalist:
        return "pixel size", "each image's own: a generalist takes images as they are"
    if card.object_size:
        return "pixel size", "each image's own, rescaled by the size of its objects"
    return "pixel size trained at", _pixel_size(card.spacing, card.unit) + (
        GUESSED if card.spacing_guessed else SET_AFTER_TRAINING if card.pixel_size_set else "")


def _pixel_size(spacing, unit: str) -> str:
    spacing = tuple(spacing)
    return f"{' × '.join(f'{s:g}' for s in spacing)} {unit} ({', '.join('zyx'[3 - len(spacing):])})"


def _file_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    candidate, k = f"sample_{stem}.png", 1
    while candidate in taken:
        k += 1
        candidate = f"sample_{stem}_{k}.png"
    taken.add(candidate)
    return candidate


def _n_channels(image: np.ndarray, labels: np.ndarray) -> int:
    return int(np.shape(image)[0]) if np.ndim(image) == np.ndim(labels) + 1 else 1


def _sample_legend(views: list, card: ModelCard, ndim: int, *, spacing_known: bool, anatomical: bool = False) -> str:
    text = "Magenta: outlines of the predicted objects." + SAMPLE_CHOICE
    n_channels = max((_n_channels(image, labels) for _, image, labels in views), default=1)
    if n_channels > 1:
        names = card.channel_names if card.channel_names and len(card.channel_names) == n_channels else None
        colours = ", ".join(
            f"{names[c] if names else f'channel {c + 1}'} {colour}"
            for c, (colour, _) in enumerate(fig.channel_colours(n_channels))
        )
        text += (f" The {n_channels} channels are drawn as a colour composite ({colours}), each scaled to its 1st-99.8th "
                 "percentiles; outlines are edged in black.")
    if ndim == 3:
        text += " 3D volumes: orthogonal planes through the planes holding the most predicted objects" + (
            ", at the physical aspect ratio of each image's pixel size." if spacing_known
            else ", one pixel per voxel along every axis."
        )
    if anatomical:
        text += (" Volumes from NIfTI files are turned by their affine to axial, coronal and sagittal planes as 3D Slicer "
                 "draws them: superior and anterior at the top, the subject's right on the left (radiological convention).")
    return text


def write_segmentation_report(
    folder: Path,
    *,
    title: str,
    card: ModelCard,
    counts: list[dict],
    objects: list[dict],
    views: list[tuple[str, np.ndarray, np.ndarray]],
    unit: str,
    ndim: int,
    spacing_by_image: dict[str, tuple[float, ...]] | None = None,
    guessed_spacing: Collection[str] = (),
    size_by_image: Mapping[str, float] | None = None,
    anatomical: Mapping[str, tuple[float, ...]] | None = None,
    noise_only: Collection[str] = (),
) -> Report:
    """Write ``report.md``, ``report.html`` (self-contained) and ``figures/`` into ``folder``.

    The report opens with a notice listing the flagged images (:func:`flag_outliers`) and one
    listing the failed inputs with their errors; then a summary (the model: its name, what it
    was trained on and at which pixel size; images segmented and failed; objects in total; the
    median per image; the outlier rule), a table per image (objects, median and mean object
    size, flag), the objects per image (a bar chart), the object sizes per image (box plots),
    overlays of the sample and the model card.

    Args:
        folder: Where to write (created if needed).
        title: The report's title.
        card: The model that segmented the images.
        counts: ``counts.csv`` rows (:func:`read_tables`): ``input``, ``image``, ``objects``,
            ``status`` (``segmented``, ``unchanged`` or ``failed``), ``error``; numbers or their text.
        objects: ``measurements.csv`` rows: ``image`` and ``area`` (2D) or ``volume`` (3D) in
            physical units, numbers or their text; other columns are not read.
        views: ``(image name, image, labels)`` of the images to show (:func:`choose_sample`):
            the image with all its channels, ``(C, [Z,] Y, X)`` (or ``([Z,] Y, X)`` for one
            channel), and its predicted labels ``([Z,] Y, X)``.
        unit: Unit of the pixel size the sizes were measured in (``micrometer``, ...).
        ndim: 2 or 3 spatial dimensions (sizes are areas or volumes).
        spacing_by_image: Pixel size of each image per spatial axis ([z,] y, x): a column of the
            per-image table, and the aspect ratio of 3D overlays (without it, isotropic).
        guessed_spacing: The images whose files gave no pixel size (one was taken): their
            pixel size is marked as guessed.
        size_by_image: The area (volume) of each image over its frames, its pixels times its pixel
            size: the outlier rule compares counts scaled to the median image size where sizes
            differ (:func:`flag_outliers`).
        anatomical: The views turned to the anatomical orientation (:mod:`segpipe.report.orientation`),
            with the pixel size along the view's axes.

    Returns:
        The written report; ``tables`` hold its tables by key (``segmentation``, ``failed``,
        ``objects-per-image``, ``model-card``) and ``summary`` one line with the main numbers.

    Raises:
        ValueError: ``ndim`` is not 2 or 3; an object row lacks its size; a view's image and
            labels do not fit.
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    folder = Path(folder)
    figures_dir = folder / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    unit = unit or "pixel"
    size_key = "area" if ndim == 2 else "volume"
    size_unit = f"{unit}{'²' if ndim == 2 else '³'}"
    spacing_by_image = spacing_by_image or {}

    segmented = [row for row in counts if not _failed(row)]
    failed = [row for row in counts if _failed(row)]
    failed_notice, failed_table = _failed_blocks(failed)
    if not card.instances:  # a class map: each class's size per image, not objects
        from segpipe.report.class_maps import write_class_report

        return write_class_report(folder, title=title, card=card, segmented=segmented, failed=failed, objects=objects,
                                  views=views, unit=unit, ndim=ndim, spacing_by_image=spacing_by_image,
                                  guessed_spacing=guessed_spacing, failed_blocks=(failed_notice, failed_table),
                                  anatomical=anatomical or {})
    by_image = image_counts(segmented)
    inputs = {row["input"]: None for row in segmented}
    names = list(by_image)
    sizes: dict[str, list[float]] = {name: [] for name in names}
    for row in objects:
        if row.get(size_key) in (None, ""):
            raise ValueError(f"object {row.get('label')} of image {row.get('image')!r} has no {size_key} (a {ndim}D run?)")
        sizes.setdefault(str(row["image"]), []).append(float(row[size_key]))
    flags = flag_outliers(by_image, sizes=size_by_image)
    for name in set(noise_only) & set(flags):
        if by_image.get(name) == 0:
            flags[name] = "no objects: nothing in it stands out of its noise (an empty or blank field), so it was not predicted; --noise-only 0 predicts it"
    median = median_count(by_image)
    scaled = scaled_counts(by_image, size_by_image) is not None
    low, high = (None, None) if scaled else count_limits(by_image)  # scaled limits differ per image: not drawn
    total = sum(by_image.values())
    n_failed = len(failed)
    kept = sum(row.get("status") == "unchanged" for row in segmented)

    summary = (
        f"{len(names)} image{'' if len(names) == 1 else 's'} from {len(inputs)} input{'' if len(inputs) == 1 else 's'} "
        f"segmented with the model {card.name}: {total} objects in total, "
        f"{'a median of ' + format(median, 'g') + ' per image' if median is not None else 'no median'}; "
        f"{len(flags)} flagged as outlier{'' if len(flags) == 1 else 's'}; "
        f"{n_failed} input{'' if n_failed == 1 else 's'} failed."
    )

    intro: list = []
    if flags:
        listed = "; ".join(f"{name} ({why})" for name, why in list(flags.items())[:MAX_LISTED])
        if len(flags) > MAX_LISTED:
            listed += f"; and {len(flags) - MAX_LISTED} more (see the table)"
        intro.append(Notice(f"{len(flags)} of {len(names)} images flagged as outliers: {listed}. {RULE}", title="Outliers"))
    intro += failed_notice
    units = sorted({str(row["unit"]) for row in objects if row.get("unit")} - {unit})
    if units:
        intro.append(Notice(f"Some objects were measured in {', '.join(units)}, not {unit}: their sizes are not comparable "
                            "with the others in the table and the size plot.", title="Units"))
    intro.append(Text(summary))

    training = card.training
    trained_on = training.dataset or "not recorded"
    if training.init:
        trained_on += f" (fine-tuned from {training.init})"
    items = [
        ("model", f"{card.name} ({card.network}, {card.spatial_dims}D, {', '.join(card.classes[1:])})"),
        ("trained on", trained_on),
        pixel_size_item(card),
        ("inputs", str(len(inputs) + n_failed)),
        ("images segmented", str(len(names))),
        *([("of them predicted in this run / kept from an earlier run (unchanged)", f"{len(names) - kept} / {kept}")]
          if kept else []),  # a catalog run's tables tell none apart (every image segmented)
        ("inputs failed", str(n_failed)),
        ("objects in total", str(total)),
        ("median objects per image", format(median, "g") if median is not None else "n/a"),
        ("images flagged as outliers", str(len(flags))),
    ]
    summary_blocks: list = [
        Table("segmentation", "Segmentation run", ["item", "value"], [[k, v] for k, v in items]),
        Text(f"Outlier rule: {RULE}"),
    ]
    summary_blocks += failed_table
    sections = [Section("Summary", summary_blocks)]

    columns = ["image", "input", "objects", f"median {size_key} ({size_unit})", f"mean {size_key} ({size_unit})"]
    columns += ["pixel size"] if spacing_by_image else []
    columns += ["flag"]
    input_of = {str(row["image"]): str(row["input"]) for row in segmented}
    rows = []
    for name in names:
        values = sizes.get(name) or []
        row = [name, input_of[name], str(by_image[name]),
               _size(float(np.median(values)) if values else None), _size(float(np.mean(values)) if values else None)]
        if spacing_by_image:
            shown = _pixel_size(spacing_by_image[name], unit) if name in spacing_by_image else "n/a"
            row.append(f"{shown}, guessed" if name in guessed_spacing and name in spacing_by_image else shown)
        rows.append(row + [flags.get(name, "")])
    sections.append(Section("Per image", [Table(
        "objects-per-image", "Objects per image", columns, rows,
        f"Sizes in physical units ({size_unit}): the object's pixels times the image's pixel size. "
        + ("A guessed pixel size: the file gave none and the one shown was taken (give it with --spacing and --unit). "
           if set(guessed_spacing) & set(names) else "")
        + "Flag: the outlier rule above.",
    )]))

    if names:
        flagged = [name in flags for name in names]
        count_caption = "Objects per image; flagged images in orange" + (
            f", the dashed line at the median ({median:g}), the dotted lines at the flagging limits."
            if high is not None else
            f", the dashed line at the median ({median:g}); the images differ in size, so each count is held to "
            "limits scaled to its image's size (the rule above)." if scaled else
            f", the dashed line at the median ({median:g}); too few images or too low a median to flag by count, "
            "only images without objects are flagged."
        )
        size_values = [sizes[name] for name in names]
        log = fig.needs_log_axis([v for s in size_values for v in s])
        size_caption = (
            f"Object {size_key}s per image in {size_unit}"
            + (" on a log axis (they span orders of magnitude)" if log else "")
            + ": boxes span the quartiles, the line is the median, whiskers reach 1.5 interquartile ranges, points beyond "
            "are single objects; flagged images in orange."
        )
        sections.append(Section("Counts and sizes", [
            Figure(fig.object_counts(names, [by_image[n] for n in names], flagged, figures_dir / "objects_per_image.png",
                                     median=median, high=high, low=low), count_caption),
            Figure(fig.object_sizes(names, size_values, flagged, figures_dir / "object_sizes.png",
                                    label=f"{size_key} ({size_unit})"), size_caption),
        ]))

    reasons = sample_reasons(by_image, n=max(len(views), SAMPLE_SIZE), sizes=size_by_image)
    sample_blocks: list = [Text(_sample_legend(views, card, ndim, spacing_known=bool(spacing_by_image),
                                               anatomical=bool(anatomical)))] if views else [
        Text("No images shown.")]
    taken: set[str] = set()
    for name, image, labels in views:
        n = by_image.get(name)
        reason = reasons.get(name, "shown")
        caption = f"{name}: {reason}" + ("" if n is None or reason.startswith("flagged") else f" ({_objects(n)})")
        turned = (anatomical or {}).get(name)
        path = fig.outlines(image, labels, figures_dir / _file_name(name, taken), title=caption,
                            spacing=turned or spacing_by_image.get(name), planes=PLANES if turned else None)
        sample_blocks.append(Figure(path, caption))
    sections.append(Section("Sample", sample_blocks))
    sections.append(Section("Model card", [card_table(card), Details("full model card (JSON)", card.to_json())]))

    return write_document(folder, Document(title, intro, sections), summary)


def write_document(folder: Path, doc: Document, summary: str) -> Report:
    """``report.md`` and ``report.html`` of ``doc`` in ``folder``; an earlier run's sample figures
    of images not shown now are removed."""
    markdown = to_markdown(doc)
    path = folder / "report.md"
    _atomic_write(path, markdown)
    html_path = folder / "report.html"
    _atomic_write(html_path, to_html(doc))
    shown = {Path(f.path).name for f in doc.figures()}
    for stale in (folder / "figures").glob("sample_*.png"):
        if stale.name not in shown:
            stale.unlink(missing_ok=True)
    tables = {t.key: t.records() for t in doc.tables()}
    return Report(markdown, path, [f.path for f in doc.figures()], html_path, tables, summary)


def _failed_blocks(failed: list[dict]) -> tuple[list, list]:
    """The notice (for the top) and the table (for the summary) of the inputs that failed; none without."""
    if not failed:
        return [], []
    listed = "; ".join(f"{row['input']} ({_first_line(row.get('error'))}{_since(row)})" for row in failed[:MAX_LISTED])
    if len(failed) > MAX_LISTED:
        listed += f"; and {len(failed) - MAX_LISTED} more (see the table)"
    what = f"{len(failed)} input{'' if len(failed) == 1 else 's'}"
    dated = any(row.get("failing_since") for row in failed)  # counts.csv of a run made before the column: none
    return [Notice(f"{what} could not be segmented: {listed}.", title="Failed")], [Table(
        "failed", "Inputs that could not be segmented", ["input", "error"] + ["failing since (UTC)"] * dated,
        [[str(row["input"]), str(row.get("error") or "")] + [str(row.get("failing_since") or "")] * dated for row in failed],
        "Left out of every count, table and figure of this report."
        + (" Failing since: the first run in which the input failed as it fails now, its files unchanged since." if dated else ""),
    )]


def _since(row: Mapping) -> str:
    """``; failing since T`` for a failed input dated in ``counts.csv``; nothing for one made before the column."""
    return f"; failing since {row['failing_since']}" if row.get("failing_since") else ""


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no error recorded"
