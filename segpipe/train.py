"""Train a network on a dataset store: patches, Dice + CE (+ distance) loss, poly LR, validation, checkpoints.

A run writes into its model folder:

- ``last.pt``: full training state after every epoch (weights, optimizer, schedule, history),
  so a killed run resumes where it stopped when started again with the same configuration;
- ``model.pt`` and ``model_card.json``: the best weights by validation score, with everything
  prediction needs (network, classes, patch size, normalization, post-processing);
- ``history.csv`` and ``fingerprint.json``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import monai
import numpy as np
import torch
from monai.data import Dataset, get_track_meta, list_data_collate, set_track_meta
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from segpipe import __version__
from segpipe.checkpoint import STATE_FILE, atomic_save, network_from_card, save_model
from segpipe.config import TrainConfig
from segpipe.infer import InferenceParams, predict_image
from segpipe.patches import ZarrPatchDataset
from segpipe.plan import fingerprint_store, plan_training
from segpipe.postprocess import InstanceParams
from segpipe.store import StoredImage, list_images, open_store
from segpipe.transforms import augmentation, normalization_spec, normalize, training_sample
from segpipe.tuning import tune_instance_params, validation_seg

log = logging.getLogger(__name__)

#: The default (microscopy) normalization; each model card records the one it was trained with.
NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}


@dataclass(frozen=True)
class TrainResult:
    """Where the model went and how it did on validation."""

    model_path: Path
    card: dict
    history: list[dict]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def load_split(store, split: str, *, spec: dict) -> list[tuple[StoredImage, np.ndarray, np.ndarray]]:
    """Normalized images and their labels for one split, in memory."""
    return [(im, normalize(np.asarray(im.image), spec), np.asarray(im.labels)) for im in list_images(store, split)]


def train_model(
    store: str | Path, model_dir: str | Path, config: TrainConfig, *, progress: bool = True
) -> TrainResult:
    """Train on the store's ``train`` split, validating on ``validation``.

    Args:
        store: Dataset store written by ingest.
        model_dir: Folder for checkpoints, card and history; a run there with the same
            configuration is resumed.
        config: Training configuration; open fields are planned from the dataset fingerprint.
        progress: Show a progress bar.

    Returns:
        The best model's path and card, and the per-epoch history.
    """
    store, model_dir = Path(store), Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    _, record = open_store(store)
    fingerprint = fingerprint_store(store)
    config = plan_training(fingerprint, config)
    (model_dir / "fingerprint.json").write_text(json.dumps(fingerprint, indent=2) + "\n")
    log.info("fingerprint: %s", json.dumps(fingerprint))
    log.info("training plan: %s", config.model_dump_json())

    device = resolve_device(config.device)
    instances = bool(record["instances"])
    n_classes = len(record["classes"])
    card = _card(record, fingerprint, config, n_classes=n_classes, instances=instances)
    set_determinism(config.seed)
    model = network_from_card(card).to(device)

    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last if record["ndim"] == 2 else torch.channels_last_3d)

    val_set = load_split(store, "validation", spec=card["normalization"])
    dataset, transform = _training_data(store, card, config, instances=instances, ndim=record["ndim"])
    optimizer = _optimizer(model, config)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    state = _resume(model_dir, card, model, optimizer)
    history: list[dict] = state["history"]
    planned_epochs: int = config.epochs
    best_score: float = state["best_score"]
    elapsed: float = state["elapsed"]

    budget = config.max_minutes * 60 if config.max_minutes else None
    clock = TrainClock(elapsed, budget)
    bar = tqdm(total=planned_epochs, initial=len(history), desc="train", unit="epoch", disable=not progress)
    epoch = len(history)
    done = bool(history) and history[-1].get("last")
    while not done:
        clock.start()
        loss = train_epoch(model, dataset, transform, optimizer, dice_ce, config, epoch, clock, n_classes, device)
        epoch_seconds = clock.stop()
        row = {"epoch": epoch + 1, "train_loss": loss, "lr": optimizer.param_groups[0]["lr"]}
        done = epoch + 1 >= planned_epochs or clock.would_overrun(epoch_seconds)
        if val_set and ((epoch + 1) % config.val_every == 0 or done):
            clock.start()
            row.update(_validate(model, val_set, card, device, instances=instances, n_classes=n_classes))
            clock.stop()
            if row["val_score"] > best_score:
                best_score = row["val_score"]
                save_model(model_dir, _cpu_state(model), {**card, "best_epoch": epoch + 1})
        elif not val_set and done:
            save_model(model_dir, _cpu_state(model), {**card, "best_epoch": epoch + 1})
        row["seconds"] = round(clock.elapsed, 2)
        if done:
            row["last"] = 1
        history.append(row)
        epoch += 1
        atomic_save(
            {
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history,
                "best_score": best_score,
                "elapsed": clock.elapsed,
                "config_key": card["config_key"],
            },
            model_dir / STATE_FILE,
        )
        _write_history(model_dir / "history.csv", history)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "last")))
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("train_loss", "val_score")})
        bar.update(1)
    bar.close()
    return _finish(model_dir, card, history, val_set, device, instances=instances, n_classes=n_classes)


def _card(record: dict, fingerprint: dict, config: TrainConfig, *, n_classes: int, instances: bool) -> dict:
    model_options = {"features": list(config.features)}
    card = {
        "dataset": record["dataset"],
        "dataset_fingerprint": record["fingerprint"],
        "model": config.model,
        "model_options": model_options,
        "spatial_dims": record["ndim"],
        "in_channels": fingerprint["channels"],
        "out_channels": n_classes + (1 if instances else 0),
        "classes": record["classes"],
        "n_classes": n_classes,
        "instances": instances,
        "patch_size": list(config.patch_size),
        "spacing": fingerprint["median_spacing"],
        "normalization": normalization_spec(config.normalization, fingerprint),
        "train_config": json.loads(config.model_dump_json()),
        "inference": InferenceParams().model_dump(),
        "software": {
            "segpipe": __version__,
            "torch": str(torch.__version__),
            "monai": str(monai.__version__),
            "python": platform.python_version(),
        },
    }
    if instances:
        card["postprocess"] = InstanceParams().model_dump()
    key_source = json.dumps({k: card[k] for k in ("dataset_fingerprint", "train_config", "in_channels")}, sort_keys=True)
    card["config_key"] = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    return card


def _training_data(store: Path, card: dict, config: TrainConfig, *, instances: bool, ndim: int):
    """The patch source: whole images in memory when they fit the limit, else patches read from zarr."""
    keys = ["image", "label", "dist"] if instances else ["image", "label"]
    images = list_images(store, "train")
    in_memory = sum(4 * (im.image.size + 3 * im.labels.size) for im in images)  # float32 image, label, target
    lazy = in_memory > config.memory_limit_gb * 2**30
    transform = augmentation(
        ndim=ndim,
        patch_size=config.patch_size,
        keys=keys,
        foreground_ratio=config.foreground_ratio,
        affine=config.affine,
        elastic=config.elastic,
        crop=not lazy,
    )
    if lazy:
        log.info("training split needs %.1f GiB in memory: reading patches from the store", in_memory / 2**30)
        dataset = ZarrPatchDataset(
            images,
            patch_size=config.patch_size,
            spec=card["normalization"],
            instances=instances,
            length=config.iterations_per_epoch * config.batch_size,
            foreground_ratio=config.foreground_ratio,
            transform=transform,
            seed=config.seed,
        )
        return dataset, transform
    spec = card["normalization"]
    samples = [
        training_sample(normalize(np.asarray(im.image), spec), np.asarray(im.labels), instances=instances, spacing=im.spacing)
        for im in images
    ]
    return Dataset(data=samples, transform=transform), transform


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.learning_rate, momentum=0.99, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def _resume(model_dir: Path, card: dict, model, optimizer) -> dict:
    fresh = {"history": [], "best_score": -math.inf, "elapsed": 0.0}
    path = model_dir / STATE_FILE
    if not path.is_file():
        return fresh
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("config_key") != card["config_key"]:
        log.warning("%s is from another configuration or dataset; starting over", path)
        return fresh
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming after epoch %d (%s)", len(state["history"]), path)
    return state


class TrainClock:
    """Training time, summed over resumed runs, and the learning-rate schedule's progress.

    With a time budget the poly schedule runs on elapsed time, so the learning rate reaches
    zero when the budget is spent however fast the machine is; without one it runs on steps,
    and a seed gives the same numbers on every run.
    """

    def __init__(self, elapsed: float, budget: float | None):
        self.elapsed = elapsed
        self.budget = budget
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def now(self) -> float:
        return self.elapsed + (time.perf_counter() - self._since if self._since is not None else 0.0)

    def stop(self) -> float:
        spent = time.perf_counter() - self._since
        self.elapsed += spent
        self._since = None
        return spent

    def would_overrun(self, epoch_seconds: float) -> bool:
        """Whether another epoch would end past the budget (half an epoch of slack)."""
        return self.budget is not None and self.elapsed + 0.5 * epoch_seconds >= self.budget

    def progress(self, step: int, total_steps: int) -> float:
        fraction = step / total_steps
        if self.budget is not None:
            fraction = max(fraction, self.now() / self.budget)
        return min(fraction, 0.999)


def _poly_lr(base: float, progress: float) -> float:
    return base * (1 - progress) ** 0.9


def train_epoch(model, dataset, transform, optimizer, dice_ce, config, epoch, clock, n_classes, device) -> float:
    """One epoch of ``config.iterations_per_epoch`` batches; returns the mean loss.

    Sampling and augmentation are re-seeded from ``config.seed + epoch``, so an epoch gives
    the same batches whether the run was interrupted before it or not.
    """
    seed = config.seed + epoch
    set_determinism(seed)
    transform.set_random_state(seed)
    generator = torch.Generator().manual_seed(seed)
    n_samples = config.iterations_per_epoch * config.batch_size
    if isinstance(dataset, ZarrPatchDataset):
        dataset.seed, dataset.length, sampler = seed, n_samples, None  # draws are indexed, already random
    else:
        sampler = RandomSampler(dataset, replacement=True, num_samples=n_samples, generator=generator)
    workers = config.num_workers if config.num_workers is not None else (4 if device.type == "cuda" else 0)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=list_data_collate,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        worker_init_fn=_seed_worker if workers else None,
    )
    model.train()
    losses = []
    total_steps = config.epochs * config.iterations_per_epoch
    use_amp = device.type == "cuda"
    with plain_tensors():
        for i, batch in enumerate(loader):
            for group in optimizer.param_groups:
                step = epoch * config.iterations_per_epoch + i
                group["lr"] = _poly_lr(config.learning_rate, clock.progress(step, total_steps))
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(image)
            logits = logits.float()
            loss = dice_ce(logits[:, :n_classes], label)
            if "dist" in batch:
                dist = batch["dist"].to(device, non_blocking=True)
                loss = loss + config.distance_weight * torch.nn.functional.mse_loss(torch.sigmoid(logits[:, n_classes:]), dist)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
            optimizer.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


@contextlib.contextmanager
def plain_tensors():
    """Augment without MONAI's metadata tracking (same samples, a third of the cost; training needs no metadata)."""
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


def _seed_worker(worker_id: int) -> None:
    """Give each loader process its own, reproducible augmentation stream."""
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_state(int(torch.initial_seed() % 2**32))


def _predict_split(model, val_set, card, device) -> list[tuple[np.ndarray, np.ndarray]]:
    model.eval()
    params = InferenceParams(**card["inference"])
    return [
        (predict_image(model, img, roi_size=card["patch_size"], n_classes=card["n_classes"], params=params, device=device), lab)
        for _, img, lab in val_set
    ]


def _validate(model, val_set, card, device, *, instances: bool, n_classes: int) -> dict:
    predictions = _predict_split(model, val_set, card, device)
    dice = _mean_dice(predictions, n_classes, instances=instances)
    row = {"val_dice": dice}
    if instances:
        row["val_seg"] = validation_seg(predictions, InstanceParams(**card["postprocess"]), n_classes)
        row["val_score"] = row["val_seg"]
    else:
        row["val_score"] = dice
    return row


def _mean_dice(predictions, n_classes: int, *, instances: bool) -> float:
    inter = np.zeros(n_classes)
    total = np.zeros(n_classes)
    for probs, labels in predictions:
        pred = np.argmax(probs[:n_classes], axis=0)
        gt = (labels > 0).astype(np.int64) if instances else labels
        for c in range(1, n_classes):
            inter[c] += np.sum((pred == c) & (gt == c))
            total[c] += np.sum(pred == c) + np.sum(gt == c)
    dice = 2 * inter[1:] / np.maximum(total[1:], 1)
    return float(np.mean(dice))


def _finish(model_dir: Path, card: dict, history, val_set, device, *, instances: bool, n_classes: int) -> TrainResult:
    from segpipe.checkpoint import load_model

    model, best_card = load_model(model_dir, device=device)
    if instances and val_set:
        predictions = _predict_split(model, val_set, best_card, device)
        params, score = tune_instance_params(predictions, n_classes=n_classes)
        best_card["postprocess"] = params.model_dump()
        best_card["validation"] = {"seg": score, "tuned_on": [im.name for im, _, _ in val_set]}
        log.info("post-processing tuned on validation: %s (SEG %.4f)", params.model_dump(), score)
    best_card["epochs_trained"] = len(history)
    best_card["train_seconds"] = history[-1]["seconds"] if history else 0.0
    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    path = save_model(model_dir, state, best_card)
    return TrainResult(path, best_card, history)


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _write_history(path: Path, history: list[dict]) -> None:
    fields = []
    for row in history:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
