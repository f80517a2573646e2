"""The report of a segmentation run of a class-map model (tissue, not objects): how much of each
class the model found in each image, a sample, and the images where a class is missing.

A class map has one region per class, not objects, so counting objects tells nothing; what a
user of such a model reads per image is each class's volume (grey and white matter in mm³) and
whether one is missing (a scan of another modality, a wrong orientation, an empty field). An
image is flagged when a class the model was trained on is absent from it.

:func:`write_class_report` is called by
:func:`~segpipe.report.segmentation.write_segmentation_report` for models whose card has
``instances: false``; it takes the same tables.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from segpipe.models.card import ModelCard
from segpipe.report import figures as fig
from segpipe.report.document import Details, Document, Figure, Notice, Section, Table, Text
from segpipe.report.orientation import PLANES
from segpipe.report.tables import card_table
from segpipe.report.write import Report


def class_volumes(objects: list[dict], names: list[str], card: ModelCard, *, size_key: str) -> dict[str, dict[str, float]]:
    """Each image's size of each foreground class (0 where the class is absent), from
    ``measurements.csv`` rows whose ``label`` is the class's number."""
    volumes = {name: dict.fromkeys(card.classes[1:], 0.0) for name in names}
    for row in objects:
        label = int(row["label"])
        if str(row["image"]) in volumes and 0 < label < card.n_classes:
            volumes[str(row["image"])][card.classes[label]] += float(row[size_key])
    return volumes


def missing_classes(volumes: dict[str, dict[str, float]]) -> dict[str, str]:
    """The images where a class has no pixel, with which."""
    return {name: "no " + ", no ".join(c for c, v in sizes.items() if v == 0)
            for name, sizes in volumes.items() if any(v == 0 for v in sizes.values())}


def write_class_report(
    folder: Path,
    *,
    title: str,
    card: ModelCard,
    segmented: list[dict],
    failed: list[dict],
    objects: list[dict],
    views: list[tuple[str, np.ndarray, np.ndarray]],
    unit: str,
    ndim: int,
    spacing_by_image: dict[str, tuple[float, ...]],
    guessed_spacing: Collection[str],
    failed_blocks: tuple[list, list],
    anatomical: dict[str, tuple[float, ...]],
) -> Report:
    """``report.md``, ``report.html`` and ``figures/`` of a class-map model's run (see the module).

    ``segmented`` and ``failed``: the ``counts.csv`` rows of each; ``failed_blocks``: the notice
    and table that :func:`~segpipe.report.segmentation.write_segmentation_report` makes of the
    failed inputs (intro blocks, summary blocks). The other arguments are its own.
    """
    from segpipe.report.segmentation import SAMPLE_CHOICE, _file_name, _pixel_size, _sample_legend, _size, pixel_size_item, write_document

    folder = Path(folder)
    figures_dir = folder / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    size_key = "area" if ndim == 2 else "volume"
    size_unit = f"{unit}{'²' if ndim == 2 else '³'}"
    names = list(dict.fromkeys(str(row["image"]) for row in segmented))
    classes = card.classes[1:]
    volumes = class_volumes(objects, names, card, size_key=size_key)
    flags = missing_classes(volumes)
    inputs = {row["input"] for row in segmented}

    summary = (f"{len(names)} image{'' if len(names) == 1 else 's'} from {len(inputs)} input{'' if len(inputs) == 1 else 's'} "
               f"segmented with the class-map model {card.name} ({', '.join(classes)}); {len(flags)} with a class "
               f"missing; {len(failed)} input{'' if len(failed) == 1 else 's'} failed.")
    intro: list = []
    if flags:
        intro.append(Notice(f"{len(flags)} of {len(names)} images lack a class the model was trained on: "
                            + "; ".join(f"{n} ({why})" for n, why in list(flags.items())[:20]) + ".", title="Missing classes"))
    intro += failed_blocks[0]
    intro.append(Text(summary))
    items = [
        ("model", f"{card.name} ({card.network}, {card.spatial_dims}D, classes {', '.join(classes)})"),
        ("trained on", card.training.dataset or "not recorded"),
        pixel_size_item(card),
        ("images segmented", str(len(names))),
        ("inputs failed", str(len(failed))),
        ("images with a class missing", str(len(flags))),
    ]
    sections = [Section("Summary", [Table("segmentation", "Segmentation run", ["item", "value"], [[k, v] for k, v in items]),
                                    *failed_blocks[1]])]

    columns = ["image", "input", *(f"{c} {size_key} ({size_unit})" for c in classes)]
    columns += ["pixel size"] if spacing_by_image else []
    input_of = {str(row["image"]): str(row["input"]) for row in segmented}
    rows = []
    for name in names:
        row = [name, input_of[name], *(_size(volumes[name][c]) for c in classes)]
        if spacing_by_image:
            shown = _pixel_size(spacing_by_image[name], unit) if name in spacing_by_image else "n/a"
            row.append(f"{shown}, guessed" if name in guessed_spacing and name in spacing_by_image else shown)
        rows.append(row + [flags.get(name, "")])
    note = (f"Each class's {size_key}: its pixels times the image's pixel size, in {size_unit}."
            + (" A guessed pixel size: the file gave none and the one shown was taken (give it with --spacing and --unit)."
               if set(guessed_spacing) & set(names) else "") + " Flag: a class with no pixel in the image.")
    per_image: list = [Table("classes-per-image", f"Class {size_key}s per image", [*columns, "flag"], rows, note)]
    if names:
        per_image.append(Figure(
            fig.class_volumes(names, {c: [volumes[n][c] for n in names] for c in classes}, figures_dir / "class_volumes.png",
                              label=f"{size_key} ({size_unit})"),
            f"The {size_key} of each class per image, in {size_unit}."))
    sections.append(Section("Per image", per_image))

    legend = _sample_legend(views, card, ndim, spacing_known=bool(spacing_by_image), anatomical=bool(anatomical)).replace(
        "outlines of the predicted objects", "outlines of the predicted classes' regions").replace(
        SAMPLE_CHOICE, " Images with the fewest classes found come first.").replace("most predicted objects", "most of the classes")
    sample_blocks: list = [Text(legend)] if views else [Text("No images shown.")]
    taken: set[str] = set()
    for name, image, labels in views:
        caption = f"{name}: " + ", ".join(f"{c} {_size(volumes.get(name, {}).get(c))} {size_unit}" for c in classes)
        turned = anatomical.get(name)
        path = fig.outlines(image, labels, figures_dir / _file_name(name, taken), title=caption, classes=True,
                            spacing=turned or spacing_by_image.get(name), planes=PLANES if turned else None)
        sample_blocks.append(Figure(path, caption))
    sections.append(Section("Sample", sample_blocks))
    sections.append(Section("Model card", [card_table(card), Details("full model card (JSON)", card.to_json())]))

    return write_document(folder, Document(title, intro, sections), summary)
