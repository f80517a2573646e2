"""Time of the post-processing tuning: each setting scored alone (the named baseline) against all settings image by image.

The tuning tries every setting of :func:`segpipe.training.tuning.candidates` (about 110 for a
model with boundary and flow outputs) on the validation and training images. Scored one setting
at a time, each setting remakes the maps it shares with others on an image: the smoothed relief
(6 kinds), its h-maxima (24) and the flow's paths (3, the slowest part: every foreground pixel
takes 200 steps). :func:`segpipe.training.tuning.scores_of_settings` goes image by image and
makes each of them once. Both give the same scores (checked here); the script prints the seconds
of each and their ratio, quiet and beside one competing process.

Run on a finished run folder (``segpipe run`` or another benchmark writes one)::

    python benchmarks/tuning_time.py RUN_FOLDER [--images N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditions import CONDITIONS, under  # noqa: E402
from tuning import predicted  # noqa: E402

from segpipe.training.tuning import candidates, scores_of_settings, validation_scores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a run folder with a trained instance model")
    parser.add_argument("--images", type=int, default=None, help="score only the first N validation and N training images")
    args = parser.parse_args()
    card, validation, training, _ = predicted(args.folder)
    images = (validation[: args.images] + training[: args.images]) if args.images else validation + training
    settings = list(candidates(images, n_classes=card.n_classes))
    for condition in CONDITIONS:
        with under(condition):
            started = time.perf_counter()
            alone = [validation_scores(images, params, card.n_classes) for params in settings]
            baseline = time.perf_counter() - started
            started = time.perf_counter()
            together = scores_of_settings(images, settings, card.n_classes)
            now = time.perf_counter() - started
        if together != alone:
            raise SystemExit("the two ways scored the settings differently")
        print(json.dumps({"condition": condition, "images": len(images), "settings": len(settings),
                          "each alone (baseline) s": round(baseline, 1), "image by image s": round(now, 1),
                          "ratio": round(baseline / now, 2)}), flush=True)


if __name__ == "__main__":
    main()
