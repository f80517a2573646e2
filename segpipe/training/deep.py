"""Deep supervision: the U-Net's two coarser decoder levels learn the targets too, in training only.

As nnU-Net trains its U-Nets: a 1x1 convolution on the output of the decoder's second and third
levels (half and a quarter of the resolution where every axis is pooled; each axis by its own
pools where they differ) gives every output channel there, and their losses against the targets
brought to that grid count a half and a quarter of the full-resolution loss, the sum divided by
1.75 so the loss keeps its scale. The coarse levels then get a gradient of their own instead of
only what reaches them through the finer ones. The heads are not part of the saved model:
prediction uses the full-resolution output alone, and a model trained with them loads, predicts
and starts another training as any other.

Targets on the coarser grid: class labels by the first pixel of each block (nearest neighbour),
the distance map and the flow by the block's mean, the touching boundary and the unannotated
pixels by its maximum (a block with one pixel left out is left out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.layers import Conv, Pool

#: Loss weights of the decoder's second and third levels, next to 1 for the full resolution.
WEIGHTS = (0.5, 0.25)
#: Batch entries taken by the block's maximum on the coarser grid; ``label`` by its first pixel;
#: the rest of the targets (distance, flow) by the block's mean.
BY_MAXIMUM = ("boundary", "ignore")


class DeepSupervision(torch.nn.Module):
    """The heads on a MONAI ``BasicUNet``'s decoder and the loss they add (see the module docstring).

    Args:
        model: The U-Net: forward hooks on its ``upcat_2`` and ``upcat_3`` keep their outputs
            while it trains.
        pools: Its pooling factors per level and axis (``None``: 2 along every axis).
    """

    def __init__(self, model: torch.nn.Module, pools: Sequence[Sequence[int]] | None = None):
        super().__init__()
        dims = model.final_conv.weight.ndim - 2
        out = model.final_conv.out_channels
        levels = [model.upcat_2, model.upcat_3]
        widths = [level.convs.conv_1.conv.out_channels for level in levels]
        self.heads = torch.nn.ModuleList(Conv["conv", dims](width, out, kernel_size=1) for width in widths)
        pools = [[2] * dims] * 2 if pools is None else [list(level) for level in pools]
        self.factors = [tuple(pools[0]), tuple(a * b for a, b in zip(pools[0], pools[1]))]
        self._features: list[torch.Tensor | None] = [None, None]
        self._hooks = [level.register_forward_hook(self._keeper(i)) for i, level in enumerate(levels)]

    def _keeper(self, index: int) -> Callable:
        def keep(module, inputs, output):
            self._features[index] = output if module.training else None

        return keep

    def wrap(self, loss_fn: Callable) -> Callable:
        """``loss_fn`` (``(logits, batch, device) -> loss``) with the coarser levels' losses added."""

        def loss(logits: torch.Tensor, batch: dict, device: torch.device) -> torch.Tensor:
            total = loss_fn(logits, batch, device)
            for weight, head, feature, factors in zip(WEIGHTS, self.heads, self._features, self.factors):
                if feature is None:
                    raise RuntimeError("deep supervision: the network was not run in training mode before its loss")
                total = total + weight * loss_fn(head(feature.float()), coarser(batch, factors), device)
            self._features = [None, None]
            return total / (1.0 + sum(WEIGHTS))

        return loss

    def remove(self) -> None:
        """Take the hooks off the network (the heads are dropped with this object)."""
        for hook in self._hooks:
            hook.remove()


def coarser(batch: dict, factors: Sequence[int]) -> dict:
    """``batch``'s targets on the grid ``factors`` times coarser per axis (the image is left out)."""
    factors = tuple(int(f) for f in factors)
    dims = len(factors)
    out = {}
    for key, value in batch.items():
        if key == "image" or not isinstance(value, torch.Tensor) or value.ndim != dims + 2:
            continue
        if key == "label":
            out[key] = value[(slice(None), slice(None), *(slice(None, None, f) for f in factors))]
        else:
            kind = "MAX" if key in BY_MAXIMUM else "AVG"
            out[key] = Pool[kind, dims](kernel_size=factors, stride=factors)(value.float())
    return out
