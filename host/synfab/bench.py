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
    output and idle cores are excluded by construction.  Target >= 0.9: the ESU emits one
    (neuron, weight) pair per clock.

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
"""
from __future__ import annotations

import json
import time

import numpy as np

from .config import FabricConfig
from .errors import SynfabError
from .ir import QConnection, QLayer, QNetwork
from .layouts import STREAM_EVENT, Kind

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
def _event_words(events: dict) -> np.ndarray:
    n = len(events["x"])
    zeros = np.zeros(n, np.int64)
    return STREAM_EVENT.pack64({k: np.asarray(events[k], np.int64) for k in ("x", "y", "c", "d")}
                               | {"tag": zeros, "eof": zeros})


def _eof_word() -> np.ndarray:
    return STREAM_EVENT.pack64({k: [0] for k in ("x", "y", "c", "d", "tag")} | {"eof": [1]})


def _frame_beats(events: dict) -> tuple[np.ndarray, np.ndarray]:
    words = np.concatenate([_event_words(events), _eof_word()])
    lasts = np.zeros(len(words), np.uint8)
    lasts[-1] = 1
    return words, lasts


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
    dev.sim.push(_event_words(events), np.zeros(len(events["x"]), np.uint8))
    _wait_drained(dev)
    phase = dev.read_counters()
    dev.sim.push(_eof_word(), np.ones(1, np.uint8))
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
    dev.sim.push(_event_words(events), np.zeros(n, np.uint8))
    dev.sim.run(INPUT_WARMUP_CYCLES)
    before = dev.sim.pending_input
    dev.sim.run(INPUT_WINDOW_CYCLES)
    taken = before - dev.sim.pending_input
    _wait_drained(dev)
    dev.sim.push(_eof_word(), np.ones(1, np.uint8))
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
    words, lasts = _frame_beats(events)
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
    from .runtime.sim import SimDevice
    return SimDevice(cfg)


# -- micro-benchmarks -------------------------------------------------------------------------------
def micro_bench(cfg: FabricConfig = FabricConfig(), relay_events_count: int = RELAY_EVENTS) -> tuple[dict, dict]:
    """(micro-benchmark figures, simulation speed) of cfg's gateware (see the module doc)."""
    from .api import compile_qnetwork
    from .runtime.stream import input_deltas

    conv = conv_network(cfg)
    relay = relay_network(cfg)
    conv_tables, relay_tables = compile_qnetwork(conv, cfg), compile_qnetwork(relay, cfg)
    conv_events = input_deltas(np.zeros(conv.input_shape, np.int64), dense_input(conv))
    r_events = relay_events(relay, relay_events_count)

    dev = _open_sim(cfg)
    try:
        dev.load(conv_tables)
        phased = _input_phase(dev, conv_events)
        dev.reset()
        conv_frame = dev.run_frame(conv_events)
        empty_frame = dev.run_frame({k: np.zeros(0, np.int64) for k in ("x", "y", "c", "d")})
        speed = _sim_speed(dev, conv_events)

        dev.load(relay_tables)
        input_rate = _steady_input_rate(dev, r_events)
        dev.reset()
        relay_frame = dev.run_frame(r_events)
    finally:
        dev.close()

    rows = _core_rates(phased["input_phase"])
    phase_synops = sum(r["synops"] for r in rows)
    phase_busy = sum(r["busy_cycles"] for r in rows)
    co, side = conv.layers[0].shape[:2]
    micro = {
        "what": MICRO_WHAT,
        "conv_sops_per_clock_per_core": round(phase_synops / phase_busy, 4) if phase_busy else 0.0,
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
    from .runtime.sim import MAX_FRAME_CYCLES as SIM_MAX_FRAME_CYCLES, SimDevice

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
    rows = []
    for core, ct in enumerate(tables.cores):
        synops = sum(f.counters["cores"][core]["synops"] for f in frames)
        busy = sum(f.counters["cores"][core]["busy_cycles"] for f in frames)
        rows.append({"core": core, "used": bool(ct.pop_count), "synops": synops, "busy_cycles": busy,
                     "sops_per_clock": round(synops / cycles, 4), "idle_fraction": round(1 - busy / cycles, 4)})
    return rows


def workload_bench(name: str, frames: int | None = None, cfg: FabricConfig = FabricConfig()) -> dict:
    """Whole-frame figures of one workload (synfab.workloads) on cfg's gateware."""
    from .api import compile_qnetwork
    from .runtime.stream import stream
    from .workloads import WORKLOADS
    if name not in WORKLOADS:
        raise BenchError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    qnet, x = WORKLOADS[name].load(frames or WORKLOADS[name].frames)
    tables = compile_qnetwork(qnet, cfg)
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
    }


def whole_frame_bench(names=None, frames: int | None = None) -> dict:
    from .workloads import WORKLOADS
    return {"what": WHOLE_FRAME_WHAT,
            **{name: workload_bench(name, frames) for name in (names or WORKLOADS)}}


# -- the benchmark -----------------------------------------------------------------------------------
def fabric_bench(cfg: FabricConfig = FabricConfig(), relay_events_count: int = RELAY_EVENTS,
                 workloads=None, frames: int | None = None) -> dict:
    """Micro-benchmarks of cfg's gateware, whole-frame figures of the workloads (on their fabric)
    and the simulation speed; a JSON-able dict (see the module doc)."""
    micro, speed = micro_bench(cfg, relay_events_count)
    return {"fabric": cfg.name, "config": cfg.to_dict(), "micro": micro,
            "whole_frame": whole_frame_bench(workloads, frames), "simulation_speed": speed}


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
        f"  input {inp['network']}, steady state: {micro['input_events_per_clock']} events/clock "
        f"(frame of {inp['frame_events']} events: {inp['frame_cycles']} cycles)",
        "whole frames of real workloads (every core, every cycle):",
    ]
    for name, w in result["whole_frame"].items():
        if name == "what":
            continue
        idle = ", ".join(f"{r['idle_fraction']:.2f}" for r in w["cores"])
        lines += [f"  {name} ({w['frames']} frames on fabric {w['fabric']}): {w['sops_per_clock']} synops/clock "
                  f"({w['sops_per_clock_per_core']} per core), {w['cycles_per_frame']['mean']:.0f} cycles/frame, "
                  f"evaluation {w['evaluation_cycles_per_frame']['mean']:.0f} cycles/frame, idle per core {idle}"]
    lines.append(f"sim speed: {speed['sim_cycles_per_second']:,} cycles per wall second busy "
                 f"({speed['sim_cycles_per_cpu_second']:,} per CPU second), {speed['sim_cycles_per_second_idle']:,} "
                 f"idle ({speed['sim_cycles_per_cpu_second_idle']:,})")
    return "\n".join(lines)


def cmd_bench(args) -> None:
    if args.frames is not None and args.frames < 1:
        raise BenchError("--frames must be >= 1")
    cfg = FabricConfig.load(args.fabric) if args.fabric else FabricConfig()
    result = fabric_bench(cfg, workloads=args.workload, frames=args.frames)
    print(json.dumps(result, indent=2) if args.json else _text(result))


def register(subparsers) -> None:
    """Add `synfab bench [--fabric CONFIG] [--workload NAME ...] [--frames N] [--json]`."""
    from .workloads import WORKLOADS
    p = subparsers.add_parser("bench", help="gateware throughput in simulated clock cycles (Verilator)")
    p.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny) of the micro-benchmarks; "
                                    "the whole-frame workloads run on the default fabric")
    p.add_argument("--workload", action="append", choices=list(WORKLOADS),
                   help="whole-frame workload (repeatable; default: all)")
    p.add_argument("--frames", type=int, help="frames per whole-frame workload (default: "
                                              + ", ".join(f"{k} {w.frames}" for k, w in WORKLOADS.items()) + ")")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
