from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage.segmentation import expand_labels

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.models.model import network_from_card
from segpipe.models.shipped import CELLS_2D, shipped_model
from segpipe.training.channel_order import input_slots
from segpipe.training.loop import make_card, train_model
from segpipe.training.params import TrainParams
from segpipe.training.plan import fingerprint_store, plan_training
from segpipe.training.start import adapt_input, start_config

DATA = Path(__file__).resolve().parents[2] / "data"
CROP_NAMES = ["17P1_POS0006_D_1UL", "A9_p5d", "20P1_POS0007_D_1UL", "A9_p9d"]  # four BBBC007 fields, as conftest's crops
STILL = dict(
    epochs=1, iterations_per_epoch=1, batch_size=1, patch_size=(64, 64), val_every=1, device="cpu",
    learning_rate=1e-12, weight_decay=0.0,
)


def whole_cell_catalog(folder, *, nuclei_first: bool, canvas: int = 0):
    """Whole cells made from real BBBC007 crops: each nucleus grown by 8 pixels is a cell, filled
    evenly in the cytoplasm channel; the nuclear channel is the crop itself. With ``canvas``, each
    crop sits in the top-left corner of a canvas that many pixels a side, zero fill elsewhere."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in CROP_NAMES:
        nuclei = tifffile.imread(DATA / "bbbc007" / "images" / f"{name}.tif")[:160, :160].astype(np.float32)
        cells = expand_labels(tifffile.imread(DATA / "bbbc007" / "labels" / f"{name}.tif")[:160, :160], 8)
        cytoplasm = np.where(cells > 0, 120.0, 20.0) + rng.normal(0, 5, cells.shape)
        channels = [nuclei, cytoplasm] if nuclei_first else [cytoplasm, nuclei]
        image, labels = np.stack(channels).clip(0, 255).astype(np.uint8), cells.astype(np.uint16)
        if canvas:
            image = np.pad(image, ((0, 0), (0, canvas - 160), (0, canvas - 160)))
            labels = np.pad(labels, ((0, canvas - 160), (0, canvas - 160)))
        tifffile.imwrite(folder / "images" / f"{name}.tif", image)
        tifffile.imwrite(folder / "labels" / f"{name}.tif", labels)
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "datasets:\n"
        "  cells:\n"
        "    images: images/*.tif\n"
        "    labels: labels/*.tif\n"
        "    ndim: 2\n"
        "    channel_axis: 0\n"
        "    classes: [background, cell]\n"
        "    split:\n"
        f"      train: [{CROP_NAMES[0]}, {CROP_NAMES[1]}]\n"
        f"      validation: [{CROP_NAMES[2]}]\n"
        f"      test: [{CROP_NAMES[3]}]\n"
    )
    return catalog


def cell_store(tmp_path, *, nuclei_first: bool, canvas: int = 0) -> ImageStore:
    catalog = whole_cell_catalog(tmp_path / "cells", nuclei_first=nuclei_first, canvas=canvas)
    ingest_dataset(load_catalog(catalog).dataset("cells"), tmp_path / "data.zarr", progress=False)
    return ImageStore.open(tmp_path / "data.zarr")


@pytest.fixture(scope="module")
def generalist():
    return shipped_model(CELLS_2D)


def planned_card(store, generalist):
    fingerprint = fingerprint_store(store)
    return make_card(store, fingerprint, plan_training(fingerprint, start_config(TrainParams(**STILL), generalist, ndim=2)))


@pytest.mark.parametrize(("nuclei_first", "expected"), [(False, (0, 1)), (True, (1, 0))])
def test_the_generalist_reads_the_cytoplasm_first_whichever_order_the_file_has(tmp_path, generalist, nuclei_first, expected):
    store = cell_store(tmp_path, nuclei_first=nuclei_first)
    card = planned_card(store, generalist)
    assert card.in_channels == 2
    assert input_slots(generalist, card, store.images("train", labelled=True)) == expected


def test_the_order_is_chosen_on_the_content_of_a_zero_filled_canvas(tmp_path, generalist):
    """Each field in the corner of a canvas four times its side: the windows are taken at the
    centre of the field, not of the fill (where every order finds nothing and the file's wins)."""
    store = cell_store(tmp_path, nuclei_first=True, canvas=640)
    card = planned_card(store, generalist)
    assert input_slots(generalist, card, store.images("train", labelled=True)) == (1, 0)


def test_one_channel_and_models_that_are_not_generalists_keep_the_files_order(tmp_path, generalist):
    store = cell_store(tmp_path, nuclei_first=True)
    card = planned_card(store, generalist)
    own = generalist.card.model_copy(update={"generalist": False})
    assert input_slots(type(generalist)(generalist.folder, own), card, store.images("train", labelled=True)) == (0, 1)
    one = card.model_copy(update={"in_channels": 1})
    assert input_slots(generalist, one, store.images("train", labelled=True)) == (0,)


def test_swapped_inputs_give_the_generalists_output_on_swapped_channels(generalist):
    two = generalist.load("cpu")
    swapped = network_from_card(generalist.card)
    swapped.load_state_dict(adapt_input(generalist.state_dict(), generalist.card, 2, slots=(1, 0)))
    swapped.eval()
    x = torch.rand(1, 2, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), two(x.flip(1)), rtol=1e-4, atol=1e-5)


def test_adapt_input_refuses_inputs_the_start_does_not_have(generalist):
    for slots in [(0, 0), (0, 2), (1, 0, 0)]:  # twice the same input, one it lacks, three for two channels
        with pytest.raises(ValueError, match="inputs"):
            adapt_input(generalist.state_dict(), generalist.card, 2, slots=slots)


def test_training_a_nuclei_first_dataset_starts_from_the_swapped_inputs_and_says_so(tmp_path, generalist):
    store = cell_store(tmp_path, nuclei_first=True)
    model = train_model(store, tmp_path / "m", TrainParams(**STILL), progress=False).model
    assert model.card.training.init == CELLS_2D and model.card.training.init_inputs == [1, 0]
    expected = adapt_input(generalist.state_dict(), generalist.card, 2, slots=(1, 0))
    for name, weights in model.state_dict().items():
        if weights.dtype.is_floating_point:
            torch.testing.assert_close(weights, expected[name], rtol=1e-5, atol=1e-6)
