"""Plots for notebooks and reports.

Every function returns a matplotlib `Figure` built without pyplot, so nothing accumulates in
pyplot's global state; in a notebook the returned figure displays inline, elsewhere call
`fig.savefig(path)`.  matplotlib is imported on use (`pip install 'synfab[plots]'`).
"""
from __future__ import annotations

import numpy as np

from ..errors import SynfabError
from .footprint import SCHEMES

# One colour per polarity (OFF, ON) and per memory-footprint scheme, shared by all plots.
POLARITY_COLOURS = ("tab:blue", "tab:red")
SCHEME_COLOURS = {"explicit": "tab:gray", "loihi": "tab:orange", "dynapcnn": "tab:purple", "pegesu": "tab:green"}
SCHEME_LABELS = {"explicit": "explicit per synapse", "loihi": "Loihi-style", "dynapcnn": "DYNAP-CNN",
                 "pegesu": "PEG/ESU (synfab)"}


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SynfabError("synfab.plots needs matplotlib; install it with: pip install 'synfab[plots]'") from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _frame_axis(ax) -> None:
    """Frames are whole numbers: no ticks at 2.5."""
    from matplotlib.ticker import MaxNLocator
    ax.set_xlabel("frame")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return -(-n // cols), cols


# -- events ----------------------------------------------------------------------------------------
def event_raster(events: np.ndarray, sensor_size: tuple[int, int], max_events: int = 20_000,
                 title: str | None = None):
    """Events over time: x axis time (ms from the first event), y axis pixel index y*width + x,
    OFF events blue, ON events red.  Long recordings are thinned to `max_events` evenly spaced events."""
    if len(events) == 0:
        raise SynfabError("event_raster: no events to plot")
    width = int(sensor_size[0])
    step = max(1, -(-len(events) // max_events))
    shown = events[::step]
    t_ms = (shown["t"] - events["t"][0]) / 1000.0
    pixel = shown["y"].astype(np.int64) * width + shown["x"].astype(np.int64)
    fig = _figure(8, 3.5)
    ax = fig.add_subplot()
    for polarity, (colour, label) in enumerate(zip(POLARITY_COLOURS, ("OFF", "ON"))):
        mine = shown["p"] == polarity
        ax.scatter(t_ms[mine], pixel[mine], s=1, c=colour, label=label, linewidths=0)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("pixel (y * width + x)")
    thinned = f", every {step}th of {len(events):,} events" if step > 1 else f", {len(events):,} events"
    ax.set_title((title or "event raster") + thinned)
    ax.legend(loc="upper right", markerscale=8)
    fig.tight_layout()
    return fig


def event_frames(frames: np.ndarray, max_frames: int = 8, cols: int = 8, title: str | None = None):
    """Input frames (T, C, H, W) side by side: with two (polarity) channels ON - OFF counts on a
    diverging map (red ON, blue OFF), with one channel the counts in grey.  The first `max_frames`;
    colours saturate at the 99th percentile of the non-zero values."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] not in (1, 2) or len(frames) == 0:
        raise SynfabError(f"event_frames: frames have shape {frames.shape}; expected (T, 1 or 2, H, W) with T >= 1")
    shown = frames[:max_frames].astype(np.int64)
    rows, cols = _grid(len(shown), cols)
    fig = _figure(1.6 * cols, 1.8 * rows + 0.4)
    images, cmap = (shown[:, 1] - shown[:, 0], "bwr") if frames.shape[1] == 2 else (shown[:, 0], "gray")
    # The colour scale saturates at the 99th percentile of the non-zero values: a few busy pixels
    # would otherwise wash out everything else.
    busy = np.abs(images[images != 0])
    limit = max(1.0, float(np.percentile(busy, 99))) if busy.size else 1.0
    vmin, vmax = (-limit, limit) if frames.shape[1] == 2 else (0, limit)
    for t, image in enumerate(images):
        ax = fig.add_subplot(rows, cols, t + 1)
        ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"frame {t}", fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def digit_grid(images: np.ndarray, predictions, labels=None, cols: int = 8):
    """Images (N, [1,] H, W) with the predicted class above each; with `labels`, wrong ones in red."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    predictions = np.asarray(predictions)
    if images.ndim != 3 or len(images) != len(predictions) or len(images) == 0:
        raise SynfabError(f"digit_grid: {images.shape} images and {predictions.shape} predictions; "
                          f"expected (N, H, W) and (N,) with N >= 1")
    if labels is not None and len(labels) != len(predictions):
        raise SynfabError(f"digit_grid: {len(predictions)} predictions but {len(labels)} labels")
    rows, cols = _grid(len(images), cols)
    fig = _figure(1.2 * cols, 1.4 * rows)
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, cmap="gray_r", interpolation="nearest")
        if labels is None:
            ax.set_title(f"{predictions[i]}", fontsize=9)
        else:
            right = predictions[i] == labels[i]
            ax.set_title(f"{predictions[i]} ({labels[i]})", fontsize=9, color="black" if right else "red")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# -- activity ----------------------------------------------------------------------------------------
def layer_activity(layer_spikes: np.ndarray, layer_names, neurons=None, title: str | None = None):
    """Spikes per layer per frame, from (T, L) counts (FrameOutput.layer_spikes of each frame).

    With `neurons` (L,) the right panel shows the fraction of each layer's neurons that fired:
    a sigma-delta network only sends what changed, so this is its activation sparsity."""
    spikes = np.asarray(layer_spikes, dtype=np.int64)
    names = list(layer_names)
    if spikes.ndim != 2 or spikes.shape[1] != len(names) or len(spikes) == 0:
        raise SynfabError(f"layer_activity: spikes have shape {spikes.shape}; expected (frames, {len(names)})")
    panels = 1 if neurons is None else 2
    fig = _figure(5.5 * panels, 3.5)
    frames = np.arange(len(spikes))
    ax = fig.add_subplot(1, panels, 1)
    for k, name in enumerate(names):
        ax.plot(frames, spikes[:, k], marker="o", markersize=3, label=name)
    _frame_axis(ax)
    ax.set_ylabel("spikes (events sent)")
    ax.set_yscale("symlog", linthresh=1)
    ax.legend(fontsize=8)
    if neurons is not None:
        neurons = np.asarray(neurons, dtype=np.float64)
        if neurons.shape != (len(names),) or (neurons <= 0).any():
            raise SynfabError(f"layer_activity: neurons must be {len(names)} positive counts, got {neurons}")
        ax2 = fig.add_subplot(1, panels, 2)
        for k, name in enumerate(names):
            ax2.plot(frames, spikes[:, k] / neurons[k], marker="o", markersize=3, label=name)
        _frame_axis(ax2)
        ax2.set_ylabel("fraction of neurons that fired")
        ax2.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def frame_bars(series: dict, title: str | None = None):
    """One panel per entry of `series` ({name: values per frame}), a bar per frame: e.g. input
    events, synaptic operations and clock cycles of each frame of a stream."""
    if not series:
        raise SynfabError("frame_bars: give at least one series {name: values per frame}")
    values = {name: np.asarray(v, dtype=np.float64) for name, v in series.items()}
    for name, v in values.items():
        if v.ndim != 1 or len(v) == 0:
            raise SynfabError(f"frame_bars: series {name!r} has shape {v.shape}; expected one value per frame")
    fig = _figure(3.6 * len(values), 3)
    for k, (name, v) in enumerate(values.items()):
        ax = fig.add_subplot(1, len(values), k + 1)
        ax.bar(np.arange(len(v)), v, color="tab:blue")
        _frame_axis(ax)
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# -- memory footprint ----------------------------------------------------------------------------
def _check_results(results, what: str) -> list[dict]:
    results = [results] if isinstance(results, dict) else list(results)
    if not results or any("schemes" not in r for r in results):
        raise SynfabError(f"{what}: give footprint.analyze results (dicts with 'schemes')")
    return results


def footprint_bars(results, measure: str = "total_bytes", title: str | None = None):
    """Grouped bars, log scale: one group per network (footprint.analyze results), one bar per scheme,
    height `measure` ('total_bytes', 'connectivity_bytes' or 'weight_bytes')."""
    results = _check_results(results, "footprint_bars")
    if measure not in ("total_bytes", "connectivity_bytes", "weight_bytes"):
        raise SynfabError(f"footprint_bars: measure {measure!r}; use total_bytes, connectivity_bytes or weight_bytes")
    fig = _figure(max(6.0, 1.8 * len(results) + 2), 4)
    ax = fig.add_subplot()
    width = 0.8 / len(SCHEMES)
    x = np.arange(len(results))
    for i, s in enumerate(SCHEMES):
        # Log scale: an empty memory (0 bytes) is drawn at 1 byte.
        values = [max(r["schemes"][s][measure], 1.0) for r in results]
        ax.bar(x + (i - (len(SCHEMES) - 1) / 2) * width, values, width, label=SCHEME_LABELS[s],
               color=SCHEME_COLOURS[s])
    ax.set_yscale("log")
    ax.set_xticks(x, [r["network"] for r in results])
    ax.set_ylabel(measure.replace("_", " "))
    ax.set_title(title or f"memory footprint ({measure.replace('_bytes', '')}), "
                          f"{results[0]['neurons_per_core']} neurons/core")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def footprint_split(results, title: str | None = None):
    """Connectivity (addresses, routing, tables) against stored weight values, per scheme, one panel
    per network, log scale."""
    results = _check_results(results, "footprint_split")
    fig = _figure(3.2 * len(results) + 0.5, 3.8)   # first: it explains a missing matplotlib
    from matplotlib.patches import Patch
    x = np.arange(len(SCHEMES))
    for j, r in enumerate(results):
        ax = fig.add_subplot(1, len(results), j + 1)
        for i, (measure, hatch) in enumerate((("connectivity_bytes", ""), ("weight_bytes", "//"))):
            values = [max(r["schemes"][s][measure], 1.0) for s in SCHEMES]
            ax.bar(x + (i - 0.5) * 0.4, values, 0.4, color=[SCHEME_COLOURS[s] for s in SCHEMES], hatch=hatch,
                   edgecolor="black", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_xticks(x, SCHEMES, rotation=30, fontsize=8)
        ax.set_title(r["network"], fontsize=10)
        if j == 0:
            ax.set_ylabel("bytes")
            # Bar colours name the scheme; the legend tells the two measures apart by hatching.
            ax.legend(handles=[Patch(facecolor="white", edgecolor="black", label="connectivity"),
                               Patch(facecolor="white", edgecolor="black", hatch="//", label="weights")],
                      fontsize=8)
    fig.suptitle(title or "connectivity (plain) vs weights (hatched)")
    fig.tight_layout()
    return fig


# -- accuracy against work ---------------------------------------------------------------------------
TRADEOFF_KNOBS = {"threshold": ("firing threshold", "o-", "tab:blue"),
                  "window_ms": ("frame window (ms)", "s-", "tab:green"),
                  "contrast": ("sensor contrast threshold", "^-", "tab:red")}


def _short_number(value: float, _pos=None) -> str:
    """1500 -> '1.5k', 2000000 -> '2M'."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:g}{unit}"
    return f"{value:g}"


def tradeoff(result: dict, title: str | None = None):
    """Accuracy against synaptic operations (left) and events in the fabric (right: input events plus
    the neurons' events) per inference, one line per swept knob, each point labelled with its value and
    the shared default point starred: the result of synfab.analysis.tradeoff.sweep."""
    rows = result.get("rows") if isinstance(result, dict) else None
    if not rows:
        raise SynfabError("tradeoff: expected a sweep result with rows (synfab.analysis.tradeoff.sweep)")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    defaults = result.get("defaults", {})
    # The axis covers the useful range; a point far below it (a threshold that silences the network)
    # sits on the bottom edge as a triangle with its accuracy written beside it.
    useful = [100 * r["accuracy"] for r in rows if r["accuracy"] >= 0.8] or [100 * r["accuracy"] for r in rows]
    bottom = float(np.floor(min(useful) - 1))
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in zip(axes, ("synaptic_ops_per_digit", "fabric_events_per_digit"),
                              ("synaptic operations per digit", "events per digit (input + neurons)")):
        for knob, (name, style, colour) in TRADEOFF_KNOBS.items():
            mine = [r for r in rows if r["knob"] == knob]
            if not mine:
                continue
            xs = [r[key] for r in mine]
            ys = [max(100 * r["accuracy"], bottom) for r in mine]
            ax.plot(xs, ys, style, color=colour, label=name, markersize=5)
            below = 0
            for r, xv, yv in zip(mine, xs, ys):
                if r["value"] == defaults.get(knob):
                    ax.plot([xv], [yv], "*", color="black", markersize=12, zorder=5)
                    continue
                text, lift = f"{r['value']:g}", 3
                if 100 * r["accuracy"] < bottom:      # stacked, so that neighbours' labels do not overlap
                    ax.plot([xv], [yv], "v", color=colour, markersize=8, zorder=5)
                    text += f" ({100 * r['accuracy']:.0f}%)"
                    lift, below = 3 + 10 * below, below + 1
                ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(4, lift), fontsize=7, color=colour)
        ax.set_xscale("log")
        # Labelled ticks at 1, 2 and 5 x 10^k, written 200k, 1M, ...; no minor labels (they overlap).
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(bottom, 100.2)
        ax.set_xlabel(label + " (log)")
        ax.grid(alpha=0.3, which="both")
    axes[0].plot([], [], "*", color="black", markersize=10, label="defaults")
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or f"accuracy against work: {result.get('digits', '?')} held-out event digits "
                          f"({result.get('backend', 'model')} backend)")
    fig.tight_layout()
    return fig
