"""Read event-camera files into a Recording.

Formats: AEDAT4 (iniVation DAVIS / DVXplorer, via the `faery` package), Prophesee EVT 2.0 and
EVT 3.0 `.raw` and `.dat` (numpy decoders of the formats documented by Prophesee), and `.npy` /
`.npz` structured arrays.  The format comes from the file extension, else from the first bytes.

Sensor streams may carry small time reorderings; readers of sensor formats return timestamps
made non-decreasing (running maximum, as the Prophesee decoders in faery do), because framing
needs time order.  Timestamps are otherwise kept as recorded (no shift to zero).
"""
from __future__ import annotations

import contextlib
import os
import struct
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core import EVENT_DTYPE, EventFileError, Recording, make_events

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"

# Prophesee HAL plugin name fragments -> sensor geometry, for .raw headers without one
# (checked in this order: "gen31" also contains "gen3").
_PLUGIN_GEOMETRY = [("genx320", (320, 320)), ("imx636", (1280, 720)), ("gen4", (1280, 720)),
                    ("gen3", (640, 480))]


@dataclass
class PropheseeHeader:
    """The '% key value' lines that open .raw and .dat files."""
    length: int = 0                       # bytes of header
    fields: dict = field(default_factory=dict)

    @property
    def geometry(self) -> tuple[int, int] | None:
        """(width, height) from the header, else from a known plugin name, else None.
        Raises ValueError for a size line that is not two integers."""
        f = self.fields
        fmt = f.get("format", "")
        opts = dict(kv.split("=", 1) for kv in fmt.split(";")[1:] if "=" in kv)
        if "width" in opts and "height" in opts:
            return int(opts["width"]), int(opts["height"])
        if "geometry" in f and "x" in f["geometry"]:
            w, h = f["geometry"].split("x", 1)
            return int(w), int(h)
        if "Width" in f and "Height" in f:
            return int(f["Width"]), int(f["Height"])
        plugin = f.get("plugin_name", "")
        for fragment, size in _PLUGIN_GEOMETRY:
            if fragment in plugin:
                return size
        return None

    @property
    def evt_version(self) -> str | None:
        """'2.0', '2.1' or '3.0' from the 'evt' or 'format' line."""
        f = self.fields
        if "evt" in f:
            v = f["evt"].strip()
            return {"2": "2.0", "3": "3.0"}.get(v, v)
        fmt = f.get("format", "").split(";")[0].strip().upper()
        return {"EVT2": "2.0", "EVT21": "2.1", "EVT2.1": "2.1", "EVT3": "3.0"}.get(fmt)


def read_prophesee_header(data: bytes) -> PropheseeHeader:
    """Parse the leading '%' lines (up to and including '% end' when there is one)."""
    header = PropheseeHeader()
    pos = 0
    while data[pos:pos + 1] == b"%":
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos + 1:end].decode("latin-1").strip()
        pos = end + 1
        if line == "end":
            break
        key, _, value = line.partition(" ")
        if key:
            header.fields[key] = value.strip()
    header.length = pos
    return header


def detect_format(path: Path) -> str:
    """'aedat4', 'evt2', 'evt3', 'evt21', 'dat', 'npy' or 'npz'; raises EventFileError if unknown."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    suffix = path.suffix.lower()
    if suffix == ".aedat4" or head.startswith(AEDAT4_MAGIC):
        return "aedat4"
    if suffix == ".npy" or head.startswith(NPY_MAGIC):
        return "npy"
    if suffix == ".npz" or head.startswith(ZIP_MAGIC):
        return "npz"
    if suffix in (".raw", ".dat") or head.startswith(b"%"):
        header = read_prophesee_header(head)
        version = header.evt_version
        if suffix == ".dat" or (suffix != ".raw" and version is None and "Version" in header.fields):
            return "dat"
        if version is None:
            raise EventFileError(f"{path}: no 'evt' or 'format' line in the .raw header, so EVT 2.0 and 3.0 "
                                 "cannot be told apart; re-export it with Metavision")
        fmt = {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3"}.get(version)
        if fmt is None:
            raise EventFileError(f"{path}: unknown EVT version {version!r} in the header (known: 2.0, 2.1, 3.0)")
        return fmt
    raise EventFileError(f"{path}: unknown event file format (extension {suffix or 'none'}); "
                         "use .aedat4, .raw (EVT2/EVT3), .dat, .npy or .npz")


def read(path, sensor_size: tuple[int, int] | None = None) -> Recording:
    """Read an event file. `sensor_size` (width, height) overrides the size found in the file; files that
    carry none (.npy, some .raw) otherwise get the smallest size holding every event."""
    path = Path(path)
    if not path.is_file():
        raise EventFileError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    fmt = detect_format(path)
    reader = {"aedat4": _read_aedat4, "evt2": _read_evt, "evt3": _read_evt, "evt21": _read_evt,
              "dat": _read_dat, "npy": _read_npy, "npz": _read_npz}[fmt]
    events, size = reader(path, fmt)
    if sensor_size is not None:
        size = (int(sensor_size[0]), int(sensor_size[1]))
    if size is None:
        size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1) if len(events) else (1, 1)
    width, height = size
    if len(events) and (events["x"].max() >= width or events["y"].max() >= height):
        raise EventFileError(f"{path}: events reach x={events['x'].max()}, y={events['y'].max()}, outside the "
                             f"{width}x{height} sensor; the file is corrupt or its size is wrong (pass sensor_size)")
    return Recording(events, width, height, fmt, path)


def _monotonic(t: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(t) if len(t) else t


def _forward_fill(mask: np.ndarray, values: np.ndarray, initial=0) -> np.ndarray:
    """At every index: the value at the last index <= it where mask holds (`initial` before the first)."""
    last = np.where(mask, np.arange(len(mask)), -1)
    np.maximum.accumulate(last, out=last)
    return np.where(last >= 0, values[np.maximum(last, 0)], initial)


def _decode_file(path: Path, offset: int, decoder, chunk_words: int) -> np.ndarray:
    """Run a stateful word decoder over the file in chunks, so memory stays bounded for long recordings."""
    word_bytes = decoder.word.itemsize
    size = path.stat().st_size - offset
    if size % word_bytes:
        raise EventFileError(f"{path}: {decoder.name} data is {size} bytes, not a whole number of {word_bytes}-byte "
                             f"words ({size % word_bytes} bytes left over): the file is truncated")
    parts = []
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            words = np.fromfile(f, dtype=decoder.word, count=chunk_words)
            if len(words) == 0:
                break
            parts.append(decoder.decode(words))
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


class Evt2Decoder:
    """EVT 2.0: 32-bit words, type in bits 31..28; CD_OFF 0 / CD_ON 1 carry t[5:0] (27..22), x (21..11),
    y (10..0); EVT_TIME_HIGH 8 carries t[33:6]; EXT_TRIGGER 0xA carries t[5:0] too.
    `decode` takes consecutive chunks of one stream; state carries over."""
    name = "EVT 2.0"
    word = np.dtype("<u4")

    def __init__(self):
        self.high = 0          # unwrapped t[63:6] << 6 of the last EVT_TIME_HIGH
        self.last_raw = None   # its raw 28-bit field, to see the 2^34 us wrap
        self.wraps = 0
        self.t = 0             # running maximum

    def decode(self, words: np.ndarray) -> np.ndarray:
        if len(words) == 0:
            return np.zeros(0, EVENT_DTYPE)
        kind = (words >> 28).astype(np.uint8)
        is_high = kind == 0x8
        raw = (words[is_high] & 0x0FFFFFFF).astype(np.int64)
        # t[33:6] wraps after 2^34 us (4.8 h): a decrease of EVT_TIME_HIGH starts a new period.
        prev = np.concatenate([[raw[0] if self.last_raw is None else self.last_raw], raw[:-1]]) if len(raw) else raw
        wraps = self.wraps + np.cumsum(raw < prev)
        high = np.zeros(len(words), np.int64)
        high[is_high] = (raw << 6) + (wraps << 34)
        t_high = _forward_fill(is_high, high, self.high)
        timed = (kind <= 1) | (kind == 0xA)
        t = np.maximum(_monotonic(np.where(timed, t_high + ((words >> 22) & 0x3F).astype(np.int64), 0)), self.t)
        if len(raw):
            self.last_raw, self.wraps, self.high = int(raw[-1]), int(wraps[-1]), int(t_high[-1])
        self.t = int(t[-1])
        cd = kind <= 1
        w = words[cd]
        return make_events((w >> 11) & 0x7FF, w & 0x7FF, t[cd], kind[cd])


class Evt3Decoder:
    """EVT 3.0: 16-bit words, type in bits 15..12, a stateful stream (y, time base, vector base x).
    EVT_ADDR_Y 0 sets y; EVT_ADDR_X 2 is one event (bit 11 polarity, x); VECT_BASE_X 3 sets base x and
    polarity; VECT_12 4 / VECT_8 5 are events at base x + set bit, then base x advances by 12 / 8;
    EVT_TIME_LOW 6 / EVT_TIME_HIGH 8 set bits 11..0 / 23..12 of a 24-bit time that loops every 2^24 us.
    `decode` takes consecutive chunks of one stream; state carries over."""
    name = "EVT 3.0"
    word = np.dtype("<u2")

    def __init__(self):
        self.high = 0           # (loops << 24) | (time_high << 12) of the last EVT_TIME_HIGH
        self.last_raw = None    # its raw 12-bit field, to see loops
        self.loops = 0
        self.t = 0              # running maximum
        self.y = 0
        self.base_x = 0
        self.base_pol = 0
        self.since_base = 0     # vector pixels since the last VECT_BASE_X

    def decode(self, words: np.ndarray) -> np.ndarray:
        if len(words) == 0:
            return np.zeros(0, EVENT_DTYPE)
        n = len(words)
        kind = (words >> 12).astype(np.uint8)
        payload = (words & 0x0FFF).astype(np.int64)
        index = np.arange(n)

        # Time: a new EVT_TIME_HIGH clears the low part; a high part falling by more than half its range
        # is a loop of the 24-bit counter.
        is_high, is_low = kind == 0x8, kind == 0x6
        raw = payload[is_high]
        prev = np.concatenate([[raw[0] if self.last_raw is None else self.last_raw], raw[:-1]]) if len(raw) else raw
        loops = self.loops + np.cumsum(prev - raw > 2048)
        high = np.zeros(n, np.int64)
        high[is_high] = (loops << 24) | (raw << 12)
        high_now = _forward_fill(is_high, high, self.high)
        t = np.where(is_high, high_now, np.where(is_low, high_now | payload, 0))
        t = np.maximum(_monotonic(t), self.t)

        y = _forward_fill(kind == 0x0, payload & 0x7FF, self.y)

        single = kind == 0x2
        base = kind == 0x3
        is_vec = (kind == 0x4) | (kind == 0x5)
        span = np.where(kind == 0x4, 12, np.where(kind == 0x5, 8, 0))
        before = np.cumsum(span) - span                  # vector pixels in this chunk before each word
        base_x = _forward_fill(base, payload & 0x7FF, self.base_x)
        base_pol = _forward_fill(base, payload >> 11, self.base_pol)
        since_base = before - _forward_fill(base, before, -self.since_base)
        vec_idx = index[is_vec]
        bits = (words[vec_idx, None] >> np.arange(12, dtype=np.uint16)) & 1
        bits[span[vec_idx] == 8, 8:] = 0
        rows, cols = np.nonzero(bits)
        vw = vec_idx[rows]

        if len(raw):
            self.last_raw, self.loops = int(raw[-1]), int(loops[-1])
        self.high, self.t, self.y = int(high_now[-1]), int(t[-1]), int(y[-1])
        self.base_x, self.base_pol = int(base_x[-1]), int(base_pol[-1])
        self.since_base = int(since_base[-1] + span[-1])

        src = np.concatenate([index[single], vw])
        order = np.argsort(np.concatenate([index[single] * 16, vw * 16 + cols]), kind="stable")
        x = np.concatenate([payload[single] & 0x7FF, base_x[vw] + since_base[vw] + cols])[order]
        p = np.concatenate([payload[single] >> 11, base_pol[vw]])[order]
        src = src[order]
        return make_events(x, y[src], t[src], p)


class DatDecoder:
    """.dat CD events: 64-bit words, t in bits 31..0 (microseconds, wrapping every 2^32), then
    version 2: x (45..32), y (59..46), p (63..60); version 1: x (40..32), y (48..41), p (52..49)."""
    name = ".dat"
    word = np.dtype("<u8")

    def __init__(self, version: str):
        self.version = version
        self.last = None        # last raw 32-bit time, to see wraps
        self.wraps = 0
        self.t = 0

    def decode(self, words: np.ndarray) -> np.ndarray:
        if len(words) == 0:
            return np.zeros(0, EVENT_DTYPE)
        t32 = (words & 0xFFFFFFFF).astype(np.int64)
        prev = np.concatenate([[t32[0] if self.last is None else self.last], t32[:-1]])
        # A drop of more than half the range is a wrap of the 32-bit counter.
        wraps = self.wraps + np.cumsum(prev - t32 > (1 << 31))
        t = np.maximum(_monotonic(t32 + (wraps << 32)), self.t)
        self.last, self.wraps, self.t = int(t32[-1]), int(wraps[-1]), int(t[-1])
        data = words >> 32
        if self.version == "1":
            x, y, p = data & 0x1FF, (data >> 9) & 0xFF, (data >> 17) & 0xF
        else:
            x, y, p = data & 0x3FFF, (data >> 14) & 0x3FFF, (data >> 28) & 0xF
        return make_events(x, y, t, p != 0)


CHUNK_WORDS = 1 << 22


def _geometry(path: Path, header: PropheseeHeader):
    try:
        return header.geometry
    except ValueError:
        size_lines = {k: v for k, v in header.fields.items() if k in ("format", "geometry", "Width", "Height")}
        raise EventFileError(f"{path}: the header's sensor size is not readable: {size_lines}") from None


def _read_evt(path: Path, fmt: str, chunk_words: int = CHUNK_WORDS):
    with open(path, "rb") as f:
        header = read_prophesee_header(f.read(1 << 16))
    if fmt == "evt21":
        raise EventFileError(f"{path}: EVT 2.1 is not supported; convert it to EVT 3.0 with Metavision "
                             "(metavision_file_to_raw) or to .dat")
    decoder = Evt2Decoder() if fmt == "evt2" else Evt3Decoder()
    return _decode_file(path, header.length, decoder, chunk_words), _geometry(path, header)


def _read_dat(path: Path, fmt: str, chunk_words: int = CHUNK_WORDS):
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    header = read_prophesee_header(head)
    type_and_size = head[header.length:header.length + 2]
    if len(type_and_size) < 2:
        raise EventFileError(f"{path}: .dat file ends inside its header: the file is truncated")
    ev_type, ev_size = type_and_size
    if ev_size != 8 or ev_type not in (0x00, 0x0C):
        raise EventFileError(f"{path}: .dat event type {ev_type:#04x} of size {ev_size} is not a CD event stream "
                             "(expected type 0x00 or 0x0c, size 8)")
    version = header.fields.get("Version", "2")
    if version not in ("1", "2"):
        raise EventFileError(f"{path}: unknown .dat Version {version!r} (known: 1, 2)")
    return _decode_file(path, header.length + 2, DatDecoder(version), chunk_words), _geometry(path, header)


def _line(e: BaseException) -> str:
    """A parser's message as one line (faery's and numpy's span several)."""
    return " ".join(str(e).split())[:300] or type(e).__name__


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: a Rust panic in faery's decoder prints its backtrace there before
    Python sees the exception, which the caller then reports in one line."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _aedat4_field(h: bytes, index: int, fmt: str = "<I") -> tuple[int, int] | None:
    """(offset, value) of scalar field `index` of a flatbuffer's root table, None when absent."""
    root = struct.unpack_from("<I", h, 0)[0]
    vtable = root - struct.unpack_from("<i", h, root)[0]
    vt_size = struct.unpack_from("<H", h, vtable)[0]
    if vt_size < 4 + 2 * (index + 1):
        return None
    field = struct.unpack_from("<H", h, vtable + 4 + 2 * index)[0]
    return None if not field else (root + field, struct.unpack_from(fmt, h, root + field)[0])


def _aedat4_description(head: bytes) -> bytes | None:
    """The raw description string (field infoNode of the IOHeader flatbuffer after the magic and its
    u32 size); None when the header is too damaged to find it (faery then reports the damage)."""
    try:
        size = struct.unpack_from("<I", head, len(AEDAT4_MAGIC))[0]
        h = head[len(AEDAT4_MAGIC) + 4:len(AEDAT4_MAGIC) + 4 + size]
        root = struct.unpack_from("<I", h, 0)[0]
        vtable = root - struct.unpack_from("<i", h, root)[0]
        vt_size = struct.unpack_from("<H", h, vtable)[0]
        if vt_size < 4 + 2 * 3:
            return None
        field = struct.unpack_from("<H", h, vtable + 4 + 2 * 2)[0]     # infoNode: the third field
        if not field:
            return None
        at = root + field
        start = at + struct.unpack_from("<I", h, at)[0]
        length = struct.unpack_from("<I", h, start)[0]
    except struct.error:
        return None
    return h[start + 4:start + 4 + length]


def _check_aedat4_sizes(path: Path) -> None:
    """faery allocates every size field it reads before reading the bytes, so a damaged size (up to
    4 GiB) is an allocation that can abort the process; sizes that run past the end of the file (or
    into its data table) are refused here first.  Layout: magic, u32 header size, header, then
    packets of (i32 stream id, u32 size, size bytes) up to the data table or the end."""
    end = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(len(AEDAT4_MAGIC))
        raw = f.read(4)
        if len(raw) < 4:
            return              # faery reports the cut header
        size = struct.unpack("<I", raw)[0]
        pos = len(AEDAT4_MAGIC) + 4 + size
        if pos > end:
            raise EventFileError(f"{path}: cannot decode AEDAT4: its header claims {size} bytes, past the end of "
                                 f"the {end}-byte file (truncated or corrupt file?)")
        try:
            table = _aedat4_field(f.read(size) if size <= 1 << 20 else b"", 1, "<q")
        except struct.error:
            table = None
        stop = table[1] if table is not None and pos <= table[1] <= end else end
        while pos + 8 <= stop:
            f.seek(pos)
            _, packet = struct.unpack("<iI", f.read(8))
            pos += 8 + packet
            if pos > stop:
                raise EventFileError(f"{path}: cannot decode AEDAT4: a packet of {packet} bytes runs past the end of "
                                     "the stream (truncated or corrupt file?)")


def _check_aedat4_description(path: Path) -> None:
    """faery aborts the whole process (a Rust panic inside a panic) on a description that is not
    UTF-8, so that one damage is caught here, before faery sees the file."""
    _check_aedat4_sizes(path)
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    description = _aedat4_description(head) if head.startswith(AEDAT4_MAGIC) else None
    if description is None:
        return
    try:
        description.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventFileError(f"{path}: cannot decode AEDAT4: the header's stream description is not UTF-8 text "
                             f"(byte {e.start}); the file is corrupt") from None


def _read_aedat4(path: Path, fmt: str):
    try:
        from faery.extension import aedat
    except ImportError:
        raise EventFileError(f"{path}: reading AEDAT4 needs the faery package: pip install 'synfab[events]'")
    _check_aedat4_description(path)
    packets = []
    try:
        with _quiet_stderr(), aedat.Decoder(path) as decoder:
            tracks = [tr for tr in decoder.tracks() if tr.data_type == "events"]
            if not tracks:
                raise EventFileError(f"{path}: the AEDAT4 file has no event stream (only "
                                     f"{sorted({tr.data_type for tr in decoder.tracks()})})")
            track = tracks[0]
            for tr, packet in decoder:
                if tr.id == track.id and len(packet):
                    packets.append(packet)
    except EventFileError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # the Rust decoder raises RuntimeError, and pyo3 panics are BaseException
        raise EventFileError(f"{path}: cannot decode AEDAT4: {_line(e)} (truncated or corrupt file?)") from None
    if packets:
        raw = np.concatenate(packets)
        events = make_events(raw["x"], raw["y"], _monotonic(raw["t"].astype(np.int64)), raw["on"])
    else:
        events = np.zeros(0, EVENT_DTYPE)
    return events, tuple(int(v) for v in track.dimensions)


def as_events(array: np.ndarray, what: str) -> np.ndarray:
    """Convert a structured array with fields x, y, t and p (or 'on' / 'polarity') to EVENT_DTYPE."""
    names = array.dtype.names or ()
    pol = next((n for n in ("p", "on", "polarity") if n in names), None)
    if array.ndim != 1 or not {"x", "y", "t"} <= set(names) or pol is None:
        raise EventFileError(f"{what}: expected a 1-D structured array with fields x, y, t, p; got dtype "
                             f"{array.dtype} and shape {array.shape}")
    odd = [n for n in ("x", "y", "t", pol) if array.dtype[n].shape != () or array.dtype[n].kind not in "biuf"]
    if odd:
        raise EventFileError(f"{what}: fields {odd} must each hold one number per event; got dtype {array.dtype}")
    if array.dtype == EVENT_DTYPE:
        return np.ascontiguousarray(array)
    return make_events(array["x"], array["y"], array["t"], array[pol].astype(bool))


def _load_numpy(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, tokenize.TokenError, SyntaxError,
            NotImplementedError, RuntimeError) as e:
        # numpy parses the .npy header with the tokenizer: a cut header raises TokenError; zipfile
        # raises NotImplementedError for a damaged version or compression field, RuntimeError for a
        # member whose flags say it is encrypted.
        raise EventFileError(f"{path}: cannot load as numpy data: {_line(e)} (truncated or corrupt file?)") from None


def _read_npy(path: Path, fmt: str):
    return as_events(_load_numpy(path), str(path)), None


def _read_npz(path: Path, fmt: str):
    npz = _load_numpy(path)
    if not hasattr(npz, "files"):
        raise EventFileError(f"{path}: expected an .npz archive")
    with npz:
        if "events" not in npz.files:
            raise EventFileError(f"{path}: no 'events' array in the archive (it has {npz.files}); write it with "
                                 "synfab.events.write")
        try:
            events = as_events(npz["events"], str(path))
            size = (int(npz["width"]), int(npz["height"])) if {"width", "height"} <= set(npz.files) else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, tokenize.TokenError, SyntaxError,
            NotImplementedError, RuntimeError) as e:
            raise EventFileError(f"{path}: cannot load the archive's arrays: {_line(e)} (truncated or corrupt?)") \
                from None
    return events, size
