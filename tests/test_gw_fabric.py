"""Fabric behind AXI (Migen simulator): registers and errors over AXI-Lite, frames with a stand-in core.

The stand-in core (tests only) has NeuronCore's ports and a behaviour simple enough to predict by
hand: it keeps the packets it receives; when layer 0 is evaluated it forwards the packets it held
at that moment to the next core (id + 1 mod n), spiking once per packet; when a later layer is
evaluated it sends the packets it held as HOST packets (x, y=its core id, c, d, syn=layer).
"""
import random

import pytest

pytest.importorskip("migen")
from migen import If, Signal, run_simulation  # noqa: E402
from migen.sim import passive  # noqa: E402
from litex.gen import LiteXModule  # noqa: E402
from litex.soc.interconnect import stream, wishbone  # noqa: E402

from synfab.config import FabricConfig  # noqa: E402
from synfab.layouts import (EXTENDED_FEATURES, FABRIC_LAYOUT_VERSION, GLOBAL_COUNTERS, ID_MAGIC,  # noqa: E402
                            STREAM_EVENT, Kind, RegisterMap, feature_mask, packet)
from synfab_gateware.axi import AXIFabric  # noqa: E402

CFG = FabricConfig(mesh_x=2, mesh_y=2, neurons_per_core=64, weight_words_per_core=64,
                   peg_entries_per_core=8, esu_descriptors_per_core=8, populations_per_core=4,
                   input_peg_entries=8, event_fifo_depth=4, name="test2x2")
RM = RegisterMap(CFG)
OKAY, SLVERR = 0, 2
STANDIN_FIFO = 32


class StandInCore(LiteXModule):
    def __init__(self, cfg, core_id):
        lay = packet(cfg).migen()
        self.sink = stream.Endpoint(lay)
        self.source = stream.Endpoint(lay)
        self.bus = wishbone.Interface(data_width=32, adr_width=(RM.core_stride // 4 - 1).bit_length())
        self.eval_start = Signal()
        self.eval_layer = Signal(6)
        self.eval_reset = Signal()
        self.threshold = Signal(cfg.event_bits)
        self.clear_counters = Signal()
        self.idle = Signal()
        self.spike = Signal()

        # # #

        self.fifo = fifo = stream.SyncFIFO(lay, STANDIN_FIFO)
        self.comb += self.sink.connect(fifo.sink)
        todo = Signal(max=STANDIN_FIFO + 1)
        layer = Signal(6)
        head, src = fifo.source, self.source
        self.comb += [
            src.valid.eq((todo != 0) & head.valid),
            src.x.eq(head.x), src.y.eq(head.y), src.c.eq(head.c), src.d.eq(head.d),
            If(layer == 0, src.dest.eq((core_id + 1) % cfg.n_cores))
            .Else(src.host.eq(1), src.syn.eq(layer), src.y.eq(core_id)),
            head.ready.eq((todo != 0) & src.ready),
            self.spike.eq(src.valid & src.ready),
            self.idle.eq((todo == 0) & ~self.eval_start),   # as NeuronCore: low from eval_start's clock
        ]
        self.sync += If(self.eval_start, todo.eq(fifo.level), layer.eq(self.eval_layer)) \
            .Elif(self.spike, todo.eq(todo - 1))

        # Bus: esu_count is a plain register, packets_in counts received packets; the rest reads 0.
        esu_count = Signal(32)
        packets_in = Signal(32)
        self.sync += If(self.clear_counters, packets_in.eq(0)) \
            .Elif(self.sink.valid & self.sink.ready, packets_in.eq(packets_in + 1))
        bus = self.bus
        self.sync += [
            bus.ack.eq(bus.cyc & bus.stb & ~bus.ack),
            If(bus.cyc & bus.stb & ~bus.ack & bus.we & (bus.adr == RM.core_regs["esu_count"] // 4),
               esu_count.eq(bus.dat_w)),
            bus.dat_r.eq(0),
            If(bus.adr == RM.core_regs["esu_count"] // 4, bus.dat_r.eq(esu_count)),
            If(bus.adr == RM.core_counters["packets_in"] // 4, bus.dat_r.eq(packets_in)),
        ]


def make_dut():
    return AXIFabric(CFG, core_factory=StandInCore)


def peg_words(**fields):
    lay = RM.input_peg.layout        # the fabric's (version-2) PEG entry
    value = lay.pack_one(**{n: fields.get(n, 0) for n in lay.names})
    return [(value >> (32 * j)) & 0xFFFFFFFF for j in range(lay.words32)]


def beat(x=0, y=0, c=0, d=0, eof=0):
    return STREAM_EVENT.pack_one(x=x, y=y, c=c, d=d, tag=0, eof=eof)


def write(dut, addr, value):
    resp = yield from dut.axil.write(addr, value)
    assert resp == OKAY, f"write {addr:#x}: resp {resp}"


def read(dut, addr):
    data, resp = yield from dut.axil.read(addr)
    assert resp == OKAY, f"read {addr:#x}: resp {resp}"
    return data


# ---------------------------------------------------------------------------------------------
def test_registers_ids_saturation_and_errors():
    dut = make_dut()
    seen = {}

    def main():
        seen["id"] = yield from read(dut, RM.reg("id"))
        seen["version"] = yield from read(dut, RM.reg("version"))
        seen["features"] = yield from read(dut, RM.reg("features"))
        seen["crc"] = yield from read(dut, RM.reg("config_crc"))
        yield from write(dut, RM.reg("threshold"), 1234)
        seen["threshold"] = yield from read(dut, RM.reg("threshold"))
        yield from write(dut, RM.reg("threshold"), 0xFFFFFFFF)
        seen["threshold_sat"] = yield from read(dut, RM.reg("threshold"))
        yield from write(dut, RM.reg("n_layers"), 1000)
        seen["n_layers_sat"] = yield from read(dut, RM.reg("n_layers"))
        seen["status"] = yield from read(dut, RM.reg("status"))
        # Out of the map: a hole among the registers, a hole in a core window, above the map.
        # Reads and writes alike, and the bus keeps working after each.
        holes = [4 * len(RM.regs), RM.core_base(1) + 4 * len(RegisterMap.CORE_REGS),
                 RM.input_peg.base + RM.input_peg.size]
        if RM.size < (1 << RM.addr_bits):
            holes.append(RM.size)
        seen["holes"] = []
        for a in holes:
            _, rresp = yield from dut.axil.read(a)
            wresp = yield from dut.axil.write(a, 0x55)
            seen["holes"].append((a, rresp, wresp))
        seen["id_again"] = yield from read(dut, RM.reg("id"))
        # Core windows reach the right core.
        for core in range(CFG.n_cores):
            yield from write(dut, RM.core_reg(core, "esu_count"), 100 + core)
        seen["esu"] = []
        for core in range(CFG.n_cores):
            seen["esu"].append((yield from read(dut, RM.core_reg(core, "esu_count"))))
        # Input PEG window: an entry reads back word by word.
        words = peg_words(kind=Kind.DENSE, dest_core=3, syn=5, x1=7, y1=7, c1=3, chan_off=2)
        w = RM.input_peg
        for j, v in enumerate(words):
            yield from write(dut, w.addr(2, j), v)
        seen["peg"] = []
        for j in range(len(words)):
            seen["peg"].append((yield from read(dut, w.addr(2, j))))
        seen["peg_words"] = words

    run_simulation(dut, main())
    assert seen["id"] == ID_MAGIC and seen["version"] == FABRIC_LAYOUT_VERSION == 2
    # a sigma-delta-only fabric: every version-2 feature but the other neuron models and unclamped
    # activations (its sent is event_bits wide)
    assert seen["features"] == feature_mask(f for f in EXTENDED_FEATURES if not f.endswith(" neurons") and f != "unclamped activation")
    assert seen["crc"] == CFG.crc()
    assert seen["threshold"] == 1234
    assert seen["threshold_sat"] == (1 << CFG.event_bits) - 1
    assert seen["n_layers_sat"] == RegisterMap.MAX_LAYERS
    assert seen["status"] == 0
    for a, rresp, wresp in seen["holes"]:
        assert (rresp, wresp) == (SLVERR, SLVERR), f"address {a:#x}"
    assert seen["id_again"] == ID_MAGIC
    assert seen["esu"] == [100, 101, 102, 103]
    assert seen["peg"] == seen["peg_words"]


# ---------------------------------------------------------------------------------------------
# Frames with the stand-in core.
IN_W, IN_H, IN_C = 5, 4, 3
HOST_TAG = 6
# Input PEG: every event goes to core 0 (c), to core 3 (c + 2) and straight out (tag HOST_TAG).
INPUT_PEG = [
    dict(kind=Kind.DENSE, dest_core=0, syn=1),
    dict(kind=Kind.DENSE, dest_core=3, syn=2, chan_off=2),
    dict(kind=Kind.HOST, syn=HOST_TAG),
]


def expected_frame(events, n_layers):
    """Output events (x, y, c, d, tag) of one frame and spikes per layer, by hand from the
    stand-in's rules and DESIGN.md's PEG (DENSE: c + chan_off to dest; HOST: unchanged)."""
    ok = [e for e in events if e[0] < IN_W and e[1] < IN_H and e[2] < IN_C]
    out = [(x, y, c, d, HOST_TAG) for x, y, c, d in ok]
    held = {0: [(x, y, c, d) for x, y, c, d in ok], 3: [(x, y, c + 2, d) for x, y, c, d in ok]}
    spikes = []
    for layer in range(n_layers):
        if layer == 0:
            held = {(core + 1) % CFG.n_cores: p for core, p in held.items()}
            spikes.append(sum(len(p) for p in held.values()))
        else:
            spikes.append(sum(len(p) for p in held.values()))
            out += [(x, core, c, d, layer) for core, p in held.items() for x, y, c, d in p]
            held = {}
    return sorted(out), spikes


def run_frames(frames, n_layers, seed, p_in_gap=0.3, p_out_gap=0.4, clear_between=False):
    dut = make_dut()
    rng = random.Random(seed)
    beats = []
    for events in frames:
        beats += [(beat(x, y, c, d), 0) for x, y, c, d in events] + [(beat(eof=1), 1)]
    out = []
    result = {}

    def main():
        for i, e in enumerate(INPUT_PEG):
            for j, v in enumerate(peg_words(**e)):
                yield from write(dut, RM.input_peg.addr(i, j), v)
        for name, v in dict(in_w=IN_W, in_h=IN_H, in_c=IN_C, input_peg_count=len(INPUT_PEG),
                            n_layers=n_layers).items():
            yield from write(dut, RM.reg(name), v)
        result["go"] = True
        for _ in range(3000):
            if sum(last for _, last in out) == len(frames):
                break
            yield
        for _ in range(20):
            yield
        result["counters"] = {}
        for n in GLOBAL_COUNTERS:
            result["counters"][n] = yield from read(dut, RM.global_counters[n])
        result["layer_spikes"] = []
        for i in range(n_layers + 1):
            result["layer_spikes"].append((yield from read(dut, RM.layer_spikes.addr(i))))
        result["status"] = yield from read(dut, RM.reg("status"))
        yield from write(dut, RM.reg("ctrl"), RegisterMap.CTRL_CLEAR_COUNTERS)
        result["after_clear"] = []
        for n in ("frames", "events_in"):
            result["after_clear"].append((yield from read(dut, RM.global_counters[n])))
        result["after_clear"].append((yield from read(dut, RM.layer_spikes.addr(0))))
        result["after_clear"].append((yield from read(dut, RM.core_counter(1, "packets_in"))))

    @passive
    def feed():
        while not result.get("go"):
            yield
        src = dut.axis_in
        for data, last in beats:
            while rng.random() < p_in_gap:
                yield src.valid.eq(0)
                yield
            yield src.valid.eq(1)
            yield src.data.eq(data)
            yield src.last.eq(last)
            yield
            while not (yield src.ready):
                yield
        yield src.valid.eq(0)

    @passive
    def drain():
        orng = random.Random(seed + 1)
        while True:
            ready = orng.random() >= p_out_gap
            yield dut.axis_out.ready.eq(ready)
            yield
            if ready and (yield dut.axis_out.valid):
                out.append(((yield dut.axis_out.data), (yield dut.axis_out.last)))

    run_simulation(dut, [main(), feed(), drain()])
    # Split the output at TLAST into frames.
    got, cur = [], []
    for data, last in out:
        f = STREAM_EVENT.unpack_one(data)
        cur.append(f)
        if last:
            got.append(cur)
            cur = []
    assert cur == [], "output beats after the last TLAST"
    return got, result


def test_frames_end_with_eof_after_all_events():
    rng = random.Random(7)
    frames = []
    for _ in range(2):
        frames.append([(rng.randrange(IN_W + 2), rng.randrange(IN_H + 1), rng.randrange(IN_C + 1),
                        rng.randrange(-300, 300)) for _ in range(6)])
    n_layers = 3
    got, result = run_frames(frames, n_layers, seed=3)
    assert len(got) == len(frames)
    spikes_total = [0] * n_layers
    for events, beats in zip(frames, got):
        *body, last = beats
        assert last["eof"] == 1 and all(b["eof"] == 0 for b in body)
        want, spikes = expected_frame(events, n_layers)
        assert sorted((b["x"], b["y"], b["c"], b["d"], b["tag"]) for b in body) == want
        spikes_total = [a + b for a, b in zip(spikes_total, spikes)]
    n_events = sum(len(f) for f in frames)
    dropped = sum(1 for f in frames for x, y, c, d in f if not (x < IN_W and y < IN_H and c < IN_C))
    assert dropped > 0
    cnt = result["counters"]
    assert cnt["frames"] == len(frames)
    assert cnt["events_in"] == n_events and cnt["input_dropped"] == dropped
    assert cnt["events_out"] == sum(len(b) - 1 for b in got)
    assert cnt["cycles"] > 0
    assert result["layer_spikes"] == spikes_total + [0]
    assert result["status"] == 0
    assert result["after_clear"] == [0, 0, 0, 0]


def test_no_layers_and_empty_frames():
    """n_layers = 0: only the input PEG's HOST events, then eof; an empty frame is just eof."""
    frames = [[(1, 1, 1, 5), (0, 3, 2, -7)], []]
    got, result = run_frames(frames, n_layers=0, seed=5, p_in_gap=0.0, p_out_gap=0.0)
    assert [[(b["x"], b["y"], b["c"], b["d"], b["tag"], b["eof"]) for b in f] for f in got] == [
        [(1, 1, 1, 5, HOST_TAG, 0), (0, 3, 2, -7, HOST_TAG, 0), (0, 0, 0, 0, 0, 1)],
        [(0, 0, 0, 0, 0, 1)],
    ]
    assert result["counters"]["frames"] == 2


def test_axi_lite_read_and_write_offered_together():
    """A master that offers a write and a read in the same cycle gets both answered, in some order."""
    dut = make_dut()
    ax = dut.axil
    seen = {}

    def main():
        yield ax.aw.valid.eq(1)
        yield ax.aw.addr.eq(RM.reg("in_w"))
        yield ax.w.valid.eq(1)
        yield ax.w.data.eq(3)
        yield ax.w.strb.eq(0xF)
        yield ax.ar.valid.eq(1)
        yield ax.ar.addr.eq(RM.reg("id"))
        yield ax.b.ready.eq(1)
        yield ax.r.ready.eq(1)
        for _ in range(30):
            yield
            if (yield ax.aw.ready):
                yield ax.aw.valid.eq(0)
            if (yield ax.w.ready):
                yield ax.w.valid.eq(0)
            if (yield ax.ar.ready):
                yield ax.ar.valid.eq(0)
            if (yield ax.b.valid):
                seen["b"] = (yield ax.b.resp)
            if (yield ax.r.valid):
                seen["r"] = ((yield ax.r.data), (yield ax.r.resp))
        yield ax.b.ready.eq(0)
        yield ax.r.ready.eq(0)
        seen["in_w"] = yield from read(dut, RM.reg("in_w"))

    run_simulation(dut, main())
    assert seen["b"] == OKAY
    assert seen["r"] == (ID_MAGIC, OKAY)
    assert seen["in_w"] == 3


def test_the_registered_hit_decoder_serves_back_to_back_accesses():
    """common.decode decides its slave from hits registered a clock after the address: a master
    that keeps cyc high and presents its next address the clock after an ack reaches the right
    slave, and an address no window takes answers an error."""
    from synfab_gateware.common import decode

    class Dut(LiteXModule):
        def __init__(self):
            self.bus = wishbone.Interface(data_width=32, adr_width=8, addressing="word")
            self.a, self.b = wishbone.SRAM(64), wishbone.SRAM(64)
            decode(self, self.bus, [(0, 16, self.a.bus), (16, 16, self.b.bus)])

    dut = Dut()
    answers = []

    def access(adr, dat=None):
        yield dut.bus.adr.eq(adr)
        yield dut.bus.we.eq(dat is not None)
        yield dut.bus.dat_w.eq(dat or 0)
        yield dut.bus.sel.eq(0xF)
        yield dut.bus.cyc.eq(1)
        yield dut.bus.stb.eq(1)
        yield
        while not ((yield dut.bus.ack) or (yield dut.bus.err)):
            yield
        answers.append(((yield dut.bus.dat_r) if dat is None else None, (yield dut.bus.err)))

    def main():
        # cyc stays high from the first access to the last: each address follows the previous ack.
        for adr, dat in ((3, 0x11), (16 + 3, 0x22), (3, None), (16 + 3, None), (40, None), (16 + 3, None)):
            yield from access(adr, dat)
        yield dut.bus.cyc.eq(0)
        yield dut.bus.stb.eq(0)
        yield

    run_simulation(dut, main())
    assert answers == [(None, 0), (None, 0), (0x11, 0), (0x22, 0), (0, 1), (0x22, 0)]
