"""A store seen with every labelled image at the pixel size that gives its objects one size."""

import numpy as np
import pytest
from scipy import ndimage

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.training.plan import fingerprint_store
from segpipe.training.sized import SizedStore


def test_each_labelled_image_gets_the_pixel_size_of_objects_of_the_given_size(crop_catalog, tmp_path):
    ingest_dataset(load_catalog(crop_catalog).dataset("crops"), tmp_path / "data.zarr", progress=False)
    store = ImageStore.open(tmp_path / "data.zarr")
    sized = SizedStore(store, 30.0)
    for own, seen in zip(store.images(), sized.images(), strict=True):
        labels = np.asarray(own.labels)
        extents = [max(s.stop - s.start for s in box) * own.spacing[0] for box in ndimage.find_objects(labels) if box]
        assert seen.name == own.name and seen.image.shape == own.image.shape
        assert seen.spacing == pytest.approx([s * 30.0 / np.median(extents) for s in own.spacing])
    # what training plans from: every image's objects now measure 30 on their own grid
    assert fingerprint_store(sized)["image_extents"] == pytest.approx([30.0] * len(store.images("train")), rel=0.02)
    assert sized.instances == store.instances and sized.path == store.path  # the rest is the store's
