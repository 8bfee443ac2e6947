"""Event file readers and writers: hand-built streams, real sample recordings, round trips, bad files."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from synfab.errors import SynfabError
from synfab.events import EVENT_DTYPE, EventFileError, Recording, make_events, read, write
from synfab.events import samples
from synfab.events.readers import DatDecoder, Evt2Decoder, Evt3Decoder
from synfab.events.writers import encode_evt2


def rows(events):
    return [tuple(int(v) for v in e) for e in events[["x", "y", "t", "p"]]]


def decode_in_chunks(decoder, words, size):
    return np.concatenate([decoder.decode(words[i:i + size]) for i in range(0, len(words), size)])


def evt3_word(kind, payload):
    return (kind << 12) | payload


# -- hand-built streams, decoded against the format documents ------------------------------------------
def test_evt3_hand_built_stream(tmp_path):
    words = [
        evt3_word(0x8, 1),                  # TIME_HIGH 1 -> t = 4096
        evt3_word(0x6, 5),                  # TIME_LOW 5 -> 4101
        evt3_word(0x0, 7),                  # ADDR_Y 7
        evt3_word(0x2, (1 << 11) | 3),      # ADDR_X ON x=3
        evt3_word(0x3, 10),                 # VECT_BASE_X OFF x=10
        evt3_word(0x4, 0x805),              # VECT_12 bits 0, 2, 11 -> x = 10, 12, 21; base -> 22
        evt3_word(0x5, 0xF01),              # VECT_8 bit 0 -> x = 22 (bits 11..8 are not part of VECT_8)
        evt3_word(0x6, 9),                  # TIME_LOW 9 -> 4105
        evt3_word(0x0, (1 << 11) | 2),      # ADDR_Y 2 (system-type bit set)
        evt3_word(0x2, 4),                  # ADDR_X OFF x=4
        evt3_word(0xA, 0x123),              # EXT_TRIGGER: not a CD event
        evt3_word(0x8, 4095),               # TIME_HIGH 4095 -> 16773120
        evt3_word(0x2, (1 << 11) | 5),
        evt3_word(0x8, 0),                  # loop of the 24-bit time -> 2^24
        evt3_word(0x6, 3),                  # -> 16777219
        evt3_word(0x2, (1 << 11) | 6),
        evt3_word(0x7, 0xF), evt3_word(0xE, 0xFFF),
    ]
    path = tmp_path / "hand.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;height=8;width=32\n% end\n"
                     + np.array(words, "<u2").tobytes())
    rec = read(path)
    assert (rec.format, rec.width, rec.height) == ("evt3", 32, 8)
    expected = [(3, 7, 4101, 1), (10, 7, 4101, 0), (12, 7, 4101, 0), (21, 7, 4101, 0), (22, 7, 4101, 0),
                (4, 2, 4105, 0), (5, 2, 16773120, 1), (6, 2, 16777219, 1)]
    assert rows(rec.events) == expected
    # The decoder state (y, time, loops, vector base) carries across chunk boundaries, down to 1 word.
    for size in (1, 2, 3, 5):
        assert rows(decode_in_chunks(Evt3Decoder(), np.array(words, "<u2"), size)) == expected


def test_evt2_hand_built_stream_with_time_wrap(tmp_path):
    words = [
        (0x8 << 28) | 10,                                  # TIME_HIGH 10 -> 640
        (0x1 << 28) | (3 << 22) | (5 << 11) | 6,           # ON  t=643 x=5 y=6
        (0x0 << 28) | (63 << 22) | (2047 << 11) | 0,       # OFF t=703 x=2047 y=0
        (0xA << 28) | (1 << 22) | 1,                       # trigger
        (0x8 << 28) | 0x0FFFFFFF,                          # TIME_HIGH max -> 2^34 - 64
        (0x1 << 28) | (1 << 22) | (0 << 11) | 1,           # ON t = 2^34 - 63
        (0x8 << 28) | 0,                                   # wraps -> 2^34
        (0x0 << 28) | (2 << 22) | (9 << 11) | 15,          # OFF t = 2^34 + 2
    ]
    path = tmp_path / "hand.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 2048x16\n" + np.array(words, "<u4").tobytes())
    rec = read(path)
    assert (rec.format, rec.width, rec.height) == ("evt2", 2048, 16)
    expected = [(5, 6, 643, 1), (2047, 0, 703, 0), (0, 1, 2**34 - 63, 1), (9, 15, 2**34 + 2, 0)]
    assert rows(rec.events) == expected
    for size in (1, 2, 3):
        assert rows(decode_in_chunks(Evt2Decoder(), np.array(words, "<u4"), size)) == expected


def dat_bytes(header, words):
    return header + bytes([0x0C, 8]) + np.array(words, "<u8").tobytes()


def test_dat_version2_and_version1(tmp_path):
    v2 = tmp_path / "v2.dat"
    v2.write_bytes(dat_bytes(b"% Version 2\n% Width 64\n% Height 32\n% date 2024-01-01 00:00:00\n", [
        (((1 << 28) | (31 << 14) | 63) << 32) | 0xFFFFFFF0,
        (((0 << 28) | (2 << 14) | 1) << 32) | 5,          # 32-bit counter wrapped: t = 2^32 + 5
    ]))
    assert rows(read(v2).events) == [(63, 31, 0xFFFFFFF0, 1), (1, 2, 2**32 + 5, 0)]
    words = np.frombuffer(v2.read_bytes()[-16:], "<u8")
    assert rows(decode_in_chunks(DatDecoder("2"), words, 1)) == [(63, 31, 0xFFFFFFF0, 1), (1, 2, 2**32 + 5, 0)]
    assert read(v2).sensor_size == (64, 32)
    v1 = tmp_path / "v1.dat"
    v1.write_bytes(dat_bytes(b"% Version 1\n% Width 304\n% Height 240\n", [
        (((1 << 17) | (239 << 9) | 303) << 32) | 100,
        (((0 << 17) | (0 << 9) | 7) << 32) | 101,
    ]))
    rec = read(v1)
    assert rows(rec.events) == [(303, 239, 100, 1), (7, 0, 101, 0)]
    assert (rec.format, rec.sensor_size) == ("dat", (304, 240))


def test_raw_without_geometry_uses_plugin_or_data_or_override(tmp_path):
    words = np.array([(0x8 << 28) | 1, (1 << 28) | (10 << 11) | 4], "<u4").tobytes()
    gen3 = tmp_path / "gen3.raw"
    gen3.write_bytes(b"% plugin_name hal_plugin_gen3_fx3\n% evt 2.0\n" + words)
    assert read(gen3).sensor_size == (640, 480)
    bare = tmp_path / "bare.raw"
    bare.write_bytes(b"% evt 2.0\n" + words)
    assert read(bare).sensor_size == (11, 5)
    assert read(bare, sensor_size=(100, 50)).sensor_size == (100, 50)


# -- writers and round trips ----------------------------------------------------------------------------
def test_npz_round_trip_keeps_events_and_sensor_size(tmp_path):
    ev = make_events([0, 5, 7], [1, 2, 3], [10, 20, 20], [1, 0, 1])
    path = write(tmp_path / "a.npz", Recording(ev, 100, 50, "evt3"))
    rec = read(path)
    assert rec.events.dtype == EVENT_DTYPE
    assert rows(rec.events) == [(0, 1, 10, 1), (5, 2, 20, 0), (7, 3, 20, 1)]
    assert (rec.width, rec.height, rec.format) == (100, 50, "npz")


def test_npy_round_trip_and_foreign_structured_arrays(tmp_path):
    ev = make_events([3, 9], [4, 1], [0, 7], [0, 1])
    rec = read(write(tmp_path / "a.npy", Recording(ev, 640, 480)))
    assert rows(rec.events) == rows(ev) and rec.sensor_size == (10, 5)   # .npy keeps no size
    tonic_like = np.array([(0, 3, 4, False), (7, 9, 1, True)],
                          dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "?")])
    np.save(tmp_path / "b.npy", tonic_like)
    assert rows(read(tmp_path / "b.npy").events) == [(3, 4, 0, 0), (9, 1, 7, 1)]


def test_evt2_writer_is_read_back_by_faery(tmp_path):
    faery = pytest.importorskip("faery")
    ev = make_events([0, 639, 10, 11], [0, 479, 5, 5], [0, 63, 64, 1_000_000], [1, 0, 1, 0])
    path = write(tmp_path / "w.raw", Recording(ev, 640, 480))
    ref = faery.events_stream_from_file(path).to_array()
    assert [(int(e["x"]), int(e["y"]), int(e["t"]), int(e["on"])) for e in ref] == rows(ev)
    assert rows(read(path).events) == rows(ev)
    assert read(path).sensor_size == (640, 480)


events_strategy = st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 2047), st.integers(0, 5000),
                                     st.integers(0, 1)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(0, 2**34 - 10**6))
def test_evt2_encode_decode_round_trip(items, start):
    items.sort(key=lambda e: e[2])
    ev = make_events([e[0] for e in items], [e[1] for e in items], [start + e[2] for e in items],
                     [e[3] for e in items])
    words = encode_evt2(ev)
    # Exactly one TIME_HIGH word per distinct t >> 6 run, one CD word per event.
    assert len(words) == len(ev) + len({(start + e[2]) >> 6 for e in items})
    assert rows(Evt2Decoder().decode(words)) == rows(ev)


def test_writers_refuse_what_the_format_cannot_hold(tmp_path):
    late = make_events([1], [1], [2**34], [1])
    with pytest.raises(EventFileError, match="zero-time"):
        write(tmp_path / "x.raw", Recording(late, 10, 10))
    with pytest.raises(EventFileError, match="cannot write"):
        write(tmp_path / "x.csv", Recording(late, 10, 10))


# -- bad files --------------------------------------------------------------------------------------------
def assert_file_error(path, fragment):
    with pytest.raises(EventFileError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message and fragment in message and "\n" not in message
    assert isinstance(info.value, SynfabError)


def test_truncated_and_garbage_files(tmp_path):
    cases = {
        "odd.raw": (b"% evt 3.0\n" + b"\x01\x80\x05", "truncated"),
        "short.raw": (b"% evt 2.0\n" + b"\x00" * 6, "truncated"),
        "short.dat": (dat_bytes(b"% Version 2\n", [1, 2])[:-3], "truncated"),
        "header_only.dat": (b"% Version 2\n", "truncated"),
        "noversion.raw": (b"% date 2020\n" + b"\x00" * 8, "EVT 2.0 and 3.0"),
        "evt21.raw": (b"% format EVT21\n" + b"\x00" * 8, "EVT 2.1"),
        "notcd.dat": (b"% Version 2\n" + bytes([0x07, 8]), "not a CD event stream"),
        "garbage.npz": (b"PK\x03\x04" + bytes(range(200)), "cannot load"),
        "garbage.npy": (b"\x93NUMPY" + bytes(100), "cannot load"),
        "notes.txt": (b"hello", "unknown event file format"),
        "badsize.raw": (b"% evt 3.0\n% geometry widexhigh\n", "sensor size is not readable"),
        "empty.bin": (b"", "unknown event file format"),
    }
    for name, (data, fragment) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert_file_error(tmp_path / name, fragment)
    np.save(tmp_path / "plain.npy", np.arange(5))
    assert_file_error(tmp_path / "plain.npy", "fields x, y, t, p")
    np.savez(tmp_path / "other.npz", stuff=np.arange(3))
    assert_file_error(tmp_path / "other.npz", "no 'events' array")
    assert_file_error(tmp_path / "missing.aedat4", "no such file")
    assert_file_error(tmp_path, "not a file")


def test_coordinates_outside_the_header_geometry_are_refused(tmp_path):
    path = tmp_path / "big.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 8x8\n" + np.array([(1 << 28) | (9 << 11) | 1], "<u4").tobytes())
    assert_file_error(path, "outside the 8x8 sensor")


def test_garbage_aedat4(tmp_path):
    pytest.importorskip("faery")
    rng = np.random.default_rng(1)
    (tmp_path / "g.aedat4").write_bytes(rng.bytes(3000))
    assert_file_error(tmp_path / "g.aedat4", "cannot decode AEDAT4")
    (tmp_path / "h.aedat4").write_bytes(b"#!AER-DAT4.0\r\n" + rng.bytes(3000))
    assert_file_error(tmp_path / "h.aedat4", "cannot decode AEDAT4")


def test_aedat4_without_faery_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faery", None)
    monkeypatch.setitem(sys.modules, "faery.extension", None)
    (tmp_path / "a.aedat4").write_bytes(b"#!AER-DAT4.0\r\n")
    assert_file_error(tmp_path / "a.aedat4", "pip install")


def test_import_does_not_pull_optional_readers():
    code = "import synfab.events, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('faery', 'aedat')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


# -- real recordings --------------------------------------------------------------------------------------
# Sizes are those written in the files' own headers (AEDAT4 XML sizeX/sizeY, Prophesee geometry/Width/Height;
# the EVT2 file names a Gen3 VGA plugin).
SAMPLE_SIZES = {"dvxplorer": (320, 240), "davis346": (346, 260), "evt2": (640, 480), "evt3": (1280, 720),
                "gen4_dat": (1280, 720)}
SAMPLE_FORMATS = {"dvxplorer": "aedat4", "davis346": "aedat4", "evt2": "evt2", "evt3": "evt3", "gen4_dat": "dat"}


def sample_param(name):
    # The dvxplorer file comes from a 3 MB archive; the others from a 29 MB one.
    return pytest.param(name, marks=() if name == "dvxplorer" else pytest.mark.slow)


@pytest.mark.parametrize("name", [sample_param(n) for n in samples.NAMES])
def test_sample_recordings_are_plausible(name):
    if SAMPLE_FORMATS[name] == "aedat4":
        pytest.importorskip("faery")
    rec = read(samples.fetch(name))
    ev = rec.events
    assert rec.format == SAMPLE_FORMATS[name]
    assert rec.sensor_size == SAMPLE_SIZES[name]
    assert 50_000 < len(ev) < 5_000_000
    assert np.all(np.diff(ev["t"]) >= 0)
    assert 0.05 < rec.duration_us / 1e6 < 60
    assert ev["x"].max() < rec.width and ev["y"].max() < rec.height
    on = np.count_nonzero(ev["p"]) / len(ev)
    assert 0.2 < on < 0.8
    # Activity covers the sensor rather than a handful of pixels.
    assert len(np.unique(ev["y"].astype(np.int64) * rec.width + ev["x"])) > 0.02 * rec.width * rec.height


@pytest.mark.slow
@pytest.mark.parametrize("name", ["evt2", "evt3", "gen4_dat"])
def test_prophesee_decoders_match_faery(name):
    faery = pytest.importorskip("faery")
    path = samples.fetch(name)
    ref = faery.events_stream_from_file(path).to_array()
    ev = read(path).events
    assert len(ev) == len(ref)
    for ours, theirs in (("x", "x"), ("y", "y"), ("t", "t"), ("p", "on")):
        assert np.array_equal(ev[ours].astype(np.int64), ref[theirs].astype(np.int64)), ours


@pytest.mark.slow
@pytest.mark.parametrize("name, decoder, offset", [("evt3", Evt3Decoder, 225), ("evt2", Evt2Decoder, 166)])
def test_chunked_decoding_of_real_streams(name, decoder, offset):
    # Header lengths as counted in the files; chunk sizes that split vectors and time words anywhere.
    words = np.fromfile(samples.fetch(name), dtype=decoder.word, offset=offset)
    whole = decoder().decode(words)
    assert len(whole) > 100_000
    for size in (4099, 65_537):
        assert np.array_equal(decode_in_chunks(decoder(), words, size), whole)


@pytest.mark.slow
def test_evt3_and_dat_samples_hold_the_same_scene():
    evt3, dat = read(samples.fetch("evt3")).events, read(samples.fetch("gen4_dat")).events
    assert len(evt3) == len(dat)
    for field in ("x", "y", "p"):
        assert np.array_equal(evt3[field], dat[field])
    offset = evt3["t"].astype(np.int64) - dat["t"]
    assert np.all(offset == offset[0])


def test_fetch_refuses_unknown_names(tmp_path):
    with pytest.raises(SynfabError, match="known: dvxplorer"):
        samples.fetch("nope", cache_dir=tmp_path)


def test_truncated_real_aedat4(tmp_path):
    pytest.importorskip("faery")
    data = samples.fetch("dvxplorer").read_bytes()
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(data[: len(data) // 2])
    assert_file_error(cut, "cannot decode AEDAT4")
