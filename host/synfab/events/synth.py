"""Events made from images: DVS-like temporal contrast, N-MNIST-style saccades, rate coding.

Everything here is deterministic: randomness comes only from a numpy Generator seeded by the caller.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import SynfabError
from .core import EVENT_DTYPE, Recording, make_events

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
        frac = np.clip((level - prev[pix]) / (cur[pix] - prev[pix]), 0.0, 1.0)
        t = (k - 1) * frame_us + np.clip(np.ceil(frac * frame_us), 1, frame_us).astype(np.int64)
        chunks.append(make_events(xs[pix], ys[pix], t, np.repeat(sign, n) > 0))
        ref[fired] += sign * n * th[fired]
    if not chunks:
        return np.zeros(0, EVENT_DTYPE)
    events = np.concatenate(chunks)
    return events[np.argsort(events["t"], kind="stable")]


def temporal_contrast(images, threshold: float = 0.15, frame_us: int = 1000, offset: float = DEFAULT_OFFSET,
                      threshold_sigma: float = 0.0, seed: int = 0) -> np.ndarray:
    """DVS-like events from a uint8 video (T, H, W) with frames `frame_us` apart: ON (p=1) where
    log(I + offset) rose by a threshold since the pixel's last event, OFF (p=0) where it fell.
    `threshold_sigma` > 0 draws per-pixel thresholds N(threshold, sigma) from `seed`."""
    images = _check_uint8(images, 3, "temporal_contrast")
    if frame_us < 1:
        raise SynfabError(f"temporal_contrast: frame_us {frame_us} must be >= 1")
    th = _pixel_thresholds(images.shape[1:], threshold, threshold_sigma, seed)
    return _contrast_events(images, th, int(frame_us), offset)


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
             seed: int = 0) -> Recording:
    """N-MNIST-style recording of a static uint8 image (H, W): the view moves in three straight saccades
    around a triangle with corners (0, a), (a/2, 0), (a, a) (x, y offsets, a = `amplitude` pixels), each
    `saccade_us` long and rendered as `n_steps` frames, and temporal contrast turns the motion into events.
    The sensor is (W + ceil(a)) x (H + ceil(a)): 34 x 34 for a 28 x 28 digit and a = 6, as in N-MNIST."""
    image = _check_uint8(image, 2, "saccades").astype(np.float64)
    if n_steps < 1 or amplitude < 0 or saccade_us < n_steps:
        raise SynfabError(f"saccades: need n_steps >= 1, amplitude >= 0, saccade_us >= n_steps; got {n_steps}, "
                          f"{amplitude}, {saccade_us}")
    margin = math.ceil(amplitude)
    canvas = (image.shape[0] + margin, image.shape[1] + margin)
    a = float(amplitude)
    corners = [(0.0, a), (a / 2, 0.0), (a, a), (0.0, a)]
    offsets = [corners[0]]
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        offsets += [(x0 + (x1 - x0) * i / n_steps, y0 + (y1 - y0) * i / n_steps) for i in range(1, n_steps + 1)]
    frames = np.stack([_shifted(image, ox, oy, canvas) for ox, oy in offsets])
    th = _pixel_thresholds(canvas, threshold, threshold_sigma, seed)
    events = _contrast_events(frames, th, saccade_us // n_steps, offset)
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
