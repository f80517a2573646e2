from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage
from skimage.segmentation import expand_labels
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.inference import InferenceParams
from segpipe.models.model import network_from_card
from segpipe.models.shipped import CELLS_2D, shipped_model
from segpipe.prediction.generalist_inputs import InputSlots, choose_inputs, foreground_cover
from segpipe.training.start import adapt_input

DATA = Path(__file__).resolve().parents[2] / "data"
FIELD = "17P1_POS0006_D_1UL"  # a BBBC007 field


@pytest.fixture(scope="module")
def generalist():
    return shipped_model(CELLS_2D)


@pytest.fixture(scope="module")
def network(generalist):
    return generalist.load(torch.device("cpu"))


def whole_cells(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(nuclei, cytoplasm)`` uint8 of real BBBC007 nuclei, each grown by 8 pixels into an evenly filled cell."""
    nuclei = tifffile.imread(DATA / "bbbc007" / "images" / f"{FIELD}.tif")[:size, :size]
    cells = expand_labels(tifffile.imread(DATA / "bbbc007" / "labels" / f"{FIELD}.tif")[:size, :size], 8)
    cytoplasm = np.where(cells > 0, 120.0, 20.0) + np.random.default_rng(0).normal(0, 5, cells.shape)
    return nuclei.astype(np.uint8), cytoplasm.clip(0, 255).astype(np.uint8)


def test_input_slots_feed_each_channel_its_input_and_zeros_to_the_rest(generalist, network):
    """One channel on the first input equals the network training makes for a one-channel dataset
    (the second input's filters dropped); two channels swapped equal the network fed them swapped."""
    x = torch.rand(1, 1, 64, 64)
    one = network_from_card(generalist.card.model_copy(update={"in_channels": 1}))
    one.load_state_dict(adapt_input(generalist.state_dict(), generalist.card, 1, slots=(0,)))
    one.eval()
    with torch.no_grad():
        torch.testing.assert_close(InputSlots(network, slots=(0,), inputs=2)(x), one(x), rtol=1e-4, atol=1e-5)
        both = torch.rand(1, 2, 64, 64)
        torch.testing.assert_close(InputSlots(network, slots=(1, 0), inputs=2)(both), network(both[:, [1, 0]]))
        torch.testing.assert_close(InputSlots(network, slots=(None, 0), inputs=2)(both), InputSlots(network, slots=(0,), inputs=2)(both[:, 1:]))
    with pytest.raises(ValueError, match="distinct inputs"):
        InputSlots(network, slots=(0, 0), inputs=2)


@pytest.mark.parametrize("stray", [0, 40])
def test_a_flat_channel_feeds_no_input_and_the_other_takes_the_first(generalist, stray):
    """A channel with nothing in it (zeros, as the Cellpose dataset pads one-channel images, or a few
    stray bright pixels: its 1st and 99.8th percentiles equal) feeds no input."""
    _, cytoplasm = whole_cells()
    blank = np.zeros_like(cytoplasm)
    blank.flat[np.random.default_rng(1).choice(blank.size, stray, replace=False)] = 255
    image = np.stack([blank, cytoplasm])
    choice = choose_inputs(image, generalist.card)
    assert choice.slots == (None, 0) and choice.flat == (0,) and choice.coverage is None
    assert choose_inputs(cytoplasm[None], generalist.card).slots == (0,)


def test_a_flat_channel_is_not_blown_up_into_the_network(tmp_path):
    """Stray pixels in an otherwise empty nuclear channel: the labels are those of the cytoplasm alone
    (the stray channel fed to no input; with the nuclear input's floor of 0 its 255s would
    have reached the network as 2.5e8)."""
    _, cytoplasm = whole_cells()
    stray = np.zeros_like(cytoplasm)
    stray.flat[np.random.default_rng(1).choice(stray.size, 40, replace=False)] = 255
    tifffile.imwrite(tmp_path / "stray.tif", np.stack([cytoplasm, stray]), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "alone.tif", cytoplasm)
    for name in ("stray", "alone"):
        assert segment(str(tmp_path / f"{name}.tif"), "-o", str(tmp_path / name)).exit_code == 0
    np.testing.assert_array_equal(*(tifffile.imread(tmp_path / n / "labels" / f"{n}_labels.tif") for n in ("stray", "alone")))


@pytest.mark.parametrize(("nuclei_first", "expected"), [(False, (0, 1)), (True, (1, 0))])
def test_the_cytoplasm_feeds_the_first_input_whichever_order_the_file_has(generalist, nuclei_first, expected):
    nuclei, cytoplasm = whole_cells()
    image = np.stack([nuclei, cytoplasm] if nuclei_first else [cytoplasm, nuclei])
    choice = choose_inputs(image, generalist.card)
    assert choice.slots == expected
    wide, narrow = (1, 0) if nuclei_first else (0, 1)
    assert set(choice.coverage) == {0, 1} and choice.coverage[wide] > choice.coverage[narrow]
    # the whole field is 256 x 256, under the crop's 2 windows of 128 a side: each cover is of the field
    labels = tifffile.imread(DATA / "bbbc007" / "labels" / f"{FIELD}.tif")[:256, :256]
    assert choice.coverage[wide] == pytest.approx((expand_labels(labels, 8) > 0).mean(), abs=0.01)


def test_a_membrane_stain_covers_the_cells_it_outlines():
    """Outlines one pixel wide cover little of the field; their cells, filled, cover more than the
    nuclei inside them: a membrane channel feeds the first input."""
    yy, xx = np.mgrid[:128, :128]
    cells = np.zeros((128, 128), bool)
    nuclei = np.zeros((128, 128), bool)
    for cy, cx in [(32, 32), (32, 96), (96, 32), (96, 96)]:
        r = np.hypot(yy - cy, xx - cx)
        cells |= r < 25
        nuclei |= r < 8
    membrane = cells & ~ndimage.binary_erosion(cells)
    assert foreground_cover(membrane * 200.0 + 10) == pytest.approx(cells.mean(), abs=1e-9)
    assert foreground_cover(nuclei * 200.0 + 10) == pytest.approx(nuclei.mean(), abs=1e-9)
    assert foreground_cover(np.full((8, 8), 3.0)) == 0.0
    card = shipped_model(CELLS_2D).card
    noise = np.random.default_rng(0).normal(0, 3, (2, 128, 128))
    image = (np.stack([nuclei * 200 + 20, membrane * 200 + 20]) + noise).astype(np.uint8)
    assert choose_inputs(image, card).slots == (1, 0)


def segment(*args: str):
    return CliRunner().invoke(app, ["segment", "--model", CELLS_2D, "--no-tta", *args])


def test_segment_reads_one_channel_as_the_first_input_and_two_in_the_order_it_finds(tmp_path):
    """The generalist segments a one-channel file as the same image with a blank second channel, and
    a nuclei-first file as the cytoplasm-first one given in order with --channels."""
    nuclei, cytoplasm = whole_cells()
    tifffile.imwrite(tmp_path / "one.tif", cytoplasm)
    tifffile.imwrite(tmp_path / "blank.tif", np.stack([cytoplasm, np.zeros_like(cytoplasm)]), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "nuclei_first.tif", np.stack([nuclei, cytoplasm]), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "cyto_first.tif", np.stack([cytoplasm, nuclei]), metadata={"axes": "CYX"})
    runs = {
        "one": segment(str(tmp_path / "one.tif"), "-o", str(tmp_path / "one")),
        "blank": segment(str(tmp_path / "blank.tif"), "--channels", "0,1", "-o", str(tmp_path / "blank")),
        "nuclei_first": segment(str(tmp_path / "nuclei_first.tif"), "-o", str(tmp_path / "nuclei_first")),
        "cyto_first": segment(str(tmp_path / "cyto_first.tif"), "--channels", "0,1", "-o", str(tmp_path / "cyto_first")),
    }
    for name, result in runs.items():
        assert result.exit_code == 0, (name, result.output)
    labels = {name: tifffile.imread(tmp_path / name / "labels" / f"{name}_labels.tif") for name in runs}
    assert labels["one"].max() > 20  # the field's cells, found
    np.testing.assert_array_equal(labels["one"], labels["blank"])
    np.testing.assert_array_equal(labels["nuclei_first"], labels["cyto_first"])


def test_the_frames_of_a_time_series_share_the_order_its_first_frame_chose(tmp_path, caplog):
    """Frame 1 holds the channels the other way round from frame 0: it is still read as frame 0
    chose (the same labels as that frame alone, read in the order frame 0's choice gives), and the
    choice is made and logged once."""
    nuclei, cytoplasm = whole_cells()
    movie = np.stack([np.stack([nuclei, cytoplasm]), np.stack([cytoplasm, nuclei])])  # T C Y X
    tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack", metadata={"axes": "TCYX"})
    tifffile.imwrite(tmp_path / "frame1.tif", np.stack([nuclei, cytoplasm]), metadata={"axes": "CYX"})
    with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
        movie_run = segment(str(tmp_path / "movie.tif"), "-o", str(tmp_path / "movie"))
    alone = segment(str(tmp_path / "frame1.tif"), "--channels", "0,1", "-o", str(tmp_path / "alone"))
    assert movie_run.exit_code == 0 and alone.exit_code == 0, (movie_run.output, alone.output)
    chosen = [r.getMessage() for r in caplog.records if "feed the generalist's inputs" in r.getMessage()]
    assert len(chosen) == 1 and chosen[0].startswith("movie-t000: channels [0, 1] feed the generalist's inputs [1, 0]")
    labels = tifffile.imread(tmp_path / "movie" / "labels" / "movie_labels.tif")
    np.testing.assert_array_equal(labels[1], tifffile.imread(tmp_path / "alone" / "labels" / "frame1_labels.tif"))


def test_a_time_series_that_starts_on_noise_chooses_on_its_first_frame_of_cells(tmp_path, caplog):
    """Frame 0 of a two-channel movie (nuclei first) holds only camera noise in its nuclear channel
    and nothing in the other, frames 1 and 2 the cells: the inputs were chosen on the noise (the
    nuclear channel alone, on the cytoplasm input) and every frame got other cells than it gets
    alone; they are chosen on frame 1 now, so frame 2 gets the labels it gets alone."""
    nuclei, cytoplasm = whole_cells()
    noise = np.full((2, *nuclei.shape), 20, np.uint8)  # the cytoplasm channel dark, the nuclear one camera noise
    noise[0] = np.random.default_rng(1).normal(20, 5, nuclei.shape).clip(0, 255)
    cells = np.stack([nuclei, cytoplasm])
    tifffile.imwrite(tmp_path / "movie.tif", np.stack([noise, cells, cells]), photometric="minisblack",
                     metadata={"axes": "TCYX"})
    tifffile.imwrite(tmp_path / "frame.tif", cells, metadata={"axes": "CYX"})
    with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
        movie_run = segment(str(tmp_path / "movie.tif"), "-o", str(tmp_path / "movie"))
    alone = segment(str(tmp_path / "frame.tif"), "-o", str(tmp_path / "alone"))
    assert movie_run.exit_code == 0 and alone.exit_code == 0, (movie_run.output, alone.output)
    chosen = [r.getMessage() for r in caplog.records if "feed the generalist's inputs" in r.getMessage()]
    assert len(chosen) == 1 and chosen[0].startswith("movie-t001: channels [0, 1] feed the generalist's inputs [1, 0]"), chosen
    labels = tifffile.imread(tmp_path / "movie" / "labels" / "movie_labels.tif")
    assert labels[0].max() == 0  # the noise frame: not predicted
    np.testing.assert_array_equal(labels[2], tifffile.imread(tmp_path / "alone" / "labels" / "frame_labels.tif"))


def test_a_time_series_rerun_chooses_nothing_and_a_new_first_frame_redoes_every_frame(tmp_path, caplog):
    nuclei, cytoplasm = whole_cells()
    frame = np.stack([nuclei, cytoplasm])
    write = lambda first: tifffile.imwrite(  # noqa: E731
        tmp_path / "movie.tif", np.stack([first, frame]), photometric="minisblack", metadata={"axes": "TCYX"}
    )
    write(frame)
    assert segment(str(tmp_path / "movie.tif"), "-o", str(tmp_path / "out")).exit_code == 0

    def rerun() -> tuple[list[str], list[str]]:
        caplog.clear()
        with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
            assert segment(str(tmp_path / "movie.tif"), "-o", str(tmp_path / "out")).exit_code == 0
        messages = [r.getMessage() for r in caplog.records]
        return [m for m in messages if "feed the generalist's inputs" in m], [m for m in messages if "skipping" in m]

    chosen, skipped = rerun()
    assert chosen == [] and len(skipped) == 2  # unchanged: nothing predicted, nothing chosen
    write(frame[:, ::-1].copy())  # a new first frame: frame 1's bytes are the same, its inputs may not be
    chosen, skipped = rerun()
    assert len(chosen) == 1 and skipped == []


def test_the_frames_of_a_stored_sequence_share_one_choice_in_predict_and_in_the_flows_tasks(tmp_path, caplog):
    """``segpipe predict --model cells-2d`` on a store holding a CTC sequence: the generalist's inputs
    are chosen once, on the sequence's first frame, and the per-image tasks' cache key (the stamp
    ``prediction_stamp`` computes before predicting) is the stamp the prediction stores."""
    from segpipe.data.catalog import load_catalog
    from segpipe.data.ingest import ingest_dataset
    from segpipe.data.store import ImageStore
    from segpipe.pipeline.run_folder import RunFolder
    from segpipe.pipeline.stages import predict, prediction_stamp
    from segpipe.prediction.params import PredictParams
    from segpipe.prediction.store import PredictionStore

    _, cytoplasm = whole_cells(128)
    (tmp_path / "Fluo-Cells" / "01").mkdir(parents=True)
    for t in range(3):
        tifffile.imwrite(tmp_path / "Fluo-Cells" / "01" / f"t{t:03d}.tif", np.roll(cytoplasm, 5 * t, axis=1))
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n  cells:\n    format: ctc\n    images: Fluo-Cells/01\n    classes: [background, cell]\n"
    )
    run = RunFolder(tmp_path / "runs" / "cells")
    ingest_dataset(load_catalog(tmp_path / "catalog.yaml").dataset("cells"), run.store, progress=False)
    names = ImageStore.open(run.store).names()
    assert names == ["01-t000", "01-t001", "01-t002"]
    params = PredictParams(device="cpu", inference=InferenceParams(flip_tta=False))
    model = shipped_model(CELLS_2D).folder  # what the CLI resolves the name to
    with caplog.at_level("INFO", logger="segpipe.prediction.predict"):
        predict(run, params, split=None, model=model, progress=False)
    chosen = [r.getMessage() for r in caplog.records if "feed the generalist's inputs" in r.getMessage()]
    assert len(chosen) == 1 and chosen[0].startswith("01-t000:"), chosen
    predictions = PredictionStore.open_for_writing(run.predictions, shipped_model(CELLS_2D))
    for name in names:
        assert predictions.stamp(name) == prediction_stamp(run, name, params, model=model)
