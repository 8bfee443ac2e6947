"""Write recordings: .npz (events + sensor size), .npy (events only) and Prophesee EVT 2.0 .raw."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import EventFileError, Recording, check_events

WRITTEN_FORMAT = {".npz": "npz", ".npy": "npy", ".raw": "evt2"}
WRITABLE = tuple(WRITTEN_FORMAT)


def write(path, recording: Recording) -> Path:
    """Write `recording` in the format named by the extension of `path` (.npz, .npy or .raw = EVT 2.0)."""
    path = Path(path)
    if not isinstance(recording, Recording):
        raise EventFileError(f"{path}: write() takes a Recording, got {type(recording).__name__}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        # Plain arrays only, so the file loads without pickle.
        with open(path, "wb") as f:
            np.savez(f, events=recording.events, width=np.int64(recording.width),
                     height=np.int64(recording.height), source_format=np.str_(recording.format))
    elif suffix == ".npy":
        with open(path, "wb") as f:
            np.save(f, recording.events, allow_pickle=False)
    elif suffix == ".raw":
        write_evt2(path, recording)
    else:
        raise EventFileError(f"{path}: cannot write {suffix or 'files without an extension'}; "
                             f"use one of {', '.join(WRITABLE)}")
    return path


def encode_evt2(events: np.ndarray) -> np.ndarray:
    """EVT 2.0 words (uint32) for time-ordered events with t >= 0 and x, y < 2048: an EVT_TIME_HIGH word
    (t[33:6]) before every event whose t[33:6] differs from the previous event's, then a CD word."""
    check_events(events)
    t = events["t"]
    if len(t) and (t.min() < 0 or t.max() >= 1 << 34 or np.any(t[1:] < t[:-1])):
        raise EventFileError("EVT 2.0 holds time-ordered timestamps in 0 .. 2^34-1 us; sort the events and "
                             "shift them to start near 0 (convert --zero-time)")
    if len(t) and max(int(events["x"].max()), int(events["y"].max())) >= 2048:
        raise EventFileError("EVT 2.0 holds x and y below 2048; crop or downsample the events first")
    high = (t >> 6).astype(np.uint64)
    new_high = np.ones(len(t), bool)
    new_high[1:] = high[1:] != high[:-1]
    cd_pos = np.arange(len(t)) + np.cumsum(new_high)
    words = np.empty(len(t) + int(new_high.sum()), np.uint32)
    words[cd_pos[new_high] - 1] = (np.uint64(0x8) << np.uint64(28)) | (high[new_high] & np.uint64(0x0FFFFFFF))
    cd = ((events["p"].astype(np.uint64) & np.uint64(1)) << np.uint64(28)) \
        | ((t.astype(np.uint64) & np.uint64(0x3F)) << np.uint64(22)) \
        | (events["x"].astype(np.uint64) << np.uint64(11)) | events["y"].astype(np.uint64)
    words[cd_pos] = cd
    return words


def write_evt2(path, recording: Recording) -> Path:
    """Prophesee EVT 2.0 .raw with a Metavision-style header carrying the sensor geometry."""
    path = Path(path)
    if recording.width > 2048 or recording.height > 2048:
        raise EventFileError(f"{path}: EVT 2.0 holds sensors up to 2048x2048, not "
                             f"{recording.width}x{recording.height}")
    try:
        words = encode_evt2(recording.events)
    except EventFileError as e:
        raise EventFileError(f"{path}: {e}") from None
    w, h = recording.width, recording.height
    header = (f"% evt 2.0\n% format EVT2;height={h};width={w}\n% geometry {w}x{h}\n"
              f"% integrator_name synfab\n% end\n").encode()
    with open(path, "wb") as f:
        f.write(header)
        f.write(words.astype("<u4").tobytes())
    return path
