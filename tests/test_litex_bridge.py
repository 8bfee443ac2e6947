"""StreamBridge (gateware/soc/bridge.py) in migen simulation, with a loopback in place of the fabric."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

migen = pytest.importorskip("migen")
from migen import If, Module, Signal, run_simulation  # noqa: E402

from synfab.runtime import litex as soc_map  # noqa: E402
from synfab_gateware.soc.bridge import StreamBridge  # noqa: E402


class Loopback(Module):
    """Bridge whose input beats come back inverted as output beats; `fabric_ready` stalls the
    stand-in fabric and `accepted` counts the beats it took."""

    def __init__(self, in_depth=8, out_depth=8):
        self.submodules.bridge = b = StreamBridge(in_depth, out_depth)
        self.fabric_ready = Signal(reset=1)
        self.accepted = Signal(32)     # beats the "fabric" took
        self.comb += [
            b.sink.valid.eq(b.source.valid & self.fabric_ready),
            b.sink.data.eq(~b.source.data),      # visibly transformed
            b.sink.last.eq(b.source.last),
            b.source.ready.eq(b.sink.ready & self.fabric_ready),
        ]
        self.sync += If(b.source.valid & b.source.ready, self.accepted.eq(self.accepted + 1))


def word(offset):
    return offset // 4


def reg(name):
    return word(soc_map.REGS) + soc_map.BRIDGE_REGS.index(name)


def push(bus, beats, last_index):
    for i, b in enumerate(beats):
        base = soc_map.IN_LAST if i == last_index else soc_map.IN_DATA
        yield from bus.write(word(base) + (i % 7), int(b) & 0xFFFFFFFF)
        yield from bus.write(word(base) + (i % 7) + 1, int(b) >> 32)


def pop(bus, n):
    out = []
    for i in range(n):
        lo = yield from bus.read(word(soc_map.OUT_DATA) + 3 * i % 250)
        hi = yield from bus.read(word(soc_map.OUT_DATA) + 3 * i % 250 + 1)
        flags = yield from bus.read(word(soc_map.OUT_DATA) + 3 * i % 250 + 2)
        out.append((lo | (hi << 32), flags))
    return out


def read_regs(bus):
    vals = []
    for name in soc_map.BRIDGE_REGS:
        vals.append((yield from bus.read(reg(name))))
    return dict(zip(soc_map.BRIDGE_REGS, vals))


def run(dut, gen):
    result = {}

    def wrapped():
        result["value"] = yield from gen
    run_simulation(dut, wrapped())
    return result["value"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6))
def test_frame_round_trip_is_held_until_complete(beats):
    dut = Loopback(in_depth=8, out_depth=8)
    bus = dut.bridge.bus

    def gen():
        regs0 = yield from read_regs(bus)
        # All but the last beat: nothing may reach the fabric yet (store-and-forward).
        yield from push(bus, beats[:-1], last_index=-1)
        for _ in range(5):
            yield
        held = yield dut.accepted
        regs1 = yield from read_regs(bus)
        yield from push(bus, beats[-1:], last_index=0)
        for _ in range(len(beats) + 5):
            yield
        regs2 = yield from read_regs(bus)
        out = yield from pop(bus, len(beats))
        empty = yield from pop(bus, 1)
        regs3 = yield from read_regs(bus)
        return regs0, held, regs1, regs2, out, empty, regs3

    regs0, held, regs1, regs2, out, empty, regs3 = run(dut, gen())
    n = len(beats)
    assert regs0["id"] == soc_map.BRIDGE_MAGIC
    # A buffered FIFO of depth 8 holds 10 beats (memory, its output register, the register after it).
    assert regs0["in_free"] == regs0["in_depth"] == 10 and regs0["out_level"] == 0
    assert held == 0
    assert regs1["in_free"] == 10 - (n - 1) and regs1["frames_done"] == 0
    assert regs2["out_level"] == n and regs2["frames_done"] == 1
    # Loopback takes one beat per cycle: first release to last output = n cycles.
    assert regs2["frame_cycles"] == n and regs2["flags"] == 0
    mask = 2**64 - 1
    assert [w for w, _ in out] == [~b & mask for b in beats]
    assert [f for _, f in out] == [1] * (n - 1) + [3]     # valid, and last on the final beat
    assert empty[0][1] == 0                               # nothing left: not valid, nothing popped
    assert regs3["out_level"] == 0


def test_oversized_frame_is_released_and_flagged():
    dut = Loopback(in_depth=4, out_depth=16)
    bus = dut.bridge.bus
    beats = list(range(1, 11))

    def gen():
        for i, b in enumerate(beats):
            while (yield from bus.read(reg("in_free"))) == 0:
                pass
            yield from push(bus, [b], last_index=0 if i == len(beats) - 1 else -1)
        for _ in range(20):
            yield
        regs = yield from read_regs(bus)
        out = yield from pop(bus, len(beats))
        return regs, out

    regs, out = run(dut, gen())
    assert regs["frames_done"] == 1 and regs["out_level"] == 10
    assert regs["flags"] & soc_map.FLAG_IN_OVERFLOW
    assert [w for w, _ in out] == [~b & (2**64 - 1) for b in beats]


def test_output_backpressure_and_overrun_flags_and_resync():
    dut = Loopback(in_depth=8, out_depth=2)
    bus = dut.bridge.bus
    beats = [5, 6, 7, 8, 9]

    def gen():
        yield from push(bus, beats, last_index=4)
        for _ in range(10):
            yield
        partial = yield from read_regs(bus)
        out = yield from pop(bus, 5)
        regs = yield from read_regs(bus)
        # Stop the fabric and overfill the input FIFO: the lost beat is flagged.
        yield dut.fabric_ready.eq(0)
        yield from push(bus, list(range(1, 13)), last_index=-1)   # 12 beats, room for 10
        over = yield from read_regs(bus)
        yield from bus.write(reg("ctrl"), soc_map.CTRL_RESYNC)
        cleared = yield from read_regs(bus)
        return partial, regs, out, over, cleared

    partial, regs, out, over, cleared = run(dut, gen())
    # Four beats fit the output side (two in memory, its output register, the register after it);
    # the fabric waits until the host reads.
    assert partial["out_level"] == 4 and partial["frames_done"] == 0
    assert regs["frames_done"] == 1 and regs["flags"] & soc_map.FLAG_OUT_STALL
    assert [w for w, _ in out] == [~b & (2**64 - 1) for b in beats]
    assert over["flags"] & soc_map.FLAG_IN_OVERRUN
    assert not cleared["flags"] & soc_map.FLAG_IN_OVERRUN


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 127), st.integers(-256, 255)),
                min_size=1, max_size=6))
def test_packed_words_become_the_beats_of_the_same_events(events):
    """In packed mode (ctrl CTRL_PACKED) each IN_DATA word is one event in layouts.PACKED_EVENT; the
    fabric gets the STREAM_EVENT beat of that event (d sign-extended), then the word-pair eof beat.
    ctrl reads the mode back; a ctrl write without the bit ends it."""
    import numpy as np
    from synfab.layouts import PACKED_EVENT, STREAM_EVENT
    cols = {k: np.array([e[i] for e in events]) for i, k in enumerate("xycd")}
    packed = PACKED_EVENT.pack(cols)[:, 0]
    zeros = np.zeros(len(events), np.int64)
    want = STREAM_EVENT.pack64({**cols, "tag": zeros, "eof": zeros}).tolist()
    eof = int(STREAM_EVENT.pack64({k: [0] for k in ("x", "y", "c", "d", "tag")} | {"eof": [1]})[0])
    dut = Loopback(in_depth=8, out_depth=8)
    bus = dut.bridge.bus

    def gen():
        yield from bus.write(reg("ctrl"), soc_map.CTRL_PACKED)
        mode = yield from bus.read(reg("ctrl"))
        for i, w in enumerate(packed):
            yield from bus.write(word(soc_map.IN_DATA) + i % 5, int(w))
        yield from push(bus, [eof], last_index=0)
        for _ in range(20):
            yield
        got = yield from pop(bus, len(events) + 1)
        yield from bus.write(reg("ctrl"), 0)
        after = yield from bus.read(reg("ctrl"))
        regs = yield from read_regs(bus)
        return mode, got, after, regs

    mode, got, after, regs = run(dut, gen())
    assert mode == soc_map.CTRL_PACKED and after == 0
    mask = 2**64 - 1
    assert [(~b) & mask for b, _ in got] == want + [eof]          # the loopback inverts every beat
    assert [f for _, f in got] == [1] * len(events) + [3]
    assert not regs["flags"] & soc_map.FLAG_IN_OVERRUN
