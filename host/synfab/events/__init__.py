"""Event sources: event-camera files, transforms, framing and image-derived events.

    rec = events.read("recording.aedat4")                  # -> Recording(events, width, height, format, path)
    rec = events.Compose([events.Denoise(5000), events.Downsample(factor=4)])(rec)
    frames = events.frames_by_time(rec.events, window_us=50_000)
    x = events.to_histograms(frames, rec.sensor_size)      # (T, 2, H, W) uint8 CNN inputs
    path = events.samples.fetch("dvxplorer")               # a real recording, downloaded once
"""
from . import samples
from .core import EVENT_DTYPE, EventFileError, Recording, check_events, make_events
from .framing import frames_by_count, frames_by_time, to_histograms
from .readers import detect_format, read
from .synth import background_noise, image_frames, rate_code, saccades, sensor_effects, temporal_contrast
from .transforms import Compose, Crop, Denoise, Downsample, RefractoryFilter, crop, denoise, downsample, refractory
from .writers import write, write_evt2

__all__ = [
    "EVENT_DTYPE", "EventFileError", "Recording", "check_events", "make_events",
    "frames_by_count", "frames_by_time", "to_histograms",
    "detect_format", "read", "write", "write_evt2", "samples",
    "background_noise", "image_frames", "rate_code", "saccades", "sensor_effects", "temporal_contrast",
    "Compose", "Crop", "Denoise", "Downsample", "RefractoryFilter", "crop", "denoise", "downsample", "refractory",
]
