"""The accuracy-work trade-off of the event-digit CNN (synfab.events.digits, synfab.demo.event_qnetwork).

Three knobs, each swept with the others at their defaults, on held-out event digits on a backend
(the golden model by default):

- `threshold`: the neurons' firing threshold (sigma-delta: a neuron sends an event only when its
  output moved by at least this much since it last sent one; 0 = exact);
- `window_ms`: the frame window: a digit's 300 ms are cut into frames of this length, each frame's
  OFF/ON counts are the input (the host sends their changes) and the class is the argmax of the
  output summed over the digit's frames;
- `contrast`: the sensor's contrast threshold (log-intensity units; the digits are made again from
  the MNIST images with it): fewer events per digit the higher it is.

For every point, per digit (per inference): accuracy, synaptic operations, events in the fabric
(the input events the host sends, the changes of the input counts, plus the events the neurons
send), the input events alone and the sensor's events.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import SynfabError

THRESHOLDS = (0, 2, 4, 8, 16, 32, 48, 64)
WINDOWS_MS = (300, 150, 100, 50, 25, 10)
CONTRASTS = (0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
KNOBS = ("threshold", "window_ms", "contrast")


def held_out_images(n: int, images=None) -> np.ndarray:
    """The first n MNIST test images (uint8 (n, 28, 28)): `images` if given, else the shipped 500."""
    if images is None:
        from ..demo import load_demo_digits
        images = load_demo_digits()[0]
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    if not 1 <= n <= len(images):
        raise SynfabError(f"trade-off sweep: {n} digits asked, {len(images)} MNIST test images available")
    return images[:n]


def run_point(tables, qnet, events_list, labels, window_ms: float = 300, threshold: int = 0,
              backend: str = "model") -> dict:
    """One point: the digits `events_list` through `tables` on `backend`."""
    from .. import api
    _, out, outputs, preds = api.run_event_digits(tables, qnet, events_list, int(round(window_ms * 1000)),
                                                  backend=backend, threshold=threshold)
    res = out["result"]
    n, t = outputs.shape[:2]
    return {"window_ms": window_ms, "threshold": threshold, "digits": int(n), "frames_per_digit": int(t),
            "accuracy": float(np.mean(preds == np.asarray(labels)[:n])),
            "synaptic_ops_per_digit": res.synaptic_ops / n, "events_per_digit": res.events_in / n,
            "sensor_events_per_digit": sum(len(e) for e in events_list) / n,
            "spikes_per_digit": float(np.sum(res.layer_spikes)) / n,
            "fabric_events_per_digit": (res.events_in + float(np.sum(res.layer_spikes))) / n}


def sweep(n: int = 500, images=None, labels=None, thresholds=THRESHOLDS, windows_ms=WINDOWS_MS,
          contrasts=CONTRASTS, backend: str = "model", fabric=None, progress: bool = False) -> dict:
    """The three sweeps on the first `n` held-out event digits (made from MNIST test images 0..n-1:
    `images`/`labels`, default the shipped 500). Returns {"digits", "defaults", "rows": [...]}, a row per
    point with "knob" and "value"."""
    from .. import api, demo
    from ..events import digits as ed
    if (images is None) != (labels is None):
        raise SynfabError("trade-off sweep: give both the MNIST test images and their labels, or neither")
    if labels is None:
        labels = demo.load_demo_digits()[1]
    imgs = held_out_images(n, images)
    labels = np.asarray(labels)[:n]
    qnet = demo.event_qnetwork()
    tables = api.compile_qnetwork(qnet, fabric or demo.event_fabric())
    default_window_ms = ed.WINDOW_US / 1000
    events = [ed.event_digit(im, i, "test").events for i, im in enumerate(imgs)]
    rows = []

    def point(knob, value, evs, **kw):
        t0 = time.perf_counter()
        row = {"knob": knob, "value": value, **run_point(tables, qnet, evs, labels, backend=backend, **kw)}
        row["wall_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        if progress:
            print(f"{knob}={value}: accuracy {row['accuracy']:.4f}, {row['synaptic_ops_per_digit']:.0f} synaptic "
                  f"ops/digit, {row['events_per_digit']:.0f} input events/digit ({row['wall_s']} s)", file=sys.stderr,
                  flush=True)

    for th in thresholds:
        point("threshold", th, events, window_ms=default_window_ms, threshold=th)
    for w in windows_ms:
        point("window_ms", w, events, window_ms=w)
    for c in contrasts:
        evs = events if c == ed.SENSOR["threshold"] else \
            [ed.event_digit(im, i, "test", threshold=c).events for i, im in enumerate(imgs)]
        point("contrast", c, evs, window_ms=default_window_ms)
    return {"digits": int(n), "backend": backend, "fabric": tables.cfg.name,
            "defaults": {"threshold": 0, "window_ms": default_window_ms, "contrast": ed.SENSOR["threshold"]},
            "rows": rows}


def table(result: dict) -> str:
    """The sweep as a Markdown table."""
    names = {"threshold": "firing threshold", "window_ms": "frame window (ms)", "contrast": "sensor contrast threshold"}
    out = ["| knob | value | accuracy | synaptic ops / digit | events / digit (input + neurons) | input events / digit "
           "| sensor events / digit |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        out.append(f"| {names[r['knob']]} | {r['value']:g} | {r['accuracy']:.3f} | {r['synaptic_ops_per_digit']:,.0f} "
                   f"| {r['fabric_events_per_digit']:,.0f} | {r['events_per_digit']:,.0f} "
                   f"| {r['sensor_events_per_digit']:,.0f} |")
    return "\n".join(out)
