"""Make the shipped starting model ``cells-2d``: a U-Net trained here on generated cells and nuclei.

Nothing can be downloaded where segpipe runs, and no whole-cell set that installs here allows
shipping weights trained on it, so the generalist that 2D instance datasets start from is trained
on images :mod:`wholecells` draws (seeds disjoint from the ones its benchmark uses):

- the seven whole-cell styles with both channels (cytoplasm, nuclei);
- the same styles with the nuclear channel blank (a constant, which normalizes to 0): what a
  one-channel whole-cell image looks like to the model;
- two styles of nuclei alone in the first channel, second blank: what a one-channel nuclear
  stain (bbbc007, dsb2018) looks like to it;
- fields of scattered objects over a mostly empty background (``SPARSE_NUCLEI``,
  ``SPARSE_CELLS``): nuclei, few or many, and cells bright on dark or dark on bright, with and
  without the nuclear channel. A start that has seen only crowded fields takes the dark
  background between a few bright nuclei for cells.

``--crowded-only`` leaves the scattered kinds out (16 kinds: the start shipped until 2026-12-05).

``--irregular`` adds four kinds the seven styles lack (``IRREGULAR``), with and without the
nuclear channel: spread cells with protrusions, sparse and packed; domes lit from one side;
membranes over clutter. Tried with 90 epochs, not shipped: the seven real styles gave the same
SEG from it (``benchmarks/RESULTS.md``).

Channel order: cytoplasm or membrane first, nuclei second. A one-channel dataset fine-tunes the
first channel's filters only (:func:`segpipe.training.start.adapt_input`).

``python benchmarks/starting_model.py --output DIR --epochs 60 --install`` writes the images,
trains with the plan, prints the scores on its own test images and copies the model into
``segpipe/models/starts/cells-2d/`` with a PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nuclei3d import write_unchanged  # noqa: E402
from wholecells import STYLES, Style, generate, machine_line, two_channel_entry  # noqa: E402

from segpipe.training.params import RANDOM  # noqa: E402

NAME = "cells-2d"
NUCLEI = (
    Style("nuclei-sparse", (6, 12), 1.1, "fill", (0.3, 1.0), 0.2, 1.0, 0.03, wobble=6.0),
    Style("nuclei-clumped", (7, 14), 0.85, "fill", (0.2, 0.9), 0.25, 1.2, 0.04, wobble=6.0),
)
#: Scattered objects over a mostly empty field: nuclei (about 40 and about 8 per image, one
#: channel) and whole cells bright on dark or dark on bright (with and without nuclei).
SPARSE_NUCLEI = (
    Style("nuclei-scattered", (5, 14), 1.2, "fill", (0.2, 1.0), 0.25, 1.0, 0.04, wobble=6.0, skip=0.99),
    Style("nuclei-few", (6, 16), 1.2, "fill", (0.2, 1.0), 0.25, 1.2, 0.05, wobble=6.0, skip=0.998),
)
SPARSE_CELLS = (
    Style("fluo-scattered", (12, 24), 1.0, "fill", (0.15, 0.8), 0.3, 1.0, 0.04, skip=0.995),
    Style("brightfield-scattered", (12, 24), 1.0, "dark", (0.3, 0.5), 0.2, 1.5, 0.04, skip=0.995),
)
#: Shapes and fields the seven styles lack: spread cells with protrusions, sparse and packed;
#: domes lit from one side with dark seams; cells over a cluttered field as bright as they are.
IRREGULAR = (
    Style("spread", (12, 22), 1.0, "fill", (0.2, 0.9), 0.3, 1.0, 0.04, wobble=5.0, lobes=0.6),
    Style("spread-packed", (12, 20), 0.8, "fill", (0.2, 0.8), 0.3, 1.0, 0.04, lobes=0.35),
    Style("shaded", (16, 28), 0.8, "shaded", (0.5, 0.9), 0.15, 1.0, 0.03),
    Style("cluttered", (9, 16), 0.9, "membrane", (0.5, 0.9), 0.2, 1.2, 0.05, backdrop=0.2),
)
#: Images per variant and split (``--train-images`` sets the training count); seeds start at
#: SEED_BASE, far from the whole-cell benchmark's (0-699).
TRAIN_IMAGES = 4
SPLITS = ("train",) * TRAIN_IMAGES + ("validation", "test")
SEED_BASE = 50_000
BLANK = 100  # the generated images' background level: a constant channel normalizes to 0
#: Random weights, 25 batches per epoch and every image at its own size, as the shipped start
#: was trained before the plan took more batches for large training sets and rescaled objects:
#: the start learns cells and nuclei of every size as drawn (a dataset rescales its own images
#: when it fine-tunes).
START_PLAN = {"init": RANDOM, "iterations_per_epoch": 25, "object_size": 0}


def variants(*, irregular: bool = False, sparse: bool = True) -> list[tuple[str, Style, bool]]:
    """(file prefix, style, keep the nuclear channel) for every kind of image in the set."""
    both = [(f"{s.name}-2ch", s, True) for s in STYLES]
    one = [(f"{s.name}-1ch", s, False) for s in STYLES]
    nuclei = [(f"{s.name}-1ch", s, False) for s in NUCLEI]
    more = [(f"{s.name}-{n}ch", s, n == 2) for s in IRREGULAR for n in (2, 1)] if irregular else []
    scattered = [(f"{s.name}-1ch", s, False) for s in SPARSE_NUCLEI] if sparse else []
    scattered += [(f"{s.name}-{n}ch", s, n == 2) for s in SPARSE_CELLS for n in (2, 1)] if sparse else []
    return both + one + nuclei + more + scattered


def write_dataset(folder: Path, *, name: str = NAME, irregular: bool = False, sparse: bool = True,
                  train_images: int = TRAIN_IMAGES) -> str:
    """Write the images and labels under ``folder/name/`` and return the catalog entry (YAML).

    Each kind has ``train_images`` training images, one validation and one test image; the
    validation and test images keep their seeds whatever the training count."""
    where = folder / name
    for sub in ("images", "labels"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for v, (prefix, style, nuclear) in enumerate(variants(irregular=irregular, sparse=sparse)):
        for i, part in _numbered_splits(train_images):
            image, labels = generate(style, seed=SEED_BASE + 100 * v + i)
            if not nuclear:
                image[1] = BLANK
            stem = f"{prefix}-{i}"
            write_unchanged(where / "images" / f"{stem}.tif", image)
            write_unchanged(where / "labels" / f"{stem}.tif", labels)
            split[part].append(stem)
    description = "generated cells and nuclei for the shipped starting model (benchmarks/starting_model.py)."
    return two_channel_entry(name, description=description, ground_truth="exact by construction.", split=split,
                             object_class="object")


def _numbered_splits(train_images: int) -> list[tuple[int, str]]:
    """(seed offset, split) of one kind's images: training 0-3 then past the validation and test
    images' offsets 4 and 5, so a larger training set keeps the shipped start's images."""
    offsets = [*range(min(train_images, TRAIN_IMAGES)), *range(len(SPLITS), len(SPLITS) + train_images - TRAIN_IMAGES)]
    return [(i, "train") for i in offsets] + [(TRAIN_IMAGES, "validation"), (TRAIN_IMAGES + 1, "test")]


def install(model_dir: Path, target: Path, *, record: dict) -> None:
    """Write the model's weights and card to ``target``, marked a generalist, with its provenance.

    A generalist has no units of its own, of length or of intensity: it predicts every image at
    its own pixels and with its own percentiles, so the training images' range floor is dropped."""
    from segpipe.models.model import Model, save_model

    model = Model.open(model_dir)
    normalization = model.card.normalization.model_copy(update={"min_range": None})
    save_model(target, model.state_dict(),
               model.card.model_copy(update={"generalist": True, "name": NAME, "normalization": normalization}))
    (target / "PROVENANCE.md").write_text(
        f"# {NAME}: provenance\n\n"
        "Trained by `benchmarks/starting_model.py` on images it generates (no outside data, no\n"
        f"downloaded weights): {record['kinds']} kinds of cells and nuclei (whole cells in several\n"
        "styles with and without the nuclear channel, nuclei alone; the script's docstring lists\n"
        "them). Channels: cytoplasm or membrane first, nuclei second. It has no pixel size and no\n"
        "intensity floor of its own.\n"
        "Licence: the project's own; the weights derive only from generated images.\n\n"
        f"Run: `{' '.join(record['argv'])}`\n\n"
        f"{record['machine']}\n\n"
        f"Scores on its own generated test images (one per kind): {json.dumps(record['scores'])}\n"
    )


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from convergence3d import run_task, summary

    from segpipe.pipeline.catalog import open_catalog

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("/tmp/segpipe-starting-model"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--irregular", action="store_true", help="add the four IRREGULAR kinds (tried, not shipped)")
    parser.add_argument("--crowded-only", action="store_true",
                        help="leave out the six kinds of scattered objects (SPARSE_NUCLEI, SPARSE_CELLS): the start shipped until 2026-12-05")
    parser.add_argument("--train-images", type=int, default=TRAIN_IMAGES, help="training images per kind (one validation and one test image each)")
    parser.add_argument("--install", action="store_true", help=f"copy the model into segpipe/models/starts/{NAME}/")
    parser.add_argument("--set", default="{}", help='JSON training fields to set on top of the start\'s plan, e.g. \'{"features": [32, 64, 128, 256, 512, 32]}\'')
    parser.add_argument("--target", type=Path, default=None, help="with --install: copy the model here instead (a start to try with --set '{\"init\": DIR}')")
    args = parser.parse_args()
    plan = {**START_PLAN, **json.loads(args.set)}
    logging.basicConfig(level=logging.WARNING)
    data = args.output / "data"
    data.mkdir(parents=True, exist_ok=True)
    catalog_path = data / "catalog.yaml"
    catalog_path.write_text("datasets:\n" + write_dataset(data, irregular=args.irregular, sparse=not args.crowded_only,
                                                                    train_images=args.train_images))
    machine = machine_line(args.epochs, "custom", plan)
    print(machine)
    result = run_task(open_catalog(catalog_path), NAME, "custom", output=args.output, epochs=args.epochs,
                      extra=plan)
    scores = {**summary(result), "train_s": result["seconds"], "best_epoch": result["best_epoch"], "config": result["config"]}
    print(json.dumps(scores), flush=True)
    if args.install:
        model_dir = args.output / "custom" / NAME / "model"
        target = args.target or Path(__file__).resolve().parents[1] / "segpipe" / "models" / "starts" / NAME
        install(model_dir, target, record={"argv": ["python", *sys.argv], "machine": machine, "scores": scores,
                                                      "kinds": len(variants(irregular=args.irregular, sparse=not args.crowded_only))})
        print(f"installed {target}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
