"""Event arrays and recordings: the one in-memory form every reader, transform and framer uses."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SynfabError

# tonic's layout: t in microseconds, p = 1 for ON (brighter), 0 for OFF.
EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])


class EventFileError(SynfabError):
    """An event file that cannot be read or written: unknown format, truncated, corrupt."""


def make_events(x, y, t, p) -> np.ndarray:
    """Build an EVENT_DTYPE array from four equally long sequences."""
    x, y, t, p = (np.asarray(a) for a in (x, y, t, p))
    n = len(x)
    if not (len(y) == len(t) == len(p) == n):
        raise SynfabError(f"make_events: x, y, t, p have lengths {len(x)}, {len(y)}, {len(t)}, {len(p)}; "
                          "give them equal lengths")
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def check_events(events, what: str = "events") -> np.ndarray:
    """Return `events` if it is an EVENT_DTYPE array, else raise a SynfabError naming the problem."""
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        got = getattr(events, "dtype", type(events).__name__)
        raise SynfabError(f"{what}: expected a 1-D array of synfab.events.EVENT_DTYPE, got {got}; "
                          "build one with synfab.events.make_events(x, y, t, p)")
    return events


def check_sorted(events, what: str = "events") -> None:
    """Framing and filters need time order: raise a SynfabError if `events['t']` ever decreases."""
    t = events["t"]
    if len(t) > 1 and np.any(t[1:] < t[:-1]):
        raise SynfabError(f"{what}: timestamps are not in order; sort first with np.sort(events, order='t', "
                          "kind='stable')")


@dataclass(frozen=True)
class Recording:
    """Events of one sensor: `events` (EVENT_DTYPE), sensor `width` x `height`, source `format` and `path`."""
    events: np.ndarray
    width: int
    height: int
    format: str = "array"
    path: Path | None = None

    def __post_init__(self):
        check_events(self.events, "Recording.events")
        if int(self.width) < 1 or int(self.height) < 1:
            raise SynfabError(f"Recording: sensor size {self.width}x{self.height} must be at least 1x1")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    @property
    def sensor_size(self) -> tuple[int, int]:
        """(width, height), the order tonic uses."""
        return (self.width, self.height)

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event (0 for fewer than two events)."""
        if len(self.events) < 2:
            return 0
        return int(self.events["t"][-1]) - int(self.events["t"][0])

    def replace(self, **changes) -> "Recording":
        return dataclasses.replace(self, **changes)

    def __len__(self) -> int:
        return len(self.events)
