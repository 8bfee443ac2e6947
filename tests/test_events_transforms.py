"""Transforms and framing on small synthetic event arrays, checked by hand and against plain loops."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from synfab.errors import SynfabError
from synfab.events import (Compose, Crop, Denoise, Downsample, Recording, RefractoryFilter, frames_by_count,
                           frames_by_time, make_events, to_histograms)


def rows(events):
    return [tuple(int(v) for v in e) for e in events[["x", "y", "t", "p"]]]


def ev(*items):
    """Events from (x, y, t, p) tuples."""
    x, y, t, p = zip(*items) if items else ((), (), (), ())
    return make_events(x, y, t, p)


# -- Crop / Downsample ----------------------------------------------------------------------------------
def test_crop_keeps_the_box_and_shifts_coordinates():
    rec = Recording(ev((1, 1, 0, 1), (2, 3, 1, 0), (5, 3, 2, 1), (4, 6, 3, 1), (2, 2, 4, 0)), 8, 8)
    out = Crop(2, 2, 3, 4)(rec)      # x 2..4, y 2..5
    assert rows(out.events) == [(0, 1, 1, 0), (0, 0, 4, 0)]
    assert out.sensor_size == (3, 4)
    with pytest.raises(SynfabError, match="exceeds the 8x8 sensor"):
        Crop(6, 0, 3, 1)(rec)
    with pytest.raises(SynfabError, match="x0, y0 >= 0"):
        Crop(-1, 0, 3, 3)


def test_downsample_by_factor_and_to_size():
    rec = Recording(ev((0, 0, 0, 1), (3, 5, 1, 0), (9, 6, 2, 1)), 10, 7)
    by2 = Downsample(factor=2)(rec)
    assert rows(by2.events) == [(0, 0, 0, 1), (1, 2, 1, 0), (4, 3, 2, 1)]
    assert by2.sensor_size == (5, 4)                         # ceil(10/2), ceil(7/2)
    to_size = Downsample(size=(4, 3))(rec)                   # x*4//10, y*3//7
    assert rows(to_size.events) == [(0, 0, 0, 1), (1, 2, 1, 0), (3, 2, 2, 1)]
    assert to_size.sensor_size == (4, 3)
    # A bare array works with a factor; a target size needs the sensor size.
    assert rows(Downsample(factor=3)(rec.events)) == [(0, 0, 0, 1), (1, 1, 1, 0), (3, 2, 2, 1)]
    with pytest.raises(SynfabError, match="Recording"):
        Downsample(size=(4, 3))(rec.events)
    with pytest.raises(SynfabError, match="exactly one"):
        Downsample()
    with pytest.raises(SynfabError, match="larger than"):
        Downsample(size=(20, 3))(rec)


# -- RefractoryFilter ------------------------------------------------------------------------------------
def test_refractory_by_hand():
    stream = ev((1, 1, 0, 1), (2, 2, 100, 1), (1, 1, 500, 0), (1, 1, 1000, 1), (2, 2, 1099, 0),
                (2, 2, 1100, 1), (1, 1, 1600, 1), (1, 1, 2100, 1))
    # Pixel (1,1): keep 0, drop 500, keep 1000 (exactly 1000 later), drop 1600, keep 2100.
    # Pixel (2,2): keep 100, drop 1099, keep 1100.
    assert rows(RefractoryFilter(1000)(stream)) == [(1, 1, 0, 1), (2, 2, 100, 1), (1, 1, 1000, 1),
                                                     (2, 2, 1100, 1), (1, 1, 2100, 1)]
    assert rows(RefractoryFilter(0)(stream)) == rows(stream)


def refractory_loop(events, us):
    last = {}
    keep = []
    for e in events:
        key = (int(e["x"]), int(e["y"]))
        if key not in last or int(e["t"]) - last[key] >= us:
            last[key] = int(e["t"])
            keep.append(tuple(int(v) for v in e[["x", "y", "t", "p"]]))
    return keep


def random_stream(draw_items):
    items = sorted(draw_items, key=lambda e: e[2])
    return ev(*items)


stream_strategy = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 3000),
                                     st.integers(0, 1)), max_size=80).map(random_stream)


@settings(max_examples=100, deadline=None)
@given(stream_strategy, st.integers(1, 1500))
def test_refractory_matches_a_plain_loop(stream, us):
    assert rows(RefractoryFilter(us)(stream)) == refractory_loop(stream, us)


# -- Denoise ----------------------------------------------------------------------------------------------
def test_denoise_by_hand():
    stream = ev((5, 5, 0, 1),      # nothing before it: dropped
                (6, 6, 100, 1),    # diagonal neighbour 100 us before: kept
                (6, 6, 150, 0),    # its own pixel does not count, but (5,5) 150 us before does: kept
                (9, 9, 200, 1),    # isolated: dropped
                (0, 0, 300, 1),    # border pixel, no neighbour: dropped
                (1, 0, 5000, 1),   # neighbour (0,0) fired 4700 us ago, window 1000: dropped
                (5, 4, 5100, 0))   # only neighbour (5,5) fired 5100 us ago: dropped ((6,6) is 2 rows away)
    assert rows(Denoise(1000)(stream)) == [(6, 6, 100, 1), (6, 6, 150, 0)]
    assert rows(Denoise(5000)(stream)) == [(6, 6, 100, 1), (6, 6, 150, 0), (1, 0, 5000, 1)]


def denoise_loop(events, us):
    keep = []
    for i, e in enumerate(events):
        x, y, t = int(e["x"]), int(e["y"]), int(e["t"])
        for f in events[:i]:
            fx, fy = int(f["x"]), int(f["y"])
            if (fx, fy) != (x, y) and abs(fx - x) <= 1 and abs(fy - y) <= 1 and t - int(f["t"]) < us:
                keep.append(tuple(int(v) for v in e[["x", "y", "t", "p"]]))
                break
    return keep


@settings(max_examples=100, deadline=None)
@given(stream_strategy, st.integers(1, 1500))
def test_denoise_matches_a_plain_loop(stream, us):
    assert rows(Denoise(us)(stream)) == denoise_loop(stream, us)


def test_denoise_needs_time_order():
    with pytest.raises(SynfabError, match="not in order"):
        Denoise(10)(ev((1, 1, 5, 1), (1, 2, 4, 1)))


# -- Compose ----------------------------------------------------------------------------------------------
def test_compose_applies_in_order_and_tracks_sensor_size():
    rec = Recording(ev((10, 10, 0, 1), (11, 10, 10, 1), (30, 30, 20, 0), (10, 10, 30, 1)), 40, 40)
    out = Compose([Crop(8, 8, 16, 16), RefractoryFilter(50), Downsample(factor=4)])(rec)
    # Crop drops (30,30); refractory drops the second (10,10); /4 maps (2,2) and (3,2) to (0,0).
    assert rows(out.events) == [(0, 0, 0, 1), (0, 0, 10, 1)]
    assert out.sensor_size == (4, 4)
    with pytest.raises(SynfabError, match="not a synfab.events transform"):
        Compose([lambda e: e])


# -- framing ----------------------------------------------------------------------------------------------
def test_frames_by_time_keeps_empty_windows():
    stream = ev((0, 0, 100, 1), (1, 0, 149, 0), (2, 0, 150, 1), (3, 0, 420, 1))
    frames = frames_by_time(stream, 50)
    assert [rows(f) for f in frames] == [
        [(0, 0, 100, 1), (1, 0, 149, 0)], [(2, 0, 150, 1)], [], [], [], [], [(3, 0, 420, 1)]]
    assert [len(f) for f in frames_by_time(stream, 100, t0=0, n_frames=6)] == [0, 3, 0, 0, 1, 0]
    assert frames_by_time(stream[:0], 50) == []
    with pytest.raises(SynfabError, match="not in order"):
        frames_by_time(stream[::-1], 50)


def test_frames_by_count():
    stream = ev(*[(i, 0, i, 1) for i in range(7)])
    assert [len(f) for f in frames_by_count(stream, 3)] == [3, 3, 1]
    assert [len(f) for f in frames_by_count(stream, 3, drop_last=True)] == [3, 3]
    assert rows(frames_by_count(stream, 3)[1]) == [(3, 0, 3, 1), (4, 0, 4, 1), (5, 0, 5, 1)]


def test_to_histograms_counts_by_polarity_and_clips():
    f0 = ev((1, 0, 0, 1), (1, 0, 1, 1), (1, 0, 2, 0), (2, 1, 3, 0))
    f1 = ev(*[(0, 1, t, 1) for t in range(300)])
    h = to_histograms([f0, f1], (3, 2))
    assert h.shape == (2, 2, 2, 3) and h.dtype == np.uint8
    expected = np.zeros((2, 2, 2, 3), np.uint8)
    expected[0, 1, 0, 1] = 2     # two ON at (x=1, y=0)
    expected[0, 0, 0, 1] = 1     # one OFF there
    expected[0, 0, 1, 2] = 1     # OFF at (2, 1)
    expected[1, 1, 1, 0] = 255   # 300 ON events saturate
    assert np.array_equal(h, expected)
    merged = to_histograms([f0, f1, f0[:0]], (3, 2), channels="merge", clip=4)
    assert merged.shape == (3, 1, 2, 3)
    assert merged[0, 0].tolist() == [[0, 3, 0], [0, 0, 1]]
    assert merged[1, 0].tolist() == [[0, 0, 0], [4, 0, 0]]
    assert not merged[2].any()


def test_to_histograms_rejects_bad_arguments():
    f = ev((5, 0, 0, 1))
    with pytest.raises(SynfabError, match="outside the 3x2 sensor"):
        to_histograms([f], (3, 2))
    with pytest.raises(SynfabError, match="channels"):
        to_histograms([f], (8, 8), channels="rgb")
    with pytest.raises(SynfabError, match="clip"):
        to_histograms([f], (8, 8), clip=300)
    with pytest.raises(SynfabError, match="EVENT_DTYPE"):
        to_histograms([np.zeros(3)], (8, 8))
