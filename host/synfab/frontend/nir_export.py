"""synfab networks as NIR graphs (`.nir`), for sinabs, snnTorch, Norse and NIR's other readers.

`export(net, path)` writes a float `Network` or a quantized `QNetwork`; `graph(net)` returns the
nir.NIRGraph without writing it.

A QNetwork is written in its integer units (weights w8 * 2**wshift, thresholds theta, one input
unit = 1; the graph's metadata keeps input_scale and input_mode), one time step = `dt`:
- each connection is one weight node: Conv2d (a depthwise one with groups = channels, a
  constant-weight pooling as SumPool2d), or Flatten + Affine for a dense one; several
  connections into one layer all feed its neuron node (NIR sums a node's inputs).
- if -> IF (r = 1 / dt: v += input every step); the layer's bias is the weight node's bias.
  NIR's IF fires when v > threshold; fire_gt, the reset, multi-spike and v_min go to the node's
  metadata (which synfab's importer reads back).
- lif / cuba_lif -> LIF / CubaLIF with tau = dt * 4096 / decay and r, w_in of gain 1 (as
  snnTorch writes them); the bias (Loihi's v units) becomes v_leak.  One that never fires (netx's
  integrator, NIR's readouts) -> LI / CubaLI (CubaLIF without a threshold where nir has no CubaLI).
- sigma_delta: a relay (no clamp, mult 1, shift 0: what synfab's NIR import makes of a weight node
  that feeds no neurons) is written as its weight nodes alone.  Other sigma-delta layers have no
  NIR equivalent: they are written as IF neurons of threshold one activation step (the
  rate-coded ReLU that sinabs converts to), with synfab's parameters in the metadata.
A float Network is written with float weights; ReLU becomes IF of threshold 1 (the rate-coded
ReLU, as sinabs.from_model converts it), metadata {"synfab_op": "relu"}, and `synfab.frontend.nir.load`
reads such a graph back as the float Network.  Anything NIR cannot express (upsampling,
concatenation) is refused in one line naming the layer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import arith
from .ir import Network, Node, QConnection, QLayer, QNetwork, pair
from ..layouts import Kind
from ..model.reference import _unshifted_weight
from .nir import DEFAULT_DT, FLOAT_KIND, VECTOR_FLATTEN, NirError, _nir

RELU_THRESHOLD = 1.0                # sinabs.from_model's spike threshold for a ReLU


def export(net, path, dt: float = DEFAULT_DT) -> None:
    """Write a float Network or a QNetwork as a NIR file."""
    _nir().write(Path(path), graph(net, dt))


def graph(net, dt: float = DEFAULT_DT):
    """The nir.NIRGraph of a float Network or a QNetwork."""
    if isinstance(net, QNetwork):
        return _QExporter(net, dt).graph()
    if isinstance(net, Network):
        return _float_graph(net)
    raise NirError(f"cannot export a {type(net).__name__}; supported: synfab Network or QNetwork")


def _f(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _flatten(nir, shape, metadata=None) -> object:
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1, metadata=metadata or {})


# ---------------------------------------------------------------------------------------
# Quantized networks
def is_relay(layer: QLayer) -> bool:
    """A sigma-delta layer that sends the step's weighted input as it is (a linear node)."""
    return (layer.neuron.is_default and layer.lo is None and layer.hi is None and layer.mult == 1
            and layer.shift == 0 and not np.any(layer.bias))


def _neuron_shape(layer: QLayer) -> tuple:
    """The shape NIR gives the layer's neurons: (C,) after an Affine, else (C, H, W)."""
    if any(c.kind == Kind.DENSE for c in layer.inputs):
        return (layer.shape[0],)
    return layer.shape


class _QExporter:
    def __init__(self, qnet: QNetwork, dt: float):
        self.nir, self.qnet, self.dt = _nir(), qnet, dt
        self.nodes: dict = {}
        self.edges: list = []
        self.ends: dict[str, list[str]] = {}    # population -> the nodes whose outputs are its events

    def graph(self):
        q = self.qnet
        self.nodes[q.input_name] = self.nir.Input(input_type={"input": np.array(q.input_shape)})
        self.ends[q.input_name] = [q.input_name]
        for layer in q.layers:
            self.layer(layer)
        out = "output"
        while out in self.nodes:
            out = "_" + out
        shape = np.array(_neuron_shape(q.layer(q.output)))
        self.nodes[out] = self.nir.Output(output_type={"output": shape})
        self.edges += [(e, out) for e in self.ends[q.output]]
        meta = dict(name=q.name, input_scale=q.input_scale, input_mode=q.input_mode)
        return self.nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=meta)

    def layer(self, layer: QLayer) -> None:
        synapses = [self.connection(layer, i, conn) for i, conn in enumerate(layer.inputs)]
        if is_relay(layer):
            self.ends[layer.name] = synapses
            return
        self.nodes[layer.name] = self.neuron(layer)
        self.edges += [(s, layer.name) for s in synapses]
        self.ends[layer.name] = [layer.name]

    def connection(self, layer: QLayer, i: int, conn: QConnection) -> str:
        """The weight node of one connection (with the layer's per-step bias on the first)."""
        where = f"layer {layer.name!r}"
        if conn.up != 1:
            raise NirError(f"{where}: upsampling (zero insertion by {conn.up}) has no NIR node; supported: conv, "
                           f"depthwise, pooling and dense connections")
        src_shape = self.qnet.shape_of(conn.src)
        weight = _f(_unshifted_weight(layer, conn, src_shape)) * (1 << conn.wshift)
        bias = self.step_bias(layer) if i == 0 else np.zeros(layer.shape[0])
        name = f"{layer.name}_syn{i}" if len(layer.inputs) > 1 or not is_relay(layer) else layer.name
        srcs = self.ends[conn.src]
        if conn.kind == Kind.DENSE:
            if len(src_shape) == 3:
                self.nodes[f"{name}_flat"] = _flatten(self.nir, src_shape)
                self.edges += [(s, f"{name}_flat") for s in srcs]
                srcs = [f"{name}_flat"]
            self.nodes[name] = self.nir.Affine(weight=weight, bias=bias)
        else:
            self.nodes[name] = self.window(layer, conn, weight, bias, src_shape)
        self.edges += [(s, name) for s in srcs]
        return name

    def window(self, layer: QLayer, conn: QConnection, weight, bias, src_shape):
        """Conv2d of a CONV or DW connection (a DW one placed into the layer's channels), or a
        SumPool2d of a pooling one."""
        geo = dict(stride=np.array([conn.sh, conn.sw]), padding=np.array([conn.ph, conn.pw]))
        co = layer.shape[0]
        c_src = src_shape[0]
        if conn.kind == Kind.DW:
            if conn.wconst == 1 and c_src == co and not np.any(bias):
                return self.nir.SumPool2d(kernel_size=np.array([conn.kh, conn.kw]), **geo)
            if c_src == co and conn.chan_off == 0:
                return self.nir.Conv2d(input_shape=np.array(src_shape[1:]), weight=weight, dilation=np.array([1, 1]),
                                       groups=co, bias=bias, **geo)
            full = np.zeros((co, c_src, conn.kh, conn.kw))     # into channels chan_off.. of the layer
            full[conn.chan_off + np.arange(c_src), np.arange(c_src)] = weight[:, 0]
            weight = full
        return self.nir.Conv2d(input_shape=np.array(src_shape[1:]), weight=weight, dilation=np.array([1, 1]),
                               groups=1, bias=bias, **geo)

    def step_bias(self, layer: QLayer) -> np.ndarray:
        """The bias as a current added every step: an if layer's bias (the others' go to v_leak)."""
        n = layer.neuron
        if n.model == "if":
            return _f(layer.bias)
        if n.model == "sigma_delta" and np.any(layer.bias):
            # The sigma-delta accumulator starts at the bias: as a rate-coded ReLU it is a current every step.
            return _f(layer.bias)
        return np.zeros(layer.shape[0])

    def neuron(self, layer: QLayer):
        n, shape = layer.neuron, _neuron_shape(layer)
        full = lambda v: np.full(shape, float(v))               # noqa: E731 (NIR stores one value per neuron)
        nir = self.nir
        if n.model == "sigma_delta":
            step = 2.0 ** layer.shift / layer.mult               # one activation step in accumulator units
            # The rate-coded ReLU as sinabs runs it: as many spikes as fit, reset by subtraction.
            meta = dict(synfab_neuron="sigma_delta", mult=layer.mult, shift=layer.shift,
                        lo=json.dumps(layer.lo), hi=json.dumps(layer.hi), theta=n.theta, msg_shift=n.msg_shift,
                        fire_at_threshold=True, multi_spike=True, reset="subtract")
            return nir.IF(r=full(1 / self.dt), v_threshold=full(step), metadata=meta)
        if n.model == "if":
            meta = dict(fire_at_threshold=not n.fire_gt, multi_spike=n.multi_spike,
                        reset="subtract" if n.reset_to is None else "v_reset")
            kw = {}
            if n.reset_to is not None:
                meta["v_reset"] = float(n.reset_to)
                if "v_reset" in nir.IF.__dataclass_fields__:
                    kw["v_reset"] = full(n.reset_to)
            if n.v_min is not None:
                meta["v_min"] = float(n.v_min)
            return nir.IF(r=full(1 / self.dt), v_threshold=full(n.theta), metadata=meta, **kw)
        return self.loihi(layer)

    def loihi(self, layer: QLayer):
        """LIF / CubaLIF (LI / CubaLI when it never fires) of gain 1, v in accumulator units."""
        n, shape, nir, where = layer.neuron, _neuron_shape(layer), self.nir, f"layer {layer.name!r}"
        full = lambda v: np.full(shape, float(v))               # noqa: E731
        if n.dv == 0:
            raise NirError(f"{where}: a {n.model} neuron without voltage decay (dv 0) has no NIR time constant; "
                           f"supported: dv 1 .. {arith.LOIHI_DECAY_UNITY}")
        tau_mem = self.dt * arith.LOIHI_DECAY_UNITY / n.dv
        bias = _f(layer.bias) / (1 << arith.LOIHI_ACT_SHIFT)   # Loihi's v is the input << 6
        v_leak = np.broadcast_to(bias[:, None, None], layer.shape).reshape(shape) * tau_mem / self.dt
        fires = n.theta < arith.LOIHI_VTH_MAX
        meta = dict(reset="v_reset", refractory=n.refractory)
        common = dict(r=full(tau_mem / self.dt), v_leak=np.array(v_leak, dtype=np.float64), metadata=meta)
        if n.model == "lif":
            if fires:
                return nir.LIF(tau=full(tau_mem), v_threshold=full(n.theta), **common)
            return nir.LI(tau=full(tau_mem), **common)
        if n.du == 0:
            raise NirError(f"{where}: a cuba_lif neuron without current decay (du 0) has no NIR time constant; "
                           f"supported: du 1 .. {arith.LOIHI_DECAY_UNITY}")
        tau_syn = self.dt * arith.LOIHI_DECAY_UNITY / n.du
        cuba = dict(tau_syn=full(tau_syn), tau_mem=full(tau_mem), w_in=full(tau_syn / self.dt), **common)
        if not fires and hasattr(nir, "CubaLI"):
            return nir.CubaLI(**cuba)
        return nir.CubaLIF(v_threshold=full(n.theta if fires else np.inf), **cuba)


# ---------------------------------------------------------------------------------------
# Float networks
def _float_node(nir, net: Network, node: Node):
    """The NIR node of one float layer."""
    a, where = node.attrs, f"layer {node.name!r} ({node.op})"
    src_shape = net.nodes[node.inputs[0]].shape if node.inputs else None
    if node.op == "conv":
        co = a["out_channels"]
        bias = node.params.get("bias")
        return nir.Conv2d(input_shape=np.array(src_shape[1:]), weight=_f(node.params["weight"]),
                          stride=np.array(pair(a.get("stride", 1))), padding=np.array(pair(a.get("padding", 0))),
                          dilation=np.array([1, 1]), groups=int(a.get("groups", 1)),
                          bias=np.zeros(co) if bias is None else _f(bias))
    if node.op == "dense":
        bias = node.params.get("bias")
        weight = _f(node.params["weight"])
        return nir.Affine(weight=weight, bias=np.zeros(weight.shape[0]) if bias is None else _f(bias))
    if node.op in ("sumpool", "avgpool"):
        kind = nir.SumPool2d if node.op == "sumpool" else nir.AvgPool2d
        return kind(kernel_size=np.array(pair(a["kernel"])), stride=np.array(pair(a.get("stride") or a["kernel"])),
                    padding=np.array(pair(a.get("padding", 0))))
    if node.op == "flatten":
        return _flatten(nir, src_shape)
    if node.op == "relu":
        return nir.IF(r=np.ones(node.shape), v_threshold=np.full(node.shape, RELU_THRESHOLD),
                      metadata=dict(synfab_op="relu"))
    if node.op == "add":                       # NIR sums a node's inputs: an identity node does the add
        return nir.Scale(scale=np.ones(node.shape))          # (nir 1.0.4's Scale has no metadata)
    raise NirError(f"{where}: has no NIR node; supported: conv, dense, sumpool, avgpool, flatten, relu, add")


def _float_graph(net: Network):
    nir = _nir()
    nodes, edges = {}, []
    for node in net:
        if node.op == "input":
            nodes[node.name] = nir.Input(input_type={"input": np.array(node.shape)})
            continue
        nodes[node.name] = _float_node(nir, net, node)
        if node.op == "dense" and net.nodes[node.inputs[0]].shape[1:] == (1, 1) \
                and net.nodes[node.inputs[0]].op != "flatten":
            flat = f"{node.name}_flat"          # an Affine reads a vector: flatten (C, 1, 1) first
            nodes[flat] = _flatten(nir, net.nodes[node.inputs[0]].shape, dict(synfab_op=VECTOR_FLATTEN))
            edges += [(node.inputs[0], flat), (flat, node.name)]
            continue
        edges += [(i, node.name) for i in node.inputs]
    out = "output"
    while out in nodes:
        out = "_" + out
    nodes[out] = nir.Output(output_type={"output": np.array(net.nodes[net.output].shape)})
    edges.append((net.output, out))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(synfab_kind=FLOAT_KIND, name=net.name))
