"""Cut event streams into frames and turn frames into per-pixel count images (CNN input activations)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SynfabError
from .core import check_events, check_sorted

CHANNEL_MODES = ("polarity", "merge")


def frames_by_time(events: np.ndarray, window_us: int, t0: int | None = None,
                   n_frames: int | None = None) -> list[np.ndarray]:
    """Slices (views) of time-ordered events in windows [t0 + k*window_us, t0 + (k+1)*window_us).
    t0 defaults to the first event; the frame count defaults to enough windows to reach the last event.
    Windows without events give empty slices, so frame k always starts at t0 + k*window_us."""
    check_events(events)
    check_sorted(events, "frames_by_time")
    if window_us <= 0:
        raise SynfabError(f"frames_by_time: window {window_us} us must be > 0")
    t = events["t"]
    if t0 is None:
        if len(t) == 0:
            return [] if n_frames is None else [events[:0]] * int(n_frames)
        t0 = int(t[0])
    if n_frames is None:
        n_frames = (int(t[-1]) - t0) // window_us + 1 if len(t) and t[-1] >= t0 else 0
    edges = t0 + np.arange(int(n_frames) + 1, dtype=np.int64) * window_us
    cuts = np.searchsorted(t, edges, side="left")
    return [events[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def frames_by_count(events: np.ndarray, n: int, drop_last: bool = False) -> list[np.ndarray]:
    """Slices (views) of `n` consecutive events; the last one holds the remainder unless `drop_last`."""
    check_events(events)
    if n < 1:
        raise SynfabError(f"frames_by_count: {n} events per frame must be >= 1")
    stop = len(events) - len(events) % n if drop_last else len(events)
    return [events[i:i + n] for i in range(0, stop, n)]


def to_histograms(frames: Sequence[np.ndarray], sensor_size: tuple[int, int], channels: str = "polarity",
                  clip: int = 255) -> np.ndarray:
    """Event counts per pixel as a (T, C, H, W) uint8 array, saturating at `clip`.
    channels="polarity": C = 2, channel 0 counts OFF events (p = 0), channel 1 ON events (p = 1);
    channels="merge": C = 1, both polarities together. `sensor_size` is (width, height)."""
    if channels not in CHANNEL_MODES:
        raise SynfabError(f"to_histograms: channels={channels!r}; use one of {', '.join(CHANNEL_MODES)}")
    if len(sensor_size) != 2:
        raise SynfabError(f"to_histograms: sensor_size {tuple(sensor_size)} must be (width, height)")
    if not 1 <= clip <= 255:
        raise SynfabError(f"to_histograms: clip {clip} must be in 1..255 (uint8 output)")
    width, height = int(sensor_size[0]), int(sensor_size[1])
    n_ch = 2 if channels == "polarity" else 1
    frames = [check_events(f, f"frame {i}") for i, f in enumerate(frames)]
    out = np.zeros((len(frames), n_ch, height, width), np.uint8)
    for i, f in enumerate(frames):
        if len(f) == 0:
            continue
        if f["x"].max() >= width or f["y"].max() >= height:
            raise SynfabError(f"to_histograms: frame {i} has events at x={f['x'].max()}, y={f['y'].max()}, "
                              f"outside the {width}x{height} sensor; crop or downsample them first")
        ch = (f["p"] != 0).astype(np.int64) if n_ch == 2 else 0
        flat = (ch * height + f["y"].astype(np.int64)) * width + f["x"].astype(np.int64)
        counts = np.bincount(flat, minlength=n_ch * height * width)
        out[i] = np.minimum(counts, clip).reshape(n_ch, height, width)
    return out
