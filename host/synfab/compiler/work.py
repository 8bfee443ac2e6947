"""Synaptic work per frame: what the mapper balances over the cores, and the frame it predicts.

A frame runs in phases (DESIGN.md "Evaluation and frames"): the input phase (input events through
the input PEG, synaptic work on the cores of the input's consumers), then per layer in evaluation
order one phase: its cores evaluate its dirty neurons and the spikes' synaptic work is done on the
cores of its consumers; a phase ends when the fabric has drained.  A core does one (neuron,
weight) pair per clock per lane and evaluates one neuron per clock, so a phase lasts about as long
as its busiest core's pairs plus evaluations, and the frame about as long as the sum of its phases.

Synaptic ops are counted per destination neuron and input connection (`Work.ops`):

- from a sample input (`estimate(qnet, sample)`, frames (T, C, H, W) or one (C, H, W)): the dense
  reference (`reference.simulate`, threshold 0) gives every layer's events at every step; a
  source neuron's events times the synapses it has into a destination neuron is what the ESU
  does there, so the total is the golden model's synops counter for those frames (mean per frame);
- without a sample, statically: every input value and every neuron sends one event per frame (a
  frame from reset in which every value is non-zero: an upper bound whose spread over the parts,
  fan-in x neurons, is what placement needs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FabricConfig
from ..frontend.ir import QConnection, QLayer, QNetwork
from ..geometry import axis_span
from ..layouts import DIRTY_WORD, Kind, column_lane_stride_ok

SAMPLE, STATIC = "sample", "static"


def lanes(cfg: FabricConfig) -> int:
    """Synaptic lanes per core (FabricConfig.lanes): up to this many (neuron, weight) pairs per
    clock (conv and dense output channels; depthwise and pooling one pair per clock)."""
    return int(cfg.lanes)


@dataclass
class Work:
    """Mean work per frame: ops[layer][j] (C, H, W) synaptic ops per destination neuron through the
    layer's input connection j; evaluations[layer] (C, H, W) how often a neuron is evaluated;
    input_events the input events per frame; source SAMPLE or STATIC (see the module doc)."""
    source: str
    ops: dict[str, list[np.ndarray]]
    evaluations: dict[str, np.ndarray]
    input_events: float

    def total_ops(self) -> float:
        return float(sum(o.sum() for per_conn in self.ops.values() for o in per_conn))


# ---------------------------------------------------------------------------------------
# Events per neuron
def _static_events(qnet: QNetwork) -> dict[str, np.ndarray]:
    shapes = {qnet.input_name: qnet.input_shape, **{l.name: l.shape for l in qnet.layers}}
    return {name: np.ones(shape) for name, shape in shapes.items()}


def _sample_events(qnet: QNetwork, sample, acc_bits: int) -> dict[str, np.ndarray]:
    """Mean events per frame of every neuron (and input value) while the sample frames run."""
    from ..model.reference import input_step_events, simulate
    frames = np.asarray(sample, dtype=np.int64)
    if frames.ndim == 3:
        frames = frames[None]
    trace = simulate(qnet, frames, acc_bits, record_state=False)
    events = {name: np.mean([e != 0 for e in per_step], axis=0) for name, per_step in trace.events.items()}
    prev, sent = None, []
    for frame in frames:
        sent.append(input_step_events(qnet, prev, frame).reshape(qnet.input_shape) != 0)
        prev = frame
    events[qnet.input_name] = np.mean(sent, axis=0)
    return events


def events_per_frame(qnet: QNetwork, sample=None, acc_bits: int = FabricConfig().acc_bits) -> dict[str, np.ndarray]:
    """Mean events per frame of every neuron and input value (C, H, W) by name: from the sample
    frames through the dense reference when given, else the static estimate (one event each)."""
    return _static_events(qnet) if sample is None else _sample_events(qnet, sample, acc_bits)


# ---------------------------------------------------------------------------------------
# Ops per destination neuron
def _position_reach(conn: QConnection, axis: str, n_src: int, n_dst: int) -> np.ndarray:
    """float (n_dst, n_src): 1 where the source position has a synapse into the output position
    (each such pair is one kernel tap: one pair per source event)."""
    k, stride, pad = conn.axis(axis)
    lo, hi = axis_span(n_src, n_dst, k, stride, pad, conn.up)
    d = np.arange(n_dst)[:, None]
    return ((lo[None] <= d) & (d <= hi[None])).astype(np.float64)


def connection_ops(layer: QLayer, conn: QConnection, src_events: np.ndarray) -> np.ndarray:
    """(C, H, W) synaptic ops per destination neuron of `layer` through `conn` when the source's
    neurons send src_events (C_src, H_src, W_src) events."""
    C, H, W = layer.shape
    if conn.kind == Kind.DENSE:
        return np.broadcast_to(float(src_events.sum()), layer.shape)
    c_src, h, w = src_events.shape
    ry, rx = _position_reach(conn, "y", h, H), _position_reach(conn, "x", w, W)
    if conn.kind == Kind.CONV:   # every source channel feeds every output channel
        return np.broadcast_to(ry @ src_events.sum(axis=0) @ rx.T, layer.shape)
    out = np.zeros(layer.shape)
    dst = np.arange(c_src) + conn.chan_off
    inside = (dst >= 0) & (dst < C)
    out[dst[inside]] = np.einsum("Yy,cyx,Xx->cYX", ry, src_events[inside], rx)
    return out


def _evaluations(layer: QLayer, ops: list[np.ndarray]) -> np.ndarray:
    """Neurons evaluated per frame: those that receive synaptic input (sigma-delta: only dirty ones
    are evaluated), every neuron for the other models (their state may change without input)."""
    if layer.neuron.model != "sigma_delta" or not ops:
        return np.ones(layer.shape)
    return (sum(ops) > 0).astype(np.float64)


def estimate(qnet: QNetwork, sample=None, acc_bits: int = FabricConfig().acc_bits) -> Work:
    """Work per frame of qnet: from the sample frames when given (run with the fabric's acc_bits:
    the accumulators wrap there), else static (module doc)."""
    events = events_per_frame(qnet, sample, acc_bits)
    ops = {l.name: [connection_ops(l, c, events[c.src]) for c in l.inputs] for l in qnet.layers}
    evaluations = {l.name: _evaluations(l, ops[l.name]) for l in qnet.layers}
    return Work(STATIC if sample is None else SAMPLE, ops, evaluations, float(events[qnet.input_name].sum()))


# ---------------------------------------------------------------------------------------
# Sums over parts
class BoxSums:
    """Sums of a (C, H, W) map over boxes (a part's tile), from one prefix-sum table."""

    def __init__(self, values: np.ndarray):
        v = np.asarray(values, dtype=np.float64)
        self.prefix = np.zeros(tuple(n + 1 for n in v.shape))
        self.prefix[1:, 1:, 1:] = v.cumsum(0).cumsum(1).cumsum(2)

    def grid(self, ys: np.ndarray, xs: np.ndarray, cs: np.ndarray) -> np.ndarray:
        """(ny, nx, ng) sums over every part of a grid (inclusive [first, last] intervals per axis)."""
        total = 0.0
        for sc, c in ((1, cs[:, 1] + 1), (-1, cs[:, 0])):
            for sy, y in ((1, ys[:, 1] + 1), (-1, ys[:, 0])):
                for sx, x in ((1, xs[:, 1] + 1), (-1, xs[:, 0])):
                    total = total + sc * sy * sx * self.prefix[np.ix_(c, y, x)]
        return np.transpose(total, (1, 2, 0))

    def tile(self, t) -> float:
        return float(self.grid(np.array([[t.y0, t.y1]]), np.array([[t.x0, t.x1]]), np.array([[t.c0, t.c1]]))[0, 0, 0])


class LayerWork:
    """A layer's work by source (phase) as BoxSums, built once per layer when first asked."""

    def __init__(self, qnet: QNetwork, work: Work):
        self.qnet, self.work = qnet, work
        self._ops: dict[str, dict[str, BoxSums]] = {}
        self._evals: dict[str, BoxSums] = {}

    def ops_by_source(self, layer: QLayer) -> dict[str, BoxSums]:
        if layer.name not in self._ops:
            by_src: dict[str, np.ndarray] = {}
            for conn, ops in zip(layer.inputs, self.work.ops[layer.name]):
                by_src[conn.src] = by_src.get(conn.src, 0) + ops
            self._ops[layer.name] = {src: BoxSums(v) for src, v in by_src.items()}
        return self._ops[layer.name]

    def evaluations(self, layer: QLayer) -> BoxSums:
        if layer.name not in self._evals:
            self._evals[layer.name] = BoxSums(self.work.evaluations[layer.name])
        return self._evals[layer.name]


# ---------------------------------------------------------------------------------------
# The frame a placement predicts
def part_loads(qnet: QNetwork, placement, work: Work) -> tuple[list[str], np.ndarray]:
    """(phases, load (phases, cores)): per phase (the input, then every layer in evaluation order)
    the clocks each core's neuron unit is busy: pairs / part_lanes of the synaptic work done in that
    phase plus the evaluation of the phase's layer (its evaluated neurons, `lanes` per clock, and
    dirty-word scans)."""
    phases = [qnet.input_name] + [l.name for l in qnet.layers]
    index = {name: i for i, name in enumerate(phases)}
    load = np.zeros((len(phases), placement.cfg.n_cores))
    per_layer = LayerWork(qnet, work)
    layers = {l.name: l for l in qnet.layers}
    n_lanes = lanes(placement.cfg)
    for part in placement.parts:
        layer = layers[part.layer]
        for src, sums in per_layer.ops_by_source(layer).items():
            cc = part.tile.c1 - part.tile.c0 + 1
            load[index[src], part.core] += sums.tile(part.tile) / part_lanes(layer, src, cc, n_lanes)
        # The evaluation unit takes a lane group (P neurons from a multiple of P) per clock: a
        # pixel's channels are evaluated together wherever a conv or dense layer's input reaches it.
        load[index[part.layer], part.core] += (per_layer.evaluations(layer).tile(part.tile) / n_lanes
                                               + part.neurons / DIRTY_WORD)
    return phases, load


def part_lanes(layer: QLayer, src: str, cc: int, n_lanes: int) -> float:
    """Pairs per clock the ESU makes for the connections from `src` into a part of cc channels: a conv or dense
    connection's lanes take its cc output channels P at a time (cc / ceil(cc / P)); a depthwise or
    pooling connection's take the columns of a kernel row P at a time when the part's channel count
    is odd (the columns' neurons then lie in distinct banks) and its weights one read gives
    (column_reach: nx / ceil(nx / P), nx = ceil(kw / sw) the columns an event reaches), else one pair."""
    conns = [c for c in layer.inputs if c.src == src]
    if n_lanes == 1:
        return 1.0
    if all(c.kind == Kind.DW for c in conns):
        rates = [dw_lanes(c, cc, n_lanes) for c in conns]
        return min(rates) if rates else 1.0
    return cc / -(-cc // n_lanes)


def column_reach(conn, n_lanes: int) -> int:
    """Columns of a kernel row that one event of a depthwise or pooling connection reaches and
    the ESU's `n_lanes` column lanes can take together: ceil(kw / sw) when the weight is constant
    (no read) or the lanes' weights w, w - sw, ... lie in one read (layouts.column_lane_stride_ok:
    stride 1 always, 2 and 4 with two lanes), else 1."""
    if not (conn.wconst is not None or column_lane_stride_ok(n_lanes, conn.sw)):
        return 1
    return -(-conn.kw // conn.sw)


def column_lane_layer(layer: QLayer, n_lanes: int) -> bool:
    """Whether a layer's parts get column lanes when their channel counts are odd: every input a
    depthwise or pooling connection, one of them reaching more than one column of a row."""
    return bool(layer.inputs) and all(c.kind == Kind.DW for c in layer.inputs) and \
        any(column_reach(c, n_lanes) > 1 for c in layer.inputs)


def dw_lanes(conn, cc: int, n_lanes: int) -> float:
    """Pairs per clock of one depthwise or pooling connection into a part of cc channels."""
    nx = column_reach(conn, n_lanes)
    if cc % 2 == 0 or nx == 1:
        return 1.0
    return nx / -(-nx // n_lanes)


def predict(qnet: QNetwork, placement, work: Work) -> dict:
    """The frame placement's predicted cycles against the lower bound total ops / (cores x lanes),
    and per core its share of the synaptic ops."""
    phases, load = part_loads(qnet, placement, work)
    phase_cycles = load.max(axis=1)
    # The input port takes one event per clock.
    phase_cycles[0] = max(phase_cycles[0], work.input_events)
    frame = float(phase_cycles.sum())
    cfg = placement.cfg
    total = work.total_ops()
    bound = total / (cfg.n_cores * lanes(cfg))
    return {"work_from": work.source, "synaptic_ops": round(total, 1), "frame_cycles": round(frame, 1),
            "lower_bound_cycles": round(bound, 1), "bound_over_frame": round(bound / frame, 4) if frame else 1.0,
            "phase_cycles": {name: round(float(c), 1) for name, c in zip(phases, phase_cycles)}}
