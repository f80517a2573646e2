"""The scale at which a new image's objects have the size a model saw them at.

A model whose card has an ``object_size`` was trained on images rescaled so their objects' median
extent was that size. A new image's objects are measured where a first prediction finds them:
the centre of the image's content (at most ``ESTIMATE_WINDOWS`` windows a side; the content is
what is not fill, :func:`~segpipe.inference.fill.content_box`, so a field in the corner of a
zero-filled mosaic is measured, not the fill at the canvas's centre) is predicted on the
model's grid, labelled with the card's post-processing, its objects' median extent measured, and
the scale corrected by how far it is from the card's; the correction is made ``ESTIMATE_PASSES``
times (a first pass at the image's own pixel size sees objects of an unfamiliar size and finds
them only roughly, as Cellpose refines its size model's diameter with a mask pass).
"""

from __future__ import annotations

import numpy as np

from segpipe.data.store import StoredImage
from segpipe.inference import predict_image
from segpipe.inference.blank import Blank, normalized_floors
from segpipe.inference.fill import content_box
from segpipe.inference.normalize import normalize
from segpipe.inference.object_size import median_extent
from segpipe.inference.postprocess import instance_labels, output_maps
from segpipe.inference.resample import to_spacing
from segpipe.inference.windows import centre_box

#: Corrections of the scale; on the seven imaging styles' test images (benchmarks/RESULTS.md,
#: "Objects rescaled to one size") two brought the mean SEG to the scale the labels give (0.681
#: against 0.682; one: 0.675, none: 0.641), the scale within 10% of the labels' on five of seven.
ESTIMATE_PASSES = 2
#: The estimate's crop, in windows a side on the model's grid.
ESTIMATE_WINDOWS = 4
#: The scale stays within this factor of 1 either way.
MAX_SCALE = 4.0


def estimate_scale(image: StoredImage, predictor, spacing) -> float:
    """The factor by which ``image``'s pixel size (``spacing``, in the card's unit) is taken to be
    larger so that its objects measure the card's ``object_size`` on the model's grid; 1 when the
    card has none or no object is found."""
    card = predictor.card
    if not card.object_size:
        return 1.0
    ndim = card.spatial_dims
    frames = image.image.ndim - 1 - ndim
    within = content_box(image.image, spatial_dims=ndim, frame=(0,) * frames)
    scale = 1.0
    for _ in range(ESTIMATE_PASSES):
        at = [float(s) * scale for s in spacing]
        extent = _predicted_extent(image, predictor, at, frames=frames, within=within)
        if extent is None:
            break
        scale = float(np.clip(scale * card.object_size / extent, 1.0 / MAX_SCALE, MAX_SCALE))
    return scale


def _predicted_extent(
    image: StoredImage, predictor, spacing: list[float], *, frames: int, within: tuple[slice, ...]
) -> float | None:
    """The median extent of the objects predicted in the centre of ``within`` (the box of the content
    of ``image``'s first frame) read at ``spacing``."""
    card = predictor.card
    shape = image.image.shape[-card.spatial_dims:]
    box = centre_box(
        shape, windows=ESTIMATE_WINDOWS, roi=card.patch_size, spacing=spacing, model_spacing=card.spacing, within=within
    )
    pixels = normalize(np.asarray(image.image[(slice(None), *(0,) * frames, *box)]), card.normalization)
    grid = to_spacing(pixels, spacing, card.spacing)
    params = predictor.inference.model_copy(update={"flip_tta": False})
    outputs = predict_image(
        predictor.network, grid, roi_size=card.patch_size, n_classes=card.n_classes, params=params,
        device=predictor.device, flow_channels=card.flow_channels,
        blank=Blank.for_card(card, normalized_floors(grid, card.normalization)),
    )
    foreground, distance, boundary, flow = output_maps(outputs, card.n_classes)
    labels = instance_labels(foreground, distance, card.instance_params(), boundary, flow)
    return median_extent(labels, card.spacing)
