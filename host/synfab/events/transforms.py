"""Event transforms, tonic style: pure functions on event arrays, and frozen dataclasses that apply them.

A transform is called with a Recording (returns a Recording with the new sensor size) or with a bare
EVENT_DTYPE array (returns an array). Every function keeps the input order of the surviving events.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import SynfabError
from .core import Recording, check_events, check_sorted

Size = tuple[int, int]


# -- pure functions ---------------------------------------------------------------------------------------
def crop(events: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Events inside the box [x0, x0+width) x [y0, y0+height), with coordinates relative to (x0, y0)."""
    check_events(events)
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    inside = (x >= x0) & (x < x0 + width) & (y >= y0) & (y < y0 + height)
    out = events[inside]
    out["x"] -= x0
    out["y"] -= y0
    return out


def downsample(events: np.ndarray, factor: int | None = None, size: Size | None = None,
               sensor_size: Size | None = None) -> np.ndarray:
    """Integer factor: x // factor, y // factor. Target size (w, h) of a (W, H) sensor: x * w // W,
    y * h // H. Events that land on the same pixel all stay (counts add up in histograms)."""
    check_events(events)
    out = events.copy()
    if factor is not None:
        out["x"] //= factor
        out["y"] //= factor
    else:
        (w, h), (sw, sh) = size, sensor_size
        out["x"] = events["x"].astype(np.int64) * w // sw
        out["y"] = events["y"].astype(np.int64) * h // sh
    return out


def _pixel_ids(events: np.ndarray, pad: int = 0) -> np.ndarray:
    """y * row + x with rows wide enough that x + pad never reaches the next row."""
    row = int(events["x"].max()) + 1 + pad
    return events["y"].astype(np.int64) * row + events["x"].astype(np.int64)


def refractory(events: np.ndarray, us: int) -> np.ndarray:
    """Drop every event that comes less than `us` microseconds after the last *kept* event of its pixel
    (a pixel is silent for `us` after it fires). us = 0 keeps everything."""
    check_events(events)
    if us < 0:
        raise SynfabError(f"refractory period {us} us: must be >= 0")
    if us == 0 or len(events) == 0:
        return events.copy()
    pixel = _pixel_ids(events)
    t = events["t"] - events["t"].min()
    order = np.lexsort((t, pixel))
    sp, st = pixel[order], t[order]
    stride = int(st.max()) + us + 1
    if (int(sp.max()) + 1) * stride >= 1 << 62:
        raise SynfabError("refractory: the recording spans too long a time for one pass; filter it in pieces")
    key = sp * stride + st
    first = np.ones(len(sp), bool)
    first[1:] = sp[1:] != sp[:-1]
    kept = first.copy()
    current = np.flatnonzero(first)
    # Each round moves every pixel's chain to its next kept event: the first one at least `us` later.
    while len(current):
        nxt = np.searchsorted(key, key[current] + us, side="left")
        ok = nxt < len(key)
        nxt = nxt[ok]
        nxt = nxt[sp[nxt] == sp[current[ok]]]
        kept[nxt] = True
        current = nxt
    mask = np.zeros(len(events), bool)
    mask[order[kept]] = True
    return events[mask]


def denoise(events: np.ndarray, us: int) -> np.ndarray:
    """Background-activity filter: keep an event only if an earlier event at one of its 8 neighbouring pixels
    came less than `us` microseconds before it. Needs time-ordered events."""
    check_events(events)
    check_sorted(events, "denoise")
    if us <= 0:
        raise SynfabError(f"denoise window {us} us: must be > 0")
    n = len(events)
    if n == 0:
        return events.copy()
    row = int(events["x"].max()) + 2
    # Work in (pixel, stream index) order: there every neighbour query below is sorted too, which makes
    # searchsorted fast.
    pixel = events["y"].astype(np.int64) * row + events["x"].astype(np.int64)
    keys = pixel * n + np.arange(n, dtype=np.int64)
    order = np.argsort(keys)
    keys, pixel = keys[order], pixel[order]
    x, y = pixel % row, pixel // row
    t = events["t"]
    t_here = t[order]
    supported_sorted = np.zeros(n, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            shift = dy * row + dx
            # Latest earlier event at the neighbour pixel: the largest key below (pixel + shift) * n + i.
            pos = np.searchsorted(keys, keys + shift * n, side="left") - 1
            found = keys[np.maximum(pos, 0)]
            hit = (x + dx >= 0) & (y + dy >= 0) & (pos >= 0) & (found // n == pixel + shift)
            supported_sorted |= hit & (t_here - t[found % n] < us)
    supported = np.zeros(n, bool)
    supported[order[supported_sorted]] = True
    return events[supported]


# -- transform objects -------------------------------------------------------------------------------------
class _Transform(ABC):
    @abstractmethod
    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Size | None]:
        """New events and sensor size (None when the caller gave a bare array)."""

    def __call__(self, data):
        if isinstance(data, Recording):
            events, (w, h) = self.apply(data.events, data.sensor_size)
            return data.replace(events=events, width=w, height=h)
        return self.apply(check_events(data), None)[0]


@dataclass(frozen=True)
class Crop(_Transform):
    """Keep the box [x0, x0+width) x [y0, y0+height); the sensor becomes width x height."""
    x0: int
    y0: int
    width: int
    height: int

    def __post_init__(self):
        if min(self.x0, self.y0) < 0 or min(self.width, self.height) < 1:
            raise SynfabError(f"Crop({self.x0}, {self.y0}, {self.width}, {self.height}): needs x0, y0 >= 0 and "
                              "width, height >= 1")

    def apply(self, events, sensor_size):
        if sensor_size is not None and (self.x0 + self.width > sensor_size[0]
                                        or self.y0 + self.height > sensor_size[1]):
            raise SynfabError(f"Crop box x {self.x0}..{self.x0 + self.width - 1}, y {self.y0}.."
                              f"{self.y0 + self.height - 1} exceeds the {sensor_size[0]}x{sensor_size[1]} sensor")
        return crop(events, self.x0, self.y0, self.width, self.height), (self.width, self.height)


@dataclass(frozen=True)
class Downsample(_Transform):
    """Shrink coordinates by an integer `factor`, or to a target `size` (width, height)."""
    factor: int | None = None
    size: Size | None = None

    def __post_init__(self):
        if (self.factor is None) == (self.size is None):
            raise SynfabError("Downsample: give exactly one of factor=N or size=(width, height)")
        if self.factor is not None and (int(self.factor) != self.factor or self.factor < 1):
            raise SynfabError(f"Downsample factor {self.factor}: must be an integer >= 1")
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
            if min(self.size) < 1:
                raise SynfabError(f"Downsample size {self.size}: width and height must be >= 1")

    def apply(self, events, sensor_size):
        if self.factor is not None:
            f = int(self.factor)
            new = None if sensor_size is None else (-(-sensor_size[0] // f), -(-sensor_size[1] // f))
            return downsample(events, factor=f), new
        if sensor_size is None:
            raise SynfabError("Downsample(size=...) needs the sensor size: call it on a Recording")
        if self.size[0] > sensor_size[0] or self.size[1] > sensor_size[1]:
            raise SynfabError(f"Downsample size {self.size[0]}x{self.size[1]} is larger than the "
                              f"{sensor_size[0]}x{sensor_size[1]} sensor")
        return downsample(events, size=self.size, sensor_size=sensor_size), self.size


@dataclass(frozen=True)
class RefractoryFilter(_Transform):
    """Silence each pixel for `us` microseconds after every event it keeps."""
    us: int

    def apply(self, events, sensor_size):
        return refractory(events, int(self.us)), sensor_size


@dataclass(frozen=True)
class Denoise(_Transform):
    """Drop events without support from an 8-neighbour within the last `us` microseconds."""
    us: int

    def apply(self, events, sensor_size):
        return denoise(events, int(self.us)), sensor_size


@dataclass(frozen=True)
class Compose(_Transform):
    """Apply `transforms` in order."""
    transforms: tuple = ()

    def __init__(self, transforms: Sequence = ()):
        object.__setattr__(self, "transforms", tuple(transforms))
        for tr in self.transforms:
            if not isinstance(tr, _Transform):
                raise SynfabError(f"Compose: {tr!r} is not a synfab.events transform")

    def apply(self, events, sensor_size):
        for tr in self.transforms:
            events, sensor_size = tr.apply(events, sensor_size)
        return events, sensor_size
