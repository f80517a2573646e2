"""Slab-wise instance labelling gives the whole-frame result of segpipe.inference.postprocess.instance_labels."""

import math

import numpy as np
import pytest
import zarr
from scipy import ndimage

from segpipe.inference.instances import (
    InstanceTiling,
    SwappedAxes,
    stream_instance_labels,
)
from segpipe.inference.postprocess import InstanceParams, instance_labels


def blobs(shape, n, seed) -> np.ndarray:
    """Float16 probabilities ``(background, object, distance)`` of touching, noisy round objects."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    dist = np.zeros(shape, np.float32)
    for centre in rng.uniform(0, 1, size=(n, len(shape))) * np.array(shape):
        radius = rng.uniform(2.5, 8)
        dist = np.maximum(dist, np.clip(1 - np.linalg.norm(grid - centre, axis=-1) / radius, 0, 1))
    dist = ndimage.gaussian_filter(dist, 1) + rng.normal(0, 0.02, shape)
    fg = np.clip(dist * 3, 0, 1)
    return np.stack([1 - fg, fg, np.clip(dist, 0, 1)]).astype(np.float16)


def run(tmp_path, probs, tiling, params, frames=()):
    ndim = probs.ndim - 1 - len(frames)
    root = zarr.open_group(str(tmp_path / "pred.zarr"), mode="a")
    stored = root.create_array("probs", data=probs, chunks=(3, *[1] * len(frames), *[16] * ndim), overwrite=True)
    out = root.create_array("out", shape=probs.shape[1:], dtype=np.uint32, chunks=(*[1] * len(frames), *[16] * ndim), overwrite=True)
    stats = stream_instance_labels(stored, out, ndim=ndim, n_classes=2, params=params, tiling=tiling, scratch=root)
    assert not [k for k in root.array_keys() if k not in ("probs", "out")]  # scratch arrays removed
    return out[...], stats


def reference(probs, params):
    return instance_labels(1.0 - probs[0].astype(np.float32), probs[2].astype(np.float32), params)


@pytest.mark.parametrize(
    "shape,n,slab,halo",
    [((130, 90), 30, 9, 12), ((36, 40), 6, 1, 12), ((130, 90), 30, 40, 3), ((40, 36, 30), 25, 7, 10)],
)
def test_slabs_give_the_whole_frame_labels(tmp_path, shape, n, slab, halo):
    probs = blobs(shape, n, seed=len(shape) + slab)
    params = InstanceParams(foreground_threshold=0.5, seed_threshold=0.5, min_size=8)
    expected = reference(probs, params)
    got, stats = run(tmp_path, probs, InstanceTiling(whole_limit=0, slab=slab, halo=halo), params)
    np.testing.assert_array_equal(got, expected)
    assert stats.objects == expected.max() > 3
    assert stats.slabs == -(-shape[0] // slab)


def test_seedless_parts_and_small_objects_match(tmp_path):
    """Low seed threshold off: every component seedless; a high min_size drops most of them."""
    probs = blobs((100, 70), 20, seed=9)
    params = InstanceParams(foreground_threshold=0.4, seed_threshold=0.99, min_size=60)
    expected = reference(probs, params)
    got, _ = run(tmp_path, probs, InstanceTiling(whole_limit=0, slab=13, halo=20), params)
    np.testing.assert_array_equal(got, expected)
    assert 0 < expected.max() < 20


def test_small_objects_on_the_frame_edge_are_held_to_their_size_in_slabs_as_whole(tmp_path):
    """Objects under min_size but not edge_min_size on the first and last rows (first and last
    slab) and on the side columns are kept, as the whole frame keeps them; the same inside are dropped."""
    fg = np.zeros((60, 40), np.float32)
    for box in ((slice(0, 2), slice(10, 13)), (slice(58, 60), slice(20, 23)), (slice(30, 33), slice(0, 2)),
                (slice(40, 43), slice(38, 40)), (slice(20, 22), slice(20, 23))):
        fg[box] = 1  # 6 pixels each; the last one inside
    probs = np.stack([1 - fg, fg, fg * 0.9]).astype(np.float16)
    params = InstanceParams(foreground_threshold=0.5, seed_threshold=0.5, min_size=8, edge_min_size=6)
    expected = reference(probs, params)
    got, stats = run(tmp_path, probs, InstanceTiling(whole_limit=0, slab=7, halo=3), params)
    np.testing.assert_array_equal(got, expected)
    assert stats.objects == expected.max() == 4 and not expected[20:22, 20:23].any()


def test_small_frames_are_labelled_whole_and_frames_separately(tmp_path):
    probs = np.stack([blobs((50, 40), 8, seed=s) for s in range(3)], axis=1)  # (3, t, y, x)
    params = InstanceParams()
    got, stats = run(tmp_path, probs, InstanceTiling(), params, frames=(3,))
    for t in range(3):
        np.testing.assert_array_equal(got[t], reference(probs[:, t], params))
    assert stats.slabs == 3 and stats.tall_components == 0


def test_components_taller_than_the_halo_are_counted(tmp_path):
    probs = blobs((120, 40), 12, seed=3)
    probs[0, :, 18:22] = 0  # a foreground bar along the slab axis joins everything
    probs[1, :, 18:22] = 1
    _, stats = run(tmp_path, probs, InstanceTiling(whole_limit=0, slab=10, halo=5), InstanceParams())
    assert stats.tall_components >= 1


def test_slabs_match_whole_frame_with_hmaxima_and_smoothing(tmp_path):
    """The h-maxima seeding with a smoothed distance map is also labelled slab by slab."""
    params = InstanceParams(seed_method="hmaxima", seed_h=0.1, smoothing=1.0, min_size=8)
    probs = blobs((130, 90), 30, seed=4)
    got, _ = run(tmp_path, probs, InstanceTiling(whole_limit=0, slab=24, halo=16), params)
    np.testing.assert_array_equal(got, reference(probs, params))


@pytest.mark.parametrize("shape,slab,halo", [((130, 90), 9, 16), ((24, 48, 40), 5, 6)])
def test_slabs_fill_holes_as_the_whole_frame(tmp_path, shape, slab, halo):
    """Dark spots punched into the objects' foreground (nucleoli) come back filled, slab by slab as whole."""
    probs = blobs(shape, 14, seed=3)
    spots = ndimage.binary_dilation(probs[2] > 0.6, iterations=1) & ~ndimage.binary_dilation(probs[2] > 0.75)
    probs[1][spots], probs[0][spots] = 0, 1  # rings of background around the objects' cores
    params = InstanceParams(foreground_threshold=0.5, seed_threshold=0.8, min_size=8)
    expected = reference(probs, params)
    got, _ = run(tmp_path, probs, InstanceTiling(whole_limit=0, slab=slab, halo=halo), params)
    np.testing.assert_array_equal(got, expected)
    assert (expected[spots] > 0).mean() > 0.5  # most of the punched pixels belong to an object again


def flow_outputs(labels: np.ndarray, seed: int) -> np.ndarray:
    """Outputs of a flow model for ``labels``: classes, a flat (uninformative) distance, no boundary,
    and the true flow with noise; on the distance alone touching objects would be one."""
    from segpipe.training.targets import centre_heat, flow_from_heat

    fg = (labels > 0).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 0.05, (labels.ndim, *labels.shape))
    flow = (flow_from_heat(centre_heat(labels), labels > 0) + 1) / 2 + noise
    return np.concatenate([np.stack([1 - fg, fg, fg * 0.5, np.zeros_like(fg)]), flow]).astype(np.float32)


def touching(shape, spacing, radius, seed) -> np.ndarray:
    """Balls (discs in 2D) on a jittered grid, ``spacing`` apart and wider than it: packed, touching objects."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    labels = np.zeros(shape, np.int32)
    cells = [range(spacing // 2, s, spacing) for s in shape]
    for number, centre in enumerate(np.array(np.meshgrid(*cells, indexing="ij")).reshape(len(shape), -1).T, start=1):
        centre = centre + rng.integers(-2, 3, len(shape))
        r = radius * rng.uniform(0.8, 1.1)
        labels[(np.sum((grid - centre.reshape(-1, *(1,) * len(shape))) ** 2, axis=0) <= r * r) & (labels == 0)] = number
    return labels


def same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label maps hold the same objects, whatever their numbers."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


@pytest.mark.parametrize(
    "shape,spacing,radius,slab,halo",
    [((200, 150), 24, 15, 40, 32), ((200, 150), 24, 15, 17, 25), ((120, 150), 24, 15, 5, 30),
     ((40, 48, 44), 14, 9, 9, 12)],
)
def test_the_flow_slab_by_slab_gives_the_whole_frame_objects(tmp_path, shape, spacing, radius, slab, halo):
    """Objects no taller than the halo on either side of their centre come out as in the whole frame."""
    labels = touching(shape, spacing, radius, seed=slab)
    outputs = flow_outputs(labels, seed=halo)
    params = InstanceParams(relief="flow", sink_size=10, min_size=30)
    expected = instance_labels(outputs[1], outputs[2], params, flow=outputs[4:])
    got, stats = run(tmp_path, outputs, InstanceTiling(whole_limit=0, slab=slab, halo=halo), params)
    assert same_objects(got, expected)
    assert stats.objects == expected.max() == got.max() >= 0.9 * labels.max()
    assert stats.slabs == -(-shape[0] // slab) and stats.tall_components == 0


def test_flow_objects_past_the_halo_are_counted_and_named(tmp_path, caplog):
    labels = touching((200, 150), 24, 15, seed=1)
    outputs = flow_outputs(labels, seed=2)
    params = InstanceParams(relief="flow", sink_size=10, min_size=30)
    with caplog.at_level("WARNING"):
        got, stats = run(tmp_path, outputs, InstanceTiling(whole_limit=0, slab=17, halo=4), params)
    assert stats.tall_components > 0 and "reach a slab window's edge" in caplog.text
    assert 0 < got.max() <= labels.max()


@pytest.mark.parametrize("shape,halo,limit", [((40, 200), 20, 2000), ((12, 96, 40), 12, 8000)])
@pytest.mark.parametrize("relief", ["distance", "flow"])
def test_frames_of_large_planes_go_in_slabs_along_their_longest_axis(tmp_path, shape, halo, limit, relief):
    """Slabs of a halo with their halos along the first axis would hold more than the limit: the
    slabs run along the longest axis, and the objects are the whole frame's, holes filled as its."""
    if relief == "flow":
        outputs = flow_outputs(touching(shape, 14 if len(shape) == 3 else 24, 9 if len(shape) == 3 else 15, seed=3), seed=4)
        params = InstanceParams(relief="flow", sink_size=10, min_size=30)
        expected = instance_labels(outputs[1], outputs[2], params, flow=outputs[4:])
    else:
        outputs = blobs(shape, 30, seed=5)
        spots = ndimage.binary_dilation(outputs[2] > 0.6, iterations=1) & ~ndimage.binary_dilation(outputs[2] > 0.75)
        outputs[1][spots], outputs[0][spots] = 0, 1  # rings of background inside the objects: holes to fill
        params = InstanceParams(foreground_threshold=0.5, seed_threshold=0.8, min_size=8)
        expected = reference(outputs, params)
    tiling = InstanceTiling(whole_limit=limit, halo=halo)
    assert 3 * halo * math.prod(shape[1:]) > limit  # the first axis's planes are too large
    got, stats = run(tmp_path, outputs, tiling, params)
    assert same_objects(got, expected) and stats.objects == expected.max() > 5
    assert relief == "distance" or stats.tall_components == 0  # every flow object inside its window
    rows = max(1, halo, limit // (math.prod(shape) // max(shape)) - 2 * halo)
    assert stats.slabs == -(-max(shape) // rows) > -(-shape[0] // rows)  # cut along the longest axis


def test_a_swapped_view_reads_and_writes_the_array_with_two_axes_exchanged():
    array = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    view = SwappedAxes(array, 1, 3)
    assert view.shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(view[(slice(None), slice(1, 3))], array.swapaxes(1, 3)[:, 1:3])
    np.testing.assert_array_equal(view[(1, slice(None), 2)], array[1, :, 2, :].T)  # integers drop their axes
    view[(0, slice(0, 2))] = -np.ones((2, 4, 3), int)
    assert (array[0, :, :, 0:2] == -1).all() and (array[0, :, :, 2:] >= 0).all() and (array[1] >= 0).all()


def test_a_resampled_grid_follows_its_axes_into_slabs_along_another_axis(tmp_path):
    """Probabilities on a grid finer along x than y (``InstanceParams.grid``, as an image resampled from the
    model's grid sets it), cut along x: each axis keeps its own steps, neighbourhoods and flow component."""
    labels = np.kron(touching((48, 50), 12, 7, seed=6), np.ones((1, 4), np.int32))  # four times as fine along x
    outputs = flow_outputs(labels, seed=7)
    params = InstanceParams(relief="flow", sink_size=40, min_size=60, grid=(1.0, 4.0))
    expected = instance_labels(outputs[1], outputs[2], params, flow=outputs[4:])
    got, stats = run(tmp_path, outputs, InstanceTiling(whole_limit=2000, halo=40), params)
    assert same_objects(got, expected) and stats.objects == expected.max() >= 0.9 * labels.max()
    assert stats.slabs > 1 and stats.tall_components == 0


def test_each_frame_of_a_time_lapse_goes_by_the_flow_in_slabs(tmp_path):
    outputs = [flow_outputs(touching((120, 90), 24, 15, seed=s), seed=s) for s in range(2)]
    params = InstanceParams(relief="flow", sink_size=10, min_size=30)
    got, stats = run(tmp_path, np.stack(outputs, axis=1), InstanceTiling(whole_limit=0, slab=20, halo=25), params, frames=(2,))
    for t, frame in enumerate(outputs):
        assert same_objects(got[t], instance_labels(frame[1], frame[2], params, flow=frame[4:]))
    assert stats.slabs == 12 and stats.objects == got[0].max() + got[1].max() > 30



def test_the_halo_grows_with_a_finer_grid(tmp_path):
    """Probabilities resampled to a grid twice as fine (``InstanceParams.grid``): objects are twice as
    tall in its pixels, so a halo counted on the model's grid covers twice the rows there, and flow
    objects within it on the model's grid come out as in the whole frame (with a halo of the fine
    grid's rows, six reached their window's edge and were cut)."""
    labels = np.kron(touching((100, 75), 24, 15, seed=8), np.ones((2, 2), np.int32))  # radius 30 on the fine grid
    outputs = flow_outputs(labels, seed=9)
    params = InstanceParams(relief="flow", sink_size=40, min_size=120, grid=(2.0, 2.0))
    expected = instance_labels(outputs[1], outputs[2], params, flow=outputs[4:])
    got, stats = run(tmp_path, outputs, InstanceTiling(whole_limit=0, slab=30, halo=20), params)
    assert same_objects(got, expected) and stats.objects == expected.max() >= 0.9 * labels.max()
    assert stats.tall_components == 0
