"""The effect of marking what the ground truth leaves out: half the cells of every image are unannotated.

The cells all look alike; the ground truth draws half of them and leaves the others as background.
Trained with those cells marked ignored, a network learns that every cell is one; trained
without the marks, it is taught to suppress the unannotated half. Scored with the marks, the
cells it finds there are no false positives; scored without them, they are.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import yaml
from skimage.draw import disk

from segpipe.data.catalog import load_catalog
from segpipe.data.ingest import ingest_dataset
from segpipe.data.store import ImageStore
from segpipe.inference import predict_image
from segpipe.inference.normalize import NormalizationSpec, normalize
from segpipe.inference.postprocess import InstanceParams, instance_labels
from segpipe.scoring.dataset import dataset_accumulator, score_image
from segpipe.training.losses import SegmentationLoss
from segpipe.training.loop import train_model
from segpipe.training.params import TrainParams
from segpipe.training.targets import training_sample

SIZE, RADIUS = 96, 6
SPEC = NormalizationSpec(method="percentile", low=1.0, high=99.8)
NAMES = {"train": ["a", "b", "c"], "validation": ["v"], "test": ["t"]}
TRAIN = dict(
    epochs=4, max_minutes=None, iterations_per_epoch=25, batch_size=8, patch_size=(32, 32), val_every=4,
    features=(8, 16, 32, 64, 128, 8), boundary_weight=0.0, device="cpu",
)


def write_cells(folder, seed: int):
    """An image of 12 alike cells; ``gt`` draws the even ones, ``ignore`` covers the odd ones; also ``hidden``:
    the odd cells' own pixels."""
    rng = np.random.default_rng(seed)
    centres = []
    while len(centres) < 12:
        c = rng.integers(RADIUS + 2, SIZE - RADIUS - 2, 2)
        if all(np.hypot(*(c - o)) > 2 * RADIUS + 6 for o in centres):
            centres.append(c)
    image = rng.normal(100, 8, (SIZE, SIZE))
    gt = np.zeros((SIZE, SIZE), np.uint16)
    ignore = np.zeros((SIZE, SIZE), np.uint8)
    hidden = np.zeros((SIZE, SIZE), bool)
    for i, (r, c) in enumerate(centres):
        cell = disk((r, c), RADIUS, shape=gt.shape)
        image[cell] += 120
        if i % 2 == 0:
            gt[cell] = i + 1
        else:
            hidden[cell] = True
            ignore[disk((r, c), RADIUS + 3, shape=gt.shape)] = 1
    return image.astype(np.uint16), gt, ignore, hidden


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same files ingested twice: with the ignore masks, and without them."""
    folder = tmp_path_factory.mktemp("sparse")
    for sub in ("img", "lab", "ign"):
        (folder / sub).mkdir()
    hidden = {}
    for seed, name in enumerate(n for names in NAMES.values() for n in names):
        image, gt, ignore, hidden[name] = write_cells(folder, seed)
        tifffile.imwrite(folder / "img" / f"{name}.tif", image)
        tifffile.imwrite(folder / "lab" / f"{name}.tif", gt)
        tifffile.imwrite(folder / "ign" / f"{name}.tif", ignore)
    entry = {"images": "img/*.tif", "labels": "lab/*.tif", "classes": ["background", "cell"], "split": NAMES}
    catalog = {"datasets": {"marked": {**entry, "ignore_masks": "ign/*.tif"}, "unmarked": entry}}
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    out = {}
    for name in ("marked", "unmarked"):
        ingest_dataset(load_catalog(folder / "catalog.yaml").dataset(name), folder / f"{name}.zarr", progress=False)
        out[name] = ImageStore.open(folder / f"{name}.zarr")
    return out, hidden, folder


def fit_pixel_network(store: ImageStore, *, steps: int = 120) -> torch.nn.Module:
    """A tiny convolutional network fitted with the training loss to the store's training images, whole."""
    torch.manual_seed(0)
    images = store.images("train")
    sparse = any(im.ignore is not None for im in images)
    samples = [
        training_sample(normalize(np.asarray(im.image), SPEC), np.asarray(im.labels), instances=True,
                        ignore=im.ignored() if sparse else None)
        for im in images
    ]
    batch = {key: torch.as_tensor(np.stack([s[key] for s in samples])) for key in samples[0]}
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
    loss_fn = SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=0.0, distance_loss="bce")
    optimizer = torch.optim.Adam(network.parameters(), lr=0.02)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small only waits for a second thread
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(network(batch["image"]), batch, torch.device("cpu")).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return network


def segment(probs: np.ndarray) -> np.ndarray:
    return instance_labels(1.0 - probs[0], probs[2], InstanceParams(min_size=20))


def score_at_iou_half(store: ImageStore, labels: np.ndarray) -> dict:
    acc = dataset_accumulator(store.record, baseline=False)
    test = store.image("t")
    score_image(acc, "t", image=np.asarray(test.image), gt=np.asarray(test.labels), pred_instances=labels,
                pred_semantic=None, spacing=None, ignore=test.ignored())
    return acc.summary()["matching"][4]


def test_marked_cells_are_learnt_as_cells_and_not_counted_as_false_positives(stores):
    out, hidden, _ = stores
    probability, labels = {}, {}
    for name in ("marked", "unmarked"):
        network = fit_pixel_network(out[name])
        image = torch.as_tensor(normalize(np.asarray(out[name].image("t").image), SPEC))[None]
        with torch.no_grad():
            logits = network(image)[0]
        probs = torch.cat([torch.softmax(logits[:2], 0), torch.sigmoid(logits[2:])]).numpy()
        probability[name] = float(probs[1][hidden["t"]].mean())  # on the test image's unannotated cells
        labels[name] = segment(probs)
    # the cells look alike: taught that half of them are background, a network calls every cell a
    # coin toss; with those cells marked ignored, it learns they are all cells
    assert probability["marked"] > 0.9 and probability["unmarked"] < probability["marked"] - 0.2
    found = score_at_iou_half(out["marked"], labels["marked"])
    counted = score_at_iou_half(out["unmarked"], labels["marked"])
    assert (found["tp"], found["fp"], found["fn"]) == (6, 0, 0)
    assert (counted["tp"], counted["fp"], counted["fn"]) == (6, 6, 0)  # the same objects, scored without the marks


@pytest.mark.slow
def test_the_pipeline_trained_with_the_marks_finds_the_unannotated_cells(stores):
    """The same with the pipeline's U-Net, patches and augmentation (3 minutes on 2 shared CPU cores)."""
    out, hidden, folder = stores
    probability = {}
    for name in ("marked", "unmarked"):
        model = train_model(out[name], folder / f"model-{name}", TrainParams(**TRAIN), progress=False).model
        test = out[name].image("t")
        probs = predict_image(model.load("cpu"), normalize(np.asarray(test.image), model.card.normalization),
                              roi_size=model.card.patch_size, n_classes=2)
        probability[name] = float(probs[1][hidden["t"]].mean())
        if name == "marked":
            labels = instance_labels(1.0 - probs[0], probs[2], model.card.instance_params())
    assert probability["marked"] > 0.8 and probability["marked"] > probability["unmarked"] + 0.05
    assert score_at_iou_half(out["marked"], labels)["fp"] == 0
    assert score_at_iou_half(out["unmarked"], labels)["fp"] >= 5
