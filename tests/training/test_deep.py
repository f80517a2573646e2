"""Deep supervision: targets on the coarser grids, the loss it adds, and models saved without its heads."""

import pytest
import torch

from segpipe.models.unet import unet
from segpipe.training.deep import WEIGHTS, DeepSupervision, coarser
from segpipe.training.losses import SegmentationLoss
from segpipe.training.loop import MAX_GRADIENT_NORM, clip_gradients

CPU = torch.device("cpu")


def test_targets_on_a_coarser_grid_by_first_pixel_mean_and_maximum():
    label = torch.tensor([[[[1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [1, 1, 0, 1]]]])
    dist = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    boundary = torch.zeros(1, 1, 4, 4)
    boundary[0, 0, 3, 3] = 1.0
    out = coarser({"image": torch.zeros(1, 2, 4, 4), "label": label, "dist": dist, "boundary": boundary}, (2, 2))
    assert "image" not in out
    assert out["label"].tolist() == [[[[1, 0], [1, 0]]]]  # each block's first pixel
    assert out["dist"].tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]  # (0 + 1 + 4 + 5) / 4, ...
    assert out["boundary"].tolist() == [[[[0.0, 0.0], [0.0, 1.0]]]]  # one pixel marks its block


def test_an_axis_pooled_less_is_brought_down_less():
    dist = torch.arange(2 * 8, dtype=torch.float32).reshape(1, 1, 2, 8)
    out = coarser({"dist": dist, "label": torch.zeros(1, 1, 2, 8, dtype=torch.long)}, (1, 4))
    assert out["dist"].shape == (1, 1, 2, 2) and out["label"].shape == (1, 1, 2, 2)
    assert out["dist"][0, 0, 1].tolist() == [9.5, 13.5]  # (8 + 9 + 10 + 11) / 4, (12 + ... + 15) / 4


def test_the_heads_grids_follow_the_pools():
    net = unet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4, 4),
               pools=[[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]])
    supervision = DeepSupervision(net, [[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]])
    assert supervision.factors == [(1, 2, 2), (2, 4, 4)]
    net.train()
    net(torch.zeros(1, 1, 8, 32, 32))
    assert [tuple(f.shape[2:]) for f in supervision._features] == [(8, 16, 16), (4, 8, 8)]


def test_the_loss_adds_the_coarser_levels_at_a_half_and_a_quarter():
    torch.manual_seed(0)
    net = unet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 4, 4, 4, 4))
    supervision = DeepSupervision(net)
    plain = SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=0.0, distance_loss="bce")
    batch = {"label": (torch.rand(2, 1, 32, 32) > 0.5).long(), "dist": torch.rand(2, 1, 32, 32)}
    net.train()
    logits = net(torch.rand(2, 1, 32, 32))
    half, quarter = (head(f) for head, f in zip(supervision.heads, supervision._features))
    by_hand = (plain(logits, batch, CPU) + 0.5 * plain(half, coarser(batch, (2, 2)), CPU)
               + 0.25 * plain(quarter, coarser(batch, (4, 4)), CPU)) / 1.75
    assert WEIGHTS == (0.5, 0.25)
    assert supervision.wrap(plain)(logits, batch, CPU).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_the_heads_learn_and_the_network_keeps_no_trace_of_them():
    torch.manual_seed(0)
    net = unet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 4, 4, 4, 4))
    keys = set(net.state_dict())
    supervision = DeepSupervision(net)
    loss_fn = supervision.wrap(SegmentationLoss(n_classes=2, distance_weight=1.0, boundary_weight=0.0, distance_loss="bce"))
    net.train()
    batch = {"label": (torch.rand(2, 1, 32, 32) > 0.5).long(), "dist": torch.rand(2, 1, 32, 32)}
    loss_fn(net(torch.rand(2, 1, 32, 32)), batch, CPU).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in supervision.heads.parameters())
    assert set(net.state_dict()) == keys
    net.eval()
    net(torch.rand(1, 1, 32, 32))
    assert supervision._features == [None, None]  # prediction keeps nothing
    supervision.remove()
    net.train()
    net(torch.rand(1, 1, 32, 32))
    assert supervision._features == [None, None]


def test_the_gradient_clip_counts_the_heads():
    net = unet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 4, 4, 4, 4))
    supervision = DeepSupervision(net)
    optimizer = torch.optim.AdamW(torch.nn.ModuleList([net, supervision]).parameters())
    everything = list(net.parameters()) + list(supervision.parameters())
    for p in everything:
        p.grad = torch.full_like(p, 100.0)
    clip_gradients(optimizer)
    # every element 100 before: the joint norm is 100 sqrt(n), so each becomes 12 / sqrt(n), heads included
    n = sum(p.numel() for p in everything)
    assert supervision.heads[1].weight.grad.flatten()[0].item() == pytest.approx(MAX_GRADIENT_NORM / n**0.5, rel=1e-5)
    assert net.final_conv.weight.grad.flatten()[0].item() == pytest.approx(MAX_GRADIENT_NORM / n**0.5, rel=1e-5)
