"""Image-derived events: temporal contrast, saccades, rate coding, image frames."""
import numpy as np
import pytest

from synfab.errors import SynfabError
from synfab.events import image_frames, rate_code, saccades, temporal_contrast


def video(*levels, shape=(2, 2)):
    return np.stack([np.full(shape, v, np.uint8) for v in levels])


def test_brightening_gives_on_events_at_interpolated_times():
    events = temporal_contrast(video(50, 100, 100), threshold=0.15, frame_us=1000, offset=10.0)
    # ln((100+10)/(50+10)) = 0.606 -> 4 whole thresholds per pixel; crossing j at
    # ceil(1000 * 0.15 j / 0.606) us = 248, 495, 743, 990. The static third frame adds nothing.
    assert len(events) == 16
    assert np.all(events["p"] == 1)
    assert sorted(set(events["t"].tolist())) == [248, 495, 743, 990]
    for t in (248, 495, 743, 990):
        at_t = events[events["t"] == t]
        assert sorted(zip(at_t["x"].tolist(), at_t["y"].tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_darkening_gives_off_events_and_signs_are_per_pixel():
    frames = np.array([[[100, 50, 70]], [[50, 100, 70]]], np.uint8)     # (T=2, H=1, W=3)
    events = temporal_contrast(frames)
    for x, p in ((0, 0), (1, 1)):
        mine = events[events["x"] == x]
        assert len(mine) == 4 and np.all(mine["p"] == p)
    assert not np.any(events["x"] == 2)                                  # unchanged pixel is silent
    assert np.all(np.diff(events["t"]) >= 0)


def test_reference_level_accumulates_slow_changes():
    # +2 per frame is far below one threshold per frame, but the pixel remembers its reference level:
    # ln((I+10)/60) >= 0.15 first holds at I = 60, frame 5, so the first event is in (4000, 5000] us.
    levels = [50 + 2 * k for k in range(8)]
    events = temporal_contrast(video(*levels, shape=(1, 1)), frame_us=1000)
    assert len(events) >= 1 and np.all(events["p"] == 1)
    assert 4000 < events["t"][0] <= 5000


def test_temporal_contrast_is_deterministic_and_seeded():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(6, 8, 8), dtype=np.uint8)
    a, b = temporal_contrast(frames), temporal_contrast(frames)
    assert np.array_equal(a, b)
    s1 = temporal_contrast(frames, threshold_sigma=0.03, seed=1)
    assert np.array_equal(s1, temporal_contrast(frames, threshold_sigma=0.03, seed=1))
    assert not np.array_equal(s1, temporal_contrast(frames, threshold_sigma=0.03, seed=2))
    with pytest.raises(SynfabError, match="uint8"):
        temporal_contrast(frames.astype(np.float32))
    with pytest.raises(SynfabError, match="threshold"):
        temporal_contrast(frames, threshold=0)


def test_saccades_look_like_nmnist():
    image = np.zeros((28, 28), np.uint8)
    image[10:18, 12:16] = 255                                            # a bright bar
    rec = saccades(image, n_steps=10, amplitude=6.0, saccade_us=100_000)
    ev = rec.events
    assert rec.sensor_size == (34, 34)
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() <= 300_000
    assert 0 < np.count_nonzero(ev["p"]) < len(ev)                       # both polarities
    # Every saccade moves the bar, so each of the three 100 ms legs has events.
    legs = np.bincount(ev["t"] // 100_001, minlength=3)
    assert legs.shape == (3,) and np.all(legs > 0)
    # The bar (x 12..15, y 10..17) moves by at most 6 px right/down: nothing happens outside that sweep.
    assert ev["x"].min() >= 12 and ev["x"].max() <= 15 + 6
    assert ev["y"].min() >= 10 and ev["y"].max() <= 17 + 6
    assert np.array_equal(ev, saccades(image, n_steps=10, amplitude=6.0, saccade_us=100_000).events)


def test_saccades_of_a_black_image_are_silent():
    assert len(saccades(np.zeros((5, 5), np.uint8)).events) == 0


def test_rate_code():
    assert len(rate_code(np.zeros((4, 4), np.uint8), steps=10)) == 0
    full = rate_code(np.full((3, 2), 255, np.uint8), steps=4, step_us=500)
    assert len(full) == 3 * 2 * 4 and np.all(full["p"] == 1)
    assert sorted(set(full["t"].tolist())) == [0, 500, 1000, 1500]
    half = rate_code(np.full((20, 20), 128, np.uint8), steps=50, rng_seed=7)
    assert abs(len(half) / (20 * 20 * 50) - 128 / 255) < 0.02
    assert np.array_equal(half, rate_code(np.full((20, 20), 128, np.uint8), steps=50, rng_seed=7))
    assert not np.array_equal(half, rate_code(np.full((20, 20), 128, np.uint8), steps=50, rng_seed=8))


def test_image_frames():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    frames = image_frames(images)
    assert frames.shape == (2, 1, 3, 4) and np.array_equal(frames[:, 0], images)
    four = np.zeros((5, 2, 3, 3), np.int16)
    assert image_frames(four).shape == (5, 2, 3, 3)
    with pytest.raises(SynfabError, match="integer images"):
        image_frames(images.astype(float))
