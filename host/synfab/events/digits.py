"""Event digits: an N-MNIST-style data set made from real MNIST digits (Orchard et al. 2015's method).

Every 28x28 MNIST digit is shown to a simulated 34x34 event sensor that moves in three saccades of
100 ms around a triangle (`synth.saccades`); the sensor model turns the motion into ON and OFF events:
a log-intensity contrast threshold with pixel-to-pixel mismatch (one fixed mismatch pattern: one
sensor records every digit), a refractory period per pixel and background-noise events (a generator
of their own per digit). Everything is a function of the digit's image, its split and index, and
SENSOR: the same digit always gives the same events.

    rec = digits.event_digit(image, index=7, split="test")     # Recording, 34x34, ~300 ms
    x = digits.digit_frames(rec.events, window_us=300_000)     # (1, 2, 34, 34) OFF/ON counts

The network input is a frame of event counts per time window: channel 0 counts OFF events, channel 1
ON events, saturating at 255 (the input layer's range). A digit of DURATION_US is cut into
ceil(DURATION_US / window) windows from t = 1 us (events lie in (0, DURATION_US]).

The subset (`load_subset`): the events of the first SUBSET_DIGITS MNIST test digits, the held-out
digits the demo, the tests and notebook 04 use. They are not shipped: they are generated on first use
from the MNIST test images synfab ships (synfab.demo.load_demo_digits, test digits 0..499), about
1.5 s for all 200, and kept in memory for the rest of the process. The quantization's calibration
frames (`load_calibration`) are shipped (tools/train_event_digits.py writes them).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from ..errors import SynfabError
from .core import check_events
from .framing import frames_by_time, to_histograms
from .synth import saccades

# The simulated sensor and the saccades. threshold: contrast threshold in log-intensity units;
# threshold_sigma: its pixel-to-pixel spread; refractory_us: a pixel's dead time after an event;
# noise_hz: background events per pixel and second.
SENSOR = {"n_steps": 10, "amplitude": 6.0, "saccade_us": 100_000, "threshold": 0.2, "threshold_sigma": 0.02,
          "refractory_us": 1000, "noise_hz": 0.5}
SENSOR_SEED = 2015          # the sensor's threshold-mismatch pattern (one sensor for every digit)
SPLIT_SEEDS = {"train": 1, "test": 2}   # noise generators: np.random.default_rng([seed, split, index])
NOISE_SEED = 12
SIZE = 34                   # sensor width and height: 28 + ceil(amplitude)
DURATION_US = 3 * SENSOR["saccade_us"]
WINDOW_US = DURATION_US     # the default frame window: one frame per digit
INPUT_HI = 255              # counts saturate at the input layer's range
SUBSET_DIGITS = 200          # load_subset: MNIST test digits 0..199
CALIB_FILE = Path(__file__).resolve().parent.parent / "data" / "event_digits_calib.npz"


def sensor_params(**overrides) -> dict:
    """SENSOR with some values replaced (names checked)."""
    unknown = sorted(set(overrides) - set(SENSOR))
    if unknown:
        raise SynfabError(f"unknown sensor parameter(s) {', '.join(unknown)}; choose from {', '.join(SENSOR)}")
    return {**SENSOR, **overrides}


def _check_split(split: str) -> int:
    if split not in SPLIT_SEEDS:
        raise SynfabError(f"split {split!r}: choose {' or '.join(SPLIT_SEEDS)}")
    return SPLIT_SEEDS[split]


def event_digit(image, index: int, split: str = "test", **sensor):
    """The events of one digit: a Recording of the 34x34 sensor over DURATION_US (with the default
    saccades). `image` is uint8 (28, 28) or (1, 28, 28); `index` the digit's index in its split."""
    params = sensor_params(**sensor)
    split_seed = _check_split(split)
    if not (isinstance(index, (int, np.integer)) and index >= 0):
        raise SynfabError(f"event_digit: index {index!r} must be an integer >= 0")
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    rng = np.random.default_rng([NOISE_SEED, split_seed, int(index)])
    return saccades(image, seed=SENSOR_SEED, rng=rng, **params)


def digit_frames(events, window_us: int = WINDOW_US, duration_us: int = DURATION_US,
                 hi: int = INPUT_HI) -> np.ndarray:
    """Input frames (T, 2, 34, 34) int64 of one digit: OFF and ON counts per window of `window_us`,
    T = ceil(duration_us / window_us), windows from t = 1 us; counts saturate at `hi`."""
    events = check_events(events, "digit_frames")
    if not (isinstance(window_us, (int, np.integer)) and window_us >= 1):
        raise SynfabError(f"digit_frames: window {window_us!r} us must be an integer >= 1")
    if not 1 <= hi <= 255:
        raise SynfabError(f"digit_frames: hi {hi} must be in 1..255")
    n = math.ceil(duration_us / window_us)
    frames = frames_by_time(events, int(window_us), t0=1, n_frames=n)
    return to_histograms(frames, (SIZE, SIZE), channels="polarity", clip=hi).astype(np.int64)


def many_frames(events_list, window_us: int = WINDOW_US, hi: int = INPUT_HI) -> np.ndarray:
    """digit_frames of every digit: (N, T, 2, 34, 34) int64."""
    return np.stack([digit_frames(e, window_us, hi=hi) for e in events_list])


def generate(images, split: str, start: int = 0, window_us: int = WINDOW_US, progress: bool = False,
             **sensor) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, T, 2, 34, 34) uint8 of the digits `images` (N, [1,] 28, 28) with indices start..,
    and the number of events of each digit (N,): the data set without keeping the events."""
    images = np.asarray(images)
    t = math.ceil(DURATION_US / window_us)
    out = np.zeros((len(images), t, 2, SIZE, SIZE), np.uint8)
    counts = np.zeros(len(images), np.int64)
    it = range(len(images))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"event digits ({split})", mininterval=2)
    for i in it:
        ev = event_digit(images[i], start + i, split, **sensor).events
        counts[i] = len(ev)
        out[i] = digit_frames(ev, window_us)
    return out, counts


def save_calibration(calib, path=None) -> None:
    """The calibration frames (N, 2, 34, 34) uint8 (default-window frames of training digits) in a
    compressed .npz (default CALIB_FILE)."""
    calib = np.asarray(calib)
    if calib.ndim != 4 or calib.shape[1:] != (2, SIZE, SIZE) or calib.min() < 0 or calib.max() > INPUT_HI:
        raise SynfabError(f"calibration frames: shape {calib.shape}, values 0..{INPUT_HI} expected as (N, 2, 34, 34)")
    np.savez_compressed(Path(path) if path is not None else CALIB_FILE, calib=calib.astype(np.uint8))


def load_calibration(path=None) -> np.ndarray:
    """The shipped calibration frames (N, 2, 34, 34) int64: default-window frames of the first
    training digits (never a held-out one)."""
    path = Path(path) if path is not None else CALIB_FILE
    if not path.is_file():
        raise SynfabError(f"event-digit calibration frames {path} not found; regenerate them with "
                          f"tools/train_event_digits.py")
    with np.load(path) as z:
        return z["calib"].astype(np.int64)


@functools.lru_cache(maxsize=None)
def _subset_digit(index: int) -> np.ndarray:
    """The events of MNIST test digit `index` (read-only: the array is shared by every caller)."""
    images, _ = _test_digits()
    events = event_digit(images[index], index, "test").events
    events.flags.writeable = False
    return events


@functools.lru_cache(maxsize=1)
def _test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first SUBSET_DIGITS shipped MNIST test images and labels (read-only)."""
    from ..demo import load_demo_digits
    images, labels = load_demo_digits(SUBSET_DIGITS)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_subset(n: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The first n (default SUBSET_DIGITS) held-out event digits, MNIST test digits 0..n-1: a list of
    event arrays (read-only) and labels (n,) int64. Generated from the shipped MNIST test images on
    first use and cached in memory."""
    total = SUBSET_DIGITS
    if n is not None:
        if not (isinstance(n, (int, np.integer)) and 0 < n <= total):
            raise SynfabError(f"asked for {n} event digits; there are {total} (use 1..{total})")
        total = int(n)
    _, labels = _test_digits()
    return [_subset_digit(i) for i in range(total)], labels[:total].astype(np.int64)


def subset_info() -> dict:
    """The subset's MNIST test indices and sensor parameters."""
    return {"digits": SUBSET_DIGITS, "indices": list(range(SUBSET_DIGITS)), "sensor": dict(SENSOR)}
