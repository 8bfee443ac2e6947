"""Real-time replay: a recording's frames sent when the recording says they happened.

Frame k of a recording is *due* when the timestamp of its last event, counted from the recording's
first event and divided by the speed factor, has passed on the host's wall clock since the replay
started (a time window without events: its window's last microsecond). The host waits for a frame
that is not due yet, and sends one that is at once.

Late: when the host is ready to start frame k (the previous frame's result is back) and frame k + 1
is already due, frame k is late: the host is a whole frame behind the recording. The last frame has
no successor and is never late. Late frames are counted, never hidden; by default they are still
sent (queued), so every frame runs and the outputs equal a normal run. With `drop_late` a late
frame is skipped instead (counted as dropped): the host goes straight on to the newer frame, and
the next frame sent carries the input changes since the last frame sent, so the fabric's input
stays exact.

Per frame the replay keeps the wall latency (due -> result back on the host), and the fabric's
latency in clock cycles from the device: the cycles the device measured for the frame itself (the
Verilator harness and the LiteX bridge: first input beat to output end-of-frame beat), else the
fabric's `cycles` counter (cleared before the frame, read after it: it adds the register accesses
around the frame and, on PYNQ, the DMA set-up), else none (the model backend has no clock).
Microseconds are cycles at the fabric's clock: the measured Fmax of the committed bitstream of the
same fabric (bitstreams/manifest*.json), else a stated assumed clock, or the one the user gives.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import SynfabError

DEFAULT_SPEED = 1.0          # real time
PERCENTILES = (50, 99)
# Where a frame's cycle count came from (see the module doc).
CYCLES_FROM_FRAME = "frame"
CYCLES_FROM_COUNTER = "counter"


class ReplayError(SynfabError):
    """A real-time replay asked for with settings it cannot run."""


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_speed(speed) -> float:
    """The speed factor as a float; ReplayError unless it is finite and > 0."""
    value = _float_or_nan(speed)
    if not (math.isfinite(value) and value > 0):
        raise ReplayError(f"--speed {speed}: give a finite factor > 0 ({DEFAULT_SPEED:g} = real time, "
                          f"10 = ten times faster)")
    return value


def check_clock_mhz(clock_mhz) -> float:
    """A clock given in MHz as a float; ReplayError unless it is finite and > 0."""
    value = _float_or_nan(clock_mhz)
    if not (math.isfinite(value) and value > 0):
        raise ReplayError(f"--clock-mhz {clock_mhz}: give the fabric's clock in MHz, finite and > 0")
    return value


def check_options(speed=None, clock_mhz=None) -> tuple[float, float | None]:
    """A replay's speed (None: real time) and clock (None: the bitstream's Fmax) checked, as the
    CLI does before it loads anything and the Python API before it runs: (speed, clock_mhz)."""
    return (check_speed(DEFAULT_SPEED if speed is None else speed),
            None if clock_mhz is None else check_clock_mhz(clock_mhz))


def frame_due_us(slices: Sequence[np.ndarray], window_us: int | None) -> np.ndarray:
    """Per frame, when it is complete in the recording: its last event's timestamp in microseconds
    since the first frame's first event. A time window without events is complete at its window's
    last microsecond (windows start at the first event, events.frames_by_time); framed by count,
    frames are never empty."""
    t0 = next((int(s["t"][0]) for s in slices if len(s)), 0)
    due = np.empty(len(slices), dtype=np.int64)
    for k, s in enumerate(slices):
        if len(s):
            due[k] = int(s["t"][-1]) - t0
        else:
            due[k] = (k + 1) * window_us - 1
    return due


# -- the schedule ----------------------------------------------------------------------------------
class Pacer:
    """Decides frame by frame when a frame is sent, and whether it is late or dropped.

    `due_s`: when each frame is due, in seconds since the start (already divided by the speed).
    `clock`: a monotonic clock in seconds and `sleep`, injectable so that tests decide time
    themselves (a fake clock whose sleep advances it). Call start() once, then for every frame
    take(k) -- False means dropped, do not send it -- and finish(k) when its result is back.
    """

    def __init__(self, due_s: Sequence[float], drop_late: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.due_s = np.asarray(due_s, dtype=np.float64)
        self.drop_late = bool(drop_late)
        self.clock, self.sleep = clock, sleep
        n = len(self.due_s)
        self.started_s = np.full(n, np.nan)
        self.done_s = np.full(n, np.nan)
        self.late = np.zeros(n, dtype=bool)
        self.dropped = np.zeros(n, dtype=bool)
        self._t0 = None

    def start(self) -> None:
        self._t0 = self.clock()

    def now(self) -> float:
        """Seconds since start()."""
        if self._t0 is None:
            raise SynfabError("Pacer: start() it before the first frame")
        return self.clock() - self._t0

    def take(self, k: int) -> bool:
        """Wait until frame k is due; then True to send it, or False when it is late and dropped."""
        now = self.now()
        while now < self.due_s[k]:      # a loop: a sleep may end early (a signal)
            self.sleep(self.due_s[k] - now)
            now = self.now()
        self.late[k] = k + 1 < len(self.due_s) and now >= self.due_s[k + 1]
        if self.late[k] and self.drop_late:
            self.dropped[k] = True
            return False
        self.started_s[k] = now
        return True

    def finish(self, k: int) -> None:
        self.done_s[k] = self.now()

    def counts(self) -> dict:
        return {"late": int(self.late.sum()), "dropped": int(self.dropped.sum())}


# -- the report ------------------------------------------------------------------------------------
def frame_cycles(fo) -> tuple[int | None, str | None]:
    """(cycles, where they came from) of one frame's device output (see the module doc)."""
    if fo.cycles is not None:
        return int(fo.cycles), CYCLES_FROM_FRAME
    counted = fo.counters.get("cycles")
    if counted is not None:
        return int(counted), CYCLES_FROM_COUNTER
    return None, None


def fabric_clock(cfg, clock_mhz: float | None = None) -> dict:
    """The clock that turns cycles into microseconds: `clock_mhz` when given, else the measured
    Fmax of the committed bitstream of this fabric, else the bench's assumed clock (stated so)."""
    from ..analysis.bench import ASSUMED_FMAX_MHZ, ASSUMED_FMAX_WHY, board_clock
    if clock_mhz is not None:
        return {"mhz": check_clock_mhz(clock_mhz), "measured": False, "source": "--clock-mhz"}
    board = board_clock(cfg)
    if board is not None and board["fmax_measured"]:
        return {"mhz": board["fmax_mhz"], "measured": True, "source": board["fmax_source"],
                "built_from_current_gateware": board["built_from_current_gateware"]}
    return {"mhz": ASSUMED_FMAX_MHZ, "measured": False, "source": ASSUMED_FMAX_WHY}


@dataclass
class ReplayLog:
    """What the device said per frame sent (frame index -> cycles and their source)."""
    cycles: dict = field(default_factory=dict)
    cycles_from: dict = field(default_factory=dict)

    def on_frame(self, k: int, fo, out=None) -> None:
        self.cycles[k], self.cycles_from[k] = frame_cycles(fo)


def _percentiles(values, digits: int) -> dict:
    """p50 and p99 (numpy's linear percentiles) of the values that exist, None without any."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=np.float64)
    return {f"p{p}": (round(float(np.percentile(v, p)), digits) if len(v) else None) for p in PERCENTILES}


def report(pacer: Pacer, log: ReplayLog, speed: float, clock: dict, due_us: np.ndarray,
           sensor_events: Sequence[int]) -> dict:
    """Per-frame arrays and a summary of a finished replay (JSON-ready)."""
    n = len(pacer.due_s)
    cycles = [log.cycles.get(k) for k in range(n)]
    latency_us = [None if c is None else round(c / clock["mhz"], 3) for c in cycles]
    wall_us = [None if np.isnan(d) else round((d - due) * 1e6, 1) for d, due in zip(pacer.done_s, pacer.due_s)]
    taken = ~pacer.dropped
    elapsed = float(np.nanmax(pacer.done_s)) if taken.any() else 0.0
    sources = sorted({s for s in log.cycles_from.values() if s is not None})
    summary = {"frames": n, "taken": int(taken.sum()), **pacer.counts(),
               "dropped_sensor_events": int(np.asarray(sensor_events)[pacer.dropped].sum()),
               "speed": speed, "recording_s": round(float(due_us[-1]) / 1e6, 6) if n else 0.0,
               "schedule_s": round(float(pacer.due_s[-1]), 6) if n else 0.0, "wall_s": round(elapsed, 6),
               "frames_per_s": round(int(taken.sum()) / elapsed, 1) if elapsed > 0 else None,
               **{f"clock_{k}": v for k, v in clock.items()},
               "cycles_from": sources,
               "latency_cycles": _percentiles(cycles, 1), "latency_us": _percentiles(latency_us, 3),
               "wall_latency_us": _percentiles(wall_us, 1)}
    frames = {"due_us": due_us.tolist(), "sensor_events": [int(e) for e in sensor_events],
              "due_s": [round(float(d), 6) for d in pacer.due_s],
              "started_s": _rounded(pacer.started_s), "done_s": _rounded(pacer.done_s),
              "late": pacer.late.tolist(), "dropped": pacer.dropped.tolist(),
              "latency_cycles": cycles, "cycles_from": [log.cycles_from.get(k) for k in range(n)],
              "latency_us": latency_us, "wall_latency_us": wall_us}
    return {"summary": summary, "per_frame": frames}


def _rounded(seconds: np.ndarray) -> list:
    return [None if np.isnan(s) else round(float(s), 6) for s in seconds]
