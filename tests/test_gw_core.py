"""NeuronCore in the Migen simulator: ESU + neuron unit against DESIGN.md's ESU pseudo-code, hazards and
throughput, the evaluation unit against arith.py, and a compiled network against the golden model."""
import random
from collections import deque

import numpy as np
import pytest

pytest.importorskip("migen")
from migen import run_simulation  # noqa: E402

from synfab import arith  # noqa: E402
from synfab.compiler import at_version  # noqa: E402
from synfab.config import FabricConfig  # noqa: E402
from synfab.layouts import Kind, RegisterMap, packet  # noqa: E402
from synfab_gateware.core.core import NeuronCore  # noqa: E402

# Small memories keep the Migen simulation short (it runs a few hundred clocks per second).
CFG = FabricConfig(mesh_x=1, mesh_y=1, neurons_per_core=256, weight_words_per_core=512, peg_entries_per_core=8,
                   esu_descriptors_per_core=16, populations_per_core=4, input_peg_entries=8, name="core_test")
N, W = CFG.neurons_per_core, CFG.weight_words_per_core
# Clocks from a packet entering the core to its first synapse applied: event FIFO, descriptor read
# (2), set-up (7), walker FIFO and its registered head, walker, the lanes' addresses, weight read
# (2), pair register, neuron unit (2).
ESU_LATENCY_BOUND = 22


def wrap(v, bits):
    return int(arith.wrap(v, bits))


def full_entries(layout, entries):
    """Entries with every field of `layout` (compiler.at_version fills what version 1 lacks)."""
    return [{k: int(v[0]) for k, v in at_version(layout, {k: [v] for k, v in e.items()}).items()} for e in entries]


def u32(v):
    return int(v) & 0xFFFFFFFF


def s32(v):
    return v - (1 << 32) if v & (1 << 31) else v


class CoreSim:
    """One NeuronCore driven from a single Migen generator: bus accesses, the packet sink, the source.

    Packets leaving the source are collected in `out`; with loopback, non-HOST ones go back to the
    sink (a one-core fabric)."""

    def __init__(self, cfg=CFG, loopback=False, ready_prob=1.0, seed=0):
        self.cfg = cfg
        self.rm = RegisterMap(cfg)
        self.dut = NeuronCore(cfg, 0)
        self.lay = packet(cfg)
        self.loopback = loopback
        self.ready_prob = ready_prob
        self.rng = random.Random(seed)
        self.inbox = deque()
        self.cur = None
        self.out = []
        self.cycle = 0
        self.synop_cycles = []
        self.first_valid_cycle = None
        self.seen = dict(stall=0, sink_stall=0, busy=0, spikes=0, packets_out=0)

    # -- bus --
    def write(self, byte, value):
        yield from self.dut.bus.write(byte >> 2, u32(value))

    def read(self, byte):
        return (yield from self.dut.bus.read(byte >> 2))

    def write_entries(self, name, entries):
        """Table entries in the window's layout (the fabric's); fields a version-1 entry lacks get
        what they mean there (compiler.at_version: square, no weight shift, sigma-delta)."""
        win = self.rm.core_windows[name]
        for i, e in enumerate(full_entries(win.layout, entries)):
            v = win.layout.pack_one(**e)
            for j in range(win.layout.words32):
                yield from self.write(win.addr(i, j), (v >> (32 * j)) & 0xFFFFFFFF)

    def write_array(self, name, values, start=0):
        win = self.rm.core_windows[name]
        for i, v in enumerate(values):
            yield from self.write(win.addr(start + i), v)

    def read_array(self, name, start, count):
        win = self.rm.core_windows[name]
        out = []
        for i in range(start, start + count):
            out.append(s32((yield from self.read(win.addr(i)))))
        return out

    def counters(self):
        out = {}
        for name, off in self.rm.core_counters.items():
            out[name] = yield from self.read(off)
        return out

    # -- streams --
    def step(self):
        d = self.dut
        if self.cur is None and self.inbox:
            self.cur = self.inbox.popleft()
            yield d.sink.payload.raw_bits().eq(self.lay.pack_one(**self.cur))
        yield d.sink.valid.eq(self.cur is not None)
        ready = self.rng.random() < self.ready_prob
        yield d.source.ready.eq(ready)
        yield
        self.cycle += 1
        sink_valid, sink_ready = self.cur is not None, (yield d.sink.ready)
        source_valid, synop, idle = (yield d.source.valid), (yield d.neurons.synop), (yield d.idle)
        # Idle must be exact: never while a packet or a synapse is on its way.
        assert not (idle and (sink_valid or source_valid or synop))
        self.seen["stall"] += (sink_valid and not sink_ready) or (source_valid and not ready)
        self.seen["sink_stall"] += sink_valid and not sink_ready
        self.seen["busy"] += not idle
        self.seen["spikes"] += (yield d.spike)
        if sink_valid and self.first_valid_cycle is None:
            self.first_valid_cycle = self.cycle
        if sink_valid and sink_ready:
            self.cur = None
        if ready and source_valid:
            self.seen["packets_out"] += 1
            pk = self.lay.unpack_one((yield d.source.payload.raw_bits()))
            self.out.append(pk)
            if self.loopback and not pk["host"]:
                self.inbox.append(pk)
        if synop:
            self.synop_cycles.append(self.cycle)

    def run_until_idle(self, limit=20000):
        for _ in range(limit):
            yield from self.step()
            if self.cur is None and not self.inbox and (yield self.dut.idle):
                return
        raise AssertionError("core did not become idle")

    def evaluate(self, layer):
        yield self.dut.eval_layer.eq(layer)
        yield self.dut.eval_start.eq(1)
        yield from self.step()
        yield self.dut.eval_start.eq(0)
        yield from self.run_until_idle()

    def run(self, gen):
        run_simulation(self.dut, gen)


# ---------------------------------------------------------------------------------------------
# DESIGN.md's ESU pseudo-code, transcribed directly (plus the guard: pairs outside the memories,
# and DW pairs outside the part's channels, are dropped and counted).
def esu_reference(descs, esu_count, weights, acc, packets, cfg=CFG):
    acc = list(acc)
    synops = dropped = 0
    for pk in packets:
        if pk["syn"] >= esu_count or descs[pk["syn"]]["kind"] == Kind.HOST:
            dropped += 1
            continue
        e = descs[pk["syn"]]
        # kw = k, kh = k_y, sx = 2^s_log2, sy = 2^s_log2_y (a version-1 descriptor: square, wshift 0)
        kw, kh, cc, tw = e["k"], e.get("k_y", e["k"]), e["cc"], e["tw"]
        sx, sy = 1 << e["s_log2"], 1 << e.get("s_log2_y", e["s_log2"])
        x, y, c = pk["x"], pk["y"], pk["c"]
        pairs = []   # (neuron, weight address, channel ok)
        if e["kind"] == Kind.CONV:
            for j in range(pk["ny"]):
                for i in range(pk["nx"]):
                    for co in range(cc):
                        oy, kyp, ox, kxp = y + j, pk["ky"] - j * sy, x + i, pk["kx"] - i * sx
                        pairs.append((e["nbase"] + (oy * tw + ox) * cc + co,
                                      e["wbase"] + ((c * kh + kyp) * kw + kxp) * cc + co, True))
        elif e["kind"] == Kind.DW:
            co = c - e["c0"]
            for j in range(pk["ny"]):
                for i in range(pk["nx"]):
                    oy, kyp, ox, kxp = y + j, pk["ky"] - j * sy, x + i, pk["kx"] - i * sx
                    pairs.append((e["nbase"] + (oy * tw + ox) * cc + co,
                                  e["wbase"] + (co * kh + kyp) * kw + kxp, 0 <= co < cc))
        else:
            i = (y * e["src_w"] + x) * e["src_c"] + c
            for co in range(cc):
                pairs.append((e["nbase"] + co, e["wbase"] + i * cc + co, True))
        for n, w, chan_ok in pairs:
            if not (chan_ok and 0 <= n < cfg.neurons_per_core
                    and (e["wconst"] or 0 <= w < cfg.weight_words_per_core)):
                dropped += 1
                continue
            wv = e["wval"] if e["wconst"] else weights[w]
            acc[n] = wrap(acc[n] + int(arith.synapse(wv, pk["d"], e.get("wshift", 0))), cfg.acc_bits)
            synops += 1
    return acc, synops, dropped


def desc(kind, **kw):
    base = dict(kind=kind, wconst=0, wval=0, k=1, s_log2=0, cc=1, c0=0, tw=1, nbase=0, wbase=0, src_w=0, src_c=0)
    base.update(kw)
    return base


def pkt(syn, d, x=0, y=0, nx=1, ny=1, kx=0, ky=0, c=0):
    return dict(dest=0, host=0, syn=syn, x=x, y=y, nx=nx, ny=ny, kx=kx, ky=ky, c=c, d=d)


def words_of_weights(weights):
    b = np.asarray(weights, dtype=np.int8).view(np.uint8).astype(np.int64).reshape(-1, 4)
    return list(b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24))


def random_descs(rng, rect=None):
    """Descriptors of every kind; with `rect` (a second generator: the square draws stay the same)
    the kernel height, the row stride and the weight shift are drawn on their own."""
    descs = []
    for _ in range(10):
        kind = rng.choice([Kind.CONV, Kind.DW, Kind.DENSE])
        k = rng.randint(1, 3)
        descs.append(desc(kind, wconst=int(rng.random() < 0.25), wval=rng.randint(-128, 127), k=k,
                          s_log2=rng.randint(0, 1), cc=rng.randint(1, 4), c0=rng.randint(0, 2),
                          tw=rng.randint(1, 4), nbase=rng.randint(0, 60), wbase=rng.randint(0, 350),
                          src_w=rng.randint(1, 3), src_c=rng.randint(1, 3)))
        if rect is not None:
            descs[-1].update(k_y=rect.randint(1, 4), s_log2_y=rect.randint(0, 2), wshift=rect.choice([0, 1, 3, 15]))
    # Malformed on purpose: pairs beyond the neuron memory, beyond the weight memory, a HOST descriptor.
    descs.append(desc(Kind.CONV, k=3, cc=4, tw=4, nbase=N - 20, wbase=10))
    descs.append(desc(Kind.DENSE, cc=8, src_w=2, src_c=2, nbase=100, wbase=W - 40))
    descs.append(desc(Kind.HOST))
    return descs


def random_packets(rng, descs, esu_count, n):
    """Mostly well-formed windows (kx >= (nx-1)*s), some reaching outside the kernel."""
    out = []
    for _ in range(n):
        syn = rng.randrange(esu_count + 2)
        e = descs[syn] if syn < len(descs) else descs[0]
        k, s_log2 = e["k"], e["s_log2"]
        k_y, s_log2_y = e.get("k_y", k), e.get("s_log2_y", s_log2)
        kx, ky = rng.randint(0, k - 1), rng.randint(0, k_y - 1)
        sloppy = rng.random() < 0.2
        nx = rng.randint(1, 3) if sloppy else rng.randint(1, (kx >> s_log2) + 1)
        ny = rng.randint(1, 3) if sloppy else rng.randint(1, (ky >> s_log2_y) + 1)
        out.append(pkt(syn, rng.randint(-2000, 2000), x=rng.randint(0, 3), y=rng.randint(0, 3),
                       nx=nx, ny=ny, kx=kx, ky=ky, c=rng.randint(0, 5)))
    return out


@pytest.mark.parametrize("seed,rect,lanes", [(1, False, 1), (3, True, 1), pytest.param(2, False, 1, marks=pytest.mark.slow),
                                             pytest.param(4, True, 1, marks=pytest.mark.slow),
                                             pytest.param(5, True, 2, marks=pytest.mark.slow),
                                             pytest.param(8, False, 4, marks=pytest.mark.slow),
                                             pytest.param(7, True, 4, marks=pytest.mark.slow)])
def test_esu_matches_design_pseudocode(seed, rect, lanes):
    """Random descriptors and packets, the malformed ones included; `rect`: every descriptor has
    its own kernel height, row stride and weight shift (version-2 fields); `lanes`: the core's
    synaptic lanes (up to that many pairs per clock, each guarded on its own)."""
    rng = random.Random(seed)
    descs = random_descs(rng, random.Random(seed + 100) if rect else None)
    esu_count = len(descs)
    weights = [rng.randint(-128, 127) for _ in range(W)]
    acc0 = [rng.randint(-5000, 5000) for _ in range(N)]
    packets = random_packets(rng, descs, esu_count, 40)
    # The malformed descriptors, and a syn beyond esu_count, in every run.
    packets[5:5] = [pkt(10, 77, x=0, y=0, nx=2, ny=2, kx=2, ky=2, c=1), pkt(11, -5, x=1, y=1, c=2),
                    pkt(12, 3), pkt(esu_count, 9)]
    exp_acc, exp_synops, exp_dropped = esu_reference(descs, esu_count, weights, acc0, packets)
    assert any(exp_acc[n] != acc0[n] for n in range(N - 24, N)), "the test should reach the end of memory"
    sim = CoreSim(CFG.with_(lanes=lanes), ready_prob=1.0, seed=seed)
    got = {}

    def main():
        yield from sim.write_entries("esu", descs)
        yield from sim.write(sim.rm.core_regs["esu_count"], esu_count)
        yield from sim.write_array("weights", words_of_weights(weights))
        yield from sim.write_array("acc", acc0)
        sim.inbox.extend(packets)
        yield from sim.run_until_idle()
        got["acc"] = yield from sim.read_array("acc", 0, N)
        got["counters"] = yield from sim.counters()

    sim.run(main())
    assert got["acc"] == exp_acc
    assert got["counters"]["synops"] == exp_synops
    assert got["counters"]["dropped"] == exp_dropped
    assert got["counters"]["packets_in"] == len(packets)
    assert exp_dropped > 0 and exp_synops > 50


def test_host_reads_the_descriptor_table_while_packets_flow():
    """The host reads the ESU's descriptor table back while packets stream in: every read answers
    the entry written, and the packets' descriptors stay theirs (a host read takes the table's read
    port only in a clock no packet waits for it, TableMemory's host_ok). Reads are issued from a
    generator of their own and must overlap the traffic, not only follow it: packets come a few
    clocks apart, so the packet FIFO runs dry between them while the walker works.""" 
    rng = random.Random(21)
    descs = random_descs(rng)[:10]                    # well-formed ones only: every packet lands
    weights = [rng.randint(-128, 127) for _ in range(W)]
    acc0 = [rng.randint(-5000, 5000) for _ in range(N)]
    packets = random_packets(rng, descs, len(descs), 60)
    exp_acc, _, _ = esu_reference(descs, len(descs), weights, acc0, packets)
    sim = CoreSim(seed=21)
    win = sim.rm.core_windows["esu"]
    written = [win.layout.pack_one(**e) for e in full_entries(win.layout, descs)]
    state = dict(loaded=False, done=False, reads=[], busy_reads=0)
    got = {}

    def main():
        yield from sim.write_entries("esu", descs)
        yield from sim.write(sim.rm.core_regs["esu_count"], len(descs))
        yield from sim.write_array("weights", words_of_weights(weights))
        yield from sim.write_array("acc", acc0)
        state["loaded"] = True
        for p in packets:                             # a packet every few clocks: the FIFO runs dry between
            sim.inbox.append(p)
            for _ in range(6):
                yield from sim.step()
        yield from sim.run_until_idle()
        while not state["done"]:
            yield from sim.step()
        got["acc"] = yield from sim.read_array("acc", 0, N)

    def reader():
        while not state["loaded"]:
            yield
        for _ in range(3):                            # the table, three times over
            for i, want in enumerate(written):
                value = 0
                for j in range(win.layout.words32):
                    value |= (yield from sim.dut.bus.read(win.addr(i, j) >> 2)) << (32 * j)
                state["reads"].append((i, value, want))
                state["busy_reads"] += not (yield sim.dut.idle)
        state["done"] = True

    run_simulation(sim.dut, [main(), reader()])
    assert [(i, v) for i, v, _ in state["reads"]] == [(i, w) for i, _, w in state["reads"]]
    assert len(state["reads"]) == 3 * len(descs)
    assert state["busy_reads"] >= 5, state["busy_reads"]  # they overlapped the traffic
    assert got["acc"] == exp_acc


def test_same_neuron_back_to_back_at_full_rate():
    """Consecutive pairs on one neuron (and alternating on two) are applied one per clock, exactly."""
    rng = random.Random(3)
    weights = [rng.randint(-128, 127) for _ in range(16)] + [0] * (W - 16)
    descs = [desc(Kind.DW, k=1, cc=1, tw=2, nbase=5, wbase=3),          # every packet: neuron 5
             desc(Kind.DENSE, cc=1, src_w=1, src_c=4, nbase=9, wbase=0),  # neuron 9, weight c
             desc(Kind.DW, k=1, cc=1, tw=2, nbase=20, wconst=1, wval=-7)]  # nx=2: neurons 20, 21
    packets = [pkt(0, rng.randint(-3000, 3000)) for _ in range(12)]
    packets += [pkt(1, rng.randint(-3000, 3000), c=rng.randint(0, 3)) for _ in range(12)]
    packets += [pkt(2, rng.randint(-3000, 3000), nx=2) for _ in range(8)]
    acc0 = [rng.randint(-100, 100) for _ in range(32)]
    exp_acc, exp_synops, _ = esu_reference(descs, 3, weights, acc0 + [0] * (N - 32), packets)
    sim = CoreSim()
    got = {}

    def main():
        yield from sim.write_entries("esu", descs)
        yield from sim.write(sim.rm.core_regs["esu_count"], 3)
        yield from sim.write_array("weights", words_of_weights(weights[:16]))
        yield from sim.write_array("acc", acc0)
        sim.inbox.extend(packets)
        yield from sim.run_until_idle()
        got["acc"] = yield from sim.read_array("acc", 0, 32)

    sim.run(main())
    assert got["acc"] == exp_acc[:32]
    assert len(sim.synop_cycles) == exp_synops == 12 + 12 + 16
    # One pair per clock from the first to the last synapse: no bubble anywhere.
    assert sim.synop_cycles[-1] - sim.synop_cycles[0] == exp_synops - 1


def test_conv_full_window_throughput():
    """A CONV packet with a full 3x3 window and 16 channels: one pair per clock once the pipeline
    (descriptor read, seven set-up stages, weight read: pipelined for 100 MHz) has filled."""
    cc = 16
    rng = random.Random(4)
    weights = [rng.randint(-128, 127) for _ in range(W)]
    descs = [desc(Kind.CONV, k=3, cc=cc, tw=4, nbase=0, wbase=0)]
    packets = [pkt(0, rng.randint(-50, 50), x=x, y=1, nx=3, ny=3, kx=2, ky=2, c=0) for x in (1, 0, 1)]
    exp_acc, exp_synops, _ = esu_reference(descs, 1, weights, [0] * N, packets)
    sim = CoreSim()
    got = {}

    def main():
        yield from sim.write_entries("esu", descs)
        yield from sim.write(sim.rm.core_regs["esu_count"], 1)
        yield from sim.write_array("weights", words_of_weights(weights[:9 * cc]))
        sim.inbox.extend(packets[:1])
        yield from sim.run_until_idle()
        got["one"] = (sim.first_valid_cycle, sim.synop_cycles[-1], len(sim.synop_cycles))
        sim.first_valid_cycle, sim.synop_cycles = None, []
        sim.inbox.extend(packets[1:])
        yield from sim.run_until_idle()
        got["two"] = (sim.first_valid_cycle, sim.synop_cycles[0], sim.synop_cycles[-1], len(sim.synop_cycles))
        got["acc"] = yield from sim.read_array("acc", 0, N)

    sim.run(main())
    assert got["acc"] == exp_acc
    first, last, pairs = got["one"]
    assert pairs == 9 * cc
    # From the packet entering the sink to its last synapse applied (latency included).
    latency = (last - first + 1) - pairs
    print(f"CONV 3x3x{cc}: {pairs} pairs in {last - first + 1} clocks from sink to last synapse "
          f"(latency {latency} clocks)")
    assert latency <= ESU_LATENCY_BOUND
    first, s0, s1, pairs = got["two"]
    assert pairs == 2 * 9 * cc and s1 - s0 == pairs - 1, "back-to-back packets: one pair every clock"


def test_counters_count_what_happens_and_clear():
    """Long packets fill the event FIFO (sink stalls), a slow output stalls the source."""
    rng = random.Random(6)
    cc = 4
    descs = [desc(Kind.CONV, k=3, cc=cc, tw=3, nbase=0, wbase=0)]
    # More packets than the event FIFO, the set-up stages and the walker FIFO hold together.
    packets = [pkt(0, rng.randint(-30, 30), x=0, y=0, nx=3, ny=3, kx=2, ky=2) for _ in range(64)]
    pops = [pop(0, 0, 0, 0, 3, 3, 0, cc, 1, 0, -100, 100, 0, 2)]
    sim = CoreSim(ready_prob=0.5, seed=6)
    got = {}

    def main():
        yield from sim.write_entries("esu", descs)
        yield from sim.write_entries("pop", pops)
        yield from sim.write_entries("peg", [host_entry(1), host_entry(2)])
        yield from sim.write(sim.rm.core_regs["esu_count"], 1)
        yield from sim.write(sim.rm.core_regs["pop_count"], 1)
        yield from sim.write_array("weights", [rng.getrandbits(32) for _ in range(9 * cc // 4)])
        sim.inbox.extend(packets)
        yield from sim.run_until_idle()
        yield from sim.evaluate(0)
        got["before"] = yield from sim.counters()
        yield sim.dut.clear_counters.eq(1)
        yield
        yield sim.dut.clear_counters.eq(0)
        yield
        got["after"] = yield from sim.counters()

    sim.run(main())
    before = got["before"]
    assert sim.seen["sink_stall"] > 0, "the event FIFO should have filled up"
    assert before["packets_in"] == len(packets)
    assert before["synops"] == len(sim.synop_cycles) == len(packets) * 9 * cc
    assert before["spikes"] == sim.seen["spikes"] > 0
    assert before["packets_out"] == sim.seen["packets_out"] == 2 * sim.seen["spikes"]
    assert before["busy_cycles"] == sim.seen["busy"]
    assert before["stall_cycles"] == sim.seen["stall"] > 0
    assert before["dropped"] == 0
    assert got["after"] == dict.fromkeys(before, 0)


def test_registers_saturate_and_gaps_read_zero():
    sim = CoreSim()
    rm = sim.rm
    got = {}

    def main():
        yield from sim.write(rm.core_regs["esu_count"], 1000)
        yield from sim.write(rm.core_regs["pop_count"], 3)
        yield from sim.write(rm.core_counters["synops"], 55)          # counters are read-only
        pop_win = rm.core_windows["pop"]
        yield from sim.write_entries("pop", [pop(5, 1, 2, 3, 4, 5, 6, 7, 8, 9, -10, 11, 2, 3)])
        # Words beyond an entry's own (a table whose entries do not fill their power-of-two slots).
        gaps = [w for w in rm.core_windows.values() if w.stride > w.words]
        for w in gaps:
            yield from sim.write(w.addr(0, w.stride - 1), 0xFFFFFFFF)
        got["esu_count"] = yield from sim.read(rm.core_regs["esu_count"])
        got["pop_count"] = yield from sim.read(rm.core_regs["pop_count"])
        got["synops"] = yield from sim.read(rm.core_counters["synops"])
        got["gap"] = 0
        for w in gaps:
            got["gap"] |= yield from sim.read(w.addr(0, w.stride - 1))
        got["reg_gap"] = yield from sim.read(rm.core_regs["pop_count"] + 8)
        words = []
        for j in range(pop_win.words):
            words.append((yield from sim.read(pop_win.addr(0, j))))
        got["pop"] = pop_win.layout.unpack_one(sum(w << (32 * j) for j, w in enumerate(words)))

    sim.run(main())
    assert got["esu_count"] == CFG.esu_descriptors_per_core
    assert got["pop_count"] == 3
    assert got["synops"] == 0 and got["gap"] == 0 and got["reg_gap"] == 0
    assert got["pop"] == full_entries(rm.core_windows["pop"].layout, [pop(5, 1, 2, 3, 4, 5, 6, 7, 8, 9, -10, 11, 2, 3)])[0]


# ---------------------------------------------------------------------------------------------
# Evaluation
def pop(layer, nbase, x0, y0, tw, th, c0, cc, mult, shift, lo, hi, peg_base, peg_count):
    return dict(layer=layer, nbase=nbase, x0=x0, y0=y0, tw=tw, th=th, c0=c0, cc=cc, mult=mult, shift=shift,
                lo=lo, hi=hi, peg_base=peg_base, peg_count=peg_count)


def host_entry(tag):
    return dict(kind=Kind.HOST, dest_core=0, syn=tag, k=0, s_log2=0, up_log2=0, pad=0, x0=0, x1=0, y0=0, y1=0,
                c0=0, c1=0, chan_off=0)


def eval_reference(pops, layer, acc, sent, dirty, threshold, peg):
    """(spike count, the spikes as HOST packets in hardware order); updates sent and dirty in place."""
    out = []
    spikes = 0
    for p in pops:
        if p["layer"] != layer:
            continue
        for local in range(p["tw"] * p["th"] * p["cc"]):
            n = p["nbase"] + local
            if not dirty[n]:
                continue
            dirty[n] = False
            a = int(arith.requantize(acc[n], p["mult"], p["shift"], p["lo"], p["hi"]))
            if not arith.fires(a, sent[n], threshold):
                continue
            d = a - sent[n]
            sent[n] = a
            spikes += 1
            pix, ci = divmod(local, p["cc"])
            ty, tx = divmod(pix, p["tw"])
            for e in peg[p["peg_base"]:p["peg_base"] + p["peg_count"]]:
                out.append(dict(x=p["x0"] + tx, y=p["y0"] + ty, c=p["c0"] + ci, d=d, syn=e["syn"]))
    return spikes, out


def test_evaluation_matches_arith_and_clears_dirty():
    rng = random.Random(5)
    eb = CFG.event_bits
    pops = [pop(0, 0, 3, 1, 3, 2, 4, 2, 300, 8, 0, 127, 0, 1),       # ReLU, rounding shift
            pop(1, 12, 0, 0, 2, 2, 0, 3, 1, 0, -200, 200, 1, 2),    # shift 0, signed range, two entries
            pop(0, 40, 7, 9, 4, 1, 1, 1, 65535, 31, -(1 << (eb - 1)), (1 << (eb - 1)) - 1, 3, 1)]
    peg = [host_entry(t) for t in (11, 12, 13, 14)]
    acc = [0] * N
    sent = [0] * N
    dirty = [False] * N
    acc_written = {}
    for n in list(range(0, 12)) + list(range(12, 24)) + list(range(40, 44)):
        if rng.random() < 0.8:
            acc_written[n] = rng.randint(-(1 << (CFG.acc_bits - 1)), (1 << (CFG.acc_bits - 1)) - 1) \
                if n >= 40 else rng.randint(-4000, 4000)
    # A few neurons keep sent != requantized value but are not dirty: they must not fire.
    sent_written = {n: rng.randint(-50, 50) for n in range(0, 44)}
    for n, v in acc_written.items():
        acc[n], dirty[n] = v, True
    for n, v in sent_written.items():
        sent[n] = v
    threshold = 3
    exp, exp_spikes = [], 0
    for layer in (0, 0, 1):
        n_spikes, packets = eval_reference(pops, layer, acc, sent, dirty, threshold, peg)
        exp.append(packets)
        exp_spikes += n_spikes
    assert len(exp[0]) > 5 and exp[1] == [] and len(exp[2]) > 5
    sim = CoreSim()
    got = {}

    def main():
        yield from sim.write_entries("pop", pops[:3])
        yield from sim.write_entries("peg", peg)
        yield from sim.write(sim.rm.core_regs["pop_count"], 3)
        for n, v in sent_written.items():
            yield from sim.write(sim.rm.core_windows["sent"].addr(n), v)
        for n, v in acc_written.items():
            yield from sim.write(sim.rm.core_windows["acc"].addr(n), v)
        yield sim.dut.threshold.eq(threshold)
        runs = []
        for layer in (0, 0, 1):
            sim.out = []
            yield from sim.evaluate(layer)
            runs.append([dict(x=p["x"], y=p["y"], c=p["c"], d=p["d"], syn=p["syn"]) for p in sim.out])
        got["runs"] = runs
        got["sent"] = yield from sim.read_array("sent", 0, 44)
        got["counters"] = yield from sim.counters()

    sim.run(main())
    assert got["runs"] == exp
    assert got["sent"] == sent[:44]
    assert got["counters"]["spikes"] == exp_spikes
    assert got["counters"]["packets_out"] == sum(len(r) for r in exp)


# ---------------------------------------------------------------------------------------------
# A compiled network on a one-core fabric against the golden model.
@pytest.mark.slow
@pytest.mark.parametrize("seed,geometry", [(11, False), (12, False), (13, True)])
def test_compiled_network_matches_model(seed, geometry):
    """geometry: rectangular kernels, strides and padding and weight shifts (version-2 tables)."""
    from synfab.compiler import compile_network, tables_to_words
    from synfab.model import Model, input_events
    from synfab.randnet import GEOMETRY_KINDS, random_input, random_qnetwork, with_weight_shifts
    from test_gw_core_peg import peg_reference

    cfg = CFG
    rng = np.random.default_rng(seed)
    qnet = random_qnetwork(rng, cfg, kinds=("conv", "dw", "sumpool", "dense", "add") + (GEOMETRY_KINDS if geometry
                                                                                        else ()))
    if geometry:
        qnet = with_weight_shifts(rng, qnet, cfg)
        assert qnet.extended_features() and not qnet.unsupported_features()
    tables = compile_network(qnet, cfg)
    model = Model(tables, threshold=0)
    frames = [random_input(qnet, rng)]
    frames.append(random_input(qnet, rng, prev=frames[0], change=0.3))
    sim = CoreSim(cfg, loopback=True, ready_prob=0.8, seed=seed)
    words = tables_to_words(tables, sim.rm.version, tables.state_words)
    ct = tables.cores[0]
    n_used = ct.neurons_used
    n_in = int(tables.regs["input_peg_count"])
    input_peg = [{k: int(v[i]) for k, v in tables.input_peg.items()} for i in range(n_in)]
    results = []

    def main():
        for (core, name), arr in words.items():
            if core != 0:
                continue
            win = sim.rm.core_windows[name]
            for i, row in enumerate(arr):
                for j, w in enumerate(row):
                    yield from sim.write(win.addr(i, j), int(w))
        yield from sim.write(sim.rm.core_regs["esu_count"], ct.esu_count)
        yield from sim.write(sim.rm.core_regs["pop_count"], ct.pop_count)
        prev = None
        for frame in frames:
            ev = input_events(prev, frame)
            prev = frame
            sim.out = []
            for x, y, c, d in zip(ev["x"], ev["y"], ev["c"], ev["d"]):
                sim.inbox.extend(peg_reference(input_peg, len(input_peg), int(x), int(y), int(c), int(d),
                                               0, len(input_peg)))
            yield from sim.run_until_idle()
            for layer in range(int(tables.regs["n_layers"])):
                yield from sim.evaluate(layer)
            host = [(p["x"], p["y"], p["c"], p["d"], p["syn"]) for p in sim.out if p["host"]]
            acc = yield from sim.read_array("acc", 0, n_used)
            sent = yield from sim.read_array("sent", 0, n_used)
            results.append((host, acc, sent))

    sim.run(main())
    for frame, (host, acc, sent) in zip(frames, results):
        res = model.run_frame(input_events(None if frame is frames[0] else frames[0], frame))
        exp_host = [(int(e["x"]), int(e["y"]), int(e["c"]), int(e["d"]), int(e["tag"]))
                    for e in res.events]
        assert sorted(host) == sorted(exp_host)
        assert acc == [int(v) for v in model.acc(0)[:n_used]]
        assert sent == [int(v) for v in model.sent(0)[:n_used]]
