"""Property: for any catalog and files (random shapes, dtypes, axes orders, spacings, splits, damage), ingest
either writes a store that reads back equal to the sources, or refuses with a SegpipeError and leaves
nothing; never anything else (no other exception, no half-written store, no silently changed pixel).

Which of the two must happen is worked out independently of segpipe, from the arrays and files the
test wrote (:func:`expected_refusals`): a valid case must be written, a damaged one refused with one
line that names a file of the case and says what is wrong. The sources are never touched.

The default test runs a fixed, derandomized set of examples (well under a minute); ``-m slow`` runs
many more, with worker processes too; both print their counts.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import IngestParams, ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.errors import SegpipeError

IMAGE_DTYPES = ["uint8", "uint16", "int16", "int32", "float32", "float64", "bool"]  # bool: a 1-bit TIFF, read as uint8
LABEL_DTYPES = ["uint8", "uint16", "int32", "float32"]
SPLITS = ("train", "validation", "test")

# Damage done to one image's arrays or files, and the words of the refusal it must cause (None: it may be
# refused, for a reason worked out from all the arrays).
IMAGE_DAMAGE = {
    "nan": "NaN or Inf",
    "inf": "NaN or Inf",
    "negative label": "negative labels",
    "fractional label": "non-integer values",
    "class out of range": "but the catalog declares",
    "constant image": None,  # refused when its labels mark an object
    "torn image": "",  # the file is named; tifffile's and nibabel's own words follow
    "torn labels": "",
    "label shape": "have shape",
    "duplicate": None,  # a copy of the previous image's pixels, other bytes: refused in another split
    "empty labels": None,  # refused only when no label map, or no validation one, has an object
}
WORDS = {
    "empty region": "is empty or negative",
    "overlap": "overlap in",
    "region beyond": "exceeds the image shape",
    "no objects": "every label map is empty",
    "no validation objects": "the validation split has no object",
    "duplicate bytes": "has the same content as",
    "duplicate pixels": "holds the same pixels as",
    "constant image": "image is constant",
    **{k: v for k, v in IMAGE_DAMAGE.items() if v is not None},
}


@dataclass
class Case:
    """One generated dataset: the arrays as segpipe should store them, and how they are written."""

    ndim: int
    fmt: str  # tiff or nifti
    axes: str  # the image files' axis order (a permutation of C?Z?YX), given in the catalog
    images: dict[str, np.ndarray] = field(default_factory=dict)  # canonical (C, [Z,] Y, X)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # canonical ([Z,] Y, X)
    damage: dict[str, str] = field(default_factory=dict)  # image name -> a key of IMAGE_DAMAGE, or "none"
    split: dict = field(default_factory=dict)
    spacing: list[float] | None = None
    instances: bool = True
    max_slab_mib: float = 32.0
    processes: int = 1
    tear_at: float = 0.5  # where a torn file is cut, as a fraction of its size

    @property
    def channels(self) -> int:
        return next(iter(self.images.values())).shape[0]


@st.composite
def cases(draw, *, processes: tuple[int, ...] = (1,)) -> Case:
    """A random dataset: 1-4 images, 2D or 3D, TIFF in any axis order or NIfTI, split by file or by
    region; in half the cases the images may be damaged (at most one damage each)."""
    ndim = draw(st.sampled_from([2, 3]))
    fmt = draw(st.sampled_from(["tiff", "tiff", "nifti"])) if ndim == 3 else "tiff"
    channels = 1 if fmt == "nifti" else draw(st.sampled_from([1, 1, 2, 3]))
    letters = ("C" if channels > 1 else "") + ("Z" if ndim == 3 else "") + "YX"
    axes = "".join(draw(st.permutations(letters))) if fmt == "tiff" else "XYZ"
    shape = tuple(draw(st.integers(1, 6)) for _ in range(ndim - 2)) + (draw(st.integers(2, 40)), draw(st.integers(2, 40)))
    dtypes = IMAGE_DTYPES if fmt == "tiff" else IMAGE_DTYPES[:-1]  # NIfTI cannot hold bool
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    label_dtype = np.dtype(draw(st.sampled_from(LABEL_DTYPES)))
    instances = draw(st.booleans())
    n_images = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    case = Case(ndim=ndim, fmt=fmt, axes=axes, instances=instances, tear_at=draw(st.sampled_from([0.0, 0.3, 0.9])))
    damages = ["none"] * 3 + list(IMAGE_DAMAGE) if draw(st.booleans()) else ["none"]
    for k in range(n_images):
        name = f"im{k}"
        case.images[name] = random_image(rng, dtype, (channels, *shape))
        case.labels[name] = rng.integers(0, (3 if instances else 1) + 1, shape).astype(label_dtype)
        case.damage[name] = damage(case, name, draw(st.sampled_from(damages)), rng)
    if n_images == 1 and draw(st.booleans()):
        case.split = {"regions": draw(regions(shape))}
    else:
        assigned = draw(st.lists(st.sampled_from(SPLITS), min_size=n_images, max_size=n_images))
        assigned[0] = "train"
        names = list(case.images)
        case.split = {s: [n for n, a in zip(names, assigned) if a == s] for s in SPLITS}
        case.split = {s: v for s, v in case.split.items() if v}
    if draw(st.booleans()):
        case.spacing = [draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.5])) for _ in range(ndim)]
    case.max_slab_mib = draw(st.sampled_from([32.0, 32.0, 0.002]))  # tiny slabs: the streamed path
    case.processes = draw(st.sampled_from(processes))
    return case


def random_image(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind == "f":
        return (rng.random(shape) * 1000 - 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 60000), shape, endpoint=True).astype(dtype)


def damage(case: Case, name: str, kind: str, rng: np.random.Generator) -> str:
    """Apply ``kind`` to image ``name``'s arrays when it fits them; returns the damage done ("none" if it
    does not fit: NaN in an integer image, say). File damage is done by :func:`write`."""
    image, labels = case.images[name], case.labels[name]
    spot = lambda a: tuple(int(rng.integers(s)) for s in a.shape)  # noqa: E731
    if kind in ("nan", "inf") and image.dtype.kind == "f":
        image[spot(image)] = np.nan if kind == "nan" else -np.inf
    elif kind == "negative label" and labels.dtype.kind in "if":
        labels[spot(labels)] = -1
    elif kind == "fractional label" and labels.dtype.kind == "f":
        labels[spot(labels)] = 0.5
    elif kind == "class out of range" and not case.instances:
        labels[spot(labels)] = 2
    elif kind == "constant image" and image.dtype != np.bool_:
        image[...] = image.flat[0]
    elif kind == "empty labels":
        labels[...] = 0
    elif kind == "duplicate" and case.fmt == "tiff" and len(case.images) > 1:
        image[...] = case.images[f"im{len(case.images) - 2}"]
    elif kind in ("torn image", "torn labels", "label shape"):
        pass
    else:
        return "none"
    return kind


@st.composite
def regions(draw, shape: tuple[int, ...]) -> dict:
    """``[start, stop)`` bounds cutting one image along its first spatial axis into 1-3 splits; now and
    then two of them overlap by a row, one is empty or one runs past the image."""
    size = shape[0]
    cuts = sorted(draw(st.lists(st.integers(0, size), min_size=0, max_size=2)))
    overlap = draw(st.sampled_from([0, 0, 0, 1]))
    beyond = draw(st.sampled_from([0, 0, 0, 1]))
    bounds, start = {}, 0
    for split, stop in zip(SPLITS, [*cuts, size + beyond]):
        bounds[split] = [[max(0, start - overlap), stop]] + [[0, s] for s in shape[1:]]
        start = stop
    return bounds


def write(case: Case, folder: Path) -> Path:
    """The files and catalog of ``case`` under ``folder``; returns the catalog."""
    for sub in ("img", "lab"):
        (folder / sub).mkdir(parents=True)
    canonical = ("C" if case.channels > 1 else "") + ("Z" if case.ndim == 3 else "") + "YX"
    suffix = "nii.gz" if case.fmt == "nifti" else "tif"
    for name, image in case.images.items():
        labels = case.labels[name]
        if case.damage[name] == "label shape":
            labels = np.concatenate([labels, labels[..., :1, :]], axis=-2)
        image_file, label_file = folder / "img" / f"{name}.{suffix}", folder / "lab" / f"{name}.{suffix}"
        if case.fmt == "nifti":  # (X, Y, Z) on disk
            nib.save(nib.Nifti1Image(image[0].T, np.eye(4)), str(image_file))
            nib.save(nib.Nifti1Image(labels.T, np.eye(4)), str(label_file))
        else:
            stored = image if case.channels > 1 else image[0]
            order = [canonical.index(letter) for letter in case.axes]
            # A duplicate is saved compressed: other bytes, the same pixels.
            options = {"compression": "zlib"} if case.damage[name] == "duplicate" else {}
            tifffile.imwrite(image_file, np.ascontiguousarray(stored.transpose(order)), photometric="minisblack", **options)
            tifffile.imwrite(label_file, labels, photometric="minisblack")
        torn = {"torn image": image_file, "torn labels": label_file}.get(case.damage[name])
        if torn is not None:
            torn.write_bytes(torn.read_bytes()[: int(torn.stat().st_size * case.tear_at)])
    entry = {
        "images": f"img/*.{suffix}",
        "labels": f"lab/*.{suffix}",
        "ndim": case.ndim,
        "classes": ["background", "object"],
        "instances": case.instances,
        "split": case.split,
    }
    if case.fmt == "tiff":
        entry["axes"] = case.axes
        entry["label_axes"] = "ZYX" if case.ndim == 3 else "YX"
    if case.spacing is not None:
        entry["spacing"] = case.spacing
    catalog = folder / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"d": entry}}, sort_keys=False))
    return catalog


def pieces(case: Case) -> dict[str, tuple[str, np.ndarray, np.ndarray, str]]:
    """What the store must hold: ``{name: (split, image, labels, source)}``; a region split gives one
    piece per region, named ``<image>-<split>``."""
    out = {}
    for name, image in case.images.items():
        labels = case.labels[name]
        if "regions" not in case.split:
            split = next(s for s, names in case.split.items() if name in names)
            out[name] = (split, image, labels, name)
            continue
        for split, bounds in case.split["regions"].items():
            window = tuple(slice(a, b) for a, b in bounds)
            out[f"{name}-{split}"] = (split, image[(slice(None), *window)], labels[window], name)
    return out


def expected_refusals(case: Case, folder: Path) -> set[str]:
    """The reasons (keys of ``WORDS``) ingest must refuse ``case`` for, worked out from the arrays and the
    files written; empty: it must be written."""
    reasons = {kind for kind in case.damage.values() if IMAGE_DAMAGE.get(kind, None) is not None}
    if "regions" in case.split:
        reasons |= region_problems(case)
        if reasons & {"empty region", "overlap", "region beyond"}:
            return reasons  # refused before any pixel is read
    for split, image, labels, _ in pieces(case).values():
        if labels.any() and image.size and image.min() == image.max():
            reasons.add("constant image")
    reasons |= object_problems(case)
    reasons |= duplicate_problems(case, folder)
    return reasons


def region_problems(case: Case) -> set[str]:
    bounds = case.split["regions"]
    size = next(iter(case.labels.values())).shape[0]
    reasons = set()
    if any(start >= stop for start, stop in (b[0] for b in bounds.values())):
        reasons.add("empty region")
    ranges = [b[0] for b in bounds.values()]
    if any(max(a[0], b[0]) < min(a[1], b[1]) for i, a in enumerate(ranges) for b in ranges[i + 1 :]):
        reasons.add("overlap")
    if any(stop > size for _, stop in (b[0] for b in bounds.values())):
        reasons.add("region beyond")
    return reasons


def object_problems(case: Case) -> set[str]:
    """Ground truth that cannot train or choose a model: no object anywhere, or none in validation."""
    has = [(split, bool(labels.any())) for split, _, labels, _ in pieces(case).values()]
    if not any(objects for _, objects in has):
        return {"no objects"}
    validation = [objects for split, objects in has if split == "validation"]
    return {"no validation objects"} if validation and not any(validation) else set()


def duplicate_problems(case: Case, folder: Path) -> set[str]:
    """Two image files with the same bytes, or the same non-constant pixels in two splits."""
    if "regions" in case.split:
        return set()
    reasons = set()
    files = sorted((folder / "img").iterdir())
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    if len(set(digests)) < len(digests):
        reasons.add("duplicate bytes")
    seen: dict[bytes, str] = {}
    for split, image, _, _ in pieces(case).values():
        if image.min() == image.max():
            continue
        key = image.dtype.str.encode() + str(image.shape).encode() + image.tobytes()
        if seen.setdefault(key, split) != split:
            reasons.add("duplicate pixels")
    return reasons


def check_round_trip(case: Case, store_path: Path) -> None:
    """The store holds every image and label map exactly, with its split, spacing and dtype."""
    store = ImageStore.open(store_path)
    expected = pieces(case)
    stored = {im.name: im for im in store.images()}
    assert set(stored) == set(expected)
    for name, (split, image, labels, _) in expected.items():
        got = stored[name]
        assert got.split == split
        pixels = np.asarray(got.image)
        image = image.astype(np.uint8) if image.dtype == np.bool_ else image  # 1-bit pixels are read as 0 and 1
        assert pixels.dtype == image.dtype and pixels.shape == image.shape, (pixels.dtype, pixels.shape, image.shape)
        np.testing.assert_array_equal(pixels, image)
        np.testing.assert_array_equal(np.asarray(got.labels), labels.astype(np.int64))
        assert got.spacing == tuple(case.spacing or [1.0] * case.ndim)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def ingest_case(case: Case, outcomes: Counter) -> None:
    """Write ``case``, ingest it, and check the outcome against :func:`expected_refusals`."""
    folder = Path(tempfile.mkdtemp(prefix="segpipe-prop-")).resolve()
    try:
        store = folder / "out" / "data.zarr"
        catalog = write(case, folder)
        expected = expected_refusals(case, folder)
        sources = snapshot(folder)
        try:
            dataset = load_catalog(catalog).dataset("d")
            ingest_dataset(dataset, store, IngestParams(max_slab_mib=case.max_slab_mib, processes=case.processes),
                           progress=False)
        except SegpipeError as err:
            message = str(err)
            assert expected, f"refused a valid case: {message}"
            assert "\n" not in message and str(folder) in message, message
            assert any(WORDS[reason] in message for reason in expected), (sorted(expected), message)
            leftovers = sorted(p.name for p in store.parent.iterdir()) if store.parent.exists() else []
            assert leftovers == [], leftovers
            outcomes["refused"] += 1
            outcomes.update(f"refused: {reason}" for reason in expected)
        else:
            assert not expected, f"wrote a case it should refuse ({sorted(expected)})"
            check_round_trip(case, store)
            outcomes["written"] += 1
        assert snapshot(folder / "img") == {k.removeprefix("img/"): v for k, v in sources.items() if k.startswith("img/")}
        assert snapshot(folder / "lab") == {k.removeprefix("lab/"): v for k, v in sources.items() if k.startswith("lab/")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_property(examples: int, processes: tuple[int, ...] = (1,)) -> Counter:
    outcomes: Counter = Counter()

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(processes=processes))
    def check(case: Case) -> None:
        outcomes["cases"] += 1
        ingest_case(case, outcomes)

    check()
    return outcomes


def test_ingest_writes_what_it_reads_or_refuses_cleanly():
    outcomes = run_property(100)
    print(dict(sorted(outcomes.items())))
    assert outcomes["written"] >= 25 and outcomes["refused"] >= 25, outcomes  # both sides are exercised


@pytest.mark.slow
def test_ingest_writes_what_it_reads_or_refuses_cleanly_many_cases():
    outcomes = run_property(1000, processes=(1, 1, 2))
    print(dict(sorted(outcomes.items())))
    assert outcomes["written"] >= 200 and outcomes["refused"] >= 200, outcomes
