"""Real whole cells in seven imaging styles, two channels: segpipe on scellseg's sample of the Cellpose dataset.

scellseg 0.1.8 (BSD licence for its code; PyPI) ships, under ``scellseg/assets/contrast_data``,
35 images of the Cellpose dataset (Stringer et al., Nat Methods 2021) with their manual masks:
five images in each of seven styles (Kc167, cytomembrane, macrophagocyte, neurocyte, style1-3),
RGB PNGs with the cytoplasm in green and, where there is one, the nuclei in red. The Cellpose
dataset's own terms (its download page) are for non-commercial research use, so the data is not
vendored: this script reads it from the package's source distribution, which you
download yourself::

    pip download --no-deps scellseg==0.1.8 -d /tmp/scell
    python benchmarks/cellpose_styles.py --sdist /tmp/scell/scellseg-0.1.8.tar.gz

Each style's images, sorted by file name, are split 3 train, 1 validation, 1 test (21 training
images, as the hidden whole-cell set of the quality issue has); images are written as
two-channel TIFFs (cytoplasm, nuclei, or with ``--nuclei-first`` the other way round; the nuclear
channel is zero where a style has none) and
the pipeline's own stages run with default settings and a fixed number of epochs (30, the 2D
budget of the hidden-data checks). Prints test SEG, F1@0.5 and the baseline's, then per style.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wholecells import machine_line, per_style, run_arguments, two_channel_entry  # noqa: E402

ASSETS = "scellseg/assets/contrast_data/"
SPLITS = ("train", "train", "train", "validation", "test")


def read_pairs(sdist: Path, *, nuclei_first: bool = False) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """``{style: [(stem, image (2, y, x) uint8: cytoplasm, nuclei), labels (y, x) uint16]}`` from the source
    distribution; the channels the other way round with ``nuclei_first``."""
    import imageio.v3 as iio

    files: dict[str, bytes] = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            at = member.name.find(ASSETS)
            if at >= 0 and member.name.endswith(".png"):
                files[member.name[at + len(ASSETS):]] = tar.extractfile(member).read()
    styles: dict[str, list] = {}
    for name in sorted(files):
        style, file = name.split("/")
        if not file.endswith("_img.png"):
            continue
        stem = file[: -len("_img.png")]
        rgb = iio.imread(io.BytesIO(files[name]))
        labels = iio.imread(io.BytesIO(files[f"{style}/{stem}_masks.png"]))
        image = np.stack([rgb[..., 1], rgb[..., 0]])  # cytoplasm (green), nuclei (red)
        if nuclei_first:
            image = image[::-1].copy()
        styles.setdefault(style, []).append((f"{style}-{stem}", image, labels.astype(np.uint16)))
    if not styles:
        raise SystemExit(f"{sdist}: no {ASSETS} images in this file (is it scellseg-0.1.8.tar.gz?)")
    return styles


def write_dataset(sdist: Path, folder: Path, *, name: str = "cellpose-styles", nuclei_first: bool = False) -> str:
    """Write the images and labels under ``folder/name/`` and return the catalog entry (YAML)."""
    import tifffile

    where = folder / name
    for sub in ("images", "labels"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for style, pairs in read_pairs(sdist, nuclei_first=nuclei_first).items():
        if len(pairs) != len(SPLITS):
            raise SystemExit(f"{sdist}: style {style} has {len(pairs)} images, not {len(SPLITS)}")
        for (stem, image, labels), part in zip(pairs, SPLITS):
            tifffile.imwrite(where / "images" / f"{stem}.tif", image)
            tifffile.imwrite(where / "labels" / f"{stem}.tif", labels)
            split[part].append(stem)
    description = "whole cells in seven styles from the Cellpose dataset, as scellseg 0.1.8 ships them (benchmarks/cellpose_styles.py)."
    return two_channel_entry(name, description=description, ground_truth="manual masks (Cellpose dataset).", split=split)


def main() -> None:

    from convergence3d import run_task, summary

    from segpipe.pipeline.catalog import open_catalog

    parser = run_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]), output="/tmp/segpipe-cellpose-styles")
    parser.add_argument("--sdist", type=Path, required=True, help="scellseg-0.1.8.tar.gz (pip download --no-deps scellseg==0.1.8)")
    parser.add_argument("--nuclei-first", action="store_true",
                        help="write the channels as (nuclei, cytoplasm), the other order data comes in")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = args.output / "data"
    data.mkdir(parents=True, exist_ok=True)
    catalog_path = data / "catalog.yaml"
    catalog_path.write_text("datasets:\n" + write_dataset(args.sdist, data, nuclei_first=args.nuclei_first))
    extra = json.loads(args.set)
    plan = "custom" if extra else "planned"
    print(machine_line(args.epochs, plan, extra))
    result = run_task(open_catalog(catalog_path), "cellpose-styles", plan, output=args.output / (args.label or plan),
                      epochs=args.epochs, extra=extra)
    metrics = result["metrics"]
    row = {**summary(result), "merges": metrics.get("merges"), "splits": metrics.get("splits"),
           "train_s": result["seconds"], "best_epoch": result["best_epoch"], "val": result["history"], "config": result["config"]}
    print(json.dumps(row), flush=True)
    print(json.dumps(per_style(metrics)), flush=True)


if __name__ == "__main__":
    main()
