"""TableMemory (host write/commit/readback, datapath port) and the PEG against DESIGN.md's pseudo-code."""
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("migen")
from migen import run_simulation  # noqa: E402

from synfab.compiler import at_version  # noqa: E402
from synfab.config import PRESETS  # noqa: E402
from synfab.layouts import FABRIC_LAYOUT_VERSION, Kind, RegisterMap, packet, peg_entry  # noqa: E402
from synfab_gateware.core.peg import PEG  # noqa: E402
from synfab_gateware.tables import TableMemory  # noqa: E402

CFG = PRESETS["tiny"]


def entry_words(layout, value: int) -> list[int]:
    return [(value >> (32 * j)) & 0xFFFFFFFF for j in range(layout.words32)]


def pack_entry(layout, entry: dict) -> int:
    """An entry (fields missing from a version-1 entry: what they mean, compiler.at_version) packed."""
    cols = at_version(layout, {k: [v] for k, v in entry.items()})
    return layout.pack_one(**{k: int(v[0]) for k, v in cols.items()})


# ---------------------------------------------------------------------------------------------
# TableMemory
READ_LATENCY = 2    # block RAM read, then the output register


def test_table_memory_commit_and_readback():
    lay = peg_entry(CFG)
    n = 5
    dut = TableMemory(lay, n)
    assert dut.stride == RegisterMap(CFG).core_windows["peg"].stride
    rng = random.Random(1)
    values = [rng.getrandbits(lay.width) for _ in range(n)]
    seen = {}

    def gen():
        # Stage the first words of entry 2, check that the datapath still sees the old (zero) entry.
        for j, w in enumerate(entry_words(lay, values[2])[:-1]):
            yield from dut.bus.write(2 * dut.stride + j, w)
        yield dut.rd_adr.eq(2)
        for _ in range(READ_LATENCY + 1):
            yield
        seen["half"] = (yield dut.rd_dat.raw_bits())
        for i in range(n):
            for j, w in enumerate(entry_words(lay, values[i])):
                yield from dut.bus.write(i * dut.stride + j, w)
        for i in range(n):
            yield dut.rd_adr.eq(i)
            for _ in range(READ_LATENCY + 1):
                yield
            seen[("rd", i)] = (yield dut.rd_dat.raw_bits())
            seen[("kind", i)] = (yield dut.rd_dat.kind)
            words = []
            for j in range(dut.stride):
                words.append((yield from dut.bus.read(i * dut.stride + j)))
            seen[("bus", i)] = words
        # Unmapped: an entry beyond the table, and a write there must not land anywhere.
        yield from dut.bus.write(n * dut.stride + lay.words32 - 1, 0xFFFFFFFF)
        seen["unmapped"] = (yield from dut.bus.read(n * dut.stride))
        seen["after"] = []
        for i in range(n):
            seen["after"].append((yield from dut.bus.read(i * dut.stride)))

    run_simulation(dut, gen())
    assert seen["half"] == 0
    for i in range(n):
        assert seen[("rd", i)] == values[i]
        assert seen[("kind", i)] == values[i] & 3
        words = entry_words(lay, values[i])
        assert seen[("bus", i)] == words + [0] * (dut.stride - len(words))
    assert seen["unmapped"] == 0
    assert seen["after"] == [entry_words(lay, v)[0] for v in values]


@pytest.mark.parametrize("latency", [2, 3])
def test_table_memory_streams_one_entry_per_clock_after_its_latency(latency):
    """A new address every clock: entry i's data appears exactly `latency` clocks later."""
    lay = peg_entry(CFG)
    n = 6
    dut = TableMemory(lay, n, latency=latency)
    values = [random.Random(latency).getrandbits(lay.width) ^ i for i in range(n)]
    out = []

    def gen():
        for i in range(n):
            for j, w in enumerate(entry_words(lay, values[i])):
                yield from dut.bus.write(i * dut.stride + j, w)
        for t in range(n + latency):
            yield dut.rd_adr.eq((t + 1) % n)      # rd_adr starts at 0: begin elsewhere
            yield
            out.append((yield dut.rd_dat.raw_bits()))

    run_simulation(dut, gen())
    # The address written in step t is in the memory's input from the next clock (migen), so its
    # entry is read in step t + latency.
    assert out[latency:latency + n] == [values[(t + 1) % n] for t in range(n)]
    assert out[latency - 1] != values[1]


def test_table_memory_read_enable_holds_output():
    """rd_re is the clock enable of both read stages: with it low the output holds, and an address
    presented with it high appears two enabled clocks later."""
    lay = peg_entry(CFG)
    dut = TableMemory(lay, 2)
    seen = []

    def gen():
        for i, v in enumerate([0x123, 0x456]):
            for j, w in enumerate(entry_words(lay, v)):
                yield from dut.bus.write(i * dut.stride + j, w)
        yield dut.rd_adr.eq(0)
        for _ in range(READ_LATENCY + 1):
            yield
        seen.append((yield dut.rd_dat.raw_bits()))       # entry 0
        yield dut.rd_re.eq(0)
        yield dut.rd_adr.eq(1)
        for _ in range(4):
            yield
        seen.append((yield dut.rd_dat.raw_bits()))       # still entry 0: held
        yield dut.rd_re.eq(1)
        for _ in range(READ_LATENCY + 1):
            yield
        seen.append((yield dut.rd_dat.raw_bits()))       # entry 1

    run_simulation(dut, gen())
    assert seen == [0x123, 0x123, 0x456]


def test_host_reads_wait_for_the_owner_and_leave_the_datapath_alone():
    """The host reads through the datapath's port only while the owner allows it (host_ok), and
    the owner sees host_busy meanwhile."""
    lay = peg_entry(CFG)
    dut = TableMemory(lay, 4)
    seen = {}

    def host():
        for i, v in enumerate([0x11, 0x22, 0x33, 0x44]):
            for j, w in enumerate(entry_words(lay, v)):
                yield from dut.bus.write(i * dut.stride + j, w)
        yield dut.host_ok.eq(0)
        written[0] = True
        seen["value"] = yield from dut.bus.read(2 * dut.stride)
        seen["done_at"] = seen_clock[0]

    seen_clock = [0]
    written = [False]

    def owner():
        yield dut.host_ok.eq(0)
        while not written[0]:      # the blocking window starts once the entries are written
            yield
        busy_while_blocked = 0
        for t in range(60):
            seen_clock[0] = t
            if t == 40:
                yield dut.host_ok.eq(1)
            busy_while_blocked += (t < 40) and (yield dut.host_busy)
            yield
        seen["busy_while_blocked"] = busy_while_blocked

    run_simulation(dut, [host(), owner()])
    assert seen["value"] == 0x33
    assert seen["done_at"] >= 40, "the read waited for host_ok"
    assert seen["busy_while_blocked"] == 0


def test_serial_table_reads_whole_entries_with_derived_words():
    """SerialTableMemory: an entry written word by word is read back by the datapath as a whole,
    with the values its `derive` module computed at the commit (here: the sum of two fields)."""
    from migen import If, Signal
    from litex.gen import LiteXModule
    from synfab.layouts import pop_desc
    from synfab_gateware.common import record
    from synfab_gateware.tables import SerialTableMemory

    lay = pop_desc(CFG)

    class SumDerive(LiteXModule):
        def __init__(self):
            self.entry = record(lay)
            self.start, self.done = Signal(), Signal()
            self.extra = Signal(40)
            busy = Signal(2)
            self.sync += [self.done.eq(0),
                          If(self.start, busy.eq(3), self.extra.eq(self.entry.mult + self.entry.hi)).Elif(
                              busy != 0, busy.eq(busy - 1), If(busy == 1, self.done.eq(1)))]

    dut = SerialTableMemory(lay, 4, derive=SumDerive())
    rng = random.Random(3)
    entries = [{f.name: rng.randrange(1 << f.width) for f in lay.fields} for _ in range(4)]
    seen = {}

    def gen():
        for i, e in enumerate(entries):
            raw = sum(v << lay.offsets[k] for k, v in e.items())
            for j, w in enumerate(entry_words(lay, raw)):
                yield from dut.bus.write(i * dut.stride + j, w)
        for i in (2, 0, 3):
            yield dut.rd_adr.eq(i)
            yield dut.rd_start.eq(1)
            yield
            yield dut.rd_start.eq(0)
            while not (yield dut.rd_done):
                yield
            yield
            seen[i] = ((yield dut.rd_dat.raw_bits()), (yield dut.rd_extra))
        seen["bus"] = []
        for j in range(dut.stride):
            seen["bus"].append((yield from dut.bus.read(1 * dut.stride + j)))

    run_simulation(dut, gen())
    for i in (2, 0, 3):
        raw = sum(v << lay.offsets[k] for k, v in entries[i].items())
        assert seen[i] == (raw, entries[i]["mult"] + entries[i]["hi"])
    raw1 = sum(v << lay.offsets[k] for k, v in entries[1].items())
    words = entry_words(lay, raw1)
    assert seen["bus"] == words + [0] * (dut.stride - len(words)), "the bus reads only the layout's words"


# ---------------------------------------------------------------------------------------------
# PEG: DESIGN.md pseudo-code, transcribed directly.
def peg_reference(entries, n_entries, x, y, c, d, base, count):
    out = []
    cmask = (1 << CFG.chan_bits) - 1
    for idx in range(base, base + count):
        if idx >= n_entries:
            continue
        e = entries[idx]
        c_in = c + e["chan_off"]
        pk = dict(dest=e["dest_core"], host=0, syn=e["syn"], x=x, y=y, c=c_in & cmask, d=d,
                  nx=0, ny=0, kx=0, ky=0)
        if e["kind"] == Kind.HOST:
            pk.update(host=1, c=c)
        elif e["kind"] == Kind.DENSE:
            pk.update(nx=1, ny=1)
        else:
            if e["kind"] == Kind.DW and not (e["c0"] <= c_in <= e["c1"]):
                continue
            axes = []
            # x: k, s_log2, pad; y: k_y, s_log2_y, pad_y (a version-1 entry: the x ones).
            for v, t0, t1, k, s, pad in ((x, e["x0"], e["x1"], e["k"], e["s_log2"], e["pad"]),
                                         (y, e["y0"], e["y1"], e.get("k_y", e["k"]), e.get("s_log2_y", e["s_log2"]),
                                          e.get("pad_y", e["pad"]))):
                xu = (v << e["up_log2"]) + pad
                lo = max((xu - k + (1 << s)) >> s, t0)
                hi = min(xu >> s, t1)
                if lo > hi:
                    break
                axes.append((lo - t0, hi - lo + 1, xu - (lo << s)))
            if len(axes) < 2:
                continue
            (rx, nx, kx), (ry, ny, ky) = axes
            pk.update(x=rx, y=ry, nx=nx, ny=ny, kx=kx, ky=ky)
        out.append(pk)
    return out


entry_strategy = st.fixed_dictionaries({
    "kind": st.sampled_from(list(Kind)),
    "dest_core": st.integers(0, (1 << CFG.core_bits) - 1),
    "syn": st.integers(0, (1 << CFG.esu_addr_bits) - 1),
    "k": st.integers(0, 15),
    "s_log2": st.integers(0, 3),
    "up_log2": st.integers(0, 3),
    "pad": st.integers(0, 15),
    "x0": st.integers(0, 40), "x1": st.integers(0, 40),
    "y0": st.integers(0, 40), "y1": st.integers(0, 40),
    "c0": st.integers(0, 20), "c1": st.integers(0, 20),
    "chan_off": st.sampled_from([0, 3, (1 << CFG.chan_bits) - 2]),
    "k_y": st.integers(0, 15),
    "s_log2_y": st.integers(0, 3),
    "pad_y": st.integers(0, 15),
})
spike_strategy = st.fixed_dictionaries({
    "x": st.integers(0, 24), "y": st.integers(0, 24), "c": st.integers(0, 20),
    "d": st.integers(-(1 << (CFG.event_bits - 1)), (1 << (CFG.event_bits - 1)) - 1),
    "base": st.integers(0, 6), "count": st.integers(0, 6),
})


def run_peg(entries, spikes, n_entries, ready_prob=0.7, seed=0):
    """Load the table, feed the spikes, collect packets with random backpressure."""
    dut = PEG(CFG, n_entries)
    lay, play = dut.layout, packet(CFG)
    rng = random.Random(seed)
    got, state = [], {"fed": False, "idle_cycles": 0}

    def host():
        for i, e in enumerate(entries[:n_entries]):
            for j, w in enumerate(entry_words(lay, pack_entry(lay, e))):
                yield from dut.table.bus.write(i * dut.table.stride + j, w)
        for s in spikes:
            yield dut.sink.valid.eq(1)
            for name in ("x", "y", "c", "base", "count"):
                yield getattr(dut.sink, name).eq(s[name])
            yield dut.sink.d.eq(s["d"] & ((1 << CFG.event_bits) - 1))
            yield
            while not (yield dut.sink.ready):
                yield
        yield dut.sink.valid.eq(0)
        state["fed"] = True

    def sink():
        while not (state["fed"] and state["idle_cycles"] > 4):
            ready = rng.random() < ready_prob
            yield dut.source.ready.eq(ready)
            yield
            if (yield dut.source.valid) and ready:
                raw = yield dut.source.payload.raw_bits()
                got.append(play.unpack_one(raw))
            idle = (yield dut.idle) and state["fed"]
            state["idle_cycles"] = state["idle_cycles"] + 1 if idle else 0

    run_simulation(dut, [host(), sink()])
    return got


def expected_packets(entries, spikes, n_entries):
    exp = []
    for s in spikes:
        exp += peg_reference(entries, n_entries, s["x"], s["y"], s["c"], s["d"], s["base"], s["count"])
    return exp


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(entry_strategy, min_size=6, max_size=6),
       spikes=st.lists(spike_strategy, min_size=1, max_size=6),
       seed=st.integers(0, 1000))
def test_peg_matches_design_pseudocode(entries, spikes, seed):
    got = run_peg(entries, spikes, n_entries=6, seed=seed)
    assert got == expected_packets(entries, spikes, 6)


def test_peg_windows_hit_and_full_rate():
    """Realistic CONV/DW entries with many hits; with the source always ready one entry per clock."""
    rng = random.Random(7)
    entries = []
    for i in range(12):
        k = rng.choice([1, 3, 5])
        x0, y0 = rng.randrange(0, 8), rng.randrange(0, 8)
        e = dict(kind=rng.choice([Kind.CONV, Kind.CONV, Kind.DW, Kind.DENSE, Kind.HOST]), dest_core=0,
                 syn=rng.randrange(16), k=k, s_log2=rng.randrange(2), up_log2=rng.randrange(2),
                 pad=k // 2, x0=x0, x1=x0 + 8, y0=y0, y1=y0 + 8, c0=0, c1=7, chan_off=rng.choice([0, 2]))
        if i % 2:       # rectangular: the y axis has its own kernel, stride and padding
            k_y = rng.choice([1, 2, 3, 5, 7])
            e.update(k_y=k_y, s_log2_y=rng.randrange(3), pad_y=rng.randrange(k_y))
        entries.append(e)
    spikes = [dict(x=rng.randrange(16), y=rng.randrange(16), c=rng.randrange(8), d=rng.randrange(-300, 300),
                   base=0, count=12) for _ in range(10)]
    exp = expected_packets(entries, spikes, 16)
    assert sum(p["nx"] * p["ny"] > 1 for p in exp) > 5, "the test data should exercise real windows"
    got = run_peg(entries, spikes, n_entries=16, ready_prob=1.1)
    assert got == exp


def test_peg_one_entry_per_clock():
    """Entries leave one per clock, also across back-to-back spikes, when the source is always ready."""
    dut = PEG(CFG, 8)
    lay = dut.layout
    cycles = []

    def host():
        for i in range(8):
            e = dict(kind=Kind.DENSE, dest_core=0, syn=i, k=0, s_log2=0, up_log2=0, pad=0,
                     x0=0, x1=0, y0=0, y1=0, c0=0, c1=0, chan_off=0)
            for j, w in enumerate(entry_words(lay, pack_entry(lay, e))):
                yield from dut.table.bus.write(i * dut.table.stride + j, w)
        for base, count in ((0, 8), (2, 3)):
            yield dut.sink.valid.eq(1)
            yield dut.sink.base.eq(base)
            yield dut.sink.count.eq(count)
            yield
            while not (yield dut.sink.ready):
                yield
        yield dut.sink.valid.eq(0)

    def monitor():
        yield dut.source.ready.eq(1)
        for t in range(200):
            yield
            if (yield dut.source.valid):
                cycles.append((t, (yield dut.source.syn)))

    run_simulation(dut, [host(), monitor()])
    assert [s for _, s in cycles] == list(range(8)) + [2, 3, 4]
    assert cycles[-1][0] - cycles[0][0] == 10, "eleven packets in eleven consecutive cycles"
