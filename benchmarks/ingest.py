"""Ingest throughput and peak memory: segpipe's streamed, parallel ingest vs the naive baseline.

(a) one large multi-page TIFF (default 2 GiB, uint16 planes of 1024x1024):
    baseline  ``tifffile.imread`` of the whole file, then one zarr assignment (same chunks and
              compressor as segpipe, so only the way of copying differs);
    segpipe   the image path of ingest: lazy TIFF source, slab-by-slab copy with the next slab
              read while the current one is written, NaN/Inf check and min/max on the way, and
              the file's SHA-256 (the fingerprint) digested in a background thread.
(c) pyramid levels (``--only pyramid``): the segpipe path of (a) with its defaults, which write
    the pyramid levels (averaged 2x2x2 blocks, ``s1``, ``s2``) as the slabs pass, against the same
    path with ``IngestParams(pyramid=False)`` (the full resolution only).
(b) many small TIFFs (default 500 images of 256x256 uint16, each with a label TIFF):
    baseline  a loop: read image and labels with ``tifffile.imread``, one zarr array each;
    segpipe   ``ingest_dataset`` on a catalog of the same files (validation, OME-NGFF metadata,
              fingerprint included), images ingested by one worker process per CPU (the
              default for 64 or more small images); the fork server that starts them, and
              its imports, are inside the timing.

Each variant runs in its own subprocess so its peak RSS (``VmHWM``) is its own; the sum over
that process and its worker processes is sampled too ("all processes"). Imports done before
the clock starts (zarr, tifffile, ome-zarr, segpipe) are the same for both variants. The
figures are printed side by side. Inputs are written under ``benchmarks/_work/`` (git-ignored)
and deleted at the end unless ``--keep``. Both variants read the input from the page cache
(it was just written), so the comparison is of the copying, not of the disk.

Usage::

    nice -n 10 python benchmarks/ingest.py            # both cases, 2 GiB and 500 files
    nice -n 10 python benchmarks/ingest.py --size-gib 0.25 --files 100   # a quick run
    nice -n 10 python benchmarks/ingest.py --only pyramid                # pyramid on vs off, 2 GiB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / "_work"
PLANE = (1024, 1024)
SMALL = (256, 256)


# ---------------------------------------------------------------- inputs
def make_large_tiff(path: Path, size_gib: float) -> tuple[int, ...]:
    """A multi-page uint16 TIFF of about ``size_gib``: blurred blobs plus noise, plane by plane."""
    import tifffile
    from scipy import ndimage

    n_planes = max(1, int(size_gib * 2**30 // (PLANE[0] * PLANE[1] * 2)))
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random(PLANE, dtype=np.float32), 8)
    base = ((base - base.min()) / (np.ptp(base) + 1e-9) * 3000 + 200).astype(np.uint16)

    def planes():
        for z in range(n_planes):
            noise = rng.integers(0, 64, PLANE, dtype=np.uint16)
            yield np.roll(base, 3 * z, axis=1) + noise

    shape = (n_planes, *PLANE)
    tifffile.imwrite(path, planes(), shape=shape, dtype=np.uint16, photometric="minisblack")
    return shape


def make_small_dataset(folder: Path, n: int) -> Path:
    """``n`` small image/label TIFF pairs and a catalog naming them all as training data."""
    import tifffile

    rng = np.random.default_rng(1)
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        image = rng.integers(100, 1000, SMALL, dtype=np.uint16)
        labels = np.zeros(SMALL, np.uint16)
        for k in range(1, 6):
            y, x = rng.integers(0, SMALL[0] - 20, 2)
            labels[y : y + 16, x : x + 16] = k
            image[y : y + 16, x : x + 16] += 2000
        name = f"img{i:04d}"
        tifffile.imwrite(folder / "images" / f"{name}.tif", image, photometric="minisblack")
        tifffile.imwrite(folder / "labels" / f"{name}.tif", labels, photometric="minisblack")
        names.append(name)
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  many:\n    images: images/*.tif\n    labels: labels/*.tif\n    ndim: 2\n"
        f"    classes: [background, object]\n    split:\n      train: [{', '.join(names)}]\n"
    )
    return catalog


# ---------------------------------------------------------------- variants (run in a subprocess)
def run_large_baseline(src: Path, out: Path) -> dict:
    import tifffile
    import zarr

    from segpipe.data.ingest import IngestParams
    from segpipe.data.store import chunk_shape, create_array

    data = tifffile.imread(src)[np.newaxis]
    chunks = chunk_shape(data.shape, 3, itemsize=data.itemsize, max_slab_bytes=IngestParams().max_slab_bytes)
    group = zarr.open_group(str(out), mode="w")
    create_array(group, "s0", shape=data.shape, dtype=data.dtype, ndim=3, chunks=chunks)[...] = data
    return {"bytes": src.stat().st_size, "chunks": list(chunks)}


def run_large_segpipe(src: Path, out: Path, *, pyramid: bool = True) -> dict:
    import threading

    import zarr

    from segpipe.data.ingest import IngestParams, file_digest
    from segpipe.data.ingest.record import copy_image
    from segpipe.data.pyramid import level_factors
    from segpipe.data.readers import AxesSpec, open_source

    options = IngestParams(pyramid=pyramid)
    digest = {}
    hasher = threading.Thread(target=lambda: digest.update(sha256=file_digest(src)))
    hasher.start()
    group = zarr.open_group(str(out), mode="w")
    with open_source(src, spec=AxesSpec(fill="Z")) as source:
        window = tuple(slice(0, s) for s in source.spatial)
        factors = level_factors(source.spatial, (1.0, 1.0, 1.0), levels=options.pyramid_levels(),
                                min_size=options.pyramid_min_size)
        copied = copy_image(group, source, 0, window=window, ndim=3, channels=None, options=options, factors=factors)
    hasher.join()
    return {"bytes": src.stat().st_size, "chunks": list(copied.array.chunks), "levels": [list(f) for f in factors]}


def run_large_segpipe_flat(src: Path, out: Path) -> dict:
    return run_large_segpipe(src, out, pyramid=False)


def run_small_baseline(catalog: Path, out: Path) -> dict:
    import tifffile
    import zarr

    from segpipe.data.store import create_array

    root = zarr.open_group(str(out), mode="w")
    folder = catalog.parent
    n = 0
    total = 0
    for image_path in sorted((folder / "images").glob("*.tif")):
        image = tifffile.imread(image_path)[np.newaxis]
        labels = tifffile.imread(folder / "labels" / image_path.name)
        group = root.create_group(image_path.stem)
        create_array(group, "s0", shape=image.shape, dtype=image.dtype, ndim=2)[...] = image
        create_array(group, "gt", shape=labels.shape, dtype=labels.dtype, ndim=2)[...] = labels
        n += 1
        total += image_path.stat().st_size + (folder / "labels" / image_path.name).stat().st_size
    return {"files": n, "bytes": total}


def run_small_segpipe(catalog: Path, out: Path) -> dict:
    from segpipe.data.catalog import load_catalog
    from segpipe.data.ingest import ingest_dataset

    dataset = load_catalog(catalog).dataset("many")
    result = ingest_dataset(dataset, out, progress=False)
    total = sum(r.image.stat().st_size + r.labels.stat().st_size for r in dataset.records)
    return {"files": result.n_images, "bytes": total}


VARIANTS = {
    "large-baseline": run_large_baseline,
    "large-segpipe": run_large_segpipe,
    "large-segpipe-no-pyramid": run_large_segpipe_flat,
    "small-baseline": run_small_baseline,
    "small-segpipe": run_small_segpipe,
}


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``); ``ru_maxrss`` would count the forking parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TreeMemory:
    """Peak summed RSS of this process and its descendants (worker processes), sampled every 50 ms."""

    def __init__(self):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.05):
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def child(variant: str, src: Path, out: Path) -> None:
    """Run one variant and print its figures as JSON (called in a fresh interpreter)."""
    import ome_zarr.writer  # noqa: F401  (imports are not part of the timing; ingest imports it lazily)
    import segpipe.data.ingest  # noqa: F401
    import segpipe.data.store  # noqa: F401
    import tifffile  # noqa: F401
    import zarr  # noqa: F401

    tree = TreeMemory()
    start = time.perf_counter()
    figures = VARIANTS[variant](src, out)
    figures["seconds"] = time.perf_counter() - start
    figures["peak_rss_mib"] = peak_rss_mib()
    figures["tree_rss_mib"] = tree.stop()
    print(json.dumps(figures))


def measure(variant: str, src: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return figures


def check_same(src: Path, out_a: Path, out_b: Path, path_a: str, path_b: str) -> None:
    """Spot-check that both variants stored the same pixels (first, middle and last planes)."""
    import zarr

    a, b = zarr.open_array(str(out_a / path_a), mode="r"), zarr.open_array(str(out_b / path_b), mode="r")
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape)
    for z in (0, a.shape[1] // 2, a.shape[1] - 1):
        np.testing.assert_array_equal(a[:, z], b[:, z])


def check_levels(out: Path) -> None:
    """Spot-check the pyramid: the first planes of s1 are the rounded means of 2x2x2 blocks of s0."""
    import zarr

    s0, s1 = zarr.open_array(str(out / "s0"), mode="r"), zarr.open_array(str(out / "s1"), mode="r")
    block = s0[:, :4].astype(np.float64)
    means = block.reshape(1, 2, 2, s0.shape[2] // 2, 2, s0.shape[3] // 2, 2).mean(axis=(2, 4, 6))
    np.testing.assert_array_equal(s1[:, :2], np.rint(means).astype(s0.dtype))
    print(f"  levels: {[zarr.open_array(str(out / name), mode='r').shape for name in ('s0', 's1', 's2')]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0, help="size of the large TIFF (a)")
    parser.add_argument("--files", type=int, default=500, help="number of small images (b)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant (alternating)")
    parser.add_argument("--only", choices=["large", "small", "pyramid"], help="run one case")
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        if args.only in (None, "large"):
            src = WORK / "large.tif"
            shape = make_large_tiff(src, args.size_gib)
            size_mb = src.stat().st_size / 1e6
            print(f"(a) {src.name}: {shape} uint16, {size_mb:.0f} MB")
            # one untimed run of each writes the stores for the equality check
            for variant in ("large-baseline", "large-segpipe"):
                out = WORK / f"{variant}.zarr"
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run([sys.executable, __file__, "--child", variant, str(src), str(out)], check=True,
                               capture_output=True)
            check_same(src, WORK / "large-baseline.zarr", WORK / "large-segpipe.zarr", "s0", "s0")
            for out in ("large-baseline.zarr", "large-segpipe.zarr"):
                shutil.rmtree(WORK / out)
            results = {"large-baseline": [], "large-segpipe": []}
            for _ in range(args.repeats):
                for variant in results:
                    results[variant].append(measure(variant, src, WORK / f"{variant}.zarr"))
            rows.append(("(a) large TIFF", size_mb, results))
        if args.only == "pyramid":
            src = WORK / "large.tif"
            shape = make_large_tiff(src, args.size_gib)
            size_mb = src.stat().st_size / 1e6
            print(f"(c) {src.name}: {shape} uint16, {size_mb:.0f} MB; pyramid on vs off")
            out = WORK / "pyramid-check.zarr"
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([sys.executable, __file__, "--child", "large-segpipe", str(src), str(out)], check=True,
                           capture_output=True)
            check_levels(out)
            shutil.rmtree(out)
            results = {"large-segpipe-no-pyramid": [], "large-segpipe": []}
            for _ in range(args.repeats):
                for variant in results:
                    results[variant].append(measure(variant, src, WORK / f"{variant}.zarr"))
            rows.append(("(c) pyramid", size_mb, results))
        if args.only in (None, "small"):
            catalog = make_small_dataset(WORK / "small", args.files)
            print(f"(b) {args.files} images of {SMALL} uint16 + {args.files} label TIFFs")
            results = {"small-baseline": [], "small-segpipe": []}
            for _ in range(args.repeats):
                for variant in results:
                    results[variant].append(measure(variant, catalog, WORK / f"{variant}.zarr"))
            rows.append(("(b) small TIFFs", None, results))
    finally:
        if not args.keep:
            for name in ("large.tif", "small"):
                path = WORK / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
    report(rows)


def report(rows) -> None:
    print()
    for title, size_mb, results in rows:
        (base_name, base), (ours_name, ours) = results.items()
        best = {name: min(runs, key=lambda r: r["seconds"]) for name, runs in results.items()}
        print(f"{title}  (best of {len(base)} runs each; all runs: "
              + ", ".join(f"{n} {[round(r['seconds'], 2) for r in runs]} s" for n, runs in results.items()) + ")")
        if size_mb is not None:
            print(f"  {'variant':<26}{'MB/s':>10}{'peak RSS MiB':>15}{'RSS / file':>12}")
            for name in results:
                r = best[name]
                mbs = r["bytes"] / 1e6 / r["seconds"]
                print(f"  {name:<26}{mbs:>10.1f}{r['peak_rss_mib']:>15.0f}{r['peak_rss_mib'] * 1.048576 / size_mb:>12.1%}")
            ratio = best[base_name]["seconds"] / best[ours_name]["seconds"]
            rss = best[ours_name]["peak_rss_mib"] / best[base_name]["peak_rss_mib"]
            print(f"  {ours_name} / {base_name}: throughput x{ratio:.2f}, time x{1 / ratio:.3f}, peak RSS x{rss:.3f}; "
                  f"chunks {best[ours_name]['chunks']}, levels {best[ours_name].get('levels')}")
        else:
            print(f"  {'variant':<16}{'images/s':>10}{'MB/s':>8}{'peak RSS MiB':>15}{'all processes':>15}")
            for name in results:
                r = best[name]
                print(f"  {name:<16}{r['files'] / r['seconds']:>10.1f}{r['bytes'] / 1e6 / r['seconds']:>8.1f}"
                      f"{r['peak_rss_mib']:>15.0f}{r['tree_rss_mib']:>15.0f}")
            ratio = best[base_name]["seconds"] / best[ours_name]["seconds"]
            print(f"  segpipe / baseline: images per second x{ratio:.2f}")


if __name__ == "__main__":
    main()
