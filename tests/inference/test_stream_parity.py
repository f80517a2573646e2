"""Zarr-to-zarr prediction equals MONAI ``sliding_window_inference`` on inputs that fit in memory.

Every case runs the same seeded network both ways: odd shapes, shapes smaller than the window
(MONAI pads them), several overlaps and batch sizes, both blending modes, 2D and 3D, numpy and
chunked zarr sources; test-time flips against :func:`predict_image`; frames of a 2D+t stack.
Against MONAI's own float32 loop the network runs in float32 (``amp=False``): on CPUs with AMX,
segpipe's default runs it in bfloat16 (tested in ``test_precision.py``).
"""

from functools import partial

import numpy as np
import pytest
import torch
import zarr
from monai.inferers import sliding_window_inference

from segpipe.inference import ArraySink, InferenceParams, activate, padding_mode, predict_image, stream_predict
from segpipe.inference.normalize import stream_normalization
from segpipe.models import build_model
from segpipe.inference.normalize import NormalizationSpec, normalize

from conftest import conv_net


def monai_reference(net, image: np.ndarray, roi, params: InferenceParams) -> np.ndarray:
    with torch.no_grad():
        out = sliding_window_inference(
            torch.from_numpy(image)[None],
            roi_size=roi,
            sw_batch_size=params.batch_size,
            predictor=net,
            overlap=params.overlap,
            mode=params.mode,
            padding_mode=padding_mode(image.shape[1:], roi),
        )
    return out[0].numpy()


def streamed(net, source, roi, params, *, channels=3, activation=None, normalization=None) -> tuple[np.ndarray, object]:
    lead = tuple(source.shape[1 : source.ndim - len(roi)])
    sink = ArraySink(channels, lead, source.shape[source.ndim - len(roi) :])
    stats = stream_predict(
        net, source, sink, roi_size=roi, out_channels=channels, params=params, activation=activation,
        normalization=normalization,
    )
    return sink.values, stats


CASES_2D = [((1, 37, 53), (16, 16)), ((1, 10, 50), (16, 16)), ((1, 5, 7), (16, 16)), ((2, 64, 33), (32, 16))]
CASES_3D = [((1, 9, 21, 19), (8, 8, 8)), ((2, 5, 7, 30), (8, 12, 8)), ((1, 3, 4, 5), (8, 8, 8))]


@pytest.mark.parametrize("shape,roi", CASES_2D + CASES_3D)
@pytest.mark.parametrize("overlap,batch", [(0.5, 4), (0.25, 3), (0.0, 1), (0.8, 7)])
def test_blended_outputs_equal_monai(shape, roi, overlap, batch):
    net = conv_net(len(roi), shape[0], 3)
    image = np.random.default_rng(len(shape) + shape[-1]).normal(size=shape).astype(np.float32)
    params = InferenceParams(overlap=overlap, batch_size=batch, flip_tta=False, amp=False)
    ours, stats = streamed(net, image, roi, params)
    np.testing.assert_allclose(ours, monai_reference(net, image, roi, params), rtol=0, atol=1e-5)
    assert stats.rows_written == shape[1]


@pytest.mark.parametrize("shape,roi", [CASES_2D[0], CASES_3D[1]])
def test_constant_blending_and_a_chunked_zarr_source(shape, roi, tmp_path):
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    source = zarr.create_array(str(tmp_path / "in.zarr"), shape=shape, dtype=np.float32, chunks=(1, *[3] * (len(shape) - 1)))
    source[...] = image
    net = conv_net(len(roi), shape[0], 3)
    params = InferenceParams(overlap=0.5, batch_size=2, mode="constant", flip_tta=False, amp=False)
    ours, _ = streamed(net, source, roi, params)
    np.testing.assert_allclose(ours, monai_reference(net, image, roi, params), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape,roi", [CASES_2D[0], CASES_2D[2], CASES_3D[0], CASES_3D[2]])
def test_test_time_flips_equal_predict_image(shape, roi):
    net = conv_net(len(roi), shape[0], 3)
    image = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    params = InferenceParams(overlap=0.5, batch_size=3, flip_tta=True)
    reference = predict_image(net, image, roi_size=roi, n_classes=2, params=params)
    ours, _ = streamed(net, image, roi, params, activation=partial(activate, n_classes=2))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_a_segpipe_unet_with_the_card_defaults_equals_predict_image():
    torch.manual_seed(0)
    net = build_model("unet", spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 4, 4, 4, 4)).eval()
    image = np.random.default_rng(3).normal(size=(1, 75, 61)).astype(np.float32)
    params = InferenceParams()
    reference = predict_image(net, image, roi_size=(32, 32), n_classes=2, params=params)
    ours, _ = streamed(net, image, (32, 32), params, activation=partial(activate, n_classes=2))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_frames_of_a_2d_time_lapse_are_predicted_one_by_one(net2d):
    stack = np.random.default_rng(4).normal(size=(1, 3, 30, 41)).astype(np.float32)
    params = InferenceParams(overlap=0.5, batch_size=4, flip_tta=False, amp=False)
    ours, stats = streamed(net2d, stack, (16, 16), params)
    assert ours.shape == (3, 3, 30, 41) and stats.frames == [0, 1, 2]
    for t in range(3):
        np.testing.assert_allclose(ours[:, t], monai_reference(net2d, stack[:, t], (16, 16), params), rtol=0, atol=1e-5)


def test_windows_are_normalized_as_the_in_memory_image(net2d, tmp_path):
    """A uint16 zarr image normalized window by window equals ``normalize`` of the loaded image."""
    rng = np.random.default_rng(5)
    image = rng.integers(100, 4000, size=(1, 45, 38)).astype(np.uint16)
    source = zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, dtype=np.uint16, chunks=(1, 16, 16))
    source[...] = image
    spec = NormalizationSpec(method="percentile", low=1.0, high=99.8)
    params = InferenceParams(flip_tta=False, amp=False)
    ours, _ = streamed(net2d, source, (16, 16), params, normalization=stream_normalization(source, spec))
    reference = monai_reference(net2d, normalize(image, spec), (16, 16), params)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_band_memory_does_not_grow_with_image_height(net2d):
    params = InferenceParams(overlap=0.5, batch_size=4, flip_tta=False)
    short = streamed(net2d, np.zeros((1, 64, 40), np.float32), (16, 16), params)[1]
    tall = streamed(net2d, np.zeros((1, 640, 40), np.float32), (16, 16), params)[1]
    assert tall.band_bytes == short.band_bytes
    assert tall.band_bytes == (3 + 1) * 16 * 40 * 4  # one window's height of sums and weights


class CrashingSink(ArraySink):
    """Raises after ``limit`` writes, as if the process died; the record keeps what was marked."""

    def __init__(self, *args, limit: int):
        super().__init__(*args)
        self.limit, self.writes = limit, 0

    def write(self, frame, box, values) -> None:
        if self.writes >= self.limit:
            raise KeyboardInterrupt("stopped")
        self.writes += 1
        super().write(frame, box, values)


@pytest.mark.parametrize("tta", [False, True])
def test_a_stopped_run_resumes_to_the_same_numbers(net2d, tta):
    image = np.random.default_rng(6).normal(size=(1, 2, 70, 33)).astype(np.float32)
    params = InferenceParams(overlap=0.5, batch_size=3, flip_tta=tta)
    full, full_stats = streamed(net2d, image, (16, 16), params)
    counter = CrashingSink(3, (2,), (70, 33), limit=10**6)
    stream_predict(net2d, image, counter, roi_size=(16, 16), out_channels=3, params=params)
    assert counter.writes >= 6
    sink = CrashingSink(3, (2,), (70, 33), limit=counter.writes // 2 + 1)
    with pytest.raises(KeyboardInterrupt):
        stream_predict(net2d, image, sink, roi_size=(16, 16), out_channels=3, params=params)
    stopped_at = sink.done()
    assert stopped_at[0] == 1 and 0 < stopped_at[1] < 70  # midway through the second frame
    sink.limit = 10**6
    stats = stream_predict(net2d, image, sink, roi_size=(16, 16), out_channels=3, params=params)
    np.testing.assert_array_equal(sink.values, full)
    assert stats.frames == [1] and stats.rows_written == 70 - stopped_at[1]  # the first frame is not redone
    assert stats.windows <= full_stats.windows / 2


def test_pieces_written_to_zarr_equal_the_in_memory_output(net3d, tmp_path, monkeypatch):
    """Finished rows go out in chunk-aligned tiles of the other axes; the zarr holds the same numbers."""
    from segpipe.inference import stream
    from segpipe.inference.zarr_sink import ZarrSink, prediction_chunks
    from segpipe.inference.postprocess import semantic_labels

    image = np.random.default_rng(7).normal(size=(1, 20, 37, 26)).astype(np.float32)
    params = InferenceParams(overlap=0.5, batch_size=4, flip_tta=False)
    expected, _ = streamed(net3d, image, (8, 8, 8), params, activation=partial(activate, n_classes=2))

    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="w")
    chunks = prediction_chunks((3, 20, 37, 26), ndim=3, channels=True, roi0=8, overlap=0.5, edge=8)
    probs = group.create_array("probs", shape=(3, 20, 37, 26), dtype=np.float32, chunks=chunks)
    semantic = group.create_array("semantic", shape=(20, 37, 26), dtype=np.uint8, chunks=chunks[1:])
    sink = ZarrSink(group, ndim=3, n_classes=2, probabilities=probs, semantic=semantic)
    assert chunks == (3, 8, 8, 8) and sink.align == (8, 8)
    monkeypatch.setattr(stream, "PIECE_VOXELS", 4 * 8 * 8)  # 4 rows (the step) of 8x8 tiles
    pieces = []
    original = ZarrSink.write

    def spy(self, frame, box, values):
        pieces.append(box)
        original(self, frame, box, values)

    monkeypatch.setattr(ZarrSink, "write", spy)
    stream_predict(net3d, image, sink, roi_size=(8, 8, 8), out_channels=3, params=params,
                   activation=partial(activate, n_classes=2))
    # same windows, same sums; only the batch a window lands in may differ (1-ulp float changes)
    np.testing.assert_allclose(probs[...], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(semantic[...], semantic_labels(expected[:2]))
    assert {box[1].start % 8 for box in pieces} == {box[2].start % 8 for box in pieces} == {0}
    assert len({box[1].start for box in pieces}) == 5 and len({box[2].start for box in pieces}) == 4
    assert sink.done() == (1, 0)


def test_class_map_is_semantic_labels_ties_included():
    from segpipe.inference.zarr_sink import class_map
    from segpipe.inference.postprocess import semantic_labels

    rng = np.random.default_rng(8)
    probs = rng.integers(0, 4, size=(4, 30, 20)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(class_map(probs), semantic_labels(probs))
    probs = rng.random((3, 7, 9, 11)).astype(np.float32)
    np.testing.assert_array_equal(class_map(probs), semantic_labels(probs))
    two = rng.integers(0, 3, size=(2, 40, 30)).astype(np.float32)  # the two-class shortcut, ties included
    np.testing.assert_array_equal(class_map(two), semantic_labels(two))


def test_an_image_smaller_than_the_window_is_padded_with_its_edges():
    """Too small to reflect: the window sees the edge values repeated, never zeros (as MONAI with 'replicate')."""
    assert padding_mode((13, 57), (32, 48)) == "replicate" and padding_mode((40, 57), (32, 48)) == "reflect"
    # a network that returns its input: every blended output pixel must be the image's own value,
    # which zero padding would pull towards 0 and edge replication leaves alone
    identity = torch.nn.Identity()
    image = np.full((1, 5, 7), 3.0, dtype=np.float32)
    params = InferenceParams(overlap=0.5, batch_size=2, flip_tta=False, amp=False)
    ours, _ = streamed(identity, image, (16, 16), params, channels=1)
    np.testing.assert_allclose(ours, image, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, monai_reference(identity, image, (16, 16), params), rtol=0, atol=1e-6)
