"""A network over several boards: whole-layer slabs joined by event links (README "Several boards").

The layers (in evaluation order) are cut into N consecutive slabs, one per board.  A cut is allowed
only where exactly one layer's output crosses it, and that layer is the last of its slab (no skip or
residual connection, and no layer reading the network input, may reach over a cut).  The layer
before a cut is its slab's output; the slab after it takes that layer's (C, H, W) activation as its
input, in `levels` mode: the host link carries the cut layer's sigma-delta messages (x, y, c, d), and
those are exactly the changes of that activation the next slab's input port fans out.  So the chain
computes what the whole network computes, event for event, where:

- the cut layer is a plain sigma-delta layer (msg_shift 0, clamped activation): its messages are the
  changes of its activation, which the next slab's `levels` input describes;
- the cut layer's changes fit the output stream word's d (16 bits) and the next board's events;
- the network is not pipelined (a cut would add or drop a step of delay) and has no reset interval
  (a layer's reset phase is its index in the whole network).

Anything else is refused in one line, never approximated.  The cuts are chosen to fit every board
(map_network / compile_network's own capacity errors decide) while sending the fewest events over
the links (compiler/work.py: a sample's mean events per frame, else one event per cut neuron).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..config import FabricConfig, PRESETS
from ..errors import SynfabError
from ..frontend.ir import QNetwork
from ..layouts import STREAM_EVENT
from .mapper import DEFAULT_OBJECTIVE
from .work import events_per_frame

# Cut combinations searched at most: beyond it (deep networks over many boards) the user gives the cuts.
MAX_COMBINATIONS = 20000


class PartitionError(SynfabError):
    """A network that cannot be split as asked; the message says why and what to do."""


@dataclass
class Slab:
    """The layers one board holds, as a network of their own, compiled for that board."""
    index: int
    board: str
    cfg: FabricConfig
    qnet: QNetwork
    tables: object = None
    placement: object = None

    @property
    def layers(self) -> list[str]:
        return [l.name for l in self.qnet.layers]

    @property
    def cut(self) -> str:
        """The layer whose events leave this board (the last slab: the network's output)."""
        return self.qnet.output


@dataclass
class Partition:
    qnet: QNetwork                        # the whole network
    slabs: list[Slab]
    crossing: list[float]                 # predicted events per frame over each link
    events_from: str                      # "sample" or "static" (compiler/work.py)
    tried: int = 0                        # cut combinations looked at
    notes: list[str] = field(default_factory=list)

    @property
    def cuts(self) -> list[str]:
        return [s.cut for s in self.slabs[:-1]]


def board_config(board) -> tuple[str, FabricConfig]:
    """(name, FabricConfig) of a preset name or a FabricConfig."""
    if isinstance(board, FabricConfig):
        return board.name, board
    if board not in PRESETS:
        raise PartitionError(f"unknown board preset {board!r}; use one of {', '.join(PRESETS)}")
    return board, PRESETS[board]


# ---------------------------------------------------------------------------------------
# Where a network may be cut
def check_chainable(qnet: QNetwork) -> None:
    """Refuse (one line) the time-step features a cut would change."""
    if qnet.pipelined:
        raise PartitionError(f"network {qnet.name} is pipelined: a cut between boards would change its one-step "
                             f"synaptic delays; partitioning runs networks that settle within the frame only")
    if qnet.reset_interval:
        raise PartitionError(f"network {qnet.name} has a state reset interval (phased by layer index over the whole "
                             f"network); partitioning does not carry it")


def cut_problem(qnet: QNetwork, i: int) -> str | None:
    """Why the network cannot be cut after layer i (index in qnet.layers), or None where it can."""
    layers = qnet.layers
    if not 0 <= i < len(layers) - 1:
        return f"a cut after layer #{i} leaves a board without layers"
    before = {qnet.input_name} | {l.name for l in layers[:i + 1]}
    crossing = sorted({c.src for l in layers[i + 1:] for c in l.inputs if c.src in before}
                      | ({qnet.output} & before))
    name = layers[i].name
    if crossing != [name]:
        others = [c for c in crossing if c != name]
        return (f"cut after {name}: {', '.join(others)} also {'crosses' if len(others) == 1 else 'cross'} it "
                f"(a skip or residual connection, or the output before the cut); cut where one layer's output "
                f"alone goes on")
    return _cut_layer_problem(layers[i])


def _cut_layer_problem(layer) -> str | None:
    """Why the layer's events cannot be the next board's input events bit for bit, or None."""
    n = layer.neuron
    if n.model != "sigma_delta" or n.msg_shift:
        return (f"cut after {layer.name}: its {n.model} events{' (message shift)' if n.msg_shift else ''} are not "
                f"the changes of an activation the next board's input could take; cut after a plain sigma-delta layer")
    if layer.lo is None or layer.hi is None:
        return f"cut after {layer.name}: its activation is unclamped (changes unbounded); cut after a clamped layer"
    top = (1 << (STREAM_EVENT.by_name["d"].width - 1)) - 1
    if layer.hi - layer.lo > top:
        return (f"cut after {layer.name}: its changes reach +-{layer.hi - layer.lo} but a stream word carries "
                f"+-{top}; cut after a layer with a narrower activation range")
    return None


def cut_points(qnet: QNetwork) -> list[int]:
    """Indices i of the layers after which the network may be cut."""
    return [i for i in range(len(qnet.layers) - 1) if cut_problem(qnet, i) is None]


def slab_network(qnet: QNetwork, start: int, stop: int) -> QNetwork:
    """layers[start:stop] as a network: after a cut its input is the cut layer's activation (levels
    in the layer's lo..hi), named as the layer so that the connections read it unchanged."""
    layers = qnet.layers[start:stop]
    last = stop == len(qnet.layers)
    out = dict(output=qnet.output if last else layers[-1].name, output_scale=qnet.output_scale if last else 1.0)
    if start == 0:
        inp = dict(input_name=qnet.input_name, input_shape=qnet.input_shape, input_scale=qnet.input_scale,
                   input_hi=qnet.input_hi, input_lo=qnet.input_lo, input_mode=qnet.input_mode)
    else:
        cut = qnet.layers[start - 1]
        inp = dict(input_name=cut.name, input_shape=cut.shape, input_hi=cut.hi, input_lo=cut.lo, input_mode="levels")
    return QNetwork(name=f"{qnet.name}[{_span(qnet, start, stop)}]", layers=list(layers), **inp, **out)


# ---------------------------------------------------------------------------------------
# Choosing the cuts
class _Fits:
    """Compiles slabs onto boards once each: the tables, or the compiler's one-line error."""

    def __init__(self, qnet: QNetwork, objective: str):
        self.qnet, self.objective = qnet, objective
        self._done: dict[tuple, tuple] = {}

    def get(self, start: int, stop: int, cfg: FabricConfig):
        key = (start, stop, cfg.crc(), cfg.name)
        if key not in self._done:
            from ..api import compile_placed
            sub = slab_network(self.qnet, start, stop)
            try:
                tables, placement = compile_placed(sub, cfg, self.objective)
                self._done[key] = (sub, tables, placement, None)
            except SynfabError as e:
                self._done[key] = (sub, None, None, str(e))
        return self._done[key]


def _bounds(cuts, n_layers: int) -> list[tuple[int, int]]:
    edges = [0, *(i + 1 for i in cuts), n_layers]
    return list(zip(edges[:-1], edges[1:]))


def _span(qnet: QNetwork, start: int, stop: int) -> str:
    a, b = qnet.layers[start].name, qnet.layers[stop - 1].name
    return a if a == b else f"{a}..{b}"


def _explicit_cuts(qnet: QNetwork, cuts: list[str], n: int) -> list[int]:
    names = [l.name for l in qnet.layers]
    if len(cuts) != n - 1:
        raise PartitionError(f"{n} boards need {n - 1} cut(s), got {len(cuts)} ({', '.join(cuts) or 'none'})")
    idx = []
    for c in cuts:
        if c not in names:
            raise PartitionError(f"no layer {c!r} to cut after; layers: {', '.join(names)}")
        problem = cut_problem(qnet, names.index(c))
        if problem:
            raise PartitionError(problem)
        idx.append(names.index(c))
    if idx != sorted(set(idx)):
        raise PartitionError(f"cuts {', '.join(cuts)} are not distinct layers in evaluation order")
    return idx


def partition(qnet: QNetwork, boards, cuts: list[str] | None = None, sample=None,
              objective: str = DEFAULT_OBJECTIVE) -> Partition:
    """Split qnet over boards (preset names or FabricConfigs), slab k on board k, at the given cut
    layers or at the cuts that fit every board with the fewest predicted link events per frame
    (ties: the smallest largest slab)."""
    check_chainable(qnet)
    named = [board_config(b) for b in boards]
    n = len(named)
    if n < 1:
        raise PartitionError("partition needs at least one board")
    if len({cfg.acc_bits for _, cfg in named}) > 1:
        # accumulators wrap at acc_bits: boards that wrap differently compute another network
        raise PartitionError(f"boards {', '.join(b for b, _ in named)} have different acc_bits "
                             f"({', '.join(str(c.acc_bits) for _, c in named)}); use boards with one accumulator width")
    ev = events_per_frame(qnet, sample, named[0][1].acc_bits)
    names = [l.name for l in qnet.layers]
    if cuts is not None:
        combos = [tuple(_explicit_cuts(qnet, list(cuts), n))]
    else:
        points = cut_points(qnet)
        if len(points) < n - 1:
            raise PartitionError(f"network {qnet.name} has {len(points)} place(s) to cut between whole layers "
                                 f"({', '.join(names[i] for i in points) or 'none'}) but {n} boards need {n - 1}")
        if math.comb(len(points), n - 1) > MAX_COMBINATIONS:
            raise PartitionError(f"network {qnet.name}: {math.comb(len(points), n - 1)} ways to cut it for {n} boards, "
                                 f"more than the {MAX_COMBINATIONS} searched; give the cut layers (--cuts)")
        size = np.cumsum([0] + [int(np.prod(l.shape)) for l in qnet.layers])
        cost = {i: float(ev[names[i]].sum()) for i in points}

        def key(combo):
            parts = [size[b] - size[a] for a, b in _bounds(combo, len(names))]
            return (round(sum(cost[i] for i in combo), 6), max(parts))
        combos = sorted(itertools.combinations(points, n - 1), key=key)
    fits = _Fits(qnet, objective)
    first_error = None
    for tried, combo in enumerate(combos, 1):
        slabs, error = _try(qnet, combo, named, fits)
        if slabs is not None:
            crossing = [float(ev[names[i]].sum()) for i in combo]
            return Partition(qnet, slabs, crossing, "static" if sample is None else "sample", tried)
        first_error = first_error or error
    raise PartitionError(first_error + ("" if cuts is not None else f" (and at every other cut of {n} boards)"))


def _try(qnet: QNetwork, combo, named, fits: _Fits):
    """(slabs, None) where every slab of the cuts compiles onto its board, else (None, the first error)."""
    slabs = []
    for k, ((start, stop), (board, cfg)) in enumerate(zip(_bounds(combo, len(qnet.layers)), named)):
        sub, tables, placement, err = fits.get(start, stop, cfg)
        if err is not None:
            return None, f"board {k} ({board}) cannot hold layers {_span(qnet, start, stop)}: {err}"
        slabs.append(Slab(k, board, cfg, sub, tables, placement))
    return slabs, None


def one_fabric(boards) -> FabricConfig:
    """One fabric with at least every board's cores (the first board's core sizes and mesh width,
    rows enough for all the cores): what the chain is compared with."""
    from dataclasses import replace
    cfgs = [board_config(b)[1] for b in boards]
    cores = sum(c.n_cores for c in cfgs)
    first = cfgs[0]
    return replace(first, mesh_y=-(-cores // first.mesh_x), name=f"one-{first.name}-x{len(cfgs)}")


def predicted_cycles(part: Partition, sample=None, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Frame cycles compiler/work.py predicts for every board's slab on its placement, and for the
    whole network on one_fabric (the boards' cores in one mesh), from the same work estimate (the
    sample frames' activity through the dense reference, else the static one): the boards' own
    clocks and the one fabric's are predicted alike, so their ratio is the chain's cost."""
    from .mapper import map_network
    from .work import Work, estimate, predict
    acc_bits = part.slabs[0].cfg.acc_bits
    work = estimate(part.qnet, sample, acc_bits)
    ev = events_per_frame(part.qnet, sample, acc_bits)
    boards = []
    for s in part.slabs:
        w = Work(work.source, {l: work.ops[l] for l in s.layers}, {l: work.evaluations[l] for l in s.layers},
                 float(ev[s.qnet.input_name].sum()))
        boards.append(predict(s.qnet, s.placement, w)["frame_cycles"])
    cfg = one_fabric([s.cfg for s in part.slabs])
    one = {"fabric": cfg.name, "cores": cfg.n_cores, "frame_cycles": None}
    try:
        one["frame_cycles"] = predict(part.qnet, map_network(part.qnet, cfg, objective=objective, work=work),
                                      work)["frame_cycles"]
    except SynfabError as e:
        one["unplaced"] = str(e)
    return {"work_from": work.source, "boards": boards, "one_fabric": one}
