"""Objects from a flow output: grouping by where paths end, the channel layout, and flips undone on the flow's sign."""

import numpy as np
import pytest
import torch
from skimage.draw import ellipse

from segpipe.inference import ArraySink, InferenceParams, activate, predict_image, stream_predict
from segpipe.inference.postprocess import InstanceParams, flow_labels, instance_labels, output_maps
from segpipe.scoring import overlap
from segpipe.scoring.instances import seg_from_overlap
from segpipe.training.targets import centre_heat, flow_from_heat
from segpipe.training.tuning import candidates


def _packed_ellipses(seed=1, shape=(160, 160)):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for number, (y, x) in enumerate(np.ndindex(5, 5), start=1):
        rr, cc = ellipse(
            16 + 32 * y + rng.integers(-3, 4), 16 + 32 * x + rng.integers(-3, 4), rng.integers(12, 19), rng.integers(8, 14),
            shape=shape, rotation=rng.uniform(0, np.pi),
        )
        labels[rr, cc] = number  # later ellipses overlap earlier ones: packed, touching cells
    return labels


def test_true_flows_give_back_packed_touching_cells():
    gt = _packed_ellipses()
    flow = (flow_from_heat(centre_heat(gt), gt > 0) + 1) / 2
    params = InstanceParams(relief="flow", sink_size=10, min_size=8)
    pred = instance_labels((gt > 0).astype(np.float32), np.zeros(gt.shape, np.float32), params, flow=flow)
    seg = seg_from_overlap(overlap(gt, pred))
    assert pred.max() == len(np.unique(gt)) - 1
    assert seg.jaccard.mean() > 0.95


def test_a_mask_with_no_flow_is_one_object_per_part_and_the_flow_relief_needs_a_flow():
    mask = np.zeros((30, 30), bool)
    mask[3:10, 3:10] = mask[15:25, 15:25] = True
    still = np.full((2, 30, 30), 0.5, np.float32)  # sigmoid 0.5: no motion, every path ends where it starts
    labels = flow_labels(mask, still, sink_size=1000)  # no sink big enough: each covered part is its own object
    assert np.unique(labels[mask]).size == 2 and not labels[~mask].any()
    with pytest.raises(ValueError, match="flow output"):
        instance_labels(mask.astype(np.float32), np.zeros((30, 30), np.float32), InstanceParams(relief="flow"))


@pytest.mark.parametrize(("ndim", "extra", "boundary", "flow"), [
    (2, 1, False, False), (2, 2, True, False), (2, 3, False, True), (2, 4, True, True),
    (3, 1, False, False), (3, 2, True, False), (3, 4, False, True), (3, 5, True, True),
])
def test_output_maps_read_the_layout_from_the_channel_count(ndim, extra, boundary, flow):
    outputs = np.arange(2 + extra, dtype=np.float32).reshape(-1, *(1,) * ndim) * np.ones((1, *(3,) * ndim), np.float32)
    foreground, distance, found_boundary, found_flow = output_maps(outputs, 2)
    assert distance.flat[0] == 2 and foreground.flat[0] == 1.0
    assert (found_boundary is not None) == boundary and (not boundary or found_boundary.flat[0] == 3)
    assert (found_flow is not None) == flow
    if flow:
        assert found_flow.shape[0] == ndim and found_flow[0].flat[0] == 2 + extra - ndim


def test_the_tuning_tries_the_flow_only_for_models_with_one():
    gt = np.zeros((16, 16), np.int32)
    with_flow = [(np.zeros((5, 16, 16), np.float32), gt)]
    without = [(np.zeros((4, 16, 16), np.float32), gt)]
    assert any(p.relief == "flow" for p in candidates(with_flow, n_classes=2))
    assert {p.relief for p in candidates(without, n_classes=2)} == {"distance", "boundary"}


class SlopeNet(torch.nn.Module):
    """Logits: two classes and a distance of 0, then the image's slope along y and x (central differences)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 5, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[3, 0, 2, 1], self.conv.weight[3, 0, 0, 1] = 1.0, -1.0
            self.conv.weight[4, 0, 1, 2], self.conv.weight[4, 0, 1, 0] = 1.0, -1.0

    def forward(self, x):
        return self.conv(x)


def test_flipped_passes_keep_the_flow_pointing_the_same_way():
    """A slope flips its sign with the image: undone, the flipped passes agree with the unflipped one."""
    net = SlopeNet().eval()
    yy, xx = np.mgrid[0:40, 0:48]  # window grids symmetric under flips: the same window edges in every pass
    image = np.sin(yy / 6.0)[None] + np.cos(xx / 9.0)[None] + 0.1 * yy[None] / 40
    image = image.astype(np.float32)
    plain = InferenceParams(flip_tta=False, overlap=0.5, mode="constant")
    flipped = InferenceParams(flip_tta=True, overlap=0.5, mode="constant")
    reference = predict_image(net, image, roi_size=(16, 16), n_classes=2, params=plain, flow_channels=(3, 4))
    averaged = predict_image(net, image, roi_size=(16, 16), n_classes=2, params=flipped, flow_channels=(3, 4))
    np.testing.assert_allclose(averaged, reference, atol=1e-5)
    assert np.abs(reference[3:] - 0.5).max() > 0.05  # the flow is not flat: the test can see a sign error
    sink = ArraySink(5, (), image.shape[1:])
    stream_predict(
        net, image, sink, roi_size=(16, 16), out_channels=5, params=flipped, flow_channels=(3, 4),
        activation=lambda logits: activate(logits, n_classes=2),
    )
    np.testing.assert_allclose(sink.values, reference, atol=1e-5)


def test_true_flows_split_two_touching_balls_in_3d():
    zz, yy, xx = np.mgrid[0:20, 0:24, 0:40]
    gt = np.zeros((20, 24, 40), np.int32)
    gt[(zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 <= 81] = 1
    gt[((zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 27) ** 2 <= 81) & (gt == 0)] = 2
    flow = (flow_from_heat(centre_heat(gt), gt > 0) + 1) / 2
    assert flow.shape == (3, 20, 24, 40)
    pred = flow_labels(gt > 0, flow, sink_size=10)
    seg = seg_from_overlap(overlap(gt, pred))
    assert np.unique(pred[gt > 0]).size == 2 and seg.jaccard.min() > 0.95
