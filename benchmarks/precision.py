"""The network in float32 and in segpipe's reduced precision (``InferenceParams.amp``), side by side.

For a run folder that ``segpipe run DATASET`` wrote (its ``model`` and ``data.zarr``), every image
of the test split is predicted in memory twice, with ``amp`` off and on (bfloat16 on CPUs with
Intel AMX, autocast on CUDA, float32 elsewhere), with the card's windows and test-time flips,
labelled with the card's post-processing and scored against the ground truth. Prints the test
SEG, the largest probability difference, the objects whose label differs and the network's time.

Run: ``python benchmarks/precision.py runs/bbbc007 [--device cpu]``
"""

from __future__ import annotations

import argparse
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from segpipe.data.store import ImageStore
    from segpipe.inference import ArraySink, activate, stream_normalization, stream_predict
    from segpipe.inference.postprocess import instance_labels
    from segpipe.inference.precision import cpu_bfloat16
    from segpipe.models.model import Model
    from segpipe.scoring import overlap
    from segpipe.scoring.instances import seg_from_overlap

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder with model/ and data.zarr")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = Model.open(args.run / "model")
    card, device = model.card, torch.device(args.device)
    network = model.load(device)
    images = ImageStore.open(args.run / "data.zarr").images("test")
    results = {}
    for amp in (False, True):
        params = card.inference.model_copy(update={"amp": amp})
        jaccard, n_gt, seconds, outputs = 0.0, 0, 0.0, []
        for image in images:
            pixels = np.asarray(image.image)
            sink = ArraySink(card.out_channels, (), pixels.shape[1:])
            started = time.perf_counter()
            stream_predict(
                network, pixels, sink, roi_size=card.patch_size, out_channels=card.out_channels, params=params,
                normalization=stream_normalization(pixels, card.normalization),
                activation=partial(activate, n_classes=card.n_classes), device=device,
            )
            seconds += time.perf_counter() - started
            p, k = sink.values, card.n_classes
            labels = instance_labels(1 - p[0], p[k], card.instance_params(), boundary=p[k + 1] if p.shape[0] > k + 1 else None)
            seg = seg_from_overlap(overlap(np.asarray(image.labels).reshape(labels.shape), labels))
            jaccard, n_gt = jaccard + float(np.sum(seg.jaccard)), n_gt + seg.n_gt
            outputs.append((p, labels))
        results[amp] = (jaccard / n_gt, seconds, outputs, n_gt)
    (seg32, t32, out32, n_gt), (seg16, t16, out16, _) = results[False], results[True]
    difference = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(out32, out16))
    changed = sum(int(np.any(a[1] != b[1])) for a, b in zip(out32, out16))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, AMX: {cpu_bfloat16()})"
    print(f"{args.run.name}: {len(images)} test images, {n_gt} objects; {where}, {torch.get_num_threads()} threads; "
          f"windows {card.patch_size}, flips {card.inference.flip_tta}")
    print("| network | test SEG | network seconds | speed vs float32 |")
    print("| --- | --- | --- | --- |")
    print(f"| float32 | {seg32:.4f} | {t32:.1f} | 1.00x |")
    print(f"| amp on | {seg16:.4f} | {t16:.1f} | {t32 / t16:.2f}x |")
    print(f"largest probability difference {difference:.4f}; images whose labels differ: {changed} of {len(images)}")


if __name__ == "__main__":
    main()
