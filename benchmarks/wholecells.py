"""Seeded synthetic whole-cell images in seven imaging styles, two channels (cytoplasm, nuclei).

Stands in for the whole-cell data the quality issue is measured on (touching cells with dim
cytoplasm, a nuclear channel, several microscopes in one training set), which no package that
installs here ships under a licence that allows vendoring. Each image is a tiling of touching
cells (a weighted Voronoi diagram of seeded centres, each cell at most its own radius wide, with
wobbly borders), a nucleus in each, and one of seven renderings of the cytoplasm channel:

- ``fluo-even``: evenly bright cytoplasm, touching cells of one brightness (the hard case for
  a threshold: the border between two cells is as bright as their insides);
- ``fluo-uneven``: cells of very different brightness with textured cytoplasm;
- ``membrane``: a bright cell border over a dim inside;
- ``brightfield``: cells darker than a bright background, darker at their borders;
- ``phase``: a bright halo outside each cell edge, a grainy grey inside;
- ``small-dense``: small cells packed tight;
- ``large-dim``: large cells with dim cytoplasm, blurred and noisy.

:func:`write_dataset` writes ``IMAGES_PER_STYLE`` images per style (3 train, 1 validation, 2
test) with their labels and returns the catalog entry, so the pipeline runs on it as on any
dataset. The same seed gives the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nuclei3d import write_unchanged
from scipy import ndimage


@dataclass(frozen=True)
class Style:
    """One imaging style.

    Attributes:
        name: Style name (file names start with it).
        radius: Range of cell radii, pixels.
        gap: Least centre distance in units of the two cells' summed radii (below 1: they press together).
        cytoplasm: How the cytoplasm channel is drawn: ``fill``, ``membrane``, ``dark`` or ``halo``.
        brightness: Range of a cell's cytoplasm brightness above the background (of 1).
        texture: Strength of the grainy texture inside cells (share of the brightness).
        blur: Gaussian blur of both channels, pixels.
        noise: Standard deviation of the Gaussian noise, in brightness units.
        wobble: Length, in pixels, over which a cell's border wobbles.
        lobes: Strength of each cell's protrusions (its outline's radius varies by up to this share
            around the cell, in two to seven lobes); 0: rounded cells.
        backdrop: Brightness of a coarse texture under and around the cells (a cluttered field
            whose blobs are as bright as the cells); 0: a clean background.
        skip: Share of the placements that fit which are left empty: 0.4 fills most of the field,
            0.99 and more scatter a few cells over a mostly empty one.
    """

    name: str
    radius: tuple[float, float]
    gap: float
    cytoplasm: str
    brightness: tuple[float, float]
    texture: float
    blur: float
    noise: float
    wobble: float = 4.0
    lobes: float = 0.0
    backdrop: float = 0.0
    skip: float = 0.4


STYLES = (
    Style("fluo-even", (16, 24), 0.8, "fill", (0.4, 0.5), 0.1, 1.0, 0.03),
    Style("fluo-uneven", (16, 24), 0.8, "fill", (0.1, 0.9), 0.3, 1.0, 0.04),
    Style("membrane", (14, 22), 0.8, "membrane", (0.5, 0.9), 0.1, 1.0, 0.05),
    Style("brightfield", (16, 24), 0.8, "dark", (0.3, 0.5), 0.2, 1.5, 0.04),
    Style("phase", (16, 24), 0.8, "halo", (0.3, 0.5), 0.3, 1.0, 0.05),
    Style("small-dense", (8, 12), 0.75, "fill", (0.2, 0.6), 0.2, 0.8, 0.04),
    Style("large-dim", (26, 36), 0.8, "fill", (0.1, 0.25), 0.3, 2.0, 0.06),
)
#: Large whole cells in one channel, one big field split by region (as one annotated frame of a
#: Cell Tracking Challenge sequence is): cells of 70-100 pixels across.
LARGE = Style("large-cells", (35, 50), 0.8, "fill", (0.15, 0.6), 0.3, 1.5, 0.05, wobble=9.0)
LARGE_SHAPE = (768, 768)
SHAPE = (256, 256)
SPLITS = ("train", "train", "train", "validation", "test", "test")
IMAGES_PER_STYLE = len(SPLITS)
BACKGROUND = 0.1
NUCLEUS_SHARE = (0.35, 0.5)  # nucleus radius as a share of its cell's
THINNING = 0.8  # the cytoplasm profile falls by this much from a cell's centre to its edge


def generate(style: Style, seed: int, shape: tuple[int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(2, Y, X)`` uint16 (cytoplasm, nuclei) and its cell labels ``(Y, X)`` uint16."""
    rng = np.random.default_rng(seed)
    cells = _place(style, shape, rng)
    labels, nuclei, profile = _paint(cells, shape, rng, wobble=style.wobble, lobes=style.lobes)
    image = np.stack([_cytoplasm(style, labels, profile, rng), _nuclei(style, nuclei, rng)])
    return np.clip(1000 * image + 100, 0, 65535).astype(np.uint16), labels


def _place(style: Style, shape, rng) -> list[tuple[np.ndarray, float, float, float]]:
    """Cell centres, radii, elongations and angles, at least ``gap`` summed radii apart; gaps in
    the field stay empty (``style.skip`` of the attempts that fit are skipped). Lobed cells keep
    ``1 + lobes`` times that room (a lobe reaches up to ``1 + 1.7 lobes`` radii, :func:`_outline`,
    so neighbours' lobes may still touch)."""
    cells: list[tuple[np.ndarray, float, float, float]] = []
    for _ in range(4000):
        radius = rng.uniform(*style.radius)
        centre = rng.uniform(0, shape)
        if all(np.linalg.norm(centre - c) >= style.gap * (radius + r) * (1 + style.lobes) for c, r, _, _ in cells) and rng.random() > style.skip:
            cells.append((centre, radius, rng.uniform(0.75, 1.3), rng.uniform(0, np.pi)))
    return cells


def _paint(cells, shape, rng, *, wobble: float, lobes: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, nuclear brightness and cytoplasm profile: each pixel goes to the cell it lies
    deepest inside (scaled elliptic distance below a wobbly 1, divided by the cell's lobed
    outline, :func:`_outline`); each cell's nucleus is a disc off its centre, cut to the cell;
    the cytoplasm thins towards the cell's edge."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), wobble)
    field = 0.25 * field / max(float(field.std()), 1e-6)
    depth = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.uint16)
    nuclei = np.zeros(shape, np.uint16)
    shine = [0.0]
    profile = np.zeros(shape, np.float32)
    for index, (centre, radius, stretch, angle) in enumerate(cells, start=1):
        dy, dx = yy - centre[0], xx - centre[1]
        u = (np.cos(angle) * dy + np.sin(angle) * dx) / (radius * stretch ** 0.5)
        v = (-np.sin(angle) * dy + np.cos(angle) * dx) / (radius / stretch ** 0.5)
        d = np.sqrt(u * u + v * v)
        if lobes > 0:
            d = d / _outline(np.arctan2(v, u), lobes, rng)
        inside = (d * (1.0 + field) < 1.0) & (d < depth)
        labels[inside], depth[inside] = index, d[inside]
        share = rng.uniform(*NUCLEUS_SHARE)
        shift = rng.uniform(-0.4, 0.4, size=2) * radius  # nuclei sit off centre
        dn = np.hypot(yy - centre[0] - shift[0], xx - centre[1] - shift[1]) / (share * radius)
        nuclei[dn < 1.0] = index
        shine.append(rng.uniform(0.3, 1.0) if rng.random() > 0.1 else 0.0)  # a tenth show no nucleus (out of focus)
    own = nuclei == labels  # a nucleus stays inside its own cell
    labels, nuclei = _largest_pieces(labels), np.where(own, np.asarray(shine, np.float32)[nuclei], 0.0)
    profile = np.clip(1.0 - THINNING * np.minimum(depth, 1.0) ** 2, 0.2, 1.0)  # cytoplasm thins towards the edge
    return labels, nuclei * (labels > 0), profile


def _outline(theta: np.ndarray, lobes: float, rng) -> np.ndarray:
    """A cell's outline radius by angle: 1 plus two random harmonics (two to seven lobes) of
    combined strength ``lobes``, sharpened so the lobes are thin protrusions; at least 0.5."""
    shape = np.zeros_like(theta)
    for weight, k in ((0.6, rng.integers(2, 5)), (0.4, rng.integers(4, 8))):
        shape += weight * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.maximum(1.0 + lobes * (np.maximum(shape, 0.0) ** 1.5 * 2.0 - 0.3), 0.5)


def _largest_pieces(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids, each cell reduced to its largest piece; pieces under 20 pixels are dropped."""
    out = np.zeros_like(labels)
    new = 0
    for old, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        pieces, _ = ndimage.label(labels[box] == old)
        sizes = np.bincount(pieces.ravel())[1:]
        if sizes.max() < 20:
            continue
        new += 1
        out[box][pieces == int(np.argmax(sizes)) + 1] = new
    return out


def _texture(shape, rng, sigma: float = 1.5) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-6)


def _cytoplasm(style: Style, labels: np.ndarray, profile: np.ndarray, rng) -> np.ndarray:
    """The cytoplasm channel in ``style``'s rendering, blurred and noisy, background near 0.1."""
    n = int(labels.max())
    cell = labels > 0
    brightness = np.concatenate([[0.0], rng.uniform(*style.brightness, size=n)])[labels] * profile
    grain = 1 + style.texture * _texture(labels.shape, rng)
    edge = ndimage.binary_dilation(_borders(labels), iterations=1) & cell
    if style.cytoplasm == "shaded":  # domes lit from one side, dark seams between them
        signal = BACKGROUND + brightness * grain * cell * _shading(profile, rng) - 0.2 * edge
    elif style.cytoplasm == "fill":
        signal = BACKGROUND + brightness * grain * cell
    elif style.cytoplasm == "membrane":
        signal = BACKGROUND + (0.15 * brightness * grain * cell) + brightness * edge
    elif style.cytoplasm == "dark":
        signal = 0.8 - brightness * grain * cell - 0.25 * edge
    else:  # halo: bright just outside each cell, grainy grey inside
        outside = ndimage.binary_dilation(cell, iterations=3) & ~cell
        signal = 0.4 + (brightness * grain - 0.2) * cell + 0.5 * outside - 0.15 * edge
    if style.backdrop > 0:
        signal = signal + style.backdrop * np.clip(1 + 0.6 * _texture(labels.shape, rng, sigma=5.0), 0, None)
    blurred = ndimage.gaussian_filter(signal.astype(np.float32), style.blur)
    return blurred * _illumination(labels.shape, rng) + style.noise * rng.standard_normal(labels.shape)


def _shading(profile: np.ndarray, rng) -> np.ndarray:
    """Each cell as a dome lit from a random side: brighter on the slopes facing the light."""
    depth = np.sqrt(np.clip((1.0 - profile) / THINNING, 0.0, 1.0))  # inverts the profile of :func:`_paint`
    gy, gx = np.gradient(depth)
    norm = np.hypot(gy, gx) + 1e-6
    angle = rng.uniform(0, 2 * np.pi)
    facing = -(np.cos(angle) * gy + np.sin(angle) * gx) / norm  # 1 on the slope facing the light
    return 0.6 + 0.4 * facing * depth


def _illumination(shape, rng) -> np.ndarray:
    """An uneven field: brightness falling by up to 40% towards one side."""
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
    angle = rng.uniform(0, 2 * np.pi)
    return (1.0 - 0.4 * (np.cos(angle) * yy + np.sin(angle) * xx + 1) / 2).astype(np.float32)


def _nuclei(style: Style, nuclei: np.ndarray, rng) -> np.ndarray:
    """The nuclear channel: bright textured nuclei over a dim background, blurred and noisy."""
    signal = BACKGROUND + nuclei * (1 + 0.2 * _texture(nuclei.shape, rng))
    blurred = ndimage.gaussian_filter(signal.astype(np.float32), style.blur)
    return blurred + style.noise * rng.standard_normal(nuclei.shape)


def _borders(labels: np.ndarray) -> np.ndarray:
    """Pixels next to another label (another cell or the background)."""
    larger = ndimage.maximum_filter(labels, size=3)
    smaller = ndimage.minimum_filter(labels, size=3)
    return (labels > 0) & ((larger != labels) | (smaller != labels))


def write_dataset(folder: Path, *, name: str = "wholecells-7styles", seed: int = 0) -> str:
    """Write every style's images and labels under ``folder/name/`` and return the catalog entry (YAML).

    Files already there with the same content are not rewritten.
    """
    where = folder / name
    (where / "images").mkdir(parents=True, exist_ok=True)
    (where / "labels").mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for s, style in enumerate(STYLES):
        for i, part in enumerate(SPLITS):
            stem = f"{style.name}-{i}"
            image, labels = generate(style, seed=seed * 1000 + s * 100 + i)
            for sub, array in (("images", image), ("labels", labels)):
                write_unchanged(where / sub / f"{stem}.tif", array)
            split[part].append(stem)
    description = f"synthetic whole cells in {len(STYLES)} imaging styles, cytoplasm and nuclei channels (benchmarks/wholecells.py)."
    return two_channel_entry(name, description=description, ground_truth="exact by construction.", split=split)


def two_channel_entry(
    name: str, *, description: str, ground_truth: str, split: dict[str, list[str]], object_class: str = "cell"
) -> str:
    """The catalog entry (YAML) of channel-first 2D cell images under ``name/images`` and ``name/labels``, split by file stem."""
    lists = "".join(f"      {part}: [{', '.join(stems)}]\n" for part, stems in split.items())
    return (
        f"  {name}:\n"
        f"    description: {description}\n"
        f"    ground_truth: {ground_truth}\n"
        f"    images: {name}/images/*.tif\n"
        f"    labels: {name}/labels/*.tif\n"
        f"    ndim: 2\n"
        f"    channel_axis: 0\n"
        f"    classes: [background, {object_class}]\n"
        f"    instances: true\n"
        f"    split:\n{lists}"
    )


def write_large_dataset(folder: Path, *, name: str = "wholecells-large", seed: int = 0) -> str:
    """Write one :data:`LARGE` field (its cytoplasm channel only) and labels under ``folder/name/``
    and return the catalog entry (YAML): rows split 55% train, 15% validation, 30% test."""
    image, labels = generate(LARGE, seed=seed, shape=LARGE_SHAPE)
    where = folder / name
    where.mkdir(parents=True, exist_ok=True)
    for file, array in (("image.tif", image[0]), ("labels.tif", labels)):
        write_unchanged(where / file, array)
    y, x = LARGE_SHAPE
    cut1, cut2 = round(0.55 * y), round(0.70 * y)
    return (
        f"  {name}:\n"
        f"    description: synthetic large whole cells, one {y}x{x} field, one channel (benchmarks/wholecells.py).\n"
        f"    ground_truth: exact by construction.\n"
        f"    images: {name}/image.tif\n"
        f"    labels: {name}/labels.tif\n"
        f"    ndim: 2\n"
        f"    classes: [background, cell]\n"
        f"    instances: true\n"
        f"    split:\n"
        f"      regions:\n"
        f"        train: [[0, {cut1}], [0, {x}]]\n"
        f"        validation: [[{cut1}, {cut2}], [0, {x}]]\n"
        f"        test: [[{cut2}, {y}], [0, {x}]]\n"
    )


def main() -> None:
    """Train and score segpipe on the seven styles with default settings and fixed epochs; print
    test SEG, F1@0.5, merges and splits per style beside the classical baseline."""
    import argparse
    import json
    import logging
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from convergence3d import run_task, summary

    from segpipe.pipeline.catalog import open_catalog

    parser = run_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]), output="/tmp/segpipe-wholecells")
    parser.add_argument("--task", default="wholecells-7styles", choices=["wholecells-7styles", "wholecells-large"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = args.output / "data"
    data.mkdir(parents=True, exist_ok=True)
    catalog_path = data / "catalog.yaml"
    catalog_path.write_text("datasets:\n" + write_dataset(data) + write_large_dataset(data))
    extra = json.loads(args.set)
    plan = "custom" if extra else "planned"
    print(machine_line(args.epochs, plan, extra))
    result = run_task(open_catalog(catalog_path), args.task, plan, output=args.output / (args.label or plan),
                      epochs=args.epochs, extra=extra)
    row = {**summary(result), "train_s": result["seconds"], "best_epoch": result["best_epoch"],
           "val": result["history"], "config": result["config"]}
    print(json.dumps(row), flush=True)
    print(json.dumps(per_style(result["metrics"])), flush=True)


def run_arguments(parser, *, output: str):
    """``--epochs`` (30), ``--set``, ``--output`` and ``--label``, as the whole-cell benchmarks take them."""
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--set", default="{}", help="JSON training fields to set (the 'custom' plan); default: the planned defaults")
    parser.add_argument("--output", type=Path, default=Path(output))
    parser.add_argument("--label", default=None, help="run folder name (default: planned, or custom with --set)")
    return parser


def machine_line(epochs: int, plan: str, extra: dict) -> str:
    """The line a run's figures start with: the machine, its load and what was trained."""
    import os
    import platform

    import torch

    gpu = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {gpu}, "
            f"load average {os.getloadavg()[0]:.1f} at start; {epochs} epochs; {plan} {extra or ''}")


def per_style(metrics: dict) -> dict:
    """Mean per-image SEG of the model and of the baseline for each style."""
    def means(rows):
        by: dict[str, list[float]] = {}
        for row in rows or []:
            if row.get("seg") is not None:
                by.setdefault(row["name"].rsplit("-", 1)[0], []).append(row["seg"])
        return {style: round(float(np.mean(v)), 3) for style, v in by.items()}

    model, baseline = means(metrics.get("per_image")), means((metrics.get("baseline") or {}).get("per_image"))
    return {style: [seg, baseline.get(style)] for style, seg in model.items()}

if __name__ == "__main__":
    main()
