"""NIR graphs (`.nir`, the Neuromorphic Intermediate Representation) as synfab networks.

sinabs, snnTorch, Norse, Rockpool and Lava-dl write NIR: a graph of continuous-time nodes.  `load`
turns one into a QNetwork that runs time step by time step (one frame = one step of `dt`), every
layer settling within the step, as the frameworks simulate it:

- weight nodes (Conv2d, Affine, Linear, SumPool2d, AvgPool2d) are the synapses of the neuron node
  they feed; Scale multiplies them (or the events they read), Flatten makes a dense layer read its
  source in (C, H, W) order.  A weight node that feeds another weight node (a pool before a conv)
  or the graph's output becomes a linear relay population (a sigma-delta neuron without clamp
  that sends the step's weighted sum of its inputs).
- neuron nodes become populations, discretized with forward Euler at `dt` (as SpiNNaker2 and
  Norse do).  A time constant tau becomes a decay dt / tau in Loihi's 12 bits (4096 * dt / tau,
  rounded); the input gains (dt * r / tau, dt * r for IF, dt * w_in / tau_syn for the current)
  scale the threshold instead of the weights, so integer weights stay exact:
    IF       -> if        v += input; spike when v > threshold (or >=), reset to v_reset or by subtraction
    LIF      -> lif       Loihi's lif: v = v * (1 - dt/tau) + input; spike when v > threshold, reset to 0
    CubaLIF  -> cuba_lif  u = u * (1 - dt/tau_syn) + input; v = v * (1 - dt/tau_mem) + u (the new
                          current, as Loihi and snnTorch compute it); spike when v > threshold, reset to 0
    LI, CubaLI, I -> lif / cuba_lif that never fire: non-spiking readouts (read their v)
    Threshold -> lif with a full decay: a spike whenever this step's input exceeds the threshold
  A leak voltage v_leak adds dt / tau * v_leak to v every step (the bias word).
- weights become int8 with one scale per layer: a power of two when the weights are integers
  times it (then the int8 network computes exactly what the float one does), else about
  max|w| / 127 (a whole number of steps to the threshold); thresholds, resets and biases are
  divided by the same scale (rounded).  A leaky (Loihi) layer whose synaptic input could wrap its
  24-bit current, given the largest input value `input_max`, is refused.
- the input: frames of integers sent as they are every step (spikes 1, currents x / input_scale).
- what NIR cannot say about time: layers are not delayed (every layer settles within the step,
  as sinabs and snnTorch run them); the IF/LIF/CubaLIF reset of NIR 1.0.4 (by subtraction) and of
  NIR >= 1.0.5 (to v_reset) differ, so the convention decides (below).

Parameters may be stored per neuron or as scalars (broadcast); synfab's neurons take one value per
layer, so per-neuron values that differ are refused, naming the field.  The NIR file does not say
everything a framework's neurons do; `convention` names the framework's choices (CONVENTIONS):
"nir" follows the NIR definition (the default), "sinabs" its IAF (spikes at v >= threshold, as
many as fit, reset by subtraction, v kept >= -threshold, one step = one time unit), "snntorch"
its neurons with reset_mechanism='zero' (dt 1e-4 as its export writes; Synaptic holds v at 0 for
the step after a spike).  The default dt, 1e-4 s, is the one snnTorch's export assumes; Norse
uses 1e-3.

Anything else (a node type, field or value synfab cannot run) is refused with one line naming the
node, its type and what would work.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import arith
from . import h5check
from ..errors import SynfabError
from .ir import Network, NetworkError, Node, QConnection, QLayer, QNetwork, conv_out
from ..layouts import Kind
from .quant import WEIGHT_MAX

SNNTORCH_DT = 1e-4          # snnTorch's export_to_nir writes tau = dt / (1 - beta) with this dt
DEFAULT_DT = SNNTORCH_DT
SINABS_DT = 1.0             # sinabs' IAF integrates its input once per step (r = 1)
INPUT_EVENT_BITS = 16       # input values are sent as they are, one event per value and step
FLOAT_KIND = "synfab-float"     # graph metadata synfab_kind of an exported float Network (read back as one)
VECTOR_FLATTEN = "vector"       # metadata synfab_op of the Flatten the export puts before a dense on (C, 1, 1)


class NirError(NetworkError):
    """A NIR graph synfab cannot run; the message names the node, its type and what would work."""


@dataclass(frozen=True)
class Convention:
    """What a framework's neurons do where the NIR file does not say."""
    dt: float
    fire_at_threshold: bool = False     # IF spikes at v >= threshold (sinabs) instead of v > threshold
    if_reset: str = "v_reset"           # IF: "v_reset" (to v_reset, 0 when the node has none) or "subtract"
    multi_spike: bool = False           # IF sends floor(v / threshold) spikes in one step (sinabs' MultiSpike)
    floor_at_minus_threshold: bool = False   # IF's v is kept >= -threshold (sinabs' min_v_mem)
    cuba_hold: int = 0                  # steps a CubaLIF's v stays 0 after its spike (snnTorch's Synaptic)


CONVENTIONS = {
    "nir": Convention(DEFAULT_DT),
    "sinabs": Convention(SINABS_DT, fire_at_threshold=True, if_reset="subtract", multi_spike=True,
                         floor_at_minus_threshold=True),
    "snntorch": Convention(SNNTORCH_DT, cuba_hold=1),
}


def _nir():
    try:
        import nir
    except ImportError:
        raise SynfabError("reading and writing NIR files needs the nir package: pip install 'synfab[nir]'") from None
    return nir


def is_nir_file(path) -> bool:
    """An HDF5 file with NIR's top-level 'node' group (netx files are HDF5 too, with 'layer')."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != h5check.HDF5_MAGIC:
                return False
        import h5py
        with h5py.File(path, "r") as f:
            return "node" in f and "version" in f
    except (OSError, ImportError):
        return False


@contextlib.contextmanager
def _node_values(where: str):
    """A node parameter of the wrong type or size (a string for a stride, an empty weight, metadata
    that is not a mapping) fails in numpy or in shape inference; report it against the node."""
    try:
        yield
    except SynfabError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError) as e:
        raise NirError(f"{where}: a parameter has a value of the wrong type or size ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]}); export the graph again") from None


def _type(node) -> str:
    return type(node).__name__


def _where(name: str, node) -> str:
    return f"node {name} ({_type(node)})"


# ---------------------------------------------------------------------------------------
# The graph: nested graphs inlined, nodes in topological order
def _inline(graph, prefix: str = "") -> tuple[dict, list]:
    """(nodes by dotted name, edges) of a graph whose nested NIRGraphs are inlined: an edge to or
    from a nested graph goes to its Input node or from its Output node."""
    nodes, edges, subgraphs = {}, [], {}
    for name, node in graph.nodes.items():
        if _type(node) == "NIRGraph":
            inner_nodes, inner_edges = _inline(node, f"{prefix}{name}.")
            nodes.update(inner_nodes)
            edges += inner_edges
            subgraphs[name] = node
        else:
            nodes[prefix + name] = node

    def end(name: str, side: str) -> str:
        if name not in subgraphs:
            return prefix + name
        ends = [k for k, v in subgraphs[name].nodes.items() if _type(v) == side]
        if len(ends) != 1:
            raise NirError(f"node {prefix}{name} (NIRGraph): has {len(ends)} {side} nodes; supported: a nested "
                           f"graph with one Input and one Output")
        return f"{prefix}{name}.{ends[0]}"

    edges += [(end(a, "Output"), end(b, "Input")) for a, b in graph.edges]
    return nodes, edges


def _sorted(nodes: dict, edges: list) -> tuple[list[str], dict, dict]:
    """Node names in topological order (NIR's edges are unordered), with each node's sources and
    consumers in edge order."""
    sources = {n: [] for n in nodes}
    consumers = {n: [] for n in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NirError(f"edge {a} -> {b}: there is no node {end}; supported: edges between the graph's nodes")
        sources[b].append(a)
        consumers[a].append(b)
    waiting = {n: len(s) for n, s in sources.items()}
    ready = [n for n in nodes if not waiting[n]]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for c in consumers[n]:
            waiting[c] -= 1
            if not waiting[c]:
                ready.append(c)
    if len(order) < len(nodes):
        loop = [n for n in nodes if n not in order]
        first = loop[0]
        raise NirError(f"node {first} ({_type(nodes[first])}): is on a cycle (nodes {', '.join(loop[:4])}); "
                       f"supported: feed-forward graphs (synfab has no recurrent connections)")
    return order, sources, consumers


# ---------------------------------------------------------------------------------------
# What flows along the edges while importing
@dataclass(frozen=True)
class Spikes:
    """The events of a population (or of the input): one value per neuron and step."""
    src: str                    # the population (or input) that sends them
    shape: tuple                # as the graph sees them: the population's (C, H, W), or (N, 1, 1) flattened
    scale: np.ndarray           # float value of one event of each source neuron, (C, H, W) of the source
    flat: bool = False


@dataclass(frozen=True)
class Current:
    """Synaptic input that no population has integrated yet: weights applied to events."""
    node: str                   # the weight node (a relay population takes its name)
    sources: tuple              # Spikes summed before the weights (NIR sums a node's incoming edges)
    kind: Kind
    weight: np.ndarray          # float: CONV (Co, Ci, KH, KW), DW (C, 1, KH, KW), DENSE (Co, N)
    bias: np.ndarray            # float (Co,), added every step
    shape: tuple                # (Co, Ho, Wo)
    geo: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Cell:
    """A neuron node discretized, in units of its synaptic input (before int8 quantization)."""
    model: str                  # the arith model
    threshold: float | None     # None: never fires (a readout)
    leak: float = 0.0           # added to v every step (v_leak's share)
    reset_to: float | None = None    # if: v after a spike (None: subtract the threshold)
    floor: bool = False         # if: v kept >= -threshold
    v_min: float | None = None  # if: v kept >= v_min
    fields: dict = field(default_factory=dict)  # other arith.Neuron fields (du, dv, fire_gt, ...)


def weight_scale(w: np.ndarray, threshold: float | None = None) -> float:
    """The float value of one int8 weight step: a power of two when every weight is an integer
    times it (then the int8 layer computes exactly what the float one does), else about
    max|w| / 127, made a little coarser so that the threshold is a whole number of steps (a
    rounded threshold would move every neuron's firing the same way)."""
    top = float(np.max(np.abs(w))) if w.size else 0.0
    if top == 0.0:
        return 1.0
    pow2 = 2.0 ** math.ceil(math.log2(top / WEIGHT_MAX))
    if np.all(w / pow2 == np.round(w / pow2)):
        return pow2
    step = top / WEIGHT_MAX
    if threshold is not None and threshold >= step:
        return threshold / math.floor(threshold / step)
    return step


def _param(where: str, node, name: str, shape, default: float | None = None) -> float:
    """The one value of a per-neuron or scalar parameter; NirError when the neurons differ."""
    value = getattr(node, name, None)
    if value is None:
        if default is None:
            raise NirError(f"{where}: has no {name}; supported: a {name} for every neuron or one for all")
        return default
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    n = int(np.prod(shape))
    if a.size not in (1, n):
        raise NirError(f"{where}: {name} has {a.size} values for its {n} neurons; supported: one or {n}")
    if np.any(a != a[0]):
        raise NirError(f"{where}: {name} differs between neurons ({a.min():g} .. {a.max():g}); synfab's neurons take "
                       f"one {name} per layer: export one value, or split the layer")
    return float(a[0])


def _decay(where: str, name: str, dt: float, tau: float) -> int:
    """Loihi's 12-bit decay of forward Euler with step dt: 4096 * dt / tau, rounded."""
    ratio = dt / tau if tau else math.inf
    if not 0.0 <= ratio <= 1.0:
        raise NirError(f"{where}: dt / {name} = {ratio:g} is outside 0..1, where forward Euler overshoots; "
                       f"supported: dt <= {name} (pass a smaller dt)")
    return int(round(ratio * arith.LOIHI_DECAY_UNITY))


def _gain(where: str, what: str, value: float) -> float:
    if not value > 0.0 or not math.isfinite(value):
        raise NirError(f"{where}: its input gain {what} = {value:g}; supported: a finite gain > 0")
    return value


def _pair(where: str, name: str, value) -> tuple[int, int]:
    v = np.asarray(value).reshape(-1)
    if v.size == 1:
        v = np.repeat(v, 2)
    if v.size != 2 or np.any(v != np.round(v)):
        raise NirError(f"{where}: {name} = {np.asarray(value).tolist()}; supported: an integer or (H, W)")
    return int(v[0]), int(v[1])


def _padding(where: str, value, kernel: tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (str, bytes)):
        mode = value.decode() if isinstance(value, bytes) else value
        if mode == "valid":
            return 0, 0
        if mode == "same" and all(k % 2 for k in kernel):
            return kernel[0] // 2, kernel[1] // 2
        raise NirError(f"{where}: padding {mode!r}; supported: integers, 'valid', or 'same' with odd kernels")
    return _pair(where, "padding", value)


def _input_shape(where: str, shape) -> tuple[int, int, int]:
    """(C, H, W) of an Input's shape: (C, H, W), (N,) as (N, 1, 1), a leading batch of 1 dropped."""
    s = [int(v) for v in np.asarray(shape).reshape(-1)]
    if len(s) == 4 and s[0] == 1:
        s = s[1:]
    if len(s) == 1:
        s = s + [1, 1]
    if len(s) != 3 or min(s) < 1:
        raise NirError(f"{where}: input shape {s}; supported: (C, H, W) or (N,) (a leading batch of 1 is dropped)")
    return tuple(s)


# ---------------------------------------------------------------------------------------
class _Importer:
    def __init__(self, convention: Convention, dt: float, input_scale: float, input_max: int = 1):
        self.convention, self.dt, self.input_scale, self.input_max = convention, dt, input_scale, input_max
        self.layers: list[QLayer] = []
        self.input_name: str | None = None
        self.input_shape: tuple | None = None
        self.outputs: list[Spikes] = []

    def shape_of(self, name: str) -> tuple:
        return self.input_shape if name == self.input_name else next(l.shape for l in self.layers if l.name == name)

    # -- reading a node's inputs -----------------------------------------------------------
    def one(self, where: str, ins: list):
        if len(ins) != 1:
            raise NirError(f"{where}: has {len(ins)} incoming edges; supported: one")
        return ins[0]

    def spikes(self, signal) -> Spikes:
        """Events of a signal: synaptic input that no population integrated goes through a relay."""
        return self.relay(signal) if isinstance(signal, Current) else signal

    def sources(self, where: str, ins: list) -> tuple[Spikes, ...]:
        """The events a weight node reads: NIR sums a node's inputs, which the node's one set of
        weights then reads, so they must look alike."""
        if not ins:
            raise NirError(f"{where}: has no incoming edge; supported: one or more")
        spikes = tuple(self.spikes(s) for s in ins)
        first = spikes[0]
        for s in spikes[1:]:
            if s.shape != first.shape or s.flat != first.flat or not np.array_equal(s.scale, first.scale):
                raise NirError(f"{where}: sums inputs of different shapes or scales; supported: one input, or "
                               f"inputs of one shape and scale")
        return spikes

    def current(self, where: str, ins: list) -> Current:
        """The synaptic input of a neuron node: a weight node's output, or events through one-to-one
        synapses of weight 1."""
        signal = self.one(where, ins)
        if isinstance(signal, Current):
            return signal
        if signal.flat:                         # one-to-one on the flattened view
            n = signal.shape[0]
            return Current(where, (signal,), Kind.DENSE, np.eye(n), np.zeros(n), signal.shape)
        c, h, w = signal.shape
        return Current(where, (signal,), Kind.DW, np.ones((c, 1, 1, 1)), np.zeros(c), (c, h, w), dict(k=1))

    # -- building populations --------------------------------------------------------------
    def scaled_weight(self, where: str, cur: Current) -> np.ndarray:
        """The weights times the float value of each source event (a Scale before them)."""
        scale = cur.sources[0].scale
        if cur.kind == Kind.DENSE:
            return cur.weight * scale.reshape(-1)[None, :]
        per_channel = scale.reshape(scale.shape[0], -1)
        if np.any(per_channel != per_channel[:, :1]):
            raise NirError(f"{where}: reads events scaled differently within a channel through a convolution or "
                           f"pooling; supported: one scale per channel there")
        s = per_channel[:, 0]
        return cur.weight * (s[None, :, None, None] if cur.kind == Kind.CONV else s[:, None, None, None])

    def connections(self, cur: Current, wconst: int | None = None) -> list[QConnection]:
        return [QConnection(s.src, cur.kind, wconst=wconst, **cur.geo) for s in cur.sources]

    def quantized(self, where: str, cur: Current, threshold: float | None = None
                  ) -> tuple[np.ndarray | None, float, int | None]:
        """(int8 weights, their scale, None), or for a depthwise kernel of one value (a pooling)
        (None, |value|, its sign): a constant weight, which NIR writes back as a SumPool2d."""
        w = self.scaled_weight(where, cur)
        if cur.kind == Kind.DW and w.size and np.all(w == w.flat[0]) and w.flat[0] != 0:
            return None, abs(float(w.flat[0])), int(np.sign(w.flat[0]))
        s = weight_scale(w, threshold)
        return np.round(w / s).astype(np.int8), s, None

    def relay(self, cur: Current) -> Spikes:
        """A linear population sending the step's weighted input (sigma-delta, no clamp: its
        accumulator sums the inputs and it sends the change)."""
        where = f"node {cur.node}"
        if np.any(cur.bias):
            raise NirError(f"{where}: has a bias but feeds no neurons (it would be added once, not every step); "
                           f"supported: a bias only on synapses that feed neurons")
        wq, s, wconst = self.quantized(where, cur)
        self.add(QLayer(cur.node, cur.shape, self.connections(cur, wconst), np.zeros(cur.shape[0], np.int64), 1, 0,
                        None, None, wq, "linear", arith.Neuron()))
        return Spikes(cur.node, cur.shape, np.full(cur.shape, s))

    def largest_input(self, cur: Current, wq, wconst) -> int:
        """The largest |synaptic input| of one step of any neuron: every source event at its largest
        (the input's input_max, a spike 1)."""
        w = np.abs(wq.astype(np.int64)) if wq is not None else np.full(cur.weight.shape, abs(wconst), np.int64)
        per_neuron = w.reshape(w.shape[0], -1).sum(1)
        return int(per_neuron.max()) * sum(self.input_max if s.src == self.input_name else 1 for s in cur.sources)

    def check_loihi_current(self, where: str, cur: Current, wq, wconst) -> None:
        """Loihi's current holds the synaptic input << 6 in 24 bits: a larger input would wrap."""
        top = 1 << (arith.LOIHI_STATE_BITS - 1 - arith.LOIHI_ACT_SHIFT)
        largest = self.largest_input(cur, wq, wconst)
        if largest >= top:
            raise NirError(f"{where}: its synaptic input can reach {largest} weight steps in one step (input values "
                           f"up to {self.input_max}), beyond the {top} of Loihi's 24-bit current; supported: smaller "
                           f"input values (a coarser input_scale) or fewer inputs per neuron")

    def population(self, name: str, node, cur: Current, cell: _Cell) -> Spikes:
        where = _where(name, node)
        wq, s, wconst = self.quantized(where, cur, cell.threshold)
        loihi = cell.model in ("lif", "cuba_lif")
        if loihi:
            self.check_loihi_current(where, cur, wq, wconst)
        if cell.threshold is None:
            theta = arith.LOIHI_VTH_MAX          # netx's never-firing integrator
        else:
            theta = int(round(cell.threshold / s))
            if not 1 <= theta <= (arith.LOIHI_VTH_MAX - 1 if loihi else 1 << 30):
                raise NirError(f"{where}: threshold {cell.threshold:g} is {cell.threshold / s:g} weight steps of "
                               f"{s:g}; supported: 1 .. {arith.LOIHI_VTH_MAX - 1 if loihi else 1 << 30} steps")
        # Loihi's v holds the synaptic input << 6, so its bias has 6 more bits.
        bias_unit = s / (1 << arith.LOIHI_ACT_SHIFT) if loihi else s
        bias = np.round((cur.bias + cell.leak) / bias_unit).astype(np.int64)
        fields = dict(cell.fields)
        if cell.model == "if":
            if cell.reset_to is not None:
                fields["reset_to"] = int(round(cell.reset_to / s))
            if cell.floor:
                fields["v_min"] = -theta
            elif cell.v_min is not None:
                fields["v_min"] = int(round(cell.v_min / s))
        try:
            neuron = arith.Neuron(cell.model, theta=theta, **fields)
        except arith.NeuronError as e:
            raise NirError(f"{where}: {e}") from None
        self.add(QLayer(name, cur.shape, self.connections(cur, wconst), bias, weight=wq, op=_type(node).lower(),
                        neuron=neuron))
        return Spikes(name, cur.shape, np.ones(cur.shape))

    def add(self, layer: QLayer) -> None:
        if layer.name == self.input_name or any(l.name == layer.name for l in self.layers):
            raise NirError(f"node {layer.name}: a second population of this name; supported: unique node names")
        self.layers.append(layer)


# ---------------------------------------------------------------------------------------
# One handler per NIR node type: (importer, name, node, input signals, consumers) -> signal
def _input(imp: _Importer, name: str, node, ins: list, consumers: list):
    if ins:                                     # a nested graph's input passes its edge on
        return imp.one(_where(name, node), ins)
    if imp.input_name is not None:
        raise NirError(f"{_where(name, node)}: a second input (the first is {imp.input_name}); supported: one input")
    imp.input_name = name
    imp.input_shape = _input_shape(_where(name, node), node.input_type["input"])
    return Spikes(name, imp.input_shape, np.full(imp.input_shape, imp.input_scale))


def _output(imp: _Importer, name: str, node, ins: list, consumers: list):
    signal = imp.one(_where(name, node), ins)
    if consumers:                               # a nested graph's output
        return signal
    spikes = imp.spikes(signal)
    if spikes.src == imp.input_name:
        raise NirError(f"{_where(name, node)}: reads the input directly; supported: an output after a layer")
    imp.outputs.append(spikes)
    return spikes


def _conv2d(imp: _Importer, name: str, node, ins: list, consumers: list) -> Current:
    where = _where(name, node)
    srcs = imp.sources(where, ins)
    c, h, w = srcs[0].shape
    if srcs[0].flat:
        raise NirError(f"{where}: reads a flattened tensor; supported: a Flatten only before Affine or Linear")
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 4:
        raise NirError(f"{where}: weight of shape {list(weight.shape)}; supported: (out, in, kH, kW)")
    co, ci, kh, kw = weight.shape
    if node.input_shape is not None and tuple(np.asarray(node.input_shape).reshape(-1)) != (h, w):
        raise NirError(f"{where}: input_shape {np.asarray(node.input_shape).tolist()} but its input is {h}x{w}; "
                       f"supported: the input's (H, W) or none")
    if _pair(where, "dilation", node.dilation) != (1, 1):
        raise NirError(f"{where}: dilation {np.asarray(node.dilation).tolist()}; supported: 1 (synfab's kernels "
                       f"are dense)")
    groups = int(node.groups)
    if groups == 1 and ci == c:
        kind = Kind.CONV
    elif groups == c == co and ci == 1:
        kind = Kind.DW
    else:
        raise NirError(f"{where}: groups {groups} with weight {list(weight.shape)} on {c} channels; supported: "
                       f"groups 1 or depthwise (groups = in = out channels)")
    (sh, sw), (ph, pw) = _pair(where, "stride", node.stride), _padding(where, node.padding, (kh, kw))
    shape = (co, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))
    if min(shape) < 1:
        raise NirError(f"{where}: a {kh}x{kw} kernel with stride {sh}x{sw}, padding {ph}x{pw} gives no output on "
                       f"{h}x{w}; supported: a kernel that fits its input")
    bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64).reshape(-1), (co,)).copy()
    return Current(name, srcs, kind, weight, bias, shape, dict(k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh, pad_y=ph))


def _dense(imp: _Importer, name: str, node, ins: list, consumers: list) -> Current:
    """Affine and Linear.  A CxHxW input without a Flatten before it is read flattened in (C, H, W)
    order, as an Affine can only read it."""
    where = _where(name, node)
    srcs = imp.sources(where, ins)
    n_in = int(np.prod(srcs[0].shape))
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[1] != n_in:
        raise NirError(f"{where}: weight of shape {list(weight.shape)} on {n_in} inputs; supported: (out, {n_in})")
    co = weight.shape[0]
    bias = np.asarray(getattr(node, "bias", np.zeros(co)), dtype=np.float64).reshape(-1)
    if bias.size not in (1, co):
        raise NirError(f"{where}: bias of {bias.size} values for {co} outputs; supported: one per output")
    flat = tuple(Spikes(s.src, (n_in, 1, 1), s.scale, True) for s in srcs)
    return Current(name, flat, Kind.DENSE, weight, np.broadcast_to(bias, (co,)).copy(), (co, 1, 1))


def _pool(imp: _Importer, name: str, node, ins: list, consumers: list) -> Current:
    """SumPool2d and AvgPool2d: a depthwise kernel of ones (of 1 / its size: the average counts
    the padding, as PyTorch's default does)."""
    where = _where(name, node)
    srcs = imp.sources(where, ins)
    c, h, w = srcs[0].shape
    if srcs[0].flat:
        raise NirError(f"{where}: reads a flattened tensor; supported: a Flatten only before Affine or Linear")
    (kh, kw) = _pair(where, "kernel_size", node.kernel_size)
    (sh, sw) = _pair(where, "stride", node.stride)
    (ph, pw) = _padding(where, node.padding, (kh, kw))
    value = 1.0 / (kh * kw) if _type(node) == "AvgPool2d" else 1.0
    shape = (c, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))
    return Current(name, srcs, Kind.DW, np.full((c, 1, kh, kw), value), np.zeros(c), shape,
                   dict(k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh, pad_y=ph))


def _scale(imp: _Importer, name: str, node, ins: list, consumers: list):
    """Scale: multiplies the weights after it (events) or before it (synaptic input)."""
    where = _where(name, node)
    signal = imp.one(where, ins)
    s = np.asarray(node.scale, dtype=np.float64)
    n = int(np.prod(signal.shape))
    if s.size not in (1, n):
        raise NirError(f"{where}: {s.size} scale values on a {list(signal.shape)} input; supported: one value, "
                       f"or one per element")
    s = np.broadcast_to(s.reshape(-1), (n,)).reshape(signal.shape)
    if isinstance(signal, Spikes):
        src_shape = imp.shape_of(signal.src)
        return replace(signal, scale=signal.scale * s.reshape(src_shape))
    per_channel = s.reshape(s.shape[0], -1)
    if np.any(per_channel != per_channel[:, :1]):
        raise NirError(f"{where}: scales a {list(signal.shape)} input differently within a channel; supported: "
                       f"one scale per channel")
    c = per_channel[:, 0]
    weight = signal.weight * (c[:, None, None, None] if signal.weight.ndim == 4 else c[:, None])
    return replace(signal, weight=weight, bias=signal.bias * c)


def _flatten(imp: _Importer, name: str, node, ins: list, consumers: list) -> Spikes:
    """Flatten of every axis but the batch axis (NIR's dims exclude it): (C, H, W) -> (C*H*W,)."""
    where = _where(name, node)
    spikes = imp.spikes(imp.one(where, ins))
    rank = 1 if spikes.flat else 3
    start, end = int(node.start_dim), int(node.end_dim)
    if start % rank != 0 or end % rank != rank - 1 or not -rank <= start < rank or not -rank <= end < rank:
        raise NirError(f"{where}: start_dim {start}, end_dim {end} on a {list(spikes.shape)} input; supported: "
                       f"flattening every axis (0 .. -1; NIR's dims exclude the batch axis)")
    return replace(spikes, shape=(int(np.prod(spikes.shape)), 1, 1), flat=True)


def _metadata(node) -> dict:
    meta = getattr(node, "metadata", None)
    return dict(meta) if isinstance(meta, dict) else {}


def _if(imp: _Importer, name: str, node, ins: list, consumers: list) -> Spikes:
    """IF: dv/dt = r I; v += dt * r * input every step (the gain scales the threshold).  What the
    node's metadata says (synfab's export writes fire_at_threshold, multi_spike, reset, v_reset,
    v_min) overrides the convention."""
    where, conv, meta = _where(name, node), imp.convention, _metadata(node)
    cur = imp.current(where, ins)
    gain = _gain(where, "dt * r", imp.dt * _param(where, node, "r", cur.shape))
    threshold = _param(where, node, "v_threshold", cur.shape) / gain
    reset = None
    if meta.get("reset", conv.if_reset) != "subtract":
        reset = float(meta.get("v_reset", _param(where, node, "v_reset", cur.shape, default=0.0))) / gain
    fields = dict(fire_gt=not bool(meta.get("fire_at_threshold", conv.fire_at_threshold)),
                  multi_spike=bool(meta.get("multi_spike", conv.multi_spike)))
    v_min = float(meta["v_min"]) / gain if "v_min" in meta else None
    floor = conv.floor_at_minus_threshold and "reset" not in meta
    return imp.population(name, node, cur, _Cell("if", threshold, reset_to=reset, floor=floor, v_min=v_min,
                                                 fields=fields))


def _zero_reset(where: str, node, conv: Convention) -> None:
    """Loihi's neurons reset to 0: refuse anything else."""
    reset = np.asarray(getattr(node, "v_reset", 0.0), dtype=np.float64)
    rule = _metadata(node).get("reset", conv.if_reset)
    if np.any(reset != 0) or rule == "subtract":
        how = "by subtraction" if rule == "subtract" else f"to v_reset {reset.reshape(-1)[0]:g}"
        raise NirError(f"{where}: resets {how}; supported: reset to 0 (synfab's leaky neurons are Loihi's, "
                       f"e.g. snnTorch's reset_mechanism='zero')")


def _firing_threshold(threshold: float, gain: float) -> float | None:
    """The threshold in input units; an infinite one never fires (a readout)."""
    return None if math.isinf(threshold) else threshold / gain


def _leaky(imp: _Importer, name: str, node, ins: list, fires: bool) -> Spikes:
    """LIF and LI: tau dv/dt = v_leak - v + r I."""
    where = _where(name, node)
    cur = imp.current(where, ins)
    tau = _param(where, node, "tau", cur.shape)
    gain = _gain(where, "dt * r / tau", imp.dt * _param(where, node, "r", cur.shape) / tau)
    leak = imp.dt / tau * _param(where, node, "v_leak", cur.shape, default=0.0) / gain
    threshold = None
    if fires:
        _zero_reset(where, node, imp.convention)
        threshold = _firing_threshold(_param(where, node, "v_threshold", cur.shape), gain)
    fields = dict(dv=_decay(where, "tau", imp.dt, tau), refractory=int(_metadata(node).get("refractory", 0)))
    return imp.population(name, node, cur, _Cell("lif", threshold, leak, fields=fields))


def _cuba(imp: _Importer, name: str, node, ins: list, fires: bool) -> Spikes:
    """CubaLIF and CubaLI: tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I."""
    where = _where(name, node)
    cur = imp.current(where, ins)
    if np.any(cur.bias):
        raise NirError(f"{where}: its synapses have a bias (a current that decays); supported: no bias before a "
                       f"CubaLIF (synfab adds a bias to the voltage: use Linear, or LIF)")
    tau_syn, tau_mem = _param(where, node, "tau_syn", cur.shape), _param(where, node, "tau_mem", cur.shape)
    w_in = _param(where, node, "w_in", cur.shape, default=1.0)
    gain = _gain(where, "(dt * w_in / tau_syn) * (dt * r / tau_mem)",
                 (imp.dt * w_in / tau_syn) * (imp.dt * _param(where, node, "r", cur.shape) / tau_mem))
    leak = imp.dt / tau_mem * _param(where, node, "v_leak", cur.shape, default=0.0) / gain
    threshold, hold = None, 0
    if fires:
        _zero_reset(where, node, imp.convention)
        threshold = _firing_threshold(_param(where, node, "v_threshold", cur.shape), gain)
        hold = int(_metadata(node).get("refractory", imp.convention.cuba_hold))
    fields = dict(du=_decay(where, "tau_syn", imp.dt, tau_syn), dv=_decay(where, "tau_mem", imp.dt, tau_mem),
                  refractory=hold)
    return imp.population(name, node, cur, _Cell("cuba_lif", threshold, leak, fields=fields))


def _integrator(imp: _Importer, name: str, node, ins: list, consumers: list) -> Spikes:
    """I: dv/dt = r I, a lif that neither decays nor fires."""
    where = _where(name, node)
    cur = imp.current(where, ins)
    _gain(where, "dt * r", imp.dt * _param(where, node, "r", cur.shape))
    return imp.population(name, node, cur, _Cell("lif", None, fields=dict(dv=0)))


def _threshold(imp: _Importer, name: str, node, ins: list, consumers: list) -> Spikes:
    """Threshold: a spike in every step whose input exceeds the threshold (a lif that forgets
    its voltage every step)."""
    where = _where(name, node)
    cur = imp.current(where, ins)
    threshold = _param(where, node, "threshold", cur.shape)
    return imp.population(name, node, cur, _Cell("lif", threshold, fields=dict(dv=arith.LOIHI_DECAY_UNITY)))


HANDLERS = {
    "Input": _input,
    "Output": _output,
    "Conv2d": _conv2d,
    "Affine": _dense,
    "Linear": _dense,
    "SumPool2d": _pool,
    "AvgPool2d": _pool,
    "Scale": _scale,
    "Flatten": _flatten,
    "IF": _if,
    "LIF": lambda imp, name, node, ins, consumers: _leaky(imp, name, node, ins, fires=True),
    "LI": lambda imp, name, node, ins, consumers: _leaky(imp, name, node, ins, fires=False),
    "CubaLIF": lambda imp, name, node, ins, consumers: _cuba(imp, name, node, ins, fires=True),
    "CubaLI": lambda imp, name, node, ins, consumers: _cuba(imp, name, node, ins, fires=False),
    "I": _integrator,
    "Threshold": _threshold,
}
# What to do instead, for node types NIR defines that synfab does not run.
INSTEAD = {
    "Conv1d": "Conv2d with a kernel of height 1",
    "Delay": "a graph without synaptic delays",
}


# ---------------------------------------------------------------------------------------
def read(path):
    """The NIRGraph of a .nir file (SynfabError when it is not one)."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise NirError(f"NIR file {path} not found")
    damage = h5check.problem(path)
    if damage:
        raise NirError(f"{path}: not a readable NIR file ({damage}); export the graph again")
    try:
        return nir.read(path)
    except Exception as e:      # nir.read raises whatever h5py or its node constructors raise
        raise NirError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from None


def load(path, dt: float | None = None, convention: str = "nir", input_scale: float = 1.0, input_max: int = 1,
         name: str | None = None) -> QNetwork | Network:
    """The QNetwork of a NIR file (or of an in-memory nir.NIRGraph), run one time step of `dt`
    per frame; the float Network of a graph that synfab's export wrote from one.

    dt: the forward-Euler step in the graph's time unit; None takes the convention's (nir and
    snnTorch: 1e-4, snnTorch's export step; sinabs: 1, one step per time unit).
    convention: "nir", "sinabs" or "snntorch" (CONVENTIONS): what the framework's neurons do where
    the file does not say.
    input_scale: the float value of one input unit (frames are integers sent as they are every
    step: input spikes are 1, currents are round(x / input_scale)).
    input_max: the largest |input value| the frames will hold (1: spikes), for the check that
    Loihi's 24-bit current holds every synaptic input."""
    if convention not in CONVENTIONS:
        raise NirError(f"unknown NIR convention {convention!r}; supported: {', '.join(CONVENTIONS)}")
    conv = CONVENTIONS[convention]
    dt = conv.dt if dt is None else float(dt)
    if not dt > 0:
        raise NirError(f"dt = {dt}; supported: a time step > 0")
    graph = path if hasattr(path, "nodes") and hasattr(path, "edges") else read(path)
    default_name = Path(path).stem if isinstance(path, (str, Path)) else "nir"
    name = name or default_name
    kind = _metadata(graph).get("synfab_kind")
    if isinstance(kind, str) and kind == FLOAT_KIND:
        return float_network(graph, name)
    return from_graph(graph, conv, dt, input_scale, name, input_max)


def from_graph(graph, convention: Convention, dt: float, input_scale: float, name: str,
               input_max: int = 1) -> QNetwork:
    nodes, edges = _inline(graph)
    order, sources, consumers = _sorted(nodes, edges)
    imp = _Importer(convention, dt, input_scale, input_max)
    signals = {}
    for n in order:
        node = nodes[n]
        handler = HANDLERS.get(_type(node))
        if handler is None:
            instead = INSTEAD.get(_type(node), "a graph of " + ", ".join(HANDLERS))
            raise NirError(f"{_where(n, node)}: not supported; supported: {instead}")
        with _node_values(_where(n, node)):
            signals[n] = handler(imp, n, node, [signals[s] for s in sources[n]], consumers[n])
    if imp.input_name is None:
        raise NirError(f"graph {name}: has no Input node; supported: one Input")
    if len(imp.outputs) != 1:
        raise NirError(f"graph {name}: has {len(imp.outputs)} Output nodes; supported: one")
    if not imp.layers:
        raise NirError(f"graph {name}: has no layer between its input and output; supported: at least one")
    top = (1 << (INPUT_EVENT_BITS - 1))
    return QNetwork(name, imp.input_name, imp.input_shape, imp.layers, imp.outputs[0].src,
                    input_scale=input_scale, input_hi=top - 1, input_lo=-top, input_mode="events")


# ---------------------------------------------------------------------------------------
# Float networks that synfab's export wrote
def _hw(value) -> int | list[int]:
    h, w = (int(v) for v in np.broadcast_to(np.asarray(value).reshape(-1), (2,)))
    return h if h == w else [h, w]


def _float_conv(name: str, node, ins: list) -> Node:
    weight = np.asarray(node.weight, dtype=np.float64)
    attrs = dict(out_channels=weight.shape[0], kernel=_hw(weight.shape[2:]), stride=_hw(node.stride),
                 padding=_hw(node.padding), groups=int(node.groups))
    return Node(name, "conv", ins, attrs, dict(weight=weight, bias=np.asarray(node.bias, dtype=np.float64)))


def _float_dense(name: str, node, ins: list) -> Node:
    weight = np.asarray(node.weight, dtype=np.float64)
    return Node(name, "dense", ins, dict(out_features=weight.shape[0]),
                dict(weight=weight, bias=np.asarray(node.bias, dtype=np.float64)))


def _float_pool(name: str, node, ins: list) -> Node:
    op = "avgpool" if _type(node) == "AvgPool2d" else "sumpool"
    return Node(name, op, ins, dict(kernel=_hw(node.kernel_size), stride=_hw(node.stride), padding=_hw(node.padding)))


FLOAT_READERS = {
    "Conv2d": _float_conv,
    "Affine": _float_dense,
    "SumPool2d": _float_pool,
    "AvgPool2d": _float_pool,
    "Flatten": lambda name, node, ins: Node(name, "flatten", ins),
    "IF": lambda name, node, ins: Node(name, "relu", ins),       # synfab_op relu
    "Scale": lambda name, node, ins: Node(name, "add", ins),     # the export's only Scale
}


def float_network(graph, name: str) -> Network:
    """The float Network that synfab's export wrote as this graph."""
    nodes, edges = _inline(graph)
    order, sources, _ = _sorted(nodes, edges)
    alias, ir_nodes, output = {}, [], None
    for n in order:
        node = nodes[n]
        ins = [alias.get(s, s) for s in sources[n]]
        kind = _type(node)
        if kind == "Input":
            with _node_values(_where(n, node)):
                shape = _input_shape(_where(n, node), node.input_type["input"])
            ir_nodes.append(Node(n, "input", attrs=dict(shape=list(shape))))
        elif kind == "Output":
            if len(ins) != 1:
                raise NirError(f"{_where(n, node)}: has {len(ins)} inputs; supported: one")
            output = ins[0]
        elif kind == "Flatten" and _metadata(node).get("synfab_op") == VECTOR_FLATTEN:
            alias[n] = ins[0]
        elif kind in FLOAT_READERS:
            with _node_values(_where(n, node)):
                ir_nodes.append(FLOAT_READERS[kind](n, node, ins))
        else:
            raise NirError(f"{_where(n, node)}: not a node synfab's float export writes; supported: "
                           f"{', '.join(FLOAT_READERS)}")
    with _node_values(f"graph {name}"):
        return Network(ir_nodes, output=output, name=name)
