"""The training loss: Dice + cross-entropy on the classes, plus the distance, boundary and flow terms.

For datasets whose ground truth leaves areas unannotated (a batch with an ``ignore`` entry,
1 = not annotated), every term is taken over the annotated pixels only, so nothing the
annotators left out is learnt as background:

* Dice: probabilities and one-hot targets are zeroed on ignored pixels before MONAI's
  :class:`~monai.losses.DiceLoss` sums them (nnU-Net's treatment of its ``ignore`` label);
* cross-entropy, the distance map's loss (binary cross-entropy against its soft targets in
  [0, 1], or the squared error of its sigmoid), the boundary's binary cross-entropy and the
  flow's: means over the annotated pixels.

The flow's channels (one per spatial axis, last) learn each unit vector component ``f`` as a
sigmoid against ``(f + 1) / 2``, binary cross-entropy, so that every output is a sigmoid and
background (no flow) is 0.5.

Without ignored pixels the terms are MONAI's :class:`~monai.losses.DiceCELoss` and the plain
means, exactly as when nothing is ignored.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

from segpipe.training.params import DistanceLoss, TrainParams


class SegmentationLoss:
    """Weighted sum of the loss terms for a batch (see the module docstring).

    Args:
        n_classes: Class channels at the front of the network's output; a distance channel
            follows, then a boundary channel, then the flow's channels, when the batch has those targets.
        distance_weight: Weight of the distance map's loss.
        boundary_weight: Weight of the boundary's binary cross-entropy.
        flow_weight: Weight of the flow's binary cross-entropy (summed over its axes).
        distance_loss: ``bce``: binary cross-entropy, whose gradient on a logit is
            ``sigmoid - target``, so a centre predicted as border keeps learning; ``mse``: the
            squared error of the sigmoid, gradient ``2 (p - t) p (1 - p)``, which vanishes there.
    """

    def __init__(
        self, *, n_classes: int, distance_weight: float, boundary_weight: float, distance_loss: DistanceLoss,
        flow_weight: float = 0.0,
    ):
        if distance_loss not in get_args(DistanceLoss):
            raise ValueError(f"distance_loss: {distance_loss!r} is not one of {', '.join(get_args(DistanceLoss))}")
        self.n_classes = n_classes
        self.distance_loss = distance_loss
        self.distance_weight = distance_weight
        self.boundary_weight = boundary_weight
        self.flow_weight = flow_weight
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        self.dice = DiceLoss()

    @classmethod
    def for_config(cls, config: TrainParams, *, n_classes: int) -> SegmentationLoss:
        """The loss a planned ``config`` (:func:`segpipe.training.plan.plan_training`) asks for.

        Raises:
            ValueError: ``config`` leaves the distance loss or the flow's weight open (it was not planned).
        """
        if config.distance_loss is None or config.flow_weight is None:
            raise ValueError("the training config is not planned: distance_loss or flow_weight is open")
        return cls(
            n_classes=n_classes, distance_weight=config.distance_weight, boundary_weight=config.boundary_weight,
            distance_loss=config.distance_loss, flow_weight=config.flow_weight,
        )

    def __call__(self, logits: torch.Tensor, batch: dict, device: torch.device) -> torch.Tensor:
        """The loss of ``logits`` (float32, ``(B, channels, *spatial)``) against ``batch``'s targets."""
        n = self.n_classes
        label = batch["label"].to(device, non_blocking=True)
        ignore = batch.get("ignore")
        valid = None if ignore is None else 1.0 - ignore.to(device, non_blocking=True).float()
        if valid is None:
            loss = self.dice_ce(logits[:, :n], label)
        else:
            loss = self.masked_dice_ce(logits[:, :n], label, valid)
        if "dist" in batch:
            dist = batch["dist"].to(device, non_blocking=True)
            if self.distance_loss == "bce":
                error = F.binary_cross_entropy_with_logits(logits[:, n : n + 1], dist, reduction="none")
            else:
                error = (torch.sigmoid(logits[:, n : n + 1]) - dist) ** 2
            loss = loss + self.distance_weight * _mean(error, valid)
        if "boundary" in batch:
            edge = batch["boundary"].to(device, non_blocking=True)
            bce = F.binary_cross_entropy_with_logits(logits[:, n + 1 : n + 2], edge, reduction="none")
            loss = loss + self.boundary_weight * _mean(bce, valid)
        if "flow" in batch:
            flow = batch["flow"].to(device, non_blocking=True)
            axes = flow.shape[1]
            bce = F.binary_cross_entropy_with_logits(logits[:, -axes:], (flow + 1) / 2, reduction="none")
            loss = loss + self.flow_weight * _mean(bce.sum(dim=1, keepdim=True), valid)
        return loss

    def masked_dice_ce(self, logits: torch.Tensor, label: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Dice + cross-entropy over the pixels where ``valid`` is 1 (``label`` and ``valid``: ``(B, 1, *spatial)``)."""
        target = label[:, 0].long()
        onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        dice = self.dice(torch.softmax(logits, 1) * valid, onehot * valid)
        ce = F.cross_entropy(logits, target, reduction="none").unsqueeze(1)
        return dice + _mean(ce, valid)


def _mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (``(B, 1, *spatial)``), over the pixels where ``valid`` is 1 when given."""
    if valid is None:
        return values.mean()
    return (values * valid).sum() / valid.sum().clamp_min(1.0)
