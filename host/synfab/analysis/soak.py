"""Soaks (issue 12): long event streams through the simulated fabric, every frame checked.

`fabric_soak` streams real recordings (the pinned sample files of events.samples, every event
replayed) and random streams through the Verilator fabric, with random stalls on both AXI streams
and a network whose first layer is split over two cores that feed a third (several sources into
one router: contention in the mesh), plus random networks (randnet's co-simulation cases).  Every
frame is compared with the golden model (runtime.check: outputs, spikes per layer, every counter,
every neuron's state), with what only hardware counts (cosim.check_hardware_counters), and its
counters must balance (runtime.check.link_balance, mesh_balance: every input beat counted, the
out-of-range ones dropped and no others, every output beat received, no packet lost, made up or
dropped in the mesh).

`link_soak` does the same through the LiteX sim SoC over its UARTBone link with seeded faults on
the bytes of the link (runtime.linkfaults: dropped, duplicated, flipped), the litex backend in its
verifying mode and runtime.guard retrying what it detects.  Every fault is attributed to the attempt
it hit: detected by the link's own checks, detected only by the model's check, or without effect.

Both return JSON-able dicts (benchmarks/bench_soak.py prints them; tests/test_soak.py runs short
seeded ones).
"""
from __future__ import annotations

import functools
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..config import PRESETS, FabricConfig
from ..errors import SynfabError
from ..frontend.ir import Network, Node
from ..runtime.check import MismatchError, check_frame, link_balance, mesh_balance, outside_input
from ..runtime.device import events_array, stream_columns

RECORDINGS = ("dvxplorer", "davis346", "evt2", "evt3")
# Per fabric: input size, first layer's channels and stride, second layer's channels.  On `default`
# (2x2 x 4096 neurons) the first layer needs two cores, which both send to the third.
SOAK_NETWORKS = {"default": (32, 8, 1, 16), "small": (16, 4, 2, 8)}
STRATEGIES = ("auto", "channel")
THRESHOLDS = (0, 1, 3)
# (p_in, p_out) per segment, in turn: s_axis_tvalid held back / m_axis_tready dropped per cycle.
DEFAULT_STALLS = ((0.3, 0.5), (0.0, 0.0), (0.5, 0.9), (0.1, 0.97), (0.8, 0.2))
# Shares of the events: real recordings, random streams on the soak network, random networks.
SHARES = (0.6, 0.35, 0.05)
RANDOM_OUTSIDE = 0.02           # fraction of random-stream events outside the input
RANDOM_D = 8                    # random-stream event values in -RANDOM_D..RANDOM_D
HOTSPOT = 0.4                   # fraction of random-stream events around one point per frame
FRAMES_PER_NETWORK = 40
MAX_FAILED_SEGMENTS = 10        # a soak stops after this many segments ended in a mismatch or error


class SoakError(SynfabError):
    """A soak cannot run as asked."""


# -- the network and the inputs ----------------------------------------------------------------
def soak_network(size: int, c1: int, s1: int, c2: int, seed: int = 0) -> Network:
    """A CNN on (2, size, size) event counts with seeded random weights: conv 3x3 (stride s1) ->
    conv 3x3 stride 2 -> avg pool 2 -> dense 4."""
    rng = np.random.default_rng(seed)

    def conv(name, inp, ci, co, s):
        return Node(name, "conv", [inp], {"out_channels": co, "kernel": 3, "stride": s, "padding": 1},
                    {"weight": rng.normal(0, 1 / np.sqrt(ci * 9), (co, ci, 3, 3)).astype(np.float32),
                     "bias": rng.normal(0, 0.05, co).astype(np.float32)})
    side = size // s1 // 4
    return Network([
        Node("in", "input", attrs={"shape": (2, size, size)}),
        conv("c1", "in", 2, c1, s1), Node("r1", "relu", ["c1"]),
        conv("c2", "r1", c1, c2, 2), Node("r2", "relu", ["c2"]),
        Node("p", "avgpool", ["r2"], {"kernel": 2}), Node("f", "flatten", ["p"]),
        Node("fc", "dense", ["f"], {"out_features": 4},
             {"weight": rng.normal(0, 0.1, (4, c2 * side * side)).astype(np.float32), "bias": np.zeros(4, np.float32)}),
    ], name="soak_cnn")


def soak_shape(cfg: FabricConfig) -> tuple[int, int, int]:
    if cfg.name not in SOAK_NETWORKS:
        raise SoakError(f"soak: no soak network for fabric {cfg.name!r}; use one of {', '.join(SOAK_NETWORKS)}")
    return (2, SOAK_NETWORKS[cfg.name][0], SOAK_NETWORKS[cfg.name][0])


@functools.lru_cache(maxsize=8)
def soak_tables(cfg: FabricConfig, strategy: str = "auto", seed: int = 0):
    """The soak network for cfg, quantized on random event counts (one count = one input step);
    compiled once per process (devices and the golden model only read tables)."""
    from ..compiler import compile_network
    from ..compiler.mapper import map_network
    from ..frontend import quant
    shape = soak_shape(cfg)
    calib = np.random.default_rng(seed).poisson(2.0, (8, *shape)).astype(np.float32)
    qnet = quant.quantize(soak_network(*SOAK_NETWORKS[cfg.name], seed=seed), calib, input_scale=1.0, cfg=cfg)
    return compile_network(qnet, cfg, map_network(qnet, cfg, strategy))


def recording_frames(name: str, shape: tuple[int, int, int], events_per_frame: int = 2000):
    """Every event of the sample recording `name`, scaled onto the (2, H, W) input (channel =
    polarity), in time windows of about `events_per_frame` events: each event is sent as +1 at its
    pixel, and each window first takes back the previous window's counts (-count per pixel), so the
    input is the window's event counts."""
    from .. import events
    rec = events.read(events.samples.fetch(name))
    t = rec.events["t"].astype(np.int64)
    if len(t) == 0:
        return
    _, h, w = shape
    window = max(1, int((t[-1] - t[0] + 1) * events_per_frame // len(t)))
    prev = np.zeros(shape, np.int64)
    for f in events.frames_by_time(rec.events, window):
        x = f["x"].astype(np.int64) * w // rec.width
        y = f["y"].astype(np.int64) * h // rec.height
        c = (f["p"] != 0).astype(np.int64)
        back = np.flatnonzero(prev)
        pc, py, px = np.unravel_index(back, shape)
        cur = np.zeros(shape, np.int64)
        np.add.at(cur, (c, y, x), 1)
        yield events_array(np.concatenate([px, x]), np.concatenate([py, y]), np.concatenate([pc, c]),
                           np.concatenate([-prev.reshape(-1)[back], np.ones(len(f), np.int64)]))
        prev = cur


def random_frames(rng: np.random.Generator, shape: tuple[int, int, int], mean_events: int):
    """Random event streams: per frame 0 .. 2*mean_events events, uniform over the input or around a
    hot spot, values -RANDOM_D..RANDOM_D (zeros included), a few outside the input (the fabric
    drops and counts them)."""
    n_c, h, w = shape
    while True:
        n = int(rng.integers(0, 2 * mean_events + 1))
        hot = rng.random(n) < HOTSPOT
        cx, cy = rng.integers(0, w), rng.integers(0, h)
        x = np.where(hot, np.clip(np.rint(rng.normal(cx, 1.5, n)), 0, w - 1), rng.integers(0, w, n)).astype(np.int64)
        y = np.where(hot, np.clip(np.rint(rng.normal(cy, 1.5, n)), 0, h - 1), rng.integers(0, h, n)).astype(np.int64)
        c = rng.integers(0, n_c, n)
        d = rng.integers(-RANDOM_D, RANDOM_D + 1, n)
        out = np.flatnonzero(rng.random(n) < RANDOM_OUTSIDE)
        axis = rng.integers(0, 3, len(out))
        x[out[axis == 0]] = rng.integers(w, 1 << 12, int((axis == 0).sum()))
        y[out[axis == 1]] = rng.integers(h, 1 << 12, int((axis == 1).sum()))
        c[out[axis == 2]] = rng.integers(n_c, 1 << 16, int((axis == 2).sum()))
        yield events_array(x, y, c, d)


def network_frames(rng: np.random.Generator, case, tables):
    """A random network's frames: its input changes plus what cosim adds (outside, zero, split events)."""
    from ..cosim import frame_events
    from ..randnet import random_input
    prev = None
    while True:
        cur = random_input(case.qnet, rng, prev, case.change)
        ev = frame_events(rng, tables, prev, cur)
        prev = cur
        yield events_array(ev["x"], ev["y"], ev["c"], ev["d"])


# -- tallies -----------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What a soak ran and what the counters said about it."""
    events: int = 0                 # input events sent (eof beats not counted)
    frames: int = 0
    output_events: int = 0
    synaptic_ops: int = 0
    packets: int = 0                # packets the cores' PEGs sent
    cycles: int = 0
    stall_cycles: int = 0           # per core: output blocked or input refused, summed
    stall_by_core: Counter = field(default_factory=Counter)
    events_in: int = 0              # what the fabric counted
    input_dropped: int = 0
    outside_sent: int = 0           # events the host sent outside the input
    events_out: int = 0
    dropped: int = 0
    by_source: Counter = field(default_factory=Counter)
    mismatches: list = field(default_factory=list)

    def add(self, source: str, tables, ev: dict, got) -> None:
        c = got.counters
        cores = c["cores"]
        cols = stream_columns(ev, tables.cfg.event_bits)
        self.events += len(cols["x"])
        self.by_source[source] += len(cols["x"])
        self.frames += 1
        self.output_events += len(got.events)
        self.synaptic_ops += sum(int(k["synops"]) for k in cores)
        self.packets += sum(int(k["packets_out"]) for k in cores)
        self.cycles += int(got.cycles or 0)
        self.stall_cycles += sum(int(k["stall_cycles"]) for k in cores)
        for i, k in enumerate(cores):
            self.stall_by_core[i] += int(k["stall_cycles"])
        self.events_in += int(c["events_in"])
        self.input_dropped += int(c["input_dropped"])
        self.outside_sent += outside_input(tables, cols)
        self.events_out += int(c["events_out"])
        self.dropped += sum(int(k["dropped"]) for k in cores)

    def summary(self) -> dict:
        return {"events": self.events, "events_by_source": dict(self.by_source), "frames": self.frames,
                "output_events": self.output_events, "synaptic_ops": self.synaptic_ops, "packets": self.packets,
                "cycles": self.cycles, "stall_cycles": self.stall_cycles,
                "stall_cycles_by_core": [self.stall_by_core[i] for i in sorted(self.stall_by_core)],
                "counters": {"events_sent": self.events, "events_in": self.events_in,
                             "outside_sent": self.outside_sent, "input_dropped": self.input_dropped,
                             "outputs_received": self.output_events, "events_out": self.events_out,
                             "core_dropped": self.dropped},
                "counters_balanced": (self.events_in == self.events and self.input_dropped == self.outside_sent
                                      and self.events_out == self.output_events and self.dropped == 0
                                      and not self.mismatches),
                "mismatches": len(self.mismatches), "mismatch_details": self.mismatches}


def check_soak_frame(tables, t: int, device, got, golden, want, events: dict) -> None:
    """MismatchError at the first difference from the model or counter that does not balance."""
    from ..cosim import check_hardware_counters
    check_frame(tables, t, device, got, golden, want)
    check_hardware_counters(t, got, tables.cfg.lanes)
    problem = (link_balance(tables, stream_columns(events, tables.cfg.event_bits), got)
               or mesh_balance(got, want))
    if problem:
        raise MismatchError(f"frame {t}: counters do not balance: {problem}")


# -- segments: a network, its frames, stalls ---------------------------------------------------------
@dataclass
class Segment:
    source: str                     # recording name, "random" or "network"
    tables: object
    threshold: int
    frames: object                  # iterator of event dicts
    budget: int                     # events at most
    describe: dict = field(default_factory=dict)


class _SoakNetworks:
    """The soak network's tables per mapping strategy (soak_tables: compiled once), taken in turn
    with thresholds."""

    def __init__(self, cfg: FabricConfig):
        self.cfg, self.i = cfg, 0

    def next(self) -> tuple[str, object, int]:
        strategy, threshold = STRATEGIES[self.i % len(STRATEGIES)], THRESHOLDS[self.i % len(THRESHOLDS)]
        self.i += 1
        return strategy, soak_tables(self.cfg, strategy), threshold


def recording_segments(nets: _SoakNetworks, recordings, budget: int, events_per_frame: int):
    """One segment per recording, each with an equal part of `budget`."""
    shape = soak_shape(nets.cfg)
    for name in recordings:
        strategy, tables, threshold = nets.next()
        yield Segment(name, tables, threshold, recording_frames(name, shape, events_per_frame),
                      budget // max(1, len(recordings)), {"strategy": strategy})


def random_segments(nets: _SoakNetworks, seed: int, chunk: int, events_per_frame: int):
    """Random streams on the soak network, `chunk` events per segment, without end."""
    shape = soak_shape(nets.cfg)
    k = 0
    while True:
        strategy, tables, threshold = nets.next()
        rng = np.random.default_rng([seed, 1, k])
        yield Segment("random", tables, threshold, random_frames(rng, shape, max(1, events_per_frame // 2)), chunk,
                      {"strategy": strategy, "seed": [seed, 1, k]})
        k += 1


def network_segments(cfg: FabricConfig, seed: int, frames: int = FRAMES_PER_NETWORK):
    """Random networks on cfg (randnet's co-simulation cases that map), `frames` frames each, without end."""
    from ..compiler.mapper import MappingError
    from ..cosim import compile_case
    from ..randnet import random_cosim_case
    k = 0
    while True:
        rng = np.random.default_rng([seed, 2, k])
        case = random_cosim_case(rng, cfg)
        try:
            tables = compile_case(case, cfg)
        except MappingError:
            k += 1
            continue
        yield Segment("network", tables, case.threshold, itertools.islice(network_frames(rng, case, tables), frames),
                      1 << 62, {"case": case.describe(), "seed": [seed, 2, k]})
        k += 1


def _groups(cfg, events: int, seed: int, shares, recordings, events_per_frame: int):
    """(group, cumulative events the group fills up to, its segments): recordings first; random
    streams and random networks make up what the groups before them left."""
    nets = _SoakNetworks(cfg)
    s0, s1 = shares[0], shares[0] + shares[1]
    chunk = max(20 * events_per_frame, int(events * shares[1]) // 4)
    return [("recordings", int(events * s0), recording_segments(nets, recordings, int(events * s0), events_per_frame)),
            ("random", int(events * s1), random_segments(nets, seed, chunk, events_per_frame)),
            ("network", events, network_segments(cfg, seed))]


def _segments(cfg, events: int, seed: int, shares, recordings, events_per_frame: int, tally: Tally):
    """(segment, its event budget) in turn while the groups' shares are not used up (by `tally`)."""
    for _, upto, segs in _groups(cfg, events, seed, shares, recordings, events_per_frame):
        while upto - tally.events > 0:
            seg = next(segs, None)
            if seg is None:
                break
            yield seg, min(seg.budget, upto - tally.events)


# -- the Verilator fabric ------------------------------------------------------------------------------
def fabric_soak(events: int = 1_000_000, seed: int = 1, stalls=DEFAULT_STALLS, fabric: str = "default",
                recordings=RECORDINGS, shares=SHARES, events_per_frame: int = 2000, progress=None,
                device=None) -> dict:
    """About `events` input events through the Verilator fabric (module docstring); a JSON-able summary.
    `progress(tally)` is called after every segment; `device`: a SimDevice of the fabric to use
    (default: one opened and closed here)."""
    from ..runtime.model import ModelDevice
    from ..runtime.sim import SimDevice
    cfg = device.cfg if device is not None else PRESETS[fabric] if isinstance(fabric, str) else fabric
    soak_shape(cfg)
    start = time.monotonic()
    tally, segments = Tally(), []
    own = device is None
    device = SimDevice(cfg) if own else device
    try:
        for seg, budget in _segments(cfg, events, seed, shares, recordings, events_per_frame, tally):
            if len(tally.mismatches) >= MAX_FAILED_SEGMENTS:
                break
            p_in, p_out = stalls[len(segments) % len(stalls)]
            gap_seed = (seed << 16) + len(segments)
            device.sim.reset()
            device.sim.set_gaps(p_in, p_out, gap_seed)
            device.load(seg.tables)
            device.set_threshold(seg.threshold)
            golden = ModelDevice(cfg)
            golden.load(seg.tables)
            golden.set_threshold(seg.threshold)
            row = {"source": seg.source, **seg.describe, "threshold": seg.threshold, "p_in": p_in, "p_out": p_out,
                   "gap_seed": gap_seed, "frames": 0, "events": 0}
            segments.append(row)
            before = tally.events
            for t, ev in enumerate(seg.frames):
                if tally.events - before >= budget:
                    break
                got = device.run_frame(ev)
                want = golden.run_frame(ev)
                try:
                    check_soak_frame(seg.tables, t, device, got, golden, want, ev)
                except MismatchError as e:
                    tally.mismatches.append({"segment": len(segments) - 1, "frame": t, "error": str(e)})
                    break
                tally.add(seg.source, seg.tables, ev, got)
                row["frames"] += 1
            row["events"] = tally.events - before
            if progress:
                progress(tally)
    finally:
        if own:
            device.close()
    out = {"fabric": cfg.name, "cores": cfg.n_cores, "seed": seed, "events_target": events, **tally.summary(),
           "stalls": [list(s) for s in stalls], "segments": segments, "wall_s": round(time.monotonic() - start, 1)}
    out["events_per_s"] = round(out["events"] / max(out["wall_s"], 1e-9), 1)
    return out


def parse_stalls(text: str) -> tuple[tuple[float, float], ...]:
    """'0.3,0.5;0,0' -> ((0.3, 0.5), (0.0, 0.0))."""
    try:
        pairs = tuple(tuple(float(v) for v in part.split(",")) for part in text.split(";") if part.strip())
    except ValueError:
        pairs = ()
    if not pairs or any(len(p) != 2 or not all(0 <= v < 1 for v in p) for p in pairs):
        raise SoakError(f"soak: stalls {text!r}: use P_IN,P_OUT pairs of probabilities in [0, 1), separated by ';'")
    return pairs


# -- the LiteX sim SoC with link faults ------------------------------------------------------------------
LINK_SHARES = (0.5, 0.5, 0.0)
LINK_FAULT_RATE = 2e-5              # per byte and direction
LINK_ANSWER_TIMEOUT = 1.0           # seconds: the LiteX sim answers in about a millisecond
LINK_TRIES = 8


def open_faulty_litex(sim, rates: dict, seed: int, targets=(), answer_timeout: float = LINK_ANSWER_TIMEOUT):
    """(verifying LitexDevice, FaultyPipe) on a running LitexSim; faults off until the caller
    enables them (pipe.enabled = True)."""
    from synfab_gateware.soc.sim import SIM_CLK_FREQ
    from ..runtime.litex import LitexDevice, UartBoneLink, _TcpPipe
    from ..runtime.linkfaults import FaultyPipe
    pipe = FaultyPipe(_TcpPipe("127.0.0.1", sim.tcp_port, 30.0), rates, seed, targets)
    pipe.enabled = False
    link = UartBoneLink(pipe, sim.port, verify=True, answer_timeout=answer_timeout)
    device = LitexDevice(sim.cfg, link=link, verify=True, timeout=20.0,
                         parser_timeout_cycles=int(0.1 * SIM_CLK_FREQ))
    return device, pipe


def address_name(cfg: FabricConfig, addr: int | None) -> str | None:
    """A SoC byte address as the name RegisterMap.describe gives its register, counter or window
    (else hex)."""
    from ..layouts import FABRIC_BASE, RegisterMap
    if addr is None or addr < FABRIC_BASE:
        return None if addr is None else hex(addr)
    off = addr - FABRIC_BASE
    for r in RegisterMap(cfg).describe():
        size = 4 * r["entries"] * r["stride_words"] if r["kind"] == "window" else 4
        if r["addr"] <= off < r["addr"] + size:
            return r["name"]
    return hex(off)


def attribute_faults(attempts, faults) -> dict:
    """Each fault counted under the outcome of the attempt it hit: 'link' (the link's checks saw
    it), 'model' (only the model's check did), 'ok' (no effect: the attempt passed every check)."""
    out = {o: Counter() for o in ("link", "model", "ok")}
    where = {o: Counter() for o in ("link", "model", "ok")}
    covered = 0
    for a in attempts:
        for f in faults[a.start:a.end]:
            out[a.outcome][f"{f.direction}.{f.kind}"] += 1
            where[a.outcome][f.where] += 1
            covered += 1
    return {"by_class": {o: dict(c) for o, c in out.items()}, "by_place": {o: dict(c) for o, c in where.items()},
            "attributed": covered}


def link_soak(events: int = 20_000, seed: int = 1, fault_rate: float = LINK_FAULT_RATE, kinds=None, directions=None,
              targets=(), fabric: str = "small", recordings=RECORDINGS, shares=LINK_SHARES, events_per_frame: int = 200,
              tries: int = LINK_TRIES, answer_timeout: float = LINK_ANSWER_TIMEOUT, progress=None) -> dict:
    """About `events` input events through the LiteX sim SoC with seeded link faults (module
    docstring); a JSON-able summary."""
    from synfab_gateware.soc.sim import LitexSim
    from ..runtime.device import DeviceError
    from ..runtime.guard import GuardedRun
    from ..runtime.linkfaults import DIRECTIONS, KINDS, uniform_rates
    cfg = PRESETS[fabric] if isinstance(fabric, str) else fabric
    soak_shape(cfg)
    rates = uniform_rates(fault_rate, tuple(kinds or KINDS), tuple(directions or DIRECTIONS))
    start = time.monotonic()
    tally, segments, attempts, failed = Tally(), [], [], []
    with LitexSim(cfg, quiet=True) as sim:
        device, pipe = open_faulty_litex(sim, rates, seed, targets, answer_timeout)
        pipe.enabled = True
        try:
            for seg, budget in _segments(cfg, events, seed, shares, recordings, events_per_frame, tally):
                if len(failed) >= MAX_FAILED_SEGMENTS:
                    break
                guard = GuardedRun(device, seg.tables, seg.threshold, tries, mark=lambda: len(pipe.faults))
                row = {"source": seg.source, **seg.describe, "threshold": seg.threshold, "frames": 0, "events": 0}
                segments.append(row)
                before = tally.events
                try:
                    guard.load(recover=bool(failed))
                    for t, ev in enumerate(seg.frames):
                        if tally.events - before >= budget:
                            break
                        got, _ = guard.run_frame(t, ev)
                        tally.add(seg.source, seg.tables, ev, got)
                        row["frames"] += 1
                except DeviceError as e:       # every try failed: reported, the segment ends
                    failed.append({"segment": len(segments) - 1, "error": str(e)})
                finally:
                    attempts += guard.attempts
                row["events"] = tally.events - before
                if progress:
                    progress(tally)
        finally:
            device.close()
    failed_attempts = [a for a in attempts if a.outcome != "ok"]
    faults = attribute_faults(attempts, pipe.faults)
    # What the faults without effect hit (fabric addresses by name).
    faults["without_effect_detail"] = [
        {"fault": f"{f.direction}.{f.kind}", "where": f.where, "addr": address_name(cfg, f.addr)}
        for a in attempts if a.outcome == "ok" for f in pipe.faults[a.start:a.end]]
    injected = Counter(f"{f.direction}.{f.kind}" for f in pipe.faults)
    out = {"fabric": cfg.name, "cores": cfg.n_cores, "seed": seed, "events_target": events, **tally.summary(),
           "faults": {"rate_per_byte": fault_rate, "injected": len(pipe.faults), "injected_by_class": dict(injected),
                      "detected_by_link_checks": sum(faults["by_class"]["link"].values()),
                      "detected_by_model_check": sum(faults["by_class"]["model"].values()),
                      "without_effect": sum(faults["by_class"]["ok"].values()), **faults},
           "attempts_failed": len(failed_attempts),
           "failed_without_fault": sum(1 for a in failed_attempts if a.end == a.start),
           "retried": len(failed_attempts) - len(failed), "reported": len(failed), "reported_details": failed,
           "link_bytes": device.link.traffic(), "segments": segments, "wall_s": round(time.monotonic() - start, 1)}
    out["events_per_s"] = round(out["events"] / max(out["wall_s"], 1e-9), 1)
    return out
