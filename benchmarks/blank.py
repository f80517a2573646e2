"""What finding blank pixels costs a prediction: ``stream_predict`` with the rule against without it (the named baseline).

:mod:`segpipe.inference.blank` measures, in the writing thread, every tile of activated outputs
against the source around it. This times the whole zarr-to-zarr prediction both ways, on the same
seeded network (segpipe's U-Net, 2D widths 16..256 as the plan makes them, 3D widths 4..64) and
the same inputs:

- ``2d-field``: a 1024 x 1024 uint16 field of noisy blobs, no blank pixel (the rule's first,
  one-axis search ends at once);
- ``2d-mosaic``: the same field with its right half zero fill (the rule measures half the image);
- ``3d-volume`` and ``3d-mosaic``: a 48 x 256 x 256 volume, as is and with half of it zero fill.

Each variant runs ``--repeats`` times alternating with the baseline, and the fastest of each is
kept; quiet and beside one competing CPU-bound process (``conditions.py``). Prints one JSON line
per input and condition: seconds with and without the rule, their ratio, and the blank share.

Run: ``python benchmarks/blank.py``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditions import CONDITIONS, under  # noqa: E402

from segpipe.inference import ArraySink, InferenceParams, activate, stream_normalization, stream_predict  # noqa: E402
from segpipe.inference.blank import Blank, floors  # noqa: E402
from segpipe.inference.normalize import NormalizationSpec  # noqa: E402
from segpipe.models import build_model  # noqa: E402

SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)


def field(shape: tuple[int, ...], *, seed: int = 0) -> np.ndarray:
    """Noisy Gaussian blobs on a dim, noisy background, uint16, ``(1, *shape)``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    spots = np.zeros(shape, np.float32)
    spots[tuple(rng.integers(0, n, 400 if len(shape) == 2 else 2000) for n in shape)] = 1
    blobs = ndimage.gaussian_filter(spots, 4) * 4000
    return (blobs * 1000 / max(float(blobs.max()), 1e-6) + rng.normal(100, 10, shape)).clip(0, 65535).astype(np.uint16)[None]


def inputs() -> dict[str, np.ndarray]:
    plane, volume = field((1024, 1024)), field((48, 256, 256), seed=1)
    plane_mosaic, volume_mosaic = plane.copy(), volume.copy()
    plane_mosaic[..., 512:] = 0
    volume_mosaic[..., 128:] = 0
    return {"2d-field": plane, "2d-mosaic": plane_mosaic, "3d-volume": volume, "3d-mosaic": volume_mosaic}


def network(ndim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    features = (16, 32, 64, 128, 256, 16) if ndim == 2 else (4, 8, 16, 32, 64, 4)
    return build_model("unet", spatial_dims=ndim, in_channels=1, out_channels=2, features=features).eval()


def predict(net, source, roi, normalization, blank) -> float:
    sink = ArraySink(2, (), source.shape[1:])
    started = time.perf_counter()
    stream_predict(
        net, source, sink, roi_size=roi, out_channels=2, normalization=normalization,
        activation=partial(activate, n_classes=2), params=InferenceParams(flip_tta=False), blank=blank,
    )
    return time.perf_counter() - started


def measure(name: str, image: np.ndarray, repeats: int) -> dict:
    ndim = image.ndim - 1
    roi = (128, 128) if ndim == 2 else (32, 64, 64)
    source = zarr.create_array(store={}, shape=image.shape, chunks=(1, *roi), dtype=image.dtype)
    source[...] = image
    normalization = stream_normalization(source, SPEC)
    blank = Blank.for_outputs(floors(normalization), out_channels=2, n_classes=2)
    net = network(ndim)
    predict(net, source, roi, normalization, None)  # warm-up: first-call allocations and kernels
    times = {"without": [], "with": []}
    for _ in range(repeats):
        times["without"].append(predict(net, source, roi, normalization, None))
        times["with"].append(predict(net, source, roi, normalization, blank))
    best = {k: min(v) for k, v in times.items()}
    return {
        "input": name, "shape": list(image.shape[1:]), "blank_share": round(float(blank.mask(image).mean()), 3),
        "without_s": round(best["without"], 2), "with_s": round(best["with"], 2),
        "with / without": round(best["with"] / best["without"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    images = inputs()
    for condition in CONDITIONS:
        with under(condition):
            for name, image in images.items():
                print(json.dumps({"condition": condition, **measure(name, image, args.repeats)}), flush=True)


if __name__ == "__main__":
    main()
