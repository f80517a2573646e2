"""Train a network on a dataset store: patches, Dice + CE (+ distance) loss, poly LR, validation, checkpoints.

A run writes into its model folder:

- ``last.pt``: full training state after every epoch (weights, optimizer, schedule, history),
  so a killed run resumes where it stopped when started again with the same configuration;
- ``model.pt`` and ``model_card.json``: the weights kept by validation score (OP_CSB for
  instance datasets, mean foreground Dice for class maps; the latest checkpoint within two
  standard errors of the best, :mod:`segpipe.training.selection`), with everything
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
from monai.utils import set_determinism
from torch.utils.data import DataLoader, RandomSampler

from segpipe import __version__
from segpipe.data.store import ImageStore, StoredImage
from segpipe.inference.postprocess import InstanceParams
from segpipe.errors import ModelError
from segpipe.models.card import ModelCard, TrainingRecord, extra_channels
from segpipe.models.device import resolve_device, use_cpu_threads
from segpipe.models.model import MODEL_FILE, Model, network_from_card, save_model
from segpipe.progress import Progress
from segpipe.training.augment import augmentation, with_crop_centres
from segpipe.training.channel_order import input_slots
from segpipe.training.checkpoint import load_state, save_state
from segpipe.training.deep import DeepSupervision
from segpipe.training.losses import SegmentationLoss
from segpipe.training.params import TrainParams
from segpipe.training.patches import ZarrPatchDataset
from segpipe.training.plan import fingerprint_store, normalization_spec, plan_object_size, plan_pools, plan_training
from segpipe.training.sized import SizedStore
from segpipe.training.selection import CheckpointChoice
from segpipe.training.start import adapt_input, default_start, named_start, start_config, start_problem, started_card
from segpipe.training.splits import (
    class_dice, load_image, load_split, mean_dice, nan_mean, predict_split, scorable, tuning_training_set,
)
from segpipe.training.targets import training_sample
from segpipe.training.tuning import tune_instance_params, validation_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """The trained model and the per-epoch history."""

    model: Model
    history: list[dict]


def train_model(
    store: ImageStore, model_dir: str | Path, config: TrainParams, *, init: Model | None = None, progress: bool = True
) -> TrainResult:
    """Train on the store's ``train`` split, validating on ``validation``; writes a model folder.

    Args:
        store: A labelled dataset store.
        model_dir: The model folder (checkpoints, card, history); a run there with the same
            configuration is resumed, and one that ran out of time continues with a larger budget.
        config: Training parameters; open fields are planned from the dataset fingerprint.
        init: The model to start from (``config.init`` names it; :mod:`segpipe.training.start`
            says what it lends). None: the plan's start, the shipped generalist where it fits.
        progress: Show a progress bar.

    Returns:
        The model (the weights kept by validation score) and the per-epoch history.
    """
    model_dir = Path(model_dir)
    store.require_labels("train on")
    plan = _plan(store, config, init)
    store, card, config, start = plan.store, plan.card, plan.config, plan.start
    model_dir.mkdir(parents=True, exist_ok=True)  # only once the plan holds: a refused one leaves no folder
    (model_dir / "fingerprint.json").write_text(json.dumps(plan.fingerprint, indent=2) + "\n")
    log.info("fingerprint: %s", json.dumps(plan.fingerprint))
    log.info("training plan: %s", config.model_dump_json())

    device = resolve_device(config.device)
    if device.type == "cpu":
        log.info("training on %d CPU threads", use_cpu_threads(reserved=loader_workers(config, device)))
    card, model = _network(store, card, start, config, device)
    val_set = scorable(load_split(store, "validation", card=card))
    if not store.images("validation", labelled=True):
        log.warning("%s: no validation images (the catalog's split: names none): the last epoch's weights are "
                    "kept%s; name validation images in split: to choose them on images the network does not learn",
                    store.name, " and the post-processing is tuned on training images" if card.instances else "")
    dataset, transform = _training_data(store, card, config)
    supervision = _deep_supervision(model, card, config, device)
    optimizer = _optimizer(model if supervision is None else torch.nn.ModuleList([model, supervision]), config)
    loss_fn = SegmentationLoss.for_config(config, n_classes=card.n_classes)
    if supervision is not None:
        loss_fn = supervision.wrap(loss_fn)
    state = _resume(model_dir, card, model, optimizer, supervision)
    history: list[dict] = state["history"]
    planned_epochs: int = config.epochs
    choice = CheckpointChoice(state["best_score"], state.get("best_noise", 0.0))

    budget = config.max_minutes * 60 if config.max_minutes else None
    clock = TrainClock(state["elapsed"], budget)
    ipe = config.iterations_per_epoch
    iteration = history[-1].get("iteration", len(history) * ipe) if history else 0
    bar = Progress(planned_epochs * ipe, desc="train", unit="it", done=iteration, enabled=progress,
                   time_left=(lambda: budget - clock.now()) if budget is not None else None)
    epoch = len(history)
    done = _finished(history, planned_epochs, clock)
    resumed = bool(history) and not done  # the first epoch of this run is marked in the history
    try:
        while not done:
            clock.start()
            result = train_epoch(
                model, dataset, transform, optimizer, loss_fn, config, epoch, clock, device,
                first_step=iteration, on_step=lambda loss: bar.update(1, loss=loss),
            )
            epoch_seconds = clock.stop()
            iteration += result.steps
            row = {"epoch": epoch + 1, "train_loss": result.loss, "lr": optimizer.param_groups[0]["lr"]}
            if resumed:
                row["resumed"], resumed = 1, False
            ended_by = "iterations" if epoch + 1 >= planned_epochs else "time budget" if clock.spent() else None
            done = ended_by is not None
            if val_set and ((epoch + 1) % config.val_every == 0 or done):
                clock.start()
                row.update(_validate(model, val_set, card, device))
                clock.stop()
                bar.update(0, val=row["val_score"])
                _keep_if_best(model_dir, model, card, choice, row)
            elif not val_set and done:
                save_model(model_dir, _cpu_state(model), _with_training(card, best_epoch=epoch + 1))
            row.update(seconds=round(clock.elapsed, 2), epoch_seconds=round(epoch_seconds, 2), iteration=iteration)
            if done:
                row.update(last=1, ended_by=ended_by)
            history.append(row)
            epoch += 1
            _save_progress(model_dir, model, optimizer, history, choice, clock, card, supervision)
            log.debug("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
    finally:
        bar.close()
        if supervision is not None:
            supervision.remove()
    if not (model_dir / MODEL_FILE).is_file():  # a finished run that kept none (every validation NaN, before)
        log.warning("%s: training kept no checkpoint; keeping the last checkpoint (epoch %d)", model_dir, len(history))
        save_model(model_dir, _cpu_state(model), _with_training(card, best_epoch=len(history)))
    return _finish(model_dir, history, val_set, device, store=store)


@dataclass(frozen=True)
class _Plan:
    """What a training run trains: the store it reads (rescaled to one object size where planned),
    its fingerprint, the card, the planned parameters and the model it starts from (None: random weights)."""

    store: ImageStore
    fingerprint: dict
    card: ModelCard
    config: TrainParams
    start: Model | None


def _plan(store: ImageStore, config: TrainParams, init: Model | None) -> _Plan:
    """Plan the run from the store's fingerprint: the object size, the start and the parameters it leaves open.

    Raises:
        ModelError: The start the caller named does not fit the plan.
    """
    fingerprint = fingerprint_store(store)
    init = named_start(config, init)
    if init is not None and not init.card.generalist and config.object_size is None and init.card.object_size:
        config = config.model_copy(update={"object_size": init.card.object_size})  # it saw objects of that size
    config = config.model_copy(update={"object_size": plan_object_size(fingerprint, config)})
    if config.object_size:  # every labelled image rescaled so its objects have the typical size
        store = SizedStore(store, config.object_size)
        fingerprint = fingerprint_store(store)
    start = init if init is not None else default_start(store, fingerprint, config)
    planned = plan_training(fingerprint, start_config(config, start, ndim=store.ndim, guessed=fingerprint["spacing_guessed"]))
    card = make_card(store, fingerprint, planned)
    problem = start_problem(card, start.card) if start is not None else None
    if problem and init is None:  # the shipped generalist does not fit this plan: random weights
        log.info("training: not starting from %s: %s", start.card.name, problem)
        start, planned = None, plan_training(fingerprint, config)
        card = make_card(store, fingerprint, planned)
    elif problem:
        raise ModelError(f"training: init {init.folder}: {problem}")
    elif start is not None:
        card = started_card(card, start)
    return _Plan(store, fingerprint, card, planned, start)


def _network(store: ImageStore, card: ModelCard, start: Model | None, config: TrainParams, device: torch.device):
    """The network to train, seeded, with the start's weights (its inputs matched to the store's
    channels, which the card then records); returns ``(card, network)``."""
    slots = None if start is None else input_slots(start, card, store.images("train", labelled=True), device=device)
    if slots is not None and slots != tuple(range(card.in_channels)):
        card = _with_training(card, init_inputs=list(slots))
    set_determinism(config.seed)
    model = network_from_card(card).to(device)
    if start is not None:
        model.load_state_dict(adapt_input(start.state_dict(), start.card, card.in_channels, slots=slots))
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last if card.spatial_dims == 2 else torch.channels_last_3d)
    return card, model


def _keep_if_best(model_dir: Path, model, card: ModelCard, choice: CheckpointChoice, row: dict) -> None:
    """Save the weights as the model when their validation ``row`` is kept by ``choice``."""
    epoch = row["epoch"]
    if math.isnan(row["val_score"]) and choice.best == -math.inf:  # nothing scored yet: keep the latest
        log.warning("epoch %d: validation scored NaN; keeping the last checkpoint until one scores", epoch)
        save_model(model_dir, _cpu_state(model), _with_training(card, best_epoch=epoch))
    elif choice.keeps(row["val_score"], noise=row.get("val_seg_se", 0.0)):
        save_model(model_dir, _cpu_state(model), _with_training(card, best_epoch=epoch))


def _save_progress(
    model_dir: Path, model, optimizer, history: list[dict], choice: CheckpointChoice, clock, card: ModelCard,
    supervision: DeepSupervision | None,
) -> None:
    """The full state after an epoch (``last.pt``, for resuming: the deep supervision's heads too) and ``history.csv``."""
    save_state(
        model_dir,
        {
            "state_dict": model.state_dict(),
            "deep_heads": None if supervision is None else supervision.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "best_score": choice.best,
            "best_noise": choice.noise,
            "elapsed": clock.elapsed,
            "config_key": card.training.config_key,
        },
    )
    _write_history(model_dir / "history.csv", history)


def make_card(store: ImageStore, fingerprint: dict, config: TrainParams) -> ModelCard:
    """The card of a model trained on ``store`` with ``config`` (planned), before training."""
    instances = store.instances
    n_classes = len(store.classes)
    extra = ()
    if instances:
        extra = ("distance",) + (("boundary",) if config.boundary_weight > 0 else ()) + (("flow",) if config.flow_weight else ())
    record = TrainingRecord(
        dataset=store.name, dataset_fingerprint=store.record["fingerprint"], config=config.model_dump(mode="json")
    )
    key_source = json.dumps(
        {"data": record.dataset_fingerprint, "train": config.trajectory(), "in_channels": fingerprint["channels"]},
        sort_keys=True,
    )
    record.config_key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    return ModelCard(
        name=store.name,
        network=config.network,
        network_options=network_options(config),
        spatial_dims=store.ndim,
        in_channels=fingerprint["channels"],
        out_channels=n_classes + extra_channels(extra, store.ndim),
        extra_outputs=extra,
        classes=store.classes,
        instances=instances,
        patch_size=tuple(config.patch_size),
        spacing=tuple(config.spacing),
        spacing_guessed=bool(fingerprint.get("spacing_guessed")),
        unit=store.unit,
        normalization=normalization_spec(config.normalization, fingerprint),
        postprocess=InstanceParams() if instances else None,
        training=record,
        object_size=config.object_size or None,
        software={
            "segpipe": __version__,
            "torch": str(torch.__version__),
            "monai": str(monai.__version__),
            "python": platform.python_version(),
        },
    )


def network_options(config: TrainParams) -> dict:
    """The network's options on the card: its widths, a U-Net's normalization layers when not
    instance normalization (a card without ``norm`` has them), and its pooling per axis when the patch needs it."""
    options: dict = {"features": list(config.features)}
    if config.network == "unet" and config.norm != "instance":
        options["norm"] = config.norm
    pools = plan_pools(config.patch_size, config.spacing) if config.network == "unet" else None
    if pools is not None:
        options["pools"] = [list(level) for level in pools]
    return options


def _with_training(card: ModelCard, **updates) -> ModelCard:
    return card.model_copy(update={"training": card.training.model_copy(update=updates)})


def _training_data(store: ImageStore, card: ModelCard, config: TrainParams):
    """The patch source: whole images in memory when they fit the limit, else patches read from zarr."""
    instances, boundary, flow = card.instances, "boundary" in card.extra_outputs, "flow" in card.extra_outputs
    keys = ["image", "label"]
    if instances:
        keys += ["dist"] + (["boundary"] if boundary else []) + (["heat"] if flow else [])
    images = store.images("train", labelled=True)
    sparse = any(im.ignore is not None for im in images)  # every sample then carries its unannotated pixels
    keys += ["ignore"] if sparse else []
    targets = 3 + flow  # label, distance, boundary (and heat), in float32 or int64 at most as large
    in_memory = sum(4 * (im.image.size + (targets + 1) * im.labels.size) for im in images)  # + crop centres (int32)
    lazy = in_memory > config.memory_limit_gb * 2**30
    transform = augmentation(
        ndim=card.spatial_dims,
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
            spec=card.normalization,
            instances=instances,
            boundary=boundary,
            flow=flow,
            length=config.iterations_per_epoch * config.batch_size,
            foreground_ratio=config.foreground_ratio,
            transform=transform,
            seed=config.seed,
            sparse=sparse,
            spacing=card.spacing,
        )
        return dataset, transform
    samples = [with_crop_centres(_sample(im, card, sparse=sparse, boundary=boundary, flow=flow), config.patch_size) for im in images]
    return Dataset(data=samples, transform=transform), transform


def _sample(im: StoredImage, card: ModelCard, *, sparse: bool, boundary: bool, flow: bool) -> dict:
    """One training image in memory, normalized, at the model's pixel size, with its targets; in a
    dataset with unannotated pixels, an image annotated throughout has an all-``False`` map."""
    _, image, labels, ignored = load_image(im, card)
    if sparse and ignored is None:
        ignored = np.zeros(labels.shape, bool)
    return training_sample(
        image, labels, instances=card.instances, spacing=card.spacing, boundary=boundary, flow=flow, ignore=ignored
    )


def _optimizer(model: torch.nn.Module, config: TrainParams) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.learning_rate, momentum=0.99, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def _deep_supervision(model, card: ModelCard, config: TrainParams, device: torch.device) -> DeepSupervision | None:
    """The heads on a U-Net's coarser decoder levels when ``config`` plans them, else ``None``."""
    if not config.deep_supervision or card.network != "unet":
        return None
    return DeepSupervision(model, card.network_options.get("pools")).to(device)


def _resume(model_dir: Path, card: ModelCard, model, optimizer, supervision: DeepSupervision | None) -> dict:
    state = load_state(model_dir, card.training.config_key)
    if state is None:
        return {"history": [], "best_score": -math.inf, "elapsed": 0.0}
    model.load_state_dict(state["state_dict"])
    if supervision is not None:
        supervision.load_state_dict(state["deep_heads"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming after epoch %d (%s)", len(state["history"]), model_dir)
    return state


def _finished(history: list[dict], planned_epochs: int, clock: TrainClock) -> bool:
    """Whether a resumed run has nothing left: all epochs done, or the (possibly new) budget spent."""
    return bool(history) and (len(history) >= planned_epochs or clock.spent())


class TrainClock:
    """Training time, summed over resumed runs, and the learning-rate schedule's progress.

    Without a time budget (the default) the poly schedule runs on steps, and a seed gives the
    same numbers on every run. With one, the schedule runs on whichever is further along, steps
    or elapsed time, so the learning rate reaches zero when the budget is spent.
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

    def spent(self) -> bool:
        """Whether the time budget (if any) is used up."""
        return self.budget is not None and self.now() >= self.budget

    def progress(self, step: int, total_steps: int) -> float:
        fraction = step / total_steps
        if self.budget is not None:
            fraction = max(fraction, self.now() / self.budget)
        return min(fraction, 0.999)


def _poly_lr(base: float, progress: float) -> float:
    return base * (1 - progress) ** 0.9


@dataclass(frozen=True)
class EpochResult:
    """What one epoch did: the mean loss and the steps taken (fewer when the time budget ran out)."""

    loss: float
    steps: int


def loader_workers(config: TrainParams, device: torch.device) -> int:
    """DataLoader processes: ``num_workers``, else none on the CPU (the cores train) and 4 on a GPU."""
    return config.num_workers if config.num_workers is not None else (4 if device.type == "cuda" else 0)


def train_epoch(
    model, dataset, transform, optimizer, loss_fn, config, epoch, clock, device, *, first_step=None, on_step=None
) -> EpochResult:
    """One epoch of ``config.iterations_per_epoch`` batches, or fewer when the time budget runs out.

    Sampling and augmentation are re-seeded from ``config.seed + epoch``, so an epoch gives
    the same batches whether the run was interrupted before it or not. The budget is checked
    after every step.

    Args:
        loss_fn: The loss of the network's output against a batch (:class:`SegmentationLoss`).
        first_step: Steps taken before this epoch (default ``epoch * iterations_per_epoch``).
        on_step: Called with the loss after every step.
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
    workers = loader_workers(config, device)
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
    first = epoch * config.iterations_per_epoch if first_step is None else first_step
    use_amp = device.type == "cuda"
    with plain_tensors():
        for i, batch in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = _poly_lr(config.learning_rate, clock.progress(first + i, total_steps))
            image = batch["image"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(image)
            loss = loss_fn(logits.float(), batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(optimizer)
            optimizer.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(losses[-1])
            if clock.spent():
                break
    return EpochResult(float(np.mean(losses)), len(losses))


#: Largest norm of the gradient of everything trained (the network, and deep supervision's heads).
MAX_GRADIENT_NORM = 12.0


def clip_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Scale the gradients of every parameter ``optimizer`` steps to a joint norm of at most
    :data:`MAX_GRADIENT_NORM` (with deep supervision its heads count too)."""
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(trained, MAX_GRADIENT_NORM)


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


def _validate(model, val_set, card: ModelCard, device) -> dict:
    """Score the weights on the validation split to rank checkpoints: without test-time flips
    (the final tuning and prediction use them), with the default post-processing; for instances
    also the SEG's standard error (over its objects, or its images where they differ more), the noise the ranking allows."""
    predictions = predict_split(model, val_set, card, device, flips=False)
    dice = mean_dice(predictions, card.n_classes, instances=card.instances)
    row = {"val_dice": dice}
    if card.instances:
        scores = validation_scores(predictions, card.instance_params(), card.n_classes)
        row.update({"val_seg": scores.seg, "val_seg_se": scores.seg_se, "val_det": scores.det, "val_op_csb": scores.op_csb})
        row["val_score"] = scores.op_csb
    else:
        row["val_score"] = dice
    return row


def _finish(model_dir: Path, history: list[dict], val_set, device, *, store: ImageStore) -> TrainResult:
    """Tune the post-processing of the kept weights on validation (and training images, see
    :mod:`segpipe.training.tuning`); record how training went."""
    best = Model.open(model_dir)
    card = best.card
    validation = {}
    train_set = tuning_training_set(store, card) if card.instances else []
    if card.instances and (val_set or train_set):
        network = best.load(device)
        training = predict_split(network, train_set, card, device) if train_set else None
        if val_set:
            predictions = predict_split(network, val_set, card, device)
            params, scores = tune_instance_params(predictions, n_classes=card.n_classes, training=training)
        else:  # the training images alone: better than settings no image chose
            params, scores = tune_instance_params(training, n_classes=card.n_classes)
        card = card.model_copy(update={"postprocess": params})
        validation = {
            **scores.as_dict(),
            "tuned_on": [im.name for im, _, _, _ in val_set],
            "tuned_with_training": [im.name for im, _, _, _ in train_set],
        }
        if val_set:
            log.info("post-processing tuned on validation and %d training image(s): %s (validation OP_CSB %.4f)",
                     len(train_set), params.model_dump(), scores.op_csb)
        else:
            log.info("post-processing tuned on %d training image(s), the run has no validation images: %s "
                     "(their OP_CSB %.4f, optimistic: the network learnt them)", len(train_set), params.model_dump(), scores.op_csb)
    elif val_set:
        validation = _class_scores(best, val_set, device)
    last = history[-1] if history else {}
    card = _with_training(
        card,
        epochs=len(history),
        iterations=last.get("iteration"),
        seconds=last.get("seconds", 0.0),
        ended_by=last.get("ended_by"),
        resumed_after=[int(row["epoch"]) - 1 for row in history if row.get("resumed")],
        validation=validation,
    )
    return TrainResult(save_model(model_dir, best.state_dict(), card), history)


def _class_scores(best: Model, val_set, device) -> dict:
    """A class-map model's validation scores with the kept weights, predicted as ``predict`` does
    (test-time flips): Dice per foreground class and their mean."""
    card = best.card
    dice = class_dice(predict_split(best.load(device), val_set, card, device), card.n_classes, instances=False)
    by_class = {name: None if np.isnan(d) else round(float(d), 4) for name, d in zip(card.classes[1:], dice)}
    return {"dice": round(nan_mean(dice), 4), "dice_by_class": by_class, "scored_on": [im.name for im, _, _, _ in val_set]}


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
