"""Make this folder's files from laptrack 0.17.1's example data (run once; the outputs are committed).

    pip download laptrack==0.17.1 --no-deps --no-binary :all: && tar xzf laptrack-0.17.1.tar.gz
    python derive.py laptrack-0.17.1/docs/examples/cell_segmentation_data/data_small.npz

The archive holds ten frames of one phase-contrast time-lapse (234 x 234, uint8) and their
whole-cell masks (uint8); each frame and its masks are written unchanged as zlib-compressed TIFF:
``images/fFF.tif`` and ``labels/fFF.tif``. The wheel does not contain the file (laptrack's
``datasets`` module downloads it); the source distribution does.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile


def main(archive: Path) -> None:
    data = np.load(archive)
    here = Path(__file__).parent
    for folder, key in (("images", "images"), ("labels", "labels")):
        (here / folder).mkdir(exist_ok=True)
        for t, frame in enumerate(data[key]):
            tifffile.imwrite(here / folder / f"f{t:02d}.tif", frame, compression="zlib")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
