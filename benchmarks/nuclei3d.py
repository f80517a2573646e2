"""Seeded synthetic 3D nuclei volumes: ellipsoids of chosen sizes on an anisotropic grid, touching
neighbours, uneven brightness, blur and noise; with a catalog entry split by region along y.

Each :class:`NucleiVolume` names one kind of data (the benchmark's variants are in ``VARIANTS``);
:func:`write_dataset` writes its image, labels and catalog entry so the pipeline runs on it as on any
other dataset. The same seed gives the same volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage


@dataclass(frozen=True)
class NucleiVolume:
    """One synthetic volume.

    Attributes:
        name: Dataset name in the catalog.
        shape: Voxels along (z, y, x).
        spacing: Voxel size along (z, y, x), micrometres.
        radius: Range of nucleus radii, micrometres (each axis varies by up to 20% around the draw).
        count: Nuclei placed (fewer when no room is left).
        gap: Least centre distance, in units of the two nuclei's summed radii: below 1 they
            touch, and the shared voxels go to the nucleus they are deeper inside.
        brightness: Range of nucleus intensity above the background (background 0.1, of 1).
        noise: Standard deviation of the Gaussian noise added after the blur, same units.
        seed: Seeds everything.
    """

    name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    radius: tuple[float, float]
    count: int
    gap: float
    brightness: tuple[float, float]
    noise: float
    seed: int


#: Larger, sparse nuclei where Otsu thresholding does well, and crowded small ones where it does not.
VARIANTS = (
    NucleiVolume(
        name="nuclei3d-sparse-large", shape=(40, 112, 112), spacing=(2.0, 1.0, 1.0), radius=(7.0, 10.0),
        count=24, gap=1.25, brightness=(0.6, 1.0), noise=0.05, seed=1,
    ),
    NucleiVolume(
        name="nuclei3d-crowded-small", shape=(24, 80, 80), spacing=(2.0, 1.0, 1.0), radius=(3.0, 5.0),
        count=120, gap=0.8, brightness=(0.3, 1.0), noise=0.1, seed=2,
    ),
    # Two more, made after the plan was settled and never used to choose anything: thick z steps
    # (3 um against 0.5 um pixels), and dim, just-touching nuclei on an isotropic grid.
    NucleiVolume(
        name="nuclei3d-thick-steps", shape=(20, 128, 128), spacing=(3.0, 0.5, 0.5), radius=(5.0, 8.0),
        count=60, gap=0.95, brightness=(0.3, 1.0), noise=0.08, seed=3,
    ),
    NucleiVolume(
        name="nuclei3d-dim-isotropic", shape=(48, 96, 96), spacing=(1.0, 1.0, 1.0), radius=(5.0, 8.0),
        count=40, gap=1.0, brightness=(0.1, 0.6), noise=0.08, seed=4,
    ),
    # Made after the per-axis pooling was settled on the CHO nuclei, to check it elsewhere: a stack
    # of 6 slices of 2 um (nuclei cut by its top and bottom), touching nuclei on 0.5 um pixels.
    NucleiVolume(
        name="nuclei3d-thin-stack", shape=(6, 256, 192), spacing=(2.0, 0.5, 0.5), radius=(4.0, 6.0),
        count=100, gap=0.95, brightness=(0.3, 1.0), noise=0.08, seed=5,
    ),
    # Made with the anisotropic pooling rule, to check it on data that chose nothing: z steps of
    # 2.5 um against 0.4 um pixels, touching nuclei of uneven brightness.
    NucleiVolume(
        name="nuclei3d-anisotropic", shape=(24, 160, 160), spacing=(2.5, 0.4, 0.4), radius=(4.0, 7.0),
        count=90, gap=0.95, brightness=(0.25, 1.0), noise=0.08, seed=6,
    ),
)

BACKGROUND = 0.1
PSF_SIGMA = (1.2, 0.6, 0.6)  # micrometres: the blur is longer along the optical axis


def generate(volume: NucleiVolume) -> tuple[np.ndarray, np.ndarray]:
    """The image (uint16) and instance labels (uint16) of ``volume``."""
    rng = np.random.default_rng(volume.seed)
    nuclei = _place(volume, rng)
    labels = _paint(volume, nuclei)
    return _render(volume, labels, len(nuclei), rng), labels


def _place(volume: NucleiVolume, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Centres, per-axis radii and yx-plane angle of nuclei placed at random, ``gap`` apart."""
    extent = np.array(volume.shape) * np.array(volume.spacing)
    placed: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(volume.count * 200):
        if len(placed) == volume.count:
            break
        radius = rng.uniform(*volume.radius)
        radii = radius * rng.uniform(0.8, 1.2, size=3)
        centre = rng.uniform(0, extent)
        if all(np.linalg.norm(centre - c) >= volume.gap * (radius + r.mean()) for c, r, _ in placed):
            placed.append((centre, radii, float(rng.uniform(0, np.pi))))
    return placed


def _paint(volume: NucleiVolume, nuclei) -> np.ndarray:
    """Label each voxel with the nucleus it lies deepest inside (ellipsoid distance below 1)."""
    spacing = np.array(volume.spacing)
    labels = np.zeros(volume.shape, np.uint16)
    depth = np.full(volume.shape, np.inf, np.float32)
    for index, (centre, radii, angle) in enumerate(nuclei, start=1):
        low = np.maximum(np.floor((centre - radii.max()) / spacing).astype(int), 0)
        high = np.minimum(np.ceil((centre + radii.max()) / spacing).astype(int) + 1, volume.shape)
        if np.any(high <= low):
            continue
        z, y, x = np.meshgrid(*[(np.arange(a, b) + 0.5) * s for a, b, s in zip(low, high, spacing)], indexing="ij")
        dz, dy, dx = z - centre[0], y - centre[1], x - centre[2]
        u = np.cos(angle) * dy + np.sin(angle) * dx
        v = -np.sin(angle) * dy + np.cos(angle) * dx
        d = np.sqrt((dz / radii[0]) ** 2 + (u / radii[1]) ** 2 + (v / radii[2]) ** 2).astype(np.float32)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        closer = (d <= 1.0) & (d < depth[box])
        labels[box][closer] = index
        depth[box][closer] = d[closer]
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids, keeping only the largest piece of each nucleus (a neighbour may cut one in two)."""
    out = np.zeros_like(labels)
    for new, old in enumerate(np.unique(labels[labels > 0]), start=1):
        pieces, _ = ndimage.label(labels == old)
        sizes = np.bincount(pieces.ravel())[1:]
        out[pieces == int(np.argmax(sizes)) + 1] = new
    return out


def _render(volume: NucleiVolume, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Nuclei of uneven brightness and texture over a dim background, blurred, noisy, as uint16."""
    brightness = np.concatenate([[0.0], rng.uniform(*volume.brightness, size=max(n, int(labels.max())))])
    texture = ndimage.gaussian_filter(rng.standard_normal(volume.shape), 1.5)
    texture /= max(float(texture.std()), 1e-6)
    signal = BACKGROUND + brightness[labels] * (1 + 0.15 * texture) * (labels > 0)
    sigma = np.array(PSF_SIGMA) / np.array(volume.spacing)
    blurred = ndimage.gaussian_filter(signal, sigma)
    noisy = blurred + volume.noise * rng.standard_normal(volume.shape)
    return np.clip(1000 * noisy + 100, 0, 65535).astype(np.uint16)


def write_unchanged(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a TIFF unless ``path`` already holds it (so an ingested copy stays as it is)."""
    if not (path.is_file() and np.array_equal(tifffile.imread(path), array)):
        tifffile.imwrite(path, array)


def write_dataset(volume: NucleiVolume, folder: Path) -> str:
    """Write ``volume``'s image and labels under ``folder/name/`` and return its catalog entry (YAML).

    The split is by region along y: the first 55% trains, the next 15% validates, the rest tests.
    Files already there with the same content are not rewritten.
    """
    image, labels = generate(volume)
    where = folder / volume.name
    where.mkdir(parents=True, exist_ok=True)
    for name, array in (("image.tif", image), ("labels.tif", labels)):
        write_unchanged(where / name, array)
    z, y, x = volume.shape
    cut1, cut2 = round(0.55 * y), round(0.70 * y)
    return (
        f"  {volume.name}:\n"
        f"    description: synthetic 3D nuclei, {z}x{y}x{x} voxels of {volume.spacing} um (benchmarks/nuclei3d.py).\n"
        f"    ground_truth: exact by construction.\n"
        f"    images: {volume.name}/image.tif\n"
        f"    labels: {volume.name}/labels.tif\n"
        f"    ndim: 3\n"
        f"    classes: [background, nucleus]\n"
        f"    instances: true\n"
        f"    spacing: {list(volume.spacing)}\n"
        f"    split:\n"
        f"      regions:\n"
        f"        train: [[0, {z}], [0, {cut1}], [0, {x}]]\n"
        f"        validation: [[0, {z}], [{cut1}, {cut2}], [0, {x}]]\n"
        f"        test: [[0, {z}], [{cut2}, {y}], [0, {x}]]\n"
    )
