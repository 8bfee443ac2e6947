"""Throughput of the gateware, measured in simulated clock cycles (Verilator, backend `sim`).

Two kinds of figures, kept apart in the JSON:

`micro` -- micro-benchmarks: one mechanism at its best, not a workload.

conv (`conv_sops_per_clock_per_core`)
    One 3x3 convolution (pad 1, stride 1) with many output channels, placed on one core; every
    input value changes (dense input events). The input events are streamed *without* the
    end-of-frame beat and the fabric is clocked until it is drained: up to then no layer is
    evaluated, so every clock a core was busy went to event FIFO -> ESU -> neuron unit work.
    Per core: synops (counter) / busy_cycles (counter) over that input phase; the figure is
    the sum of synops over the sum of busy cycles of the cores that did synaptic work (the
    synops-weighted mean of the per-core rates; the per-core rows are reported too). Evaluation,
    output and idle cores are excluded by construction.  Target >= 0.9 x lanes: the ESU emits up
    to `lanes` (neuron, weight) pairs per clock (FabricConfig.lanes; `micro_bench(cfg, lanes=P)`
    measures cfg with P lanes).

dense (`dense_sops_per_clock_per_core`)
    The same for one dense layer (up to 64 outputs over a 2x8x8 or 2x4x4 input: tiny 32 over 2x4x4) on one core: each
    input event is one packet of `outputs` pairs.

depthwise (`dw_sops_per_clock_per_core`)
    The same for one depthwise 3x3 convolution (pad 1, stride 1) over an odd number of channels
    (up to 63) on one core: each input event is one packet of up to 9 pairs, three columns a row;
    with P lanes the ESU takes a row's columns P at a time (the channel count is odd, so they lie
    in distinct neuron banks): up to 3 per clock.

input (`input_events_per_clock`)
    A relay network: the input through a 1x1 depthwise connection with constant weight, so each
    input event makes one packet and one synop. A long frame is queued and, after a warm-up, the
    input beats the fabric takes during a fixed window of clocks are counted (steady state,
    without start-up or drain). Target 1.0.

Latencies (clock cycles from the first input beat offered to the end-of-frame beat taken on the
output): the dense conv frame, the relay frame, an empty frame (eof only, nothing dirty); and
`conv_finish_cycles`: from the eof beat of an already drained frame to the output eof (drain,
evaluation of the layer, output events).

`whole_frame` -- real networks on real inputs (synfab.workloads: the demo CNN on MNIST digits, a
CNN on a real DVS recording), every frame whole: input phase, drain, evaluation of every layer,
output.  Per workload: cycles per frame; evaluation cycles per frame (from the eof beat taken to
the output eof beat: the drain, the layer-by-layer evaluation and the synaptic work of the spikes
it makes); synaptic ops per clock of the fabric and per core (over all its cores); and per core
its synaptic ops, busy cycles and idle fraction (1 - busy / all cycles).  All from the simulated
clock and the fabric's counters.

`simulation_speed` -- wall-clock speed of the Verilated model while it works: the dense conv frame
queued several times and clocked through in one call (no Python between clocks); idle clocking
too.  Both depend on the machine and its load (no test checks them).

`at_fmax` -- for a fabric with an ECP5 board (`--fabric ulx3s-85f`, or any fabric with a bitstream
in bitstreams/manifest*.json, or a placement of it in bitstreams/placements.json): the figures above
at the board's Fmax.  Fmax is the manifest's (nextpnr) when a bitstream of exactly this fabric is
recorded, else the lowest recorded placement's (its seeds: `fmax_source`), else ASSUMED_FMAX_MHZ with
`fmax_measured: false`.  Peak synaptic ops/s (the conv micro-benchmark's rate of one busy core x
Fmax, per core and x cores for the fabric); per workload frames/s and latency per frame (cycles per
frame from the Verilator run), synaptic ops/s of the fabric and per core, the input events/s the
fabric consumes; and the host-link budget: the bytes the litex backend moved over UARTBone per
input event, counted on the LiteX sim SoC of the fabric while it streamed the same frames, and the
events/s that leaves at the board's baud rate (8N1: 10 bits a byte), against what the fabric takes.

`dma_link` -- for the PYNQ-Z2's preset (`--fabric pynq-z2`): the AXI DMA host link measured through
the simulated board (runtime/pynq_mock.py: PYNQ's own driver code, the DMA in simple mode, the
Verilator fabric): per workload the MM2S beats and the simulated cycles from each transfer's start
to the fabric taking its last beat, as beats/s at the block design's clock against the AXI HP0
port's rate (see DMA_WHAT).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..boards import ETHERNET_BOARDS
from ..config import FabricConfig
from ..errors import SynfabError
from ..frontend.ir import QConnection, QLayer, QNetwork
from ..layouts import Kind
from ..model.golden import EVENT_FIELDS
from ..compiler.mapper import DEFAULT_OBJECTIVE
from ..compiler.work import lanes
from . import placements
from .placements import bitstreams_dir
from ..runtime.device import BEAT_BYTES, eof_word, event_words, frame_beats

CONV_KERNEL = 3
CONV_IN_CHANNELS = 2
CONV_MAX_OUT_CHANNELS = 64
RELAY_EVENTS = 20_000
INPUT_WARMUP_CYCLES = 2_000
INPUT_WINDOW_CYCLES = 16_000
SPEED_FRAMES = 4
IDLE_SPEED_CYCLES = 1_000_000
# Clocks between two looks at the status register while waiting for the fabric to drain.
POLL_CYCLES = 2_000
MAX_DRAIN_CYCLES = 50_000_000
MAX_FRAME_CYCLES = 200_000_000
MICRO_OBJECTIVE = "memory"
# Issue 11's target for whole frames: the fabric does at least this share of cores x lanes ops per clock.
TARGET_SHARE = 0.5
MICRO_WHAT = ("micro-benchmarks: one mechanism at its best (one busy core in the input phase of a single conv; "
              "a one-synapse relay in steady state), not a workload")
WHOLE_FRAME_WHAT = ("whole frames of real workloads on their fabric: input phase, drain, evaluation of every "
                    "layer, output; all cores and all cycles counted")


class BenchError(SynfabError):
    """The benchmark cannot run on this fabric configuration."""


# -- networks -------------------------------------------------------------------------------------
def conv_network(cfg: FabricConfig, seed: int = 0) -> QNetwork:
    """A 3x3 conv with as many output channels (up to 64) as one core of cfg holds, over a
    square input of side 8, or of side 4 where that allows more channels."""
    ci, k = CONV_IN_CHANNELS, CONV_KERNEL
    max_channels = min(CONV_MAX_OUT_CHANNELS, 1 << cfg.chan_bits,
                       cfg.weight_words_per_core // (ci * k * k))
    co, side = max((min(max_channels, cfg.neurons_per_core // (side * side)), side) for side in (8, 4))
    if co < 8:
        raise BenchError(f"fabric {cfg.name!r}: one core cannot hold a 3x3 conv with 8 output channels over 4x4 "
                         f"({cfg.neurons_per_core} neurons, {cfg.weight_words_per_core} weight words); "
                         f"use a fabric with neurons_per_core >= 128")
    rng = np.random.default_rng(seed)
    weight = rng.integers(-8, 9, size=(co, ci, k, k)).astype(np.int8)
    # Shift 6 keeps activations of inputs up to 255 mostly inside 0..255: the evaluation phase emits
    # a realistic mix of output events.
    layer = QLayer("conv", (co, side, side), [QConnection("in", Kind.CONV, k=k, stride=1, pad=k // 2)],
                   np.zeros(co, np.int64), mult=1, shift=6, lo=0, hi=255, weight=weight, op="conv")
    return QNetwork("bench_conv", "in", (ci, side, side), [layer], "conv")


def dense_network(cfg: FabricConfig, seed: int = 0) -> QNetwork:
    """A dense layer with as many outputs (up to 64) as one core of cfg holds, over a 2xSxS input
    (S = 8, or 4 where that allows more outputs)."""
    co, side = max((min(CONV_MAX_OUT_CHANNELS, 1 << cfg.chan_bits, cfg.neurons_per_core,
                        cfg.weight_words_per_core // (CONV_IN_CHANNELS * side * side)), side) for side in (8, 4))
    if co < 8:
        raise BenchError(f"fabric {cfg.name!r}: one core cannot hold a dense layer of 8 outputs over 2x4x4 "
                         f"({cfg.neurons_per_core} neurons, {cfg.weight_words_per_core} weight words)")
    shape = (CONV_IN_CHANNELS, side, side)
    rng = np.random.default_rng(seed)
    weight = rng.integers(-8, 9, size=(co, int(np.prod(shape)))).astype(np.int8)
    layer = QLayer("fc", (co, 1, 1), [QConnection("in", Kind.DENSE)], np.zeros(co, np.int64), mult=1, shift=6,
                   lo=0, hi=255, weight=weight, op="dense")
    return QNetwork("bench_dense", "in", shape, [layer], "fc")


def dw_network(cfg: FabricConfig, seed: int = 0) -> QNetwork:
    """A depthwise 3x3 conv (pad 1, stride 1) over as many channels as one core of cfg holds, an
    odd count (at most CONV_MAX_OUT_CHANNELS - 1), on a square input of side 8 (or 4)."""
    k = CONV_KERNEL
    c, side = max((min(CONV_MAX_OUT_CHANNELS - 1, (1 << cfg.chan_bits) - 1, cfg.neurons_per_core // (side * side),
                       cfg.weight_words_per_core // (k * k)), side) for side in (8, 4))
    c -= 1 - c % 2          # odd
    if c < 3:
        raise BenchError(f"fabric {cfg.name!r}: one core cannot hold a 3x3 depthwise conv of 3 channels over 4x4 "
                         f"({cfg.neurons_per_core} neurons)")
    rng = np.random.default_rng(seed)
    weight = rng.integers(-8, 9, size=(c, 1, k, k)).astype(np.int8)
    layer = QLayer("dw", (c, side, side), [QConnection("in", Kind.DW, k=k, stride=1, pad=k // 2)],
                   np.zeros(c, np.int64), mult=1, shift=5, lo=0, hi=255, weight=weight, op="dw")
    return QNetwork("bench_dw", "in", (c, side, side), [layer], "dw")


def relay_network(cfg: FabricConfig) -> QNetwork:
    """Input (1, S, S) -> 1x1 depthwise, constant weight 1: one packet and one synop per event.
    S is the largest power of two with S*S neurons on a core and S within the coordinate range."""
    side = 1 << min(int(np.log2(cfg.neurons_per_core)) // 2, cfg.coord_bits)
    layer = QLayer("relay", (1, side, side), [QConnection("in", Kind.DW, k=1, wconst=1)],
                   np.zeros(1, np.int64), mult=1, shift=0, lo=0, hi=(1 << (cfg.event_bits - 1)) - 1,
                   op="sumpool")
    return QNetwork("bench_relay", "in", (1, side, side), [layer], "relay")


def dense_input(qnet: QNetwork, seed: int = 0) -> np.ndarray:
    """An input activation with every value nonzero (1..255): from reset, every value is an event."""
    return np.random.default_rng(seed).integers(1, 256, size=qnet.input_shape)


def relay_events(qnet: QNetwork, n: int, seed: int = 0) -> dict:
    """n in-range input events at random positions, values +-1."""
    c, h, w = qnet.input_shape
    rng = np.random.default_rng(seed)
    return {"x": rng.integers(0, w, n), "y": rng.integers(0, h, n), "c": rng.integers(0, c, n),
            "d": rng.choice([-1, 1], n)}


# -- driving the simulation -----------------------------------------------------------------------
def _wait_drained(dev) -> None:
    """Clock until every queued input beat is taken and nothing is in flight (status bit 0 clear)."""
    waited = 0
    while dev.sim.pending_input or dev.read_reg("status") & 1:
        if waited >= MAX_DRAIN_CYCLES:
            raise BenchError(f"the fabric did not drain within {MAX_DRAIN_CYCLES} cycles "
                             f"({dev.sim.pending_input} input beats still queued)")
        dev.sim.run(POLL_CYCLES)
        waited += POLL_CYCLES


def _input_phase(dev, events: dict) -> dict:
    """Stream events without the eof beat, clock until drained; the counters then hold only the
    input phase (nothing is evaluated before eof). Then end the frame and collect its output."""
    dev.write_reg("ctrl", dev.regmap.CTRL_CLEAR_COUNTERS)
    dev.sim.push(event_words(events), np.zeros(len(events["x"]), np.uint8))
    _wait_drained(dev)
    phase = dev.read_counters()
    dev.sim.push(eof_word(), np.ones(1, np.uint8))
    finish = dev.sim.run_frames(1, MAX_FRAME_CYCLES)
    dev.sim.pull()   # this frame's output beats: not needed, only drop them
    return {"input_phase": phase, "frame": dev.read_counters(), "finish_cycles": finish}


def _core_rates(counters: dict) -> list[dict]:
    return [{"core": i, "synops": c["synops"], "busy_cycles": c["busy_cycles"],
             "sops_per_clock": round(c["synops"] / c["busy_cycles"], 4)}
            for i, c in enumerate(counters["cores"]) if c["synops"]]


def _steady_input_rate(dev, events: dict) -> float:
    """Input beats taken per clock over INPUT_WINDOW_CYCLES after INPUT_WARMUP_CYCLES."""
    n = len(events["x"])
    if n <= INPUT_WARMUP_CYCLES + INPUT_WINDOW_CYCLES:
        raise BenchError(f"{n} events cannot keep the input busy for {INPUT_WARMUP_CYCLES + INPUT_WINDOW_CYCLES} "
                         f"clocks; stream more events")
    dev.write_reg("ctrl", dev.regmap.CTRL_CLEAR_COUNTERS)
    dev.sim.push(event_words(events), np.zeros(n, np.uint8))
    dev.sim.run(INPUT_WARMUP_CYCLES)
    before = dev.sim.pending_input
    dev.sim.run(INPUT_WINDOW_CYCLES)
    taken = before - dev.sim.pending_input
    _wait_drained(dev)
    dev.sim.push(eof_word(), np.ones(1, np.uint8))
    dev.sim.run_frames(1, MAX_FRAME_CYCLES)
    dev.sim.pull()
    return taken / INPUT_WINDOW_CYCLES


def _timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of run()."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _sim_speed(dev, events: dict) -> dict:
    """Simulated cycles per wall second and per CPU second, busy (dense conv frames) and idle.
    Per CPU second is what the machine gives when not shared; wall seconds include other load."""
    words, lasts = frame_beats(events)
    dev.reset()
    dev.sim.push(np.tile(words, SPEED_FRAMES), np.tile(lasts, SPEED_FRAMES))
    start = dev.sim.cycles
    busy_wall, busy_cpu = _timed(lambda: dev.sim.run_frames(SPEED_FRAMES, MAX_FRAME_CYCLES * SPEED_FRAMES))
    busy_cycles = dev.sim.cycles - start
    dev.sim.pull()
    idle_wall, idle_cpu = _timed(lambda: dev.sim.run(IDLE_SPEED_CYCLES))
    return {"sim_cycles_per_second": round(busy_cycles / busy_wall),
            "sim_cycles_per_cpu_second": round(busy_cycles / busy_cpu),
            "sim_cycles_per_second_idle": round(IDLE_SPEED_CYCLES / idle_wall),
            "sim_cycles_per_cpu_second_idle": round(IDLE_SPEED_CYCLES / idle_cpu),
            "sim_speed_cycles": busy_cycles}


def _open_sim(cfg: FabricConfig):
    from ..runtime.sim import SimDevice
    return SimDevice(cfg)


# -- micro-benchmarks -------------------------------------------------------------------------------
def micro_bench(cfg: FabricConfig = FabricConfig(), relay_events_count: int = RELAY_EVENTS,
                lanes: int | None = None) -> tuple[dict, dict]:
    """(micro-benchmark figures, simulation speed) of cfg's gateware (see the module doc); with
    `lanes`, of cfg with that many synaptic lanes per core."""
    from ..api import compile_qnetwork
    from ..runtime.stream import input_deltas

    if lanes is not None:
        cfg = cfg.with_(lanes=lanes)
    conv = conv_network(cfg)
    dense = dense_network(cfg)
    dense_tables = compile_qnetwork(dense, cfg, MICRO_OBJECTIVE)
    dense_events = input_deltas(np.zeros(dense.input_shape, np.int64), dense_input(dense))
    dw = dw_network(cfg)
    dw_tables = compile_qnetwork(dw, cfg, MICRO_OBJECTIVE)
    quiet = quiet_network(conv)
    quiet_tables = compile_qnetwork(quiet, cfg, MICRO_OBJECTIVE)
    dw_events = input_deltas(np.zeros(dw.input_shape, np.int64), dense_input(dw))
    relay = relay_network(cfg)
    # Objective memory: each network stays on the one core it fits (the micro-benchmarks measure one
    # core's mechanism; balancing would spread the conv over every core).
    conv_tables, relay_tables = (compile_qnetwork(conv, cfg, MICRO_OBJECTIVE),
                                 compile_qnetwork(relay, cfg, MICRO_OBJECTIVE))
    conv_events = input_deltas(np.zeros(conv.input_shape, np.int64), dense_input(conv))
    r_events = relay_events(relay, relay_events_count)

    dev = _open_sim(cfg)
    try:
        dev.load(conv_tables)
        phased = _input_phase(dev, conv_events)
        dev.reset()
        conv_frame = dev.run_frame(conv_events)
        empty_frame = dev.run_frame({k: np.zeros(0, np.int64) for k in EVENT_FIELDS})
        speed = _sim_speed(dev, conv_events)

        dev.load(relay_tables)
        input_rate = _steady_input_rate(dev, r_events)
        dev.reset()
        relay_frame = dev.run_frame(r_events)

        dev.load(dense_tables)
        dense_phased = _input_phase(dev, dense_events)

        dev.load(dw_tables)
        dw_phased = _input_phase(dev, dw_events)

        dev.load(quiet_tables)
        quiet_phased = _input_phase(dev, conv_events)
        quiet_empty = dev.run_frame({k: np.zeros(0, np.int64) for k in EVENT_FIELDS})
    finally:
        dev.close()

    rows = _core_rates(phased["input_phase"])
    phase_synops = sum(r["synops"] for r in rows)
    phase_busy = sum(r["busy_cycles"] for r in rows)
    co, side = conv.layers[0].shape[:2]
    dense_fig = _input_phase_figures(f"{'x'.join(map(str, dense.input_shape))} -> dense -> {dense.layers[0].shape[0]}",
                                     dense_events, _core_rates(dense_phased["input_phase"]), dense_phased)
    dw_fig = _input_phase_figures(f"{'x'.join(map(str, dw.input_shape))} -> depthwise 3x3 pad1", dw_events,
                                  _core_rates(dw_phased["input_phase"]), dw_phased)

    def rate(fig):
        return round(fig["synops"] / fig["busy_cycles"], 4) if fig["busy_cycles"] else 0.0
    micro = {
        "what": MICRO_WHAT,
        "lanes": cfg.lanes,
        "conv_sops_per_clock_per_core": round(phase_synops / phase_busy, 4) if phase_busy else 0.0,
        "dense_sops_per_clock_per_core": rate(dense_fig),
        "dw_sops_per_clock_per_core": rate(dw_fig),
        "input_events_per_clock": round(input_rate, 4),
        "conv": {
            "network": f"{conv.input_shape[0]}x{side}x{side} -> conv3x3 pad1 -> {co}x{side}x{side}",
            "input_events": len(conv_events["x"]),
            "synops": phase_synops,
            "busy_cycles": phase_busy,
            "cores": rows,
            "frame_cycles": conv_frame.cycles,
            "frame_synops": sum(c["synops"] for c in conv_frame.counters["cores"]),
            "finish_cycles": phased["finish_cycles"],
            "output_events": phased["frame"]["events_out"],
            "empty_frame_cycles": empty_frame.cycles,
        },
        "dense": dense_fig,
        "dw": dw_fig,
        **_evaluation_figures(quiet, quiet_phased, quiet_empty),
        "input": {
            "network": f"1x{relay.input_shape[1]}x{relay.input_shape[2]} -> 1x1 relay",
            "window_cycles": INPUT_WINDOW_CYCLES,
            "frame_events": relay_events_count,
            "frame_cycles": relay_frame.cycles,
            "events_in": relay_frame.counters["events_in"],
            "synops": sum(c["synops"] for c in relay_frame.counters["cores"]),
        },
    }
    return micro, speed


def quiet_network(conv: QNetwork) -> QNetwork:
    """The conv micro-benchmark's network with zero weights: every neuron its input reaches becomes
    dirty and is evaluated, none fires (acc stays 0), so the evaluation is all its frame adds."""
    layer = conv.layers[0]
    return replace(conv, name="bench_quiet_conv", layers=[replace(layer, weight=np.zeros_like(layer.weight))])


def _evaluation_figures(quiet: QNetwork, phased: dict, empty) -> dict:
    """The evaluation unit's rate: the quiet conv's neurons over the clocks its frame's end (from
    the eof beat: evaluation, word scans, no output) takes beyond an empty frame's (the scans)."""
    neurons = int(np.prod(quiet.layers[0].shape))
    extra = phased["finish_cycles"] - empty.cycles
    return {
        "eval_neurons_per_clock_per_core": round(neurons / extra, 4) if extra > 0 else 0.0,
        "evaluation": {"network": f"{'x'.join(map(str, quiet.input_shape))} -> conv3x3 pad1 (zero weights) -> "
                                  f"{'x'.join(map(str, quiet.layers[0].shape))}",
                       "evaluated_neurons": neurons, "finish_cycles": phased["finish_cycles"],
                       "empty_frame_cycles": empty.cycles, "output_events": phased["frame"]["events_out"]},
    }


def _input_phase_figures(network: str, events: dict, rows: list[dict], phased: dict) -> dict:
    """A micro-benchmark's input phase: its synaptic ops and busy cycles over the cores' rows."""
    return {"network": network, "input_events": len(events["x"]), "synops": sum(r["synops"] for r in rows),
            "busy_cycles": sum(r["busy_cycles"] for r in rows), "cores": rows,
            "output_events": phased["frame"]["events_out"]}


# -- whole frames on real workloads -----------------------------------------------------------------
def _clock_until_input_taken(sim) -> int:
    """Clock until every queued input beat (the frame's eof beat last) is taken; the cycles that took.
    The fabric takes at most one beat per clock, so running (pending - 1) clocks never passes the
    eof beat: the moment it is taken is exact."""
    cycles = 0
    while sim.pending_input > 1:
        step = sim.pending_input - 1
        sim.run(step)
        cycles += step
    while sim.pending_input:
        sim.run(1)
        cycles += 1
    return cycles


def _phased_sim(cfg: FabricConfig):
    """A SimDevice that also records, per frame, (cycles until its eof beat was taken, cycles from
    then to the output eof beat)."""
    from ..runtime.sim import MAX_FRAME_CYCLES as SIM_MAX_FRAME_CYCLES, SimDevice

    class PhasedSimDevice(SimDevice):
        phases: list

        def _exchange(self, words, lasts):
            self.sim.push(words, lasts)
            taken = _clock_until_input_taken(self.sim)
            after = self.sim.run_frames(1, SIM_MAX_FRAME_CYCLES)
            self.phases.append((taken, after))
            out, out_lasts = self.sim.pull()
            return out, out_lasts, taken + after

    dev = PhasedSimDevice(cfg)
    dev.phases = []
    return dev


def _per_core_rows(frames: list, cycles: int, tables) -> list[dict]:
    """Per core: synaptic ops, busy cycles, ops per clock, utilisation (ops / (clocks x lanes): the
    share of the frame's clocks its synaptic lanes worked) and idle fraction (1 - busy / clocks)."""
    rows = []
    n_lanes = lanes(tables.cfg)
    for core, ct in enumerate(tables.cores):
        synops = sum(f.counters["cores"][core]["synops"] for f in frames)
        busy = sum(f.counters["cores"][core]["busy_cycles"] for f in frames)
        rows.append({"core": core, "used": bool(ct.pop_count), "synops": synops, "busy_cycles": busy,
                     "sops_per_clock": round(synops / cycles, 4),
                     "utilisation": round(synops / (cycles * n_lanes), 4),
                     "idle_fraction": round(1 - busy / cycles, 4)})
    return rows


def _balance(synops: int, cycles: int, frames: int, cfg: FabricConfig, placement) -> dict:
    """The measured frame against its lower bound, total ops / (cores x lanes), and issue 11's
    target (fabric ops per clock >= TARGET_SHARE x cores x lanes); what the placement predicted."""
    capacity = cfg.n_cores * lanes(cfg)
    bound = synops / frames / capacity
    per_frame = cycles / frames
    out = {"objective": placement.objective, "lanes": lanes(cfg),
           "lower_bound_cycles_per_frame": round(bound, 1),
           "cycles_over_lower_bound": round(per_frame / bound, 3) if bound else None,
           "target_sops_per_clock": TARGET_SHARE * capacity,
           "meets_target": synops / cycles >= TARGET_SHARE * capacity}
    if placement.prediction is not None:
        out["predicted"] = placement.prediction
    return out


def _compiled(name: str, qnet: QNetwork, cfg: FabricConfig, objective: str = DEFAULT_OBJECTIVE):
    """(tables, placement) of the workload on cfg, placed for `objective` with the static work
    estimate (the frames measured are not used to place them); BenchError (one line) where it
    does not fit."""
    from ..api import compile_placed
    try:
        return compile_placed(qnet, cfg, objective)
    except SynfabError as e:
        raise BenchError(f"workload {name} does not fit fabric {cfg.name!r}: {e}") from None


def _workload(name: str, frames: int | None):
    from .workloads import WORKLOADS
    if name not in WORKLOADS:
        raise BenchError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return WORKLOADS[name].load(frames or WORKLOADS[name].frames)


def workload_bench(name: str, frames: int | None = None, cfg: FabricConfig | None = None,
                   loaded=None, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Whole-frame figures of one workload (synfab.workloads) on cfg's gateware (default: the
    workload's own fabric), placed for `objective`."""
    from ..runtime.stream import stream
    from .workloads import WORKLOADS
    qnet, x = loaded or _workload(name, frames)
    cfg = cfg or WORKLOADS[name].fabric
    tables, placement = _compiled(name, qnet, cfg, objective)
    outputs = []
    dev = _phased_sim(cfg)
    try:
        dev.load(tables)
        res = stream(dev, x, on_frame=lambda t, fo, out: outputs.append(fo))
        phases = np.array(dev.phases, dtype=np.int64)
    finally:
        dev.close()
    cycles = phases.sum(axis=1)
    total = int(cycles.sum())
    synops = sum(c["synops"] for f in outputs for c in f.counters["cores"])
    evaluation = phases[:, 1]
    return {
        "description": WORKLOADS[name].description,
        "network": qnet.name, "fabric": cfg.name, "n_cores": cfg.n_cores,
        "frames": res.frames, "input_events": res.events_in, "output_events": res.events_out,
        "synaptic_ops": synops, "cycles": total,
        "cycles_per_frame": {"mean": round(float(cycles.mean()), 1), "max": int(cycles.max())},
        "evaluation_cycles": int(evaluation.sum()),
        "evaluation_cycles_per_frame": {"mean": round(float(evaluation.mean()), 1), "max": int(evaluation.max())},
        "evaluation_fraction": round(int(evaluation.sum()) / total, 4),
        "sops_per_clock": round(synops / total, 4),
        "sops_per_clock_per_core": round(synops / total / cfg.n_cores, 4),
        "cores": _per_core_rows(outputs, total, tables),
        "balance": _balance(synops, total, res.frames, cfg, placement),
    }


def _fitting(names, frames, cfg, objective: str = DEFAULT_OBJECTIVE) -> tuple[dict, dict]:
    """({name: (qnet, x)} of the workloads to run, {name: why not} of those that do not fit cfg).
    Workloads named explicitly must fit; of all workloads (names None) the misfits are reported."""
    from .workloads import SINGLE_BOARD_WORKLOADS
    run, misfits = {}, {}
    for name in names or SINGLE_BOARD_WORKLOADS:
        loaded = _workload(name, frames)
        if cfg is not None:
            try:
                _compiled(name, loaded[0], cfg, objective)
            except BenchError as e:
                if names:
                    raise
                misfits[name] = str(e)
                continue
        run[name] = loaded
    return run, misfits


def whole_frame_bench(names=None, frames: int | None = None, cfg: FabricConfig | None = None,
                      loaded: dict | None = None, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Whole-frame figures of the workloads, each on cfg or (cfg None) on its own fabric."""
    if loaded is None:
        loaded, misfits = _fitting(names, frames, cfg, objective)
    else:
        misfits = {}
    out = {"what": WHOLE_FRAME_WHAT,
           **{name: workload_bench(name, frames, cfg, loaded=lq, objective=objective)
              for name, lq in loaded.items()}}
    if misfits:
        out["does_not_fit"] = misfits
    return out


# -- figures at the board's clock ------------------------------------------------------------------
# Until a bitstream of a board's preset is built and recorded in the manifest, its figures are
# given at this clock, flagged as assumed: issue 8's timing target (the default fabric placed and
# routed in its ULX3S-85F SoC at >= 100 MHz), not a measurement.
ASSUMED_FMAX_MHZ = 100.0
ASSUMED_FMAX_WHY = ("assumed, not measured: no bitstream of this fabric is recorded in bitstreams/manifest*.json; "
                    "issue 8's timing target is used")
UART_BITS_PER_BYTE = 10      # 8N1: start bit, 8 data bits, stop bit
AT_FMAX_WHAT = ("the simulated cycle counts at the board's Fmax: frames/s = Fmax / cycles per frame, latency = "
                "cycles per frame / Fmax (first input beat to the output end-of-frame beat), synaptic ops/s = "
                "synaptic ops per clock x Fmax. The fabric figure counts every core's work over all cycles; "
                "per core it is divided by the cores; the peak is the micro-benchmark's rate of one busy core "
                "times the cores")
LINK_WHAT = ("host link (UARTBone, 8N1): the bytes the litex backend moved over the LiteX sim's serial link "
             "while it streamed the workload's frames (input beats, bridge polls, output beats, counters and "
             "spikes per layer read after each frame; no --check), counted per direction. frame_bytes leaves out "
             "idle_poll_bytes, the polls that found the fabric still working: they only fill time the link "
             "would otherwise be idle and their number follows the simulator's speed, not the board's. The "
             "driver waits for each read's answer, so the two directions take turns: events/s = baud / 10 / "
             "(frame_bytes to + from the device per input event)")


ETHERNET_WHAT = ("Ethernet SoC (synfab build --ethernet) at the board PHY's line rate, computed from the UDP "
                 "stream packet layout (synfab.layouts UDP_*): a frame's input beats (events + end of frame) in "
                 "packets of up to UDP_MAX_BEATS with their headers and every byte a wire adds per packet "
                 "(preamble, Ethernet, IPv4 and UDP headers, FCS, inter-frame gap; ETH_WIRE_OVERHEAD), output beats "
                 "likewise the other way (full duplex: the busier direction limits), frames pipelined "
                 "(LitexDevice.run_frames_pipelined; no per-frame register traffic). Measured in the LiteX sim "
                 "by benchmarks/bench_ethernet.py")


def ethernet_line_rate(events_per_frame: float, out_events_per_frame: float, bit_rate: float) -> dict:
    """Frames and input events per second a full-duplex Ethernet link of `bit_rate` carries with
    the UDP stream port's packets: every byte a real frame costs on the wire."""
    from ..layouts import (ETH_MIN_PAYLOAD, ETH_WIRE_OVERHEAD, UDP_IN_HEADER_WORDS, UDP_MAX_BEATS,
                           UDP_OUT_HEADER_WORDS)

    def wire_bytes(beats: float, header_words: int) -> float:
        packets = max(1, math.ceil(beats / UDP_MAX_BEATS))
        payload = 8 * (beats + packets * header_words)
        return payload + packets * ETH_WIRE_OVERHEAD + max(0, ETH_MIN_PAYLOAD * packets - payload)
    in_bytes = wire_bytes(events_per_frame + 1, UDP_IN_HEADER_WORDS)       # + the end-of-frame beat
    out_bytes = wire_bytes(out_events_per_frame + 1, UDP_OUT_HEADER_WORDS)
    frames_s = bit_rate / 8 / max(in_bytes, out_bytes)
    return {"bit_rate": bit_rate, "wire_bytes_in_per_frame": round(in_bytes, 1),
            "wire_bytes_out_per_frame": round(out_bytes, 1),
            "wire_bytes_per_input_event": round(in_bytes / max(events_per_frame, 1e-9), 3),
            "frames_per_s": round(frames_s, 1), "input_events_per_s": round(frames_s * events_per_frame, 1)}


def _board_of(cfg: FabricConfig, ecp5: bool = True):
    """The board whose preset cfg is, of the ECP5 family (or, ecp5=False, of another: the PYNQ-Z2)."""
    from ..boards import BOARDS
    return next((b for b in BOARDS.values() if b.preset == cfg.name and (b.family == "ecp5") == ecp5), None)


def _manifest_entry(cfg: FabricConfig, manifest_dir: Path):
    """(manifest file, entry) of a recorded ECP5 bitstream of exactly this fabric: the board's own
    first, and of those the plain UARTBone SoC's (the SoC the host-link figures are measured on)
    before a linked or Ethernet SoC's, which places at its own, lower clock."""
    from ..boards import BOARDS
    found = []
    for manifest in sorted(Path(manifest_dir).glob("manifest*.json")):
        for entry in json.loads(manifest.read_text()).get("artifacts", []):
            board = BOARDS.get(entry.get("board"))
            if (board is not None and board.family == "ecp5" and entry.get("fabric") == cfg.name
                    and entry.get("config_crc") == f"{cfg.crc():#010x}" and entry.get("fmax_mhz")):
                found.append((manifest, entry))
    own = getattr(_board_of(cfg), "name", None)
    found.sort(key=lambda me: (me[1]["board"] != own, bool(me[1].get("link")), bool(me[1].get("ethernet"))))
    return found[0] if found else None


def _recorded_placement(cfg: FabricConfig, path: Path) -> dict | None:
    """board_clock from bitstreams/placements.json: the lowest Fmax over the recorded seeds of this
    fabric, on its own board first (a placement, no committed bitstream)."""
    from ..boards import BOARDS
    from ..hwcli import gateware_source_key
    from ..runtime.litex import DEFAULT_BAUDRATE
    own = getattr(_board_of(cfg), "name", None)
    ecp5_boards = sorted((b.name for b in BOARDS.values() if b.family == "ecp5"), key=lambda n: n != own)
    for name in ecp5_boards:
        rec = placements.measured(name, cfg, path, source_key=gateware_source_key())
        if rec is None:
            continue
        runs = ", ".join(f"seed {r['seed']} {r['fmax_mhz']} MHz" for r in rec["runs"])
        return {"fmax_mhz": float(rec["fmax_mhz"]), "fmax_measured": True,
                "fmax_source": f"{path.name}: placed and routed, bitstream not committed (nextpnr, the lowest of "
                               f"{runs}; revision {', '.join(rec['source_revisions'])})",
                "built_from_current_gateware": rec["current_sources"], "board": name,
                "sys_clk_mhz": rec["sys_clk_mhz"], "baudrate": DEFAULT_BAUDRATE,
                "baudrate_source": "synfab build's default (--baudrate)"}
    return None


def board_clock(cfg: FabricConfig, manifest_dir: Path | None = None) -> dict | None:
    """Fmax and UART baud rate of cfg on its ECP5 board: measured (the manifest's bitstream of this
    fabric, else a recorded placement of it: placements.json), or, for a board preset without
    either, ASSUMED_FMAX_MHZ flagged as assumed; None for a fabric with none of these."""
    from ..runtime.litex import DEFAULT_BAUDRATE
    manifest_dir = Path(manifest_dir) if manifest_dir is not None else bitstreams_dir()
    found = _manifest_entry(cfg, manifest_dir)
    if found is not None:
        manifest, entry = found
        report = (manifest.parent / entry["path"]).parent / "report.json"
        baud = entry.get("uart_baudrate") or (json.loads(report.read_text()).get("uart_baudrate")
                                               if report.is_file() else None)
        from ..hwcli import gateware_source_key
        return {"fmax_mhz": float(entry["fmax_mhz"]), "fmax_measured": True,
                "fmax_source": f"{manifest.name}: {entry['path']} (nextpnr, {entry['device']}, "
                               f"revision {entry.get('source_revision')})",
                "built_from_current_gateware": entry.get("source_key") == gateware_source_key(),
                "board": entry["board"], "sys_clk_mhz": entry.get("sys_clk_mhz"),
                "baudrate": int(baud or DEFAULT_BAUDRATE),
                "baudrate_source": "the bitstream's build" if baud else "synfab build's default (--baudrate)"}
    recorded = _recorded_placement(cfg, manifest_dir / placements.FILE_NAME)
    if recorded is not None:
        return recorded
    board = _board_of(cfg)
    if board is None:
        return None
    return {"fmax_mhz": ASSUMED_FMAX_MHZ, "fmax_measured": False, "fmax_source": ASSUMED_FMAX_WHY,
            "board": board.name, "baudrate": DEFAULT_BAUDRATE,
            "baudrate_source": "synfab build's default (--baudrate)"}


def link_bench(cfg: FabricConfig, loaded: dict, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Per workload, the bytes the litex backend moves over UARTBone, measured on the LiteX sim SoC
    of cfg (the SoC the board's bitstream is built from): loading the tables (write + read-back),
    streaming the frames, and one empty frame (the per-frame overhead)."""
    from ..runtime.litex import LitexDevice
    from ..runtime.stream import input_deltas, stream
    try:
        from synfab_gateware.soc.sim import LitexSim
    except ImportError as e:
        raise BenchError(f"the host-link figures need the LiteX sim ({e.name} missing); pip install -e .[gateware] "
                         f"or pass --no-link")
    out = {}
    with LitexSim(cfg, quiet=True) as sim:
        for name, (qnet, x) in loaded.items():
            tables, _ = _compiled(name, qnet, cfg, objective)
            with LitexDevice(cfg, port=sim.port) as dev:
                link = dev.link
                t0, before = time.perf_counter(), link.traffic()
                dev.load(tables)
                t1, loaded_bytes = time.perf_counter(), link.traffic()
                idle_before = dict(dev.idle_poll_bytes)
                res = stream(dev, x)
                t2, streamed = time.perf_counter(), link.traffic()
                idle = {k: dev.idle_poll_bytes[k] - idle_before[k] for k in before}
                idle_streamed = dict(dev.idle_poll_bytes)
                dev.run_frame(input_deltas(x[-1], x[-1]))
                empty = {k: link.traffic()[k] - streamed[k] - (dev.idle_poll_bytes[k] - idle_streamed[k])
                         for k in before}
            out[name] = {"frames": res.frames, "input_events": res.events_in,
                         "load_bytes": {k: loaded_bytes[k] - before[k] for k in before},
                         "frame_bytes": {k: streamed[k] - loaded_bytes[k] - idle[k] for k in before},
                         "idle_poll_bytes": idle,
                         "empty_frame_bytes": empty,
                         "litex_cycles": res.cycles,
                         "sim_wall_s": {"load": round(t1 - t0, 2), "frames": round(t2 - t1, 2)}}
    return out


# The AXI HP ports of the Zynq-7000 run at most at this clock (data sheet DS187, PL AXI interfaces).
HP_PORT_MAX_MHZ = 150.0
DMA_WHAT = ("PYNQ-Z2 host link (AXI DMA in simple mode, measured through the simulated board: runtime/pynq_mock.py "
            "drives the Verilator fabric under PYNQ's own driver code): per workload the MM2S transfers' "
            "beats (one input event or end-of-frame a beat) and the simulated cycles from each transfer's start "
            "to the fabric taking its last beat. The DMA offers a beat every clock, so the fabric's TREADY sets "
            "the pace: beats/s = beats / cycles x the block design's clock (FCLK_CLK0, which also clocks the "
            "fabric and the HP0 port), against the HP0 port's rate at that clock (one beat a clock per "
            "direction) and at the port's 150 MHz ceiling. Not modelled: DDR and interconnect latency, which "
            "can only slow the DMA down")


def dma_bench(cfg: FabricConfig, loaded: dict, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Per workload, the MM2S beats the pynq backend sends and the simulated cycles the fabric takes
    to accept them, measured through the simulated PYNQ-Z2 (see DMA_WHAT)."""
    import tempfile
    from ..api import run_frames
    try:
        from ..runtime import pynq_mock
        from synfab_gateware.vivado.project import FCLK_MHZ
    except ImportError as e:
        raise BenchError(f"the DMA link figures need pynq and the gateware ({e.name} missing); "
                         f"pip install -e .[pynq,gateware] or pass --no-link")
    hz, ceiling_hz = FCLK_MHZ * 1e6, HP_PORT_MAX_MHZ * 1e6
    out = {"what": DMA_WHAT, "clock_mhz": FCLK_MHZ, "beat_bytes": BEAT_BYTES,
           "hp0_beats_per_s": round(hz), "hp0_bytes_per_s": round(hz * BEAT_BYTES),
           "hp0_ceiling_bytes_per_s": round(ceiling_hz * BEAT_BYTES), "workloads": {}}
    board = pynq_mock.activate()
    try:
        with tempfile.TemporaryDirectory() as d:
            bit = pynq_mock.write_overlay(cfg, d, name="synfab_bench")
            for name, (qnet, x) in loaded.items():
                tables, _ = _compiled(name, qnet, cfg, objective)
                res = run_frames(tables, x, backend="pynq", device_args={"bitstream": str(bit)})["result"]
                sent = [t for t in board.transfers if t.channel == "MM2S" and t.cycles is not None]
                beats, cycles = sum(t.beats for t in sent), sum(t.cycles for t in sent)
                per_cycle = beats / cycles
                out["workloads"][name] = {
                    "frames": res.frames, "input_events": res.events_in, "transfers": len(sent),
                    "beats": beats, "cycles": cycles, "beats_per_cycle": round(per_cycle, 4),
                    "beats_per_s": round(per_cycle * hz), "bytes_per_s": round(per_cycle * hz * BEAT_BYTES),
                    "input_events_per_s": round(res.events_in / cycles * hz)}
    finally:
        pynq_mock.deactivate()
    return out


def at_fmax(cfg: FabricConfig, clock: dict, micro: dict, whole: dict, link: dict | None) -> dict:
    """Figures at the board's Fmax from the simulated cycles (and the measured link traffic)."""
    hz = clock["fmax_mhz"] * 1e6
    byte_rate = clock["baudrate"] / UART_BITS_PER_BYTE
    peak_core = micro["conv_sops_per_clock_per_core"] * hz
    out = {"what": AT_FMAX_WHAT, **clock, "n_cores": cfg.n_cores,
           "peak_synaptic_ops_per_s": {"per_core": round(peak_core), "fabric": round(peak_core * cfg.n_cores)},
           "peak_input_events_per_s": round(micro["input_events_per_clock"] * hz),
           "workloads": {}}
    for name, w in whole.items():
        if not isinstance(w, dict) or "cycles" not in w:
            continue
        per_frame = w["cycles"] / w["frames"]
        fps = hz / per_frame
        events_per_frame = w["input_events"] / w["frames"]
        row = {"frames": w["frames"], "cycles_per_frame": round(per_frame, 1),
               "frames_per_s": round(fps, 1), "latency_us": round(per_frame / hz * 1e6, 2),
               "latency_us_max": round(w["cycles_per_frame"]["max"] / hz * 1e6, 2),
               "synaptic_ops_per_s": {"fabric": round(w["synaptic_ops"] / w["cycles"] * hz),
                                      "per_core": round(w["synaptic_ops"] / w["cycles"] * hz / w["n_cores"])},
               "input_events_per_frame": round(events_per_frame, 1),
               "fabric_input_events_per_s": round(events_per_frame * fps)}
        if link and name in link:
            m = link[name]
            if (m["input_events"], m["frames"]) != (w["input_events"], w["frames"]):
                raise BenchError(f"{name}: the LiteX sim streamed {m['frames']} frames / {m['input_events']} events, "
                                 f"the Verilator run {w['frames']} / {w['input_events']}")
            fb = m["frame_bytes"]
            per_event = (fb["to_device"] + fb["from_device"]) / m["input_events"]
            link_events = byte_rate / per_event
            row["host_link"] = {
                **m, "bytes_per_event": round(per_event, 2),
                "bytes_per_event_to_device": round(fb["to_device"] / m["input_events"], 2),
                "bytes_per_event_from_device": round(fb["from_device"] / m["input_events"], 2),
                "bytes_per_frame": round((fb["to_device"] + fb["from_device"]) / m["frames"], 1),
                "link_events_per_s": round(link_events, 1),
                "link_frames_per_s": round(byte_rate * m["frames"] / (fb["to_device"] + fb["from_device"]), 2),
                "fabric_over_link": round(row["fabric_input_events_per_s"] / link_events, 2),
                "load_s_at_baud": round((m["load_bytes"]["to_device"] + m["load_bytes"]["from_device"]) / byte_rate, 2),
                "litex_cycles_per_frame": round(m["litex_cycles"] / m["frames"], 1) if m["litex_cycles"] else None,
            }
        eth_rate = ETHERNET_BOARDS.get(clock.get("board"))
        if eth_rate and "output_events" in w:
            eth = ethernet_line_rate(events_per_frame, w["output_events"] / w["frames"], eth_rate)
            eth["fabric_over_link"] = round(row["fabric_input_events_per_s"] / max(eth["input_events_per_s"], 1e-9), 2)
            row["ethernet_link"] = eth
        out["workloads"][name] = row
    if ETHERNET_BOARDS.get(clock.get("board")):
        out["ethernet_link"] = {"what": ETHERNET_WHAT, "bit_rate": ETHERNET_BOARDS[clock["board"]]}
    if link is not None:
        out["host_link"] = {"what": LINK_WHAT, "baudrate": clock["baudrate"], "bytes_per_s": byte_rate,
                            "measured_on": f"LiteX sim SoC of fabric {cfg.name!r} (Verilator, UARTBone over serial2tcp)"}
    return out


# -- the benchmark -----------------------------------------------------------------------------------
def fabric_bench(cfg: FabricConfig | None = None, relay_events_count: int = RELAY_EVENTS,
                 workloads=None, frames: int | None = None, link: bool = True,
                 manifest_dir: Path | None = None, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Micro-benchmarks of cfg's gateware (default fabric if None), whole-frame figures of the
    workloads (on cfg, or on their own fabrics if None), the simulation speed, and for a fabric with
    an ECP5 board (a board preset, or a bitstream in the manifest) the figures at its Fmax, with the
    host-link budget measured on its LiteX sim SoC (unless link=False); a JSON-able dict (see the
    module doc)."""
    micro_cfg = cfg or FabricConfig()
    micro, speed = micro_bench(micro_cfg, relay_events_count)
    loaded, misfits = _fitting(workloads, frames, cfg, objective)
    whole = whole_frame_bench(workloads, frames, cfg, loaded=loaded, objective=objective)
    if misfits:
        whole["does_not_fit"] = misfits
    result = {"fabric": micro_cfg.name, "config": micro_cfg.to_dict(), "micro": micro, "whole_frame": whole,
              "simulation_speed": speed}
    clock = board_clock(cfg, manifest_dir) if cfg is not None else None
    if clock is not None:
        measured = link_bench(cfg, loaded, objective) if link and loaded else None
        result["at_fmax"] = at_fmax(cfg, clock, micro, whole, measured)
    if cfg is not None and link and loaded and _board_of(cfg, ecp5=False) is not None:
        result["dma_link"] = dma_bench(cfg, loaded, objective)
    return result


MULTI_BOARD_WORKLOAD = "lenet_mnist"


def multi_board_bench(boards: list[str], loads: dict, cuts=None, objective: str = DEFAULT_OBJECTIVE,
                      links: bool = True) -> dict:
    """Each network of `loads` ({name: (qnet, frames)}) split by whole layers over the boards
    (compiler/partition.py; at `cuts` if given), run on their Verilator fabrics joined by the
    default link model with every frame checked against the whole network's dense reference, and
    once on one fabric with all the boards' cores: per board cycles, per link traffic and
    utilisation, the slowdown (predicted and measured); runtime.multi.chain_summary.  With `links`,
    also over the boards' link gateware, UART and Ethernet (link_gateware_bench)."""
    from .. import api
    from ..linkframe import Wire
    out = {"boards": list(boards), "what": "whole-layer slabs over the boards on Verilator fabrics joined by "
                                           "runtime.multi.LinkModel(); --check against the whole network"}
    for name, (qnet, frames) in loads.items():
        run = api.run_partitioned(qnet, frames, boards, cuts=cuts, backend="sim", check=True, objective=objective,
                                  measure_one_fabric=True)
        out[name] = run["summary"]
        if links:
            for kind in ("uart", "eth"):
                out[name][f"{kind}_link"] = link_gateware_bench(run["partition"], frames, Wire(kind=kind))
    return out


LINK_WHAT = {
    "uart": "the same slabs in one Verilator model, joined by the UART link gateware (gateware/link/: frames of "
            "SYNC, seq, 8 bytes, CRC-8, credit flow control, LiteX's RS232 PHY) over simulated wires; ",
    "eth": "the same slabs in one Verilator model, joined by the Ethernet link gateware (gateware/link/eth.py: "
           "UDP packets of up to 32 beats with seq and beat count, credit packets back, LiteEth's UDP/IP core "
           "at both ends, a byte a clock each way) over simulated wires; ",
}
LINK_HOW = ("frames one at a time, then all sent at once (board k on frame t+1 while board k+1 runs frame t); "
            "every frame checked against the whole network")


def link_gateware_bench(part, frames, wire) -> dict:
    """A partition's frames over the boards' link gateware (runtime.linked.LinkedChain, over
    `wire`): measured frame cycles one frame at a time and the interval of overlapped frames, the
    link's beats, packets and bytes, its busy clocks, and its rate at the first board's Fmax."""
    from ..runtime.linked import LinkedChain
    from ..runtime.multi import chain_frames
    with LinkedChain(part, wire) as chain:
        seq = chain_frames(chain, frames, check=True)
        chain.reset()
        overlapped = chain.run_overlapped(frames, check=True)
    n_links = len(part.slabs) - 1
    beats = [float(np.mean([hops[k].beats for hops in seq.hops])) for k in range(n_links)]
    wire_bytes = [float(np.mean([hops[k].bytes for hops in seq.hops])) for k in range(n_links)]
    busy = [float(np.mean([hops[k].busy_cycles for hops in seq.hops])) for k in range(n_links)]
    out = {"what": LINK_WHAT[wire.kind] + LINK_HOW, "kind": wire.kind, "latency_cycles": wire.latency,
           "beats_per_frame": [round(b, 1) for b in beats], "bytes_per_frame": [round(b, 1) for b in wire_bytes],
           "bytes_per_beat": round(sum(wire_bytes) / sum(beats), 2),
           "busy_cycles_per_frame": [round(b, 1) for b in busy],
           "clocks_per_beat": round(sum(busy) / sum(beats), 1),
           "frame_cycles": round(float(np.mean(seq.frame_cycles)), 1),
           # the same frames sent at once: the last one's end over their count (the pipeline's fill
           # included), against the frames one at a time
           "overlapped_cycles_per_frame": round(overlapped["cycles"] / len(frames), 1),
           "overlap_speedup": round(float(np.sum(seq.frame_cycles)) / overlapped["cycles"], 3)}
    if wire.kind == "uart":
        out["clocks_per_bit"] = wire.clocks_per_bit
    else:
        out["packets_per_frame"] = [round(float(np.mean([l["packets"] for l in overlapped["links"]])) / len(frames), 2)]
    clock = board_clock(part.slabs[0].cfg)
    if clock is not None:
        mhz = clock["fmax_mhz"]
        out.update({"at_mhz": mhz, "fmax_measured": clock["fmax_measured"],
                    "link_beats_per_s": round(mhz * 1e6 / out["clocks_per_beat"]),
                    "link_mbit_per_s": round(mhz / wire.clocks_per_bit if wire.kind == "uart" else 8 * mhz, 2),
                    "frames_per_s_overlapped": round(mhz * 1e6 / out["overlapped_cycles_per_frame"], 1)})
    return out


def _multi_board_text(m: dict) -> str:
    lines = [f"boards {', '.join(m['boards'])} ({m['what']})"]
    for name, s in m.items():
        if name in ("boards", "what"):
            continue
        cycles = ", ".join(f"{b['board']} {b['cycles_per_frame']:,.0f}" for b in s["boards"])
        links = ", ".join(f"{k['link']} {k['events_per_frame']:,.0f} events/frame ({k['utilisation']:.1%})"
                          for k in s["links"])
        lines.append(f"  {name}: {s['frame_cycles']:,.0f} cycles/frame (boards: {cycles}); links: {links}; "
                     f"one fabric of {s['one_fabric']['cores']} cores "
                     f"{s['one_fabric'].get('measured_cycles_per_frame', 0):,.0f}: slowdown "
                     f"{s.get('slowdown_measured')} measured, {s.get('slowdown_predicted')} predicted")
        for kind in ("uart", "eth"):
            u = s.get(f"{kind}_link")
            if not u:
                continue
            how = f"UART, {u['clocks_per_bit']} clocks/bit" if kind == "uart" else "Ethernet, a byte a clock"
            lines.append(f"    over the link gateware ({how}, {u['bytes_per_beat']} B a beat): "
                         f"{u['frame_cycles']:,.0f} cycles/frame one at a time, "
                         f"{u['overlapped_cycles_per_frame']:,.0f} overlapped (x{u['overlap_speedup']})"
                         + (f"; at {u['at_mhz']:g} MHz {u['link_beats_per_s']:,} beats/s a link, "
                            f"{u['frames_per_s_overlapped']} frames/s" if "at_mhz" in u else ""))
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------
def _text(result: dict) -> str:
    micro, speed = result["micro"], result["simulation_speed"]
    conv, inp = micro["conv"], micro["input"]
    lines = [
        f"fabric {result['fabric']} (Verilator, simulated clock cycles)",
        "micro-benchmarks (one mechanism at its best, not a workload):",
        f"  conv  {conv['network']}, one busy core, input phase only: {conv['synops']} synops in "
        f"{conv['busy_cycles']} busy cycles = {micro['conv_sops_per_clock_per_core']} synops/clock/core",
        f"        frame {conv['frame_cycles']} cycles, finish after eof {conv['finish_cycles']}, "
        f"empty frame {conv['empty_frame_cycles']}",
        f"  dense {micro['dense']['network']}, one busy core, input phase only: {micro['dense']['synops']} synops "
        f"in {micro['dense']['busy_cycles']} busy cycles = {micro['dense_sops_per_clock_per_core']} synops/clock/core "
        f"({micro['lanes']} lane{'s' if micro['lanes'] > 1 else ''})",
        f"  dw    {micro['dw']['network']}, one busy core, input phase only: {micro['dw']['synops']} synops in "
        f"{micro['dw']['busy_cycles']} busy cycles = {micro['dw_sops_per_clock_per_core']} synops/clock/core",
        f"  input {inp['network']}, steady state: {micro['input_events_per_clock']} events/clock "
        f"(frame of {inp['frame_events']} events: {inp['frame_cycles']} cycles)",
        "whole frames of real workloads (every core, every cycle):",
    ]
    for name, w in result["whole_frame"].items():
        if name == "what":
            continue
        if name == "does_not_fit":
            lines += [f"  {why}" for why in w.values()]
            continue
        idle = ", ".join(f"{r['idle_fraction']:.2f}" for r in w["cores"])
        used = ", ".join(f"{r['utilisation']:.2f}" for r in w["cores"])
        b = w["balance"]
        lines += [f"  {name} ({w['frames']} frames on fabric {w['fabric']}, objective {b['objective']}): "
                  f"{w['sops_per_clock']} synops/clock ({w['sops_per_clock_per_core']} per core), target "
                  f"{b['target_sops_per_clock']:g}, {w['cycles_per_frame']['mean']:.0f} cycles/frame = "
                  f"{b['cycles_over_lower_bound']}x the lower bound {b['lower_bound_cycles_per_frame']:.0f}, "
                  f"evaluation {w['evaluation_cycles_per_frame']['mean']:.0f} cycles/frame, utilisation per core "
                  f"{used}, idle per core {idle}"]
    lines.append(f"sim speed: {speed['sim_cycles_per_second']:,} cycles per wall second busy "
                 f"({speed['sim_cycles_per_cpu_second']:,} per CPU second), {speed['sim_cycles_per_second_idle']:,} "
                 f"idle ({speed['sim_cycles_per_cpu_second_idle']:,})")
    f = result.get("at_fmax")
    if f:
        how = "ASSUMED, not measured"
        if f["fmax_measured"]:
            how = ("measured" if f["built_from_current_gateware"]
                   else "measured on older gateware: rebuild the bitstream")
        lines += [f"at Fmax {f['fmax_mhz']} MHz ({how}) on {f['board']}, {f['n_cores']} cores: peak "
                  f"{f['peak_synaptic_ops_per_s']['fabric'] / 1e6:.1f} M synaptic ops/s "
                  f"({f['peak_synaptic_ops_per_s']['per_core'] / 1e6:.1f} M per core), peak input "
                  f"{f['peak_input_events_per_s'] / 1e6:.1f} M events/s"]
        for name, w in f["workloads"].items():
            lines.append(f"  {name}: {w['frames_per_s']:,.0f} frames/s, {w['latency_us']:,.1f} us/frame, "
                         f"{w['synaptic_ops_per_s']['fabric'] / 1e6:.1f} M synaptic ops/s, "
                         f"{w['fabric_input_events_per_s']:,} input events/s")
            h = w.get("host_link")
            if h:
                lines.append(f"    host link at {f['baudrate']:,} baud: {h['bytes_per_event']} bytes/event -> "
                             f"{h['link_events_per_s']:,.0f} events/s ({h['link_frames_per_s']} frames/s); the fabric "
                             f"takes {h['fabric_over_link']}x that; loading the tables {h['load_s_at_baud']} s")
    d = result.get("dma_link")
    if d:
        lines.append(f"AXI DMA link (simulated PYNQ-Z2) at {d['clock_mhz']:g} MHz: HP0 carries "
                     f"{d['hp0_beats_per_s'] / 1e6:.0f} M beats/s ({d['hp0_bytes_per_s'] / 1e6:.0f} MB/s; "
                     f"{d['hp0_ceiling_bytes_per_s'] / 1e6:.0f} MB/s at 150 MHz)")
        for name, w in d["workloads"].items():
            lines.append(f"  {name}: {w['beats']} beats in {w['cycles']} cycles = {w['beats_per_cycle']} beats/clock "
                         f"-> {w['beats_per_s'] / 1e6:.1f} M beats/s, {w['input_events_per_s'] / 1e6:.1f} M input "
                         f"events/s ({w['beats_per_cycle']:.0%} of HP0 at this clock)")
    return "\n".join(lines)


def cmd_bench(args) -> None:
    if args.frames is not None and args.frames < 1:
        raise BenchError("--frames must be >= 1")
    if args.boards is not None:
        boards = [b for b in args.boards.split(",") if b]
        if len(boards) < 2:
            raise BenchError(f"--boards takes two or more board presets separated by commas, got {args.boards!r}")
        if args.fabric or args.lanes:
            raise BenchError("--boards runs a workload over board presets: leave out --fabric and --lanes")
        from .workloads import WORKLOADS
        loads = {name: WORKLOADS[name].load(args.frames or WORKLOADS[name].frames)
                 for name in args.workload or [MULTI_BOARD_WORKLOAD]}
        result = {"multi_board": multi_board_bench(boards, loads, objective=args.objective)}
        print(json.dumps(result, indent=2) if args.json else _multi_board_text(result["multi_board"]))
        return
    cfg = FabricConfig.load(args.fabric) if args.fabric else None
    if args.lanes is not None:
        cfg = (cfg or FabricConfig()).with_(lanes=args.lanes)
    result = fabric_bench(cfg, workloads=args.workload, frames=args.frames, link=not args.no_link,
                          objective=args.objective)
    print(json.dumps(result, indent=2) if args.json else _text(result))


def register(subparsers) -> None:
    """Add `synfab bench [--fabric CONFIG] [--lanes P] [--boards B1,B2,..] [--workload NAME ...] [--frames N]
    [--no-link] [--json]`."""
    from .workloads import WORKLOADS
    p = subparsers.add_parser("bench", help="gateware throughput in simulated clock cycles (Verilator)")
    p.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny, a board's: ulx3s-85f, ...): "
                                    "micro-benchmarks and the workloads that fit run on it, and a board's fabric "
                                    "gets figures at its Fmax and the host-link budget; without it the "
                                    "micro-benchmarks run on the default fabric and each workload on its own")
    p.add_argument("--workload", action="append", choices=list(WORKLOADS),
                   help="whole-frame workload (repeatable; default: all but those for several boards only)")
    p.add_argument("--frames", type=int, help="frames per whole-frame workload (default: "
                                              + ", ".join(f"{k} {w.frames}" for k, w in WORKLOADS.items()) + ")")
    p.add_argument("--no-link", action="store_true",
                   help="skip the host-link measurements (board fabrics only: UARTBone on the LiteX sim SoC, "
                        "the AXI DMA on the simulated PYNQ-Z2)")
    p.add_argument("--lanes", type=int, help="synaptic lanes per core (1, 2, 4, 8): the fabric (default: the "
                                             "default fabric) with this many lanes")
    p.add_argument("--boards", help="board presets (ulx3s-85f,ulx3s-85f,...): instead of one fabric's figures, each "
                                    f"workload (default {MULTI_BOARD_WORKLOAD}) split over these boards as `synfab "
                                    "partition` does: link traffic, link utilisation, slowdown against one fabric")
    p.add_argument("--json", action="store_true")
    from ..cli import objective_opt
    objective_opt(p)
    p.set_defaults(func=cmd_bench)
