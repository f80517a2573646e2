import pytest
import torch

from segpipe.models import available_models, build_model, register_model
from segpipe.models.fcn import FCN


CASES = [("unet", s) for s in [(2, 1, 64, 64), (1, 1, 37, 53), (1, 1, 16, 32, 24)]]
CASES += [("fcn", s) for s in [(2, 1, 64, 64), (1, 1, 37, 53), (1, 1, 16, 32, 24), (1, 1, 13, 29, 30)]]


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_networks_keep_the_input_size(name, shape):
    """The U-Net needs 16 px per axis (four poolings); windows are never smaller. The FCN pads itself."""
    model = build_model(name, spatial_dims=len(shape) - 2, in_channels=1, out_channels=3)
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 3, *shape[2:])


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_fcn_variants_on_odd_sizes(variant):
    model = FCN(spatial_dims=2, in_channels=2, out_channels=4, variant=variant)
    with torch.no_grad():
        assert model(torch.randn(1, 2, 45, 67)).shape == (1, 4, 45, 67)


def test_unet_has_the_classic_structure():
    model = build_model("unet", spatial_dims=2, in_channels=1, out_channels=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    ups = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(pools) == 4 and all(p.kernel_size == 2 for p in pools)
    assert len(ups) == 4 and all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    assert convs[-1].kernel_size == (1, 1)
    assert sum(c.kernel_size == (3, 3) for c in convs) == 18  # two per level: 5 down + 4 up


def test_a_unet_pooled_per_axis_keeps_a_thin_stack_and_pools_as_told():
    pools = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    model = build_model("unet", spatial_dims=3, in_channels=2, out_channels=3, features=(4, 4, 4, 4, 4, 4), pools=pools)
    with torch.no_grad():
        assert model(torch.randn(1, 2, 4, 48, 32)).shape == (1, 3, 4, 48, 32)
    downs = [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.MaxPool3d)]
    ups = [m.stride for m in model.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert downs == list(pools)
    assert ups == list(reversed(pools))  # the expansive path undoes the pools, deepest first
    plain = build_model("unet", spatial_dims=3, in_channels=2, out_channels=3, features=(4, 4, 4, 4, 4, 4))
    assert model.state_dict().keys() == plain.state_dict().keys()


def test_a_unet_normalizes_each_sample_or_the_batch_as_told():
    """Instance normalization (the default, what a card without ``norm`` was trained with) gives each
    sample the same output alone or in a batch; batch normalization in training does not, and
    predicts with the statistics it kept."""
    instance = build_model("unet", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4, 4))
    batch = build_model("unet", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4, 4), norm="batch")
    assert {type(m) for m in instance.modules()} & {torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d} == {torch.nn.InstanceNorm2d}
    assert {type(m) for m in batch.modules()} & {torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d} == {torch.nn.BatchNorm2d}
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    x[1:] *= 5.0  # two brighter samples: batch statistics differ from the first sample's own
    with torch.no_grad():
        torch.testing.assert_close(instance(x)[:1], instance(x[:1]))
        assert not torch.allclose(batch(x)[:1], batch(x[:1]), atol=1e-3)  # training mode: the batch's statistics
        batch.eval()
        torch.testing.assert_close(batch(x)[:1], batch(x[:1]))  # prediction: the statistics kept in training
    with pytest.raises(ValueError, match="norm must be one of instance, batch"):
        build_model("unet", spatial_dims=2, in_channels=1, out_channels=2, norm="group")


@pytest.mark.parametrize(
    ("pools", "message"),
    [(((2, 2),) * 3, "4 levels of 2 factors"), (((2, 2, 2),) * 4, "4 levels of 2 factors"), (((3, 2),) * 4, "1 or 2")],
)
def test_pools_that_do_not_fit_the_network_are_refused(pools, message):
    with pytest.raises(ValueError, match=message):
        build_model("unet", spatial_dims=2, in_channels=1, out_channels=2, pools=pools)


def test_registry_rejects_unknown_and_duplicate_names():
    assert {"unet", "fcn"} <= set(available_models())
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", spatial_dims=2, in_channels=1, out_channels=2)
    with pytest.raises(ValueError, match="already registered"):
        register_model("unet")(lambda **kw: None)
