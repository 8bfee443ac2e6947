"""synfab.plots: each helper returns a Figure that shows exactly the data it was given."""
import io
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from synfab.analysis import plots
from synfab.errors import SynfabError
from synfab.events import make_events

SCHEMES = ("explicit", "loihi", "dynapcnn", "pegesu")


def _renders(fig) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")


def _result(name, values):
    """A footprint.analyze-shaped dict with hand-picked (connectivity, weights, total) per scheme."""
    return {"network": name, "neurons_per_core": 1024,
            "schemes": {s: {"connectivity_bytes": c, "weight_bytes": w, "total_bytes": t}
                        for s, (c, w, t) in zip(SCHEMES, values)}}


def _bar_heights(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def test_event_raster_places_each_event_by_time_and_pixel():
    # sensor 10 wide: pixel index = y * 10 + x; times in us from the first event
    ev = make_events(x=[1, 2, 3, 4], y=[0, 1, 2, 3], t=[1000, 3000, 5000, 9000], p=[1, 0, 1, 0])
    fig = plots.event_raster(ev, (10, 4))
    assert isinstance(fig, Figure)
    off, on = fig.axes[0].collections
    np.testing.assert_allclose(off.get_offsets(), [[2.0, 12], [8.0, 34]])
    np.testing.assert_allclose(on.get_offsets(), [[0.0, 1], [4.0, 23]])
    assert "4 events" in fig.axes[0].get_title()
    _renders(fig)


def test_event_raster_thins_long_recordings_evenly():
    ev = make_events(x=[0, 1, 2, 3, 4], y=[0] * 5, t=[0, 10, 20, 30, 40], p=[1] * 5)
    fig = plots.event_raster(ev, (5, 1), max_events=2)
    _, on = fig.axes[0].collections
    # every 3rd event: events 0 and 3
    np.testing.assert_allclose(on.get_offsets(), [[0.0, 0], [0.03, 3]])
    assert "every 3th of 5 events" in fig.axes[0].get_title()


def test_event_raster_without_events_is_an_error():
    with pytest.raises(SynfabError, match="no events"):
        plots.event_raster(make_events([], [], [], []), (4, 4))


def test_event_frames_shows_on_minus_off_per_frame():
    frames = np.zeros((3, 2, 2, 2), np.uint8)
    frames[0, 1, 0, 0] = 5          # ON
    frames[1, 0, 1, 1] = 3          # OFF
    frames[2, 1, 0, 1], frames[2, 0, 0, 1] = 4, 1
    fig = plots.event_frames(frames, max_frames=2)
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), [[5, 0], [0, 0]])
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), [[0, 0], [0, -3]])
    vmin, vmax = fig.axes[0].images[0].get_clim()
    # symmetric, at the 99th percentile of the non-zero magnitudes 5 and 3: 3 + 0.99 * (5 - 3)
    assert vmin == -vmax and vmax == pytest.approx(4.98)
    _renders(fig)


def test_event_frames_grey_for_one_channel_and_rejects_other_shapes():
    fig = plots.event_frames(np.arange(8).reshape(2, 1, 2, 2))
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), [[4, 5], [6, 7]])
    assert fig.axes[0].images[0].get_clim()[0] == 0
    with pytest.raises(SynfabError, match="expected"):
        plots.event_frames(np.zeros((2, 3, 4, 4)))


def test_digit_grid_marks_wrong_predictions_red():
    images = np.zeros((3, 1, 4, 4), np.uint8)
    fig = plots.digit_grid(images, [7, 2, 1], labels=[7, 3, 1])
    titles = [ax.title for ax in fig.axes]
    assert [t.get_text() for t in titles] == ["7 (7)", "2 (3)", "1 (1)"]
    assert [t.get_color() for t in titles] == ["black", "red", "black"]
    with pytest.raises(SynfabError, match="labels"):
        plots.digit_grid(images, [7, 2, 1], labels=[7])


def test_layer_activity_draws_counts_and_fractions():
    spikes = np.array([[10, 4], [6, 2], [0, 1]])
    fig = plots.layer_activity(spikes, ["a", "b"], neurons=[20, 4])
    counts, fractions = fig.axes
    np.testing.assert_array_equal(counts.lines[0].get_ydata(), [10, 6, 0])
    np.testing.assert_array_equal(counts.lines[1].get_ydata(), [4, 2, 1])
    np.testing.assert_allclose(fractions.lines[0].get_ydata(), [0.5, 0.3, 0.0])
    np.testing.assert_allclose(fractions.lines[1].get_ydata(), [1.0, 0.5, 0.25])
    assert [t.get_text() for t in counts.get_legend().get_texts()] == ["a", "b"]
    _renders(fig)
    assert len(plots.layer_activity(spikes, ["a", "b"]).axes) == 1


def test_layer_activity_rejects_mismatched_names_and_neurons():
    with pytest.raises(SynfabError, match="frames, 3"):
        plots.layer_activity(np.zeros((2, 2)), ["a", "b", "c"])
    with pytest.raises(SynfabError, match="positive"):
        plots.layer_activity(np.zeros((2, 2)), ["a", "b"], neurons=[3, 0])


def test_frame_bars_one_panel_per_series():
    fig = plots.frame_bars({"events": [3, 1, 2], "cycles": [100, 50, 70]})
    assert [ax.get_title() for ax in fig.axes] == ["events", "cycles"]
    assert _bar_heights(fig.axes[0]) == [3, 1, 2]
    assert _bar_heights(fig.axes[1]) == [100, 50, 70]
    with pytest.raises(SynfabError, match="one value per frame"):
        plots.frame_bars({"events": []})


def test_footprint_bars_one_bar_per_scheme_and_network_log_scale():
    a = _result("a", [(1, 2, 1000), (1, 2, 300), (1, 2, 40), (1, 2, 20)])
    b = _result("b", [(1, 2, 5e9), (1, 2, 7e8), (1, 2, 0), (1, 2, 3e6)])
    fig = plots.footprint_bars([a, b])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    # bars are drawn scheme by scheme; a zero is drawn at 1 byte on the log axis
    assert _bar_heights(ax) == [1000, 5e9, 300, 7e8, 40, 1, 20, 3e6]
    pegesu_bar = ax.patches[6]
    assert pegesu_bar.get_facecolor() == to_rgba(plots.SCHEME_COLOURS["pegesu"])
    _renders(fig)
    weights = plots.footprint_bars(a, "weight_bytes").axes[0]
    assert _bar_heights(weights) == [2, 2, 2, 2]
    with pytest.raises(SynfabError, match="measure"):
        plots.footprint_bars(a, "bytes")


def test_footprint_split_connectivity_and_weights_per_scheme():
    a = _result("a", [(500, 100, 0), (300, 50, 0), (8, 40, 0), (2, 40, 0)])
    fig = plots.footprint_split([a, a])
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "a"
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert _bar_heights(ax) == [500, 300, 8, 2, 100, 50, 40, 40]
    assert all(p.get_hatch() == "//" for p in ax.patches[4:]) and not any(p.get_hatch() for p in ax.patches[:4])
    _renders(fig)
    with pytest.raises(SynfabError, match="footprint.analyze"):
        plots.footprint_split([{"network": "x"}])


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SynfabError, match="pip install"):
        plots.frame_bars({"events": [1]})
