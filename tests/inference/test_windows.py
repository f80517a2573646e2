"""The window grid: MONAI's layout along every axis, flipped passes mirrored, band height sufficient."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from segpipe.inference.windows import (
    axis_starts,
    band_rows,
    batch_windows,
    centre_box,
    first_batch_touching,
    frame_windows,
    tta_passes,
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 90), st.integers(1, 40)), min_size=1, max_size=3), st.sampled_from([0, 0.25, 0.5, 0.8]))
def test_unflipped_grid_is_monais(axes, overlap):
    """Starts equal MONAI's on the padded image, minus the padding MONAI puts before the image."""
    shape, roi = [a for a, _ in axes], [r for _, r in axes]
    padded = [max(s, r) for s, r in zip(shape, roi)]
    # grids of up to a few thousand windows: a window of 1 at 0.8 overlap over 90^3 is 729,000 (20 s of MONAI's loops)
    assume(np.prod([(p - r) // max(int(r * (1 - overlap)), 1) + 2 for p, r in zip(padded, roi)]) <= 5000)
    interval = _get_scan_interval(padded, roi, len(shape), (overlap,) * len(shape))
    expected = sorted(
        tuple(sl.start - (p - s) // 2 for sl, p, s in zip(window, padded, shape))
        for window in dense_patch_slices(padded, roi, interval)
    )
    windows = frame_windows(shape, roi, overlap, [()])
    assert sorted(w.start for w in windows) == expected
    assert [w.start for w in windows] == sorted(expected, key=lambda s: s[0])  # stable: MONAI's order within rows


@pytest.mark.parametrize("size,roi,overlap", [(37, 16, 0.5), (10, 16, 0.5), (11, 16, 0.25), (64, 64, 0.5), (100, 7, 0.9)])
def test_flipped_axis_mirrors_the_grid_of_the_flipped_image(size, roi, overlap):
    """A window at ``u`` on the flipped padded axis covers source voxels ``size - 1 - (u - before) ...``."""
    padded = max(size, roi)
    before = (padded - size) // 2
    step = _get_scan_interval((padded,), (roi,), 1, (overlap,))
    mirrored = sorted(size + before - s[0].start - roi for s in dense_patch_slices((padded,), (roi,), step))
    assert sorted(axis_starts(size, roi, overlap, flipped=True)) == mirrored
    image = np.arange(size)
    flipped = np.pad(image[::-1], (before, padded - size - before), constant_values=-1)
    for start in axis_starts(size, roi, overlap, flipped=True):
        u = size + before - start - roi
        window = flipped[u : u + roi]
        source = np.array([image[i] if 0 <= i < size else -1 for i in range(start, start + roi)])
        np.testing.assert_array_equal(window, source[::-1])


def test_passes_are_the_flips_of_predict_image():
    assert tta_passes(3, flip_tta=True) == [(), (0,), (1,), (2,)]
    assert tta_passes(2, flip_tta=False) == [()]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 120), st.integers(1, 40), st.integers(1, 40), st.integers(1, 9),
    st.sampled_from([0, 0.25, 0.5]), st.booleans(), st.integers(0, 130),
)
def test_resume_batch_and_band_cover_every_window_still_needed(length, other, roi0, batch, overlap, tta, done):
    """Batches before the resume batch only reach done rows; the band holds each later window."""
    done = min(done, length)
    windows = frame_windows((length, other), (roi0, 8), overlap, tta_passes(2, flip_tta=tta))
    batches = batch_windows(windows, batch)
    first = first_batch_touching(batches, done, roi0)
    assert all(w.start[0] + roi0 <= done for b in batches[:first] for w in b)
    rest = [w for b in batches[first:] for w in b]
    rows = band_rows(rest, done, roi0, length)
    assert rows <= max(1, min(roi0, length))  # never more than one window tall
    low = done
    for w in rest:
        low = max(low, min(max(w.start[0], 0), length))  # rows below a window's start are handed out first
        assert min(w.start[0] + roi0, length) - low <= rows
    assert all(a.start[0] <= b.start[0] for a, b in zip(windows, windows[1:]))


def test_centre_box_holds_the_windows_at_the_model_pixel_size():
    # 2 windows of 64 pixels of 0.5 um span 64 um: 256 stored pixels of 0.25 um, centred.
    assert centre_box((1000, 300), windows=2, roi=(64, 64), spacing=(0.25, 0.25), model_spacing=(0.5, 0.5)) == (
        slice(372, 628),
        slice(22, 278),
    )
    # Coarser stored pixels: 2 x 64 x 0.5 / 3 = 21.3, rounded up; an axis shorter than that is whole.
    assert centre_box((100, 10), windows=2, roi=(64, 64), spacing=(3.0, 3.0), model_spacing=(0.5, 0.5)) == (
        slice(39, 61),
        slice(0, 10),
    )


def test_centre_box_within_a_part_of_the_frame_is_centred_on_the_part():
    # the part (100..400, 600..700): 256 pixels fit along y, centred at 250; x is the whole part (100 < 256)
    within = (slice(100, 400), slice(600, 700))
    assert centre_box((1000, 1000), windows=2, roi=(64, 64), spacing=(0.25, 0.25), model_spacing=(0.5, 0.5), within=within) == (
        slice(122, 378),
        slice(600, 700),
    )
