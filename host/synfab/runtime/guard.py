"""Frames run with the golden model alongside and retried after a detected fault.

`GuardedRun(device, tables, threshold)` drives a register device whose transport can fail (the
litex backend with verify=True): `load()` and `run_frame(t, events)` are tried again, after
`device.recover()`, when the link's own checks raise LinkError or when the golden model disagrees
with the frame (MismatchError, runtime.check: outputs, spikes, counters, neuron states, and the
mesh's packet balance) -- what a fault the link cannot see (a changed byte of an input beat) leads
to.  Before a frame runs again the device gets its tables again and the neuron state the model had
before the frame.  After `tries` failed attempts the run stops with one DeviceError line naming the
frame and the last fault: a result is either the model's or an error, never silently wrong.

Every attempt is logged (`attempts`): the frame (None: loading), its outcome ("ok", "link": the
link's checks saw the fault, "model": only the model's check did) and `mark()` at its start and
end, which a caller can use to attribute events to attempts (the soak passes the fault injector's
count: analysis.soak).
"""
from __future__ import annotations

from dataclasses import dataclass

from .check import MismatchError, check_frame, mesh_balance
from .device import DeviceError
from .litex import LinkError
from .model import ModelDevice

DEFAULT_TRIES = 5


@dataclass(frozen=True)
class Attempt:
    frame: int | None       # None: loading the tables
    outcome: str            # "ok", "link", "model"
    error: str
    start: int              # mark() when the attempt (with the recovery before it) began
    end: int                # mark() when it ended


class GuardedRun:
    def __init__(self, device, tables, threshold: int = 0, tries: int = DEFAULT_TRIES, mark=None):
        self.device, self.tables, self.threshold, self.tries = device, tables, int(threshold), int(tries)
        self.mark = mark or (lambda: 0)
        self.golden = ModelDevice(device.cfg)
        self.golden.load(tables)
        self.golden.set_threshold(self.threshold)
        self.attempts: list[Attempt] = []
        self._start = self.mark()

    def _log(self, frame, outcome: str, error: str = "") -> None:
        end = self.mark()
        self.attempts.append(Attempt(frame, outcome, error, self._start, end))
        self._start = end

    def _load(self) -> None:
        self.device.load(self.tables)
        self.device.set_threshold(self.threshold)

    def load(self, recover: bool = False) -> None:
        """The tables and threshold on the device; retried after recovery on a link fault.
        `recover`: recover first (the link's state is unknown: a run before this one failed)."""
        last = None
        for attempt in range(self.tries):
            try:
                if attempt or recover:
                    self.device.recover()
                self._load()
            except LinkError as e:
                self._log(None, "link", str(e))
                last = e
                continue
            self._log(None, "ok")
            return
        raise DeviceError(f"{self.device.name}: loading failed {self.tries} times; the last fault: {last}")

    def run_frame(self, t: int, events: dict):
        """(device output, model output) of frame t, checked; retried from the state before the
        frame when a fault is detected."""
        before = [{k: v.copy() for k, v in s.items()} for s in self.golden.read_state()]
        want = self.golden.run_frame(events)
        last = None
        for attempt in range(self.tries):
            try:
                if attempt:
                    self.device.recover()
                    self._load()
                    self.device.write_state(before)
                got = self.device.run_frame(events)
                check_frame(self.tables, t, self.device, got, self.golden, want)
                problem = mesh_balance(got, want)
                if problem:
                    raise MismatchError(f"frame {t}: counters do not balance: {problem}")
            except LinkError as e:
                self._log(t, "link", str(e))
                last = e
                continue
            except MismatchError as e:
                self._log(t, "model", str(e))
                last = e
                continue
            self._log(t, "ok")
            return got, want
        raise DeviceError(f"frame {t}: failed {self.tries} times; the last fault: {last}")
