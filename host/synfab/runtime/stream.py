"""Streaming frames through a device: input changes in, outputs assembled, optionally checked.

Every frame is an input activation (C, H, W) of integers; only changes against the previous
frame travel (sigma-delta input).  With `check`, the golden model runs the same frames and the
stream stops at the first difference (see runtime/check.py: outputs, spikes per layer, every
counter the model keeps, neuron states after every frame), naming frame, layer, core and neuron.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import SynfabError
from ..model.golden import changes, frame_events, step_input
from .check import MismatchError, check_frame  # noqa: F401  (MismatchError: part of this module's API)
from .device import Device, events_array


def input_deltas(prev: np.ndarray, cur: np.ndarray) -> dict:
    """Events (x, y, c, d) that turn input activation `prev` into `cur` (both (C, H, W))."""
    return events_array(*changes(step_input(prev, cur)))


def _as_dict(events) -> dict:
    return events_array(events["x"], events["y"], events["c"], events["d"])


def output_info(tables) -> tuple[str, tuple, int]:
    md = tables.metadata
    return md["output"], tuple(md["output_shape"]), int(md["output_tag"])


@dataclass
class StreamResult:
    outputs: list = field(default_factory=list)       # output activation (C, H, W) after each frame
    frames: int = 0
    events_in: int = 0
    events_out: int = 0
    synaptic_ops: int = 0
    packets: int = 0
    cycles: int | None = None
    wall_s: float = 0.0
    layer_spikes: np.ndarray | None = None
    layer_spikes_per_step: list = field(default_factory=list)    # per frame: spikes per layer
    evaluations_per_step: list = field(default_factory=list)     # per frame: neurons evaluated (model)
    checked: bool = False

    def predictions(self) -> np.ndarray:
        return np.array([int(np.argmax(o.reshape(o.shape[0], -1).sum(axis=1))) for o in self.outputs])

    def summary(self) -> dict:
        d = {"frames": self.frames, "events": self.events_in, "output_events": self.events_out,
             "synaptic_ops": self.synaptic_ops, "packets": self.packets,
             "wall_s": round(self.wall_s, 4),
             "events_per_s": round(self.events_in / self.wall_s, 1) if self.wall_s > 0 else None}
        if self.cycles is not None:
            d["cycles"] = self.cycles
            d["synaptic_ops_per_cycle"] = round(self.synaptic_ops / max(1, self.cycles), 4)
        if self.checked:
            d["checked_against_model"] = True
        return d


def stream(device: Device, frames, check: bool = False, progress: bool = False,
           on_frame=None, pacer=None) -> StreamResult:
    """Run frames (iterable of (C, H, W) int arrays) through a loaded device. With a `pacer`
    (runtime.replay.Pacer) each frame waits until it is due and a frame the pacer drops is not
    sent: the next frame sent carries the input changes since the last one sent."""
    tables = device.tables
    if tables is None:
        raise SynfabError("stream: the device has no bundle loaded")
    in_shape = tuple(tables.metadata["input_shape"])
    name, out_shape, tag = output_info(tables)
    golden = None
    if check:
        from .model import ModelDevice
        golden = ModelDevice(tables.cfg)
        golden.load(tables)
        golden.set_threshold(device.threshold)
    frames = list(frames)
    it = frames
    if progress:
        from tqdm import tqdm
        it = tqdm(frames, desc=f"{device.name}", unit="frame", leave=False)
    res = StreamResult(checked=check)
    mode = tables.input_mode
    prev = np.zeros(in_shape, dtype=np.int64)
    out = np.zeros(out_shape, dtype=np.int64)
    t0 = time.perf_counter()
    if pacer is not None:
        pacer.start()
    for t, frame in enumerate(it):
        if pacer is not None:
            taken = pacer.take(t)
            if progress:
                it.set_postfix(pacer.counts(), refresh=False)
            if not taken:
                continue
        frame = np.asarray(frame)
        if frame.shape != in_shape:
            raise SynfabError(f"frame {t} has shape {frame.shape} but the network input is {in_shape}; "
                              f"crop/downsample the input to {in_shape[2]}x{in_shape[1]} with {in_shape[0]} channel(s)")
        ev = input_deltas(prev, frame) if mode == "levels" else _as_dict(frame_events(None, frame, mode))
        prev = frame.astype(np.int64)
        fo = device.run_frame(ev)
        if pacer is not None:       # the result is back: before the host's own checking
            pacer.finish(t)
        if golden is not None:
            check_frame(tables, t, device, fo, golden, golden.run_frame(ev))
        mine = fo.events[fo.events["tag"] == tag]
        np.add.at(out, (mine["c"], mine["y"], mine["x"]), mine["d"])
        res.outputs.append(out.copy())
        res.frames += 1
        res.events_in += len(ev["x"])
        res.events_out += len(fo.events)
        cores = fo.counters.get("cores", [])
        res.synaptic_ops += sum(c["synops"] for c in cores)
        res.packets += sum(c["packets_out"] for c in cores)
        if fo.cycles is not None:
            res.cycles = (res.cycles or 0) + fo.cycles
        res.layer_spikes = fo.layer_spikes if res.layer_spikes is None else res.layer_spikes + fo.layer_spikes
        res.layer_spikes_per_step.append(np.asarray(fo.layer_spikes).tolist())
        if fo.evaluations is not None:
            res.evaluations_per_step.append(int(np.sum(fo.evaluations)))
        if on_frame:
            on_frame(t, fo, out)
    res.wall_s = time.perf_counter() - t0
    return res
