"""Events made from images: DVS-like temporal contrast, N-MNIST-style saccades, rate coding.

The sensor model (`temporal_contrast`, `saccades`): per-pixel log-intensity contrast threshold (with
optional pixel-to-pixel mismatch), a refractory period per pixel and background-noise events.
Everything here is deterministic: randomness comes only from numpy Generators seeded by the caller.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import SynfabError
from .core import EVENT_DTYPE, Recording, make_events
from .transforms import refractory

# Added to 8-bit intensities before the log, like a DVS pixel's dark current: it keeps black pixels
# from producing unbounded log contrast.
DEFAULT_OFFSET = 10.0


def _check_uint8(images: np.ndarray, ndim: int, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != ndim:
        shape = "(T, H, W)" if ndim == 3 else "(H, W)"
        raise SynfabError(f"{what}: expected a uint8 array {shape}, got {images.dtype} {images.shape}")
    return images


def _pixel_thresholds(shape, threshold: float, sigma: float, seed: int) -> np.ndarray:
    if threshold <= 0:
        raise SynfabError(f"contrast threshold {threshold} must be > 0 (log-intensity units)")
    if sigma < 0:
        raise SynfabError(f"threshold_sigma {sigma} must be >= 0")
    if sigma == 0:
        return np.full(shape, float(threshold))
    # Pixel-to-pixel threshold mismatch, as in a real sensor; floored so no pixel fires on noise.
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(threshold, sigma, size=shape), 0.01)


def _contrast_events(intensity: np.ndarray, thresholds: np.ndarray, frame_us: int, offset: float) -> np.ndarray:
    """DVS model on float intensities (T, H, W). Each pixel keeps a reference log level, set by frame 0.
    When log(I + offset) moves by k whole thresholds from the reference, the pixel emits k events of that
    sign and moves its reference by k thresholds. Crossing times are interpolated linearly in log
    intensity between frames: frame k's events fall in ((k-1)*frame_us, k*frame_us]."""
    log = np.log(intensity.astype(np.float64) + offset).reshape(len(intensity), -1)
    ref = log[0].copy()
    ys, xs = np.divmod(np.arange(log.shape[1]), intensity.shape[2])
    th = thresholds.ravel()
    chunks = []
    for k in range(1, len(log)):
        prev, cur = log[k - 1], log[k]
        diff = cur - ref
        count = np.floor(np.abs(diff) / th).astype(np.int64)
        fired = np.flatnonzero(count)
        if len(fired) == 0:
            continue
        n = count[fired]
        sign = np.sign(diff[fired])
        pix = np.repeat(fired, n)
        step = np.arange(len(pix)) - np.repeat(np.cumsum(n) - n, n) + 1   # 1..n within each pixel
        level = ref[pix] + np.repeat(sign, n) * step * th[pix]
        # ref stays within one threshold of the previous frame, so the crossing lies in (prev, cur].
        # (Rounding in ref can leave a pixel a hair past its level after its last event: that crossing
        # fires in a frame without change, at the frame's first microsecond.)
        rise = cur[pix] - prev[pix]
        frac = np.clip(np.divide(level - prev[pix], rise, out=np.zeros(len(pix)), where=rise != 0), 0.0, 1.0)
        t = (k - 1) * frame_us + np.clip(np.ceil(frac * frame_us), 1, frame_us).astype(np.int64)
        chunks.append(make_events(xs[pix], ys[pix], t, np.repeat(sign, n) > 0))
        ref[fired] += sign * n * th[fired]
    if not chunks:
        return np.zeros(0, EVENT_DTYPE)
    events = np.concatenate(chunks)
    return events[np.argsort(events["t"], kind="stable")]


def _noise_rng(rng, seed: int) -> np.random.Generator:
    if rng is None:
        # A stream of its own, apart from the threshold mismatch drawn from `seed` alone.
        return np.random.default_rng([int(seed), 1])
    if not isinstance(rng, np.random.Generator):
        raise SynfabError(f"rng: expected a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _check_sensor(refractory_us, noise_hz) -> None:
    if not (isinstance(refractory_us, (int, np.integer)) and refractory_us >= 0):
        raise SynfabError(f"refractory_us {refractory_us!r} must be an integer >= 0 (microseconds)")
    if not (isinstance(noise_hz, (int, float, np.integer, np.floating)) and math.isfinite(noise_hz) and noise_hz >= 0):
        raise SynfabError(f"noise_hz {noise_hz!r} must be a finite number >= 0 (events per pixel per second)")


def background_noise(width: int, height: int, duration_us: int, rate_hz: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Background-activity events of a `width` x `height` sensor over (0, duration_us]: every pixel fires
    as a Poisson process of `rate_hz` events per second, each event ON or OFF with equal odds, at a
    uniformly drawn integer time. Sorted by time."""
    _check_sensor(0, rate_hz)
    if not isinstance(rng, np.random.Generator):
        raise SynfabError(f"background_noise: rng must be a numpy Generator, got {type(rng).__name__}")
    if width < 1 or height < 1 or duration_us < 0:
        raise SynfabError(f"background_noise: sensor {width}x{height} and duration {duration_us} us must be "
                          f"positive")
    n = int(rng.poisson(rate_hz * width * height * duration_us * 1e-6)) if rate_hz > 0 and duration_us > 0 else 0
    pix = rng.integers(0, width * height, size=n)
    t = rng.integers(1, duration_us + 1, size=n) if n else np.zeros(0, np.int64)
    p = rng.integers(0, 2, size=n)
    events = make_events(pix % width, pix // width, t, p)
    return events[np.argsort(events["t"], kind="stable")]


def sensor_effects(events: np.ndarray, width: int, height: int, duration_us: int, refractory_us: int = 0,
                   noise_hz: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """What the sensor adds to contrast events: background-noise events (`noise_hz` per pixel, from
    `rng`) merged in by time, then the refractory period: a pixel that fired stays silent for
    `refractory_us` (events, signal or noise, less than that after its last kept event are lost; its
    reference level follows the signal meanwhile, so the lost change is not emitted later)."""
    _check_sensor(refractory_us, noise_hz)
    if noise_hz > 0:
        if not isinstance(rng, np.random.Generator):
            raise SynfabError(f"sensor_effects: noise needs a numpy Generator rng, got {type(rng).__name__}")
        noise = background_noise(width, height, duration_us, noise_hz, rng)
        events = np.concatenate([events, noise])
        events = events[np.argsort(events["t"], kind="stable")]
    if refractory_us > 0 and len(events):
        events = refractory(events, int(refractory_us))
    return events


def temporal_contrast(images, threshold: float = 0.15, frame_us: int = 1000, offset: float = DEFAULT_OFFSET,
                      threshold_sigma: float = 0.0, seed: int = 0, refractory_us: int = 0, noise_hz: float = 0.0,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """DVS-like events from a uint8 video (T, H, W) with frames `frame_us` apart: ON (p=1) where
    log(I + offset) rose by a threshold since the pixel's last event, OFF (p=0) where it fell.
    `threshold_sigma` > 0 draws per-pixel thresholds N(threshold, sigma) from `seed`.
    `noise_hz` > 0 adds background noise over (0, (T-1)*frame_us] drawn from `rng` (default: a
    Generator of its own seeded from `seed`), `refractory_us` > 0 a refractory period per pixel
    (`sensor_effects`)."""
    images = _check_uint8(images, 3, "temporal_contrast")
    if frame_us < 1:
        raise SynfabError(f"temporal_contrast: frame_us {frame_us} must be >= 1")
    _check_sensor(refractory_us, noise_hz)
    th = _pixel_thresholds(images.shape[1:], threshold, threshold_sigma, seed)
    events = _contrast_events(images, th, int(frame_us), offset)
    return sensor_effects(events, images.shape[2], images.shape[1], (len(images) - 1) * int(frame_us),
                          refractory_us, noise_hz, _noise_rng(rng, seed) if noise_hz > 0 else None)


def _shifted(image: np.ndarray, ox: float, oy: float, canvas: tuple[int, int]) -> np.ndarray:
    """`image` drawn on a black canvas (H, W) at a sub-pixel offset, bilinear."""
    out = np.zeros(canvas)
    h, w = image.shape
    ix, iy = math.floor(ox), math.floor(oy)
    fx, fy = ox - ix, oy - iy
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            if wx * wy > 0:
                out[iy + dy:iy + dy + h, ix + dx:ix + dx + w] += wx * wy * image
    return out


def saccades(image, n_steps: int = 10, amplitude: float = 6.0, saccade_us: int = 100_000,
             threshold: float = 0.15, offset: float = DEFAULT_OFFSET, threshold_sigma: float = 0.0,
             seed: int = 0, refractory_us: int = 0, noise_hz: float = 0.0,
             rng: np.random.Generator | None = None) -> Recording:
    """N-MNIST-style recording of a static uint8 image (H, W): the view moves in three straight saccades
    around a triangle with corners (0, a), (a/2, 0), (a, a) (x, y offsets, a = `amplitude` pixels), each
    `saccade_us` long and rendered as `n_steps` frames, and temporal contrast turns the motion into events.
    The sensor is (W + ceil(a)) x (H + ceil(a)): 34 x 34 for a 28 x 28 digit and a = 6, as in N-MNIST.
    `threshold_sigma` and `seed`: the sensor's threshold mismatch; `refractory_us`, `noise_hz` and `rng`:
    its refractory period and background noise (`sensor_effects`)."""
    image = _check_uint8(image, 2, "saccades").astype(np.float64)
    if n_steps < 1 or amplitude < 0 or saccade_us < n_steps:
        raise SynfabError(f"saccades: need n_steps >= 1, amplitude >= 0, saccade_us >= n_steps; got {n_steps}, "
                          f"{amplitude}, {saccade_us}")
    _check_sensor(refractory_us, noise_hz)
    margin = math.ceil(amplitude)
    canvas = (image.shape[0] + margin, image.shape[1] + margin)
    a = float(amplitude)
    corners = [(0.0, a), (a / 2, 0.0), (a, a), (0.0, a)]
    offsets = [corners[0]]
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        offsets += [(x0 + (x1 - x0) * i / n_steps, y0 + (y1 - y0) * i / n_steps) for i in range(1, n_steps + 1)]
    frames = np.stack([_shifted(image, ox, oy, canvas) for ox, oy in offsets])
    th = _pixel_thresholds(canvas, threshold, threshold_sigma, seed)
    step_us = saccade_us // n_steps
    events = _contrast_events(frames, th, step_us, offset)
    events = sensor_effects(events, canvas[1], canvas[0], 3 * n_steps * step_us, refractory_us, noise_hz,
                            _noise_rng(rng, seed) if noise_hz > 0 else None)
    return Recording(events, canvas[1], canvas[0], "saccades")


def rate_code(image, steps: int, rng_seed: int = 0, step_us: int = 1000) -> np.ndarray:
    """Poisson-like rate code of a uint8 image (H, W): at each of `steps` time steps (`step_us` apart,
    starting at 0) every pixel emits an ON event with probability I / 255."""
    image = _check_uint8(image, 2, "rate_code")
    if steps < 1 or step_us < 1:
        raise SynfabError(f"rate_code: steps {steps} and step_us {step_us} must be >= 1")
    rng = np.random.default_rng(rng_seed)
    fire = rng.random((steps,) + image.shape) < image.astype(np.float64) / 255.0
    k, y, x = np.nonzero(fire)
    return make_events(x, y, k.astype(np.int64) * step_us, np.ones(len(k), np.uint8))


def image_frames(images) -> np.ndarray:
    """Images as CNN input frames (T, C, H, W): (T, H, W) gains C = 1, (T, C, H, W) passes through.
    Each image is one frame; the runtime sends only the changes between frames."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.integer):
        raise SynfabError(f"image_frames: expected integer images (T, H, W) or (T, C, H, W), got "
                          f"{images.dtype} {images.shape}")
    return np.ascontiguousarray(images)
