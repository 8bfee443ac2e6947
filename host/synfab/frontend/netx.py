"""lava-dl netx networks (HDF5 `.net` files, as slayer exports them) as synfab QNetworks.

Each netx layer becomes one population computing exactly what Lava's fixed-point CPU models
compute (lava-nc 0.10, lava-dl 0.6), in pipelined timing (a layer's events reach the next one a
step later, Loihi's synaptic delay):

- ``input`` with an SDNN neuron: Lava's Delta encoder, a sigma-delta population fed by the host
  input (levels) through a 1x1 connection of weight 1 << 12: acc = x << 12, no clamp,
  theta = vThMant << 12, events carry the change >> 6.  With a LOIHI/CUBA neuron: a lif/cuba_lif
  population fed by the host input as it is every step (events: its a_in), bias 0 (netx gives
  the input block's neuron no bias: the file's input weight/bias transform is not applied by
  Lava either).  Without a neuron: a relay population (sigma-delta identity, no clamp) that
  passes the host events on one step later, as the source-to-synapse delay does in Lava.
- ``conv``, ``dense``, ``pool``: the synapses (conv weight (out, in, kH, kW), stride, padding
  in (H, W) order as PyTorch and the file store them; dense weights as Lava's Dense synapse
  turns them into its 8-bit mantissas and exponent; pool: one kernel for every channel) and
  the layer's neuron:
  SDNN: sigma_delta with acc = bias << 12 + inputs, ReLU without an upper clamp,
  theta = vThMant << 12, msg_shift 6; with sigma_output: no clamp, no threshold, no shift
  (Lava's Sigma; the host sums its events).  LOIHI/CUBA: cuba_lif (lif when iDecay = 4096)
  with du = iDecay, dv = vDecay, theta = vThMant, bias << 6 added every step, refractory
  refDelay - 1 steps, weights times 2**wgtExp.
- ``flatten``: the next dense layer reads its source in (C, H, W) order (as netx does).
- ``average`` (slayer: the mean of consecutive groups of the flattened input): a sigma-delta
  population summing each group (no clamp); its output scale is 1 / group size.

Weights beyond int8 are carried exactly: weight = w8 << wshift with the smallest wshift that
fits (lava-dl's even -256..254 are int8 weights with wshift 1); a layer whose weights cannot be
written so is refused, never rounded.  Anything else (other layer types, neuron types, fields
or values) is refused with one line naming the layer, the field and what is supported.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import arith
from . import h5check
from ..errors import SynfabError
from .ir import INT8_RANGE, NetworkError, QConnection, QLayer, QNetwork, conv_out
from ..layouts import WSHIFT_BITS, Kind

LAYER_TYPES = ("input", "conv", "dense", "flatten", "pool", "average")
NEURON_TYPES = ("SDNN", "LOIHI", "CUBA")
# Lava's fixed point: SigmaDelta scales state by 2**(spike_exp + state_exp) = 2**12 and sends
# s_out >> state_exp; LIF aligns bias (bias_exp 6) and synaptic input by 6 bits.
SDNN_STATE_SHIFT = 12
SDNN_MESSAGE_SHIFT = 6
LOIHI_BIAS_SHIFT = 6
# Layer fields read (or, for the input's transform, deliberately not applied, as in Lava).
LAYER_FIELDS = {
    "input": ("type", "shape", "neuron", "weight", "bias"),
    "conv": ("type", "shape", "neuron", "weight", "bias", "kernelSize", "stride", "padding", "dilation",
             "groups", "inChannels", "outChannels"),
    "dense": ("type", "shape", "neuron", "weight", "bias", "inFeatures", "outFeatures"),
    "pool": ("type", "shape", "neuron", "weight", "kernelSize", "stride", "padding", "dilation"),
    "flatten": ("type", "shape"),
    "average": ("type", "shape"),
}
# Neuron fields read; slayer's training-only fields (surrogate gradient, derived theta) are ignored.
NEURON_FIELDS = {
    "SDNN": ("type", "vThMant", "activation", "sigma_output", "messageBits"),
    "LOIHI": ("type", "vThMant", "iDecay", "vDecay", "refDelay", "wgtExp", "messageBits", "gradedSpike"),
}
NEURON_FIELDS["CUBA"] = NEURON_FIELDS["LOIHI"]
TRAINING_ONLY_FIELDS = ("scaleRho", "tauRho", "theta")


class NetxError(NetworkError):
    """A netx file synfab cannot run exactly; the message names layer, field and what is supported."""


# ---------------------------------------------------------------------------------------
# Reading the file
def _h5py():
    try:
        import h5py
    except ImportError:
        raise SynfabError("reading lava-dl .net files needs h5py: pip install h5py") from None
    return h5py


def is_netx_file(path) -> bool:
    """An HDF5 file (lava-dl's .net networks are HDF5)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == h5check.HDF5_MAGIC
    except OSError:
        return False


def _value(node, where: str):
    """A dataset's value: strings decoded, numbers as arrays or scalars, groups as dicts; anything else
    (compound or object data, empty strings arrays) is refused here so the importer sees only these."""
    h5py = _h5py()
    if isinstance(node, h5py.Group):
        return {k: _value(node[k], f"{where}/{k}") for k in node.keys()}
    v = node[()]
    if isinstance(v, bytes):
        return v.decode("ascii")
    if isinstance(v, np.ndarray) and v.dtype.kind == "S" and v.size:
        return v.reshape(-1)[0].decode("ascii")
    if np.asarray(v).dtype.kind not in "biuf":
        raise NetxError(f"{where}: holds {np.asarray(v).dtype} data; supported: numbers or an ASCII string")
    return v


# What h5py raises for a damaged file: KeyError and RuntimeError from HDF5's own checks, OSError,
# TypeError for a datatype numpy has no match for, RecursionError for links that loop.
H5_ERRORS = (KeyError, RuntimeError, OSError, TypeError, ValueError, UnicodeDecodeError)


def write_layers(target, layers: list[dict]):
    """Write a netx file as slayer writes it: each layer a dict of fields (`neuron`: a dict of
    neuron fields, `type`: a string); target is a path or a binary file object. The inverse of
    read_layers, for tests and the fuzzer's seed files."""
    with _h5py().File(target, "w") as f:
        for i, layer in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            for key, value in layer.items():
                if key == "neuron":
                    for nk, nv in value.items():
                        g.create_dataset(f"neuron/{nk}", data=nv.encode("ascii") if isinstance(nv, str) else nv)
                elif key == "type":
                    g.create_dataset("type", (1,), "S10", [value.encode("ascii")])
                else:
                    g.create_dataset(key, data=value)
    return target


def read_layers(path) -> list[dict]:
    """The file's layers in order, each a dict of its fields (neuron: a dict too)."""
    h5py = _h5py()
    damage = h5check.problem(path) if is_netx_file(path) else None
    if damage:
        raise NetxError(f"{path}: the HDF5 file is damaged ({damage}); export the network again with lava-dl")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise NetxError(f"{path}: not a readable netx HDF5 file ({e})") from None
    with f:
        try:
            if not isinstance(f.get("layer"), h5py.Group):
                raise NetxError(f"{path}: no 'layer' group; not a lava-dl netx network")
            keys = sorted(f["layer"].keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
            layers = [_value(f["layer"][k], f"layer {k}") for k in keys]
        except NetxError:
            raise
        except H5_ERRORS as e:
            raise NetxError(f"{path}: the HDF5 file is damaged ({_line(e)}); export the network again with "
                            "lava-dl") from None
    for k, layer in zip(keys, layers):
        if not isinstance(layer, dict):
            raise NetxError(f"{path}: layer {k} is a dataset, not a group of fields; not a lava-dl netx network")
    return layers


def _line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _show(value) -> str:
    """A field's value in one short line."""
    text = " ".join(str(np.asarray(value).tolist() if not isinstance(value, (str, dict)) else value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _label(value) -> str:
    """A type name as written in the file: quoted when a string, else in one short line."""
    return repr(value) if isinstance(value, str) or value is None else _show(value)


def _numbers(where: str, field: str, value) -> np.ndarray:
    """A numeric field as float64 (a string or a group where a number belongs is refused)."""
    if isinstance(value, (str, dict)):
        raise NetxError(f"{where}: field {field!r} = {_show(value)}; supported: numbers")
    return np.asarray(value, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Lava's arithmetic of weights
def _ints(layer: str, field: str, value) -> np.ndarray:
    a = _numbers(f"layer {layer}", field, value)
    if not np.all(a == np.round(a)) or np.any(np.abs(a) >= 2.0 ** 62):
        raise NetxError(f"layer {layer}: field {field} holds non-integer values; supported: integers "
                        f"(lava-dl exports quantized weights and biases)")
    return a.astype(np.int64)


def lava_dense_weights(w: np.ndarray, layer: str = "dense") -> np.ndarray:
    """The integer weights Lava's Dense synapse computes with: netx's optimize_weight_bits (scale to
    8-bit mantissas and a weight exponent), then the bit-accurate model's clip_weights and
    truncate_weights, then the exponent undone (exactly: the truncation keeps multiples of it).
    lava-dl's even -256..254 weights come back unchanged; an all-negative layer with -256 comes
    back as -254 (Lava's inhibitory clip and truncation).  Weights netx itself would clip (it
    warns that the layer cannot be represented) are refused, not clipped."""
    w = np.asarray(w, dtype=np.int64)
    if not w.size or not w.any():
        return w.copy()
    mx, mn = int(w.max()), int(w.min())
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        raise NetxError(f"layer {layer}: field weight spans {mn}..{mx}; Lava's netx clips such weights to "
                        f"-256..254 (the layer cannot be represented); supported: -256..254")
    if mx < 0:
        signed, scale = 0, -256 / mn                     # netx INHIBITORY
    elif mn >= 0:
        signed, scale = 0, 255 / mx                      # netx EXCITATORY
    else:
        signed, scale = 1, min(127 / mx if mx > 0 else math.inf, -128 / mn)
    scale_bits = int(math.floor(math.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    weight_bits = 8 - scale_bits - n
    if scale_bits < 0:
        raise NetxError(f"layer {layer}: field weight spans {mn}..{mx}, beyond Lava's 8-bit synapse mantissa "
                        f"(a negative weight exponent floors every sum); supported: -256..255")
    w = w << scale_bits
    # Lava's Dense model decides the sign mode again, from the scaled weights.
    mode = "exc" if w.min() >= 0 else "inh" if w.max() <= 0 else "mixed"
    t = 8 - weight_bits + int(mode == "mixed")
    if t < 0:
        raise NetxError(f"layer {layer}: field weight: Lava's Dense synapse would shift these weights by {t}; "
                        f"supported: weights of one sign or with a positive maximum")
    mag = np.clip(-w if mode == "inh" else w, -256 if mode == "mixed" else 0, 255)
    mag = (mag >> t) << t
    w = -mag if mode == "inh" else mag
    if np.any(w % (1 << scale_bits)):
        raise NetxError(f"layer {layer}: field weight: Lava's Dense synapse floors every sum of this layer by "
                        f"2**{scale_bits}; supported: weights its 8-bit mantissas hold exactly")
    return w >> scale_bits


def weight_shift(w: np.ndarray, layer: str) -> tuple[np.ndarray, int]:
    """(int8 weights, s) with w == int8 << s, s the smallest that fits; NetxError if none does."""
    w = np.asarray(w, dtype=np.int64)
    for s in range(1 << WSHIFT_BITS):
        if np.any(w % (1 << s)):
            break
        q = w >> s
        if not q.size or (q.min() >= INT8_RANGE[0] and q.max() <= INT8_RANGE[1]):
            return q.astype(np.int8), s
    raise NetxError(f"layer {layer}: field weight spans {int(w.min())}..{int(w.max())} and is not int8 times a power "
                    f"of two; supported: weights w8 * 2**s with w8 in -128..127 (e.g. lava-dl's even -256..254)")


# ---------------------------------------------------------------------------------------
# Neurons
def _check_fields(where: str, fields: dict, allowed, what: str) -> None:
    for key in fields:
        if key not in allowed and key not in TRAINING_ONLY_FIELDS:
            raise NetxError(f"{where}: field {key!r} is not supported; supported {what} fields: {', '.join(allowed)}")


def _refuse_dilation(where: str, f: dict) -> None:
    """synfab's kernels are dense: a dilated conv or pool is refused, naming the field."""
    if np.any(_numbers(where, "dilation", f.get("dilation", 1)) != 1):
        raise NetxError(f"{where}: field dilation = {np.asarray(f['dilation']).tolist()}; supported: 1")


def _int_field(where: str, fields: dict, key: str, default=None) -> int:
    if key not in fields:
        if default is None:
            raise NetxError(f"{where}: field {key!r} is missing")
        return default
    v = _numbers(where, key, fields[key]).reshape(-1)
    if v.size != 1 or v[0] != np.round(v[0]) or abs(v[0]) >= 2.0 ** 62:
        raise NetxError(f"{where}: field {key!r} = {_show(fields[key])}; supported: one integer")
    return int(v[0])


def sdnn_neuron(vth: int) -> arith.Neuron:
    """Lava's SigmaDelta / Delta in sigma-delta terms: theta vth << 12, events >> 6."""
    return arith.Neuron("sigma_delta", theta=vth << SDNN_STATE_SHIFT, msg_shift=SDNN_MESSAGE_SHIFT)


def loihi_neuron(where: str, n: dict, keep_current: bool) -> arith.Neuron:
    """Lava's LIF (bit-accurate) from the netx LOIHI/CUBA fields."""
    if _int_field(where, n, "messageBits", 0) or np.any(_numbers(where, "gradedSpike", n.get("gradedSpike", False))):
        raise NetxError(f"{where}: field 'gradedSpike'/'messageBits' asks for graded spikes; supported: binary spikes "
                        f"(messageBits 0, gradedSpike False), as Lava's LIF sends")
    ref = _int_field(where, n, "refDelay", 1)
    if ref < 1:
        raise NetxError(f"{where}: field 'refDelay' = {ref}; supported: 1 or more")
    du, dv = _int_field(where, n, "iDecay"), _int_field(where, n, "vDecay")
    try:
        if du == arith.LOIHI_DECAY_UNITY and not keep_current:
            return arith.Neuron("lif", theta=_int_field(where, n, "vThMant"), dv=dv, refractory=ref - 1)
        return arith.Neuron("cuba_lif", theta=_int_field(where, n, "vThMant"), du=du, dv=dv, refractory=ref - 1)
    except arith.NeuronError as e:
        raise NetxError(f"{where}: {e}") from None


# netx's neuron for a dense layer that has none: a current integrator that never fires.
DEFAULT_DENSE_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17, "refDelay": 1}


def _neuron(where: str, fields: dict, keep_current: bool):
    """(kind, arith.Neuron, wgtExp) of a layer's neuron; kind 'sdnn', 'sigma' or 'loihi'."""
    n = fields.get("neuron")
    if n is None and fields.get("type") == "dense":
        n = DEFAULT_DENSE_NEURON
    if not isinstance(n, dict):
        raise NetxError(f"{where}: no neuron; supported: layers with an SDNN, LOIHI or CUBA neuron (a dense "
                        f"layer without one gets netx's non-firing integrator)")
    kind = n.get("type")
    if not isinstance(kind, str) or kind not in NEURON_TYPES:
        raise NetxError(f"{where}: neuron type {_label(kind)} is not supported; supported: {', '.join(NEURON_TYPES)}")
    _check_fields(f"{where} neuron", n, NEURON_FIELDS[kind], f"{kind} neuron")
    if kind == "SDNN":
        act = n.get("activation", "relu")
        if not isinstance(act, str) or act != "relu":
            raise NetxError(f"{where}: neuron field 'activation' = {_label(act)}; supported: 'relu' (Lava's SigmaDelta "
                            f"runs ReLU whatever the file says)")
        if "sigma_output" in n:
            return "sigma", arith.Neuron(), 0
        return "sdnn", sdnn_neuron(_int_field(where, n, "vThMant")), 0
    wexp = _int_field(where, n, "wgtExp", 0)
    if wexp < 0:
        raise NetxError(f"{where}: neuron field 'wgtExp' = {wexp}; supported: 0 or more (a negative weight "
                        f"exponent would round every synaptic sum)")
    return "loihi", loihi_neuron(where, n, keep_current), wexp


def _required(where: str, fields: dict, key: str):
    if key not in fields:
        raise NetxError(f"{where}: field {key!r} is missing")
    return fields[key]


MAX_SIDE = 1 << 16       # larger sizes are damage, not networks: refused before anything is allocated


def _shape(where: str, value) -> tuple[int, int, int]:
    """A layer's shape field as (C, H, W): one to three positive integers."""
    v = _numbers(where, "shape", value).reshape(-1)
    if not 1 <= v.size <= 3 or np.any(v != np.round(v)) or np.any(v < 1) or np.any(v > MAX_SIDE):
        raise NetxError(f"{where}: field shape = {_show(value)}; supported: one to three positive sizes (C, H, W)")
    return tuple(int(x) for x in v) + (1,) * (3 - v.size)


def _population(name: str, shape, conns, kind: str, neuron: arith.Neuron, bias, weight=None,
                op: str = "") -> QLayer:
    """A QLayer with the neuron's scaling (SDNN: bias << 12, ReLU, no upper clamp; Sigma and relays:
    no clamp; LOIHI: bias << 6 every step)."""
    c = shape[0]
    if bias is not None and np.size(bias) not in (1, c):
        raise NetxError(f"{name}: field bias has {np.size(bias)} values for {c} channels")
    bias = np.zeros(c, np.int64) if bias is None else np.broadcast_to(np.asarray(bias, np.int64), (c,)).copy()
    if kind == "sdnn":
        return QLayer(name, shape, conns, bias << SDNN_STATE_SHIFT, 1, 0, 0, None, weight, op, neuron)
    if kind in ("sigma", "relay", "delta"):
        return QLayer(name, shape, conns, bias, 1, 0, None, None, weight, op, neuron)
    return QLayer(name, shape, conns, bias << LOIHI_BIAS_SHIFT, 1, 0, 0, 255, weight, op, neuron)


# ---------------------------------------------------------------------------------------
# Layers
class _Importer:
    def __init__(self, path, keep_current: bool, acc_bits: int, input_message_bits: int = 0):
        self.path, self.keep_current, self.acc_bits = str(path), keep_current, acc_bits
        self.input_message_bits = input_message_bits
        self.layers: list[QLayer] = []
        self.input_name = "input"
        self.input_shape = None
        self.input_mode = "levels"
        self.cur = None                 # name of the population the next layer reads
        self.flat = False               # a flatten is pending: the next dense reads (C, H, W)
        self.output_scale = 1.0

    def shape_of(self, name: str):
        return self.input_shape if name == self.input_name else next(l.shape for l in self.layers if l.name == name)

    def expect_shape(self, where: str, fields: dict, shape) -> tuple:
        want = _shape(where, fields.get("shape", shape))
        if want != tuple(shape):
            raise NetxError(f"{where}: field shape {list(want)} disagrees with the {list(shape)} its input and "
                            f"geometry give")
        return tuple(shape)

    def bias(self, where: str, fields: dict, kind: str):
        if "bias" not in fields:
            return None
        if kind == "sigma":
            raise NetxError(f"{where}: field 'bias' on a sigma_output layer; supported: none (Lava's Sigma has no bias)")
        return _ints(where, "bias", fields["bias"]).reshape(-1)

    # -- layer types ---------------------------------------------------------------------
    def input(self, i: int, f: dict) -> None:
        where = f"layer {i} (input)"
        shape = _shape(where, _required(where, f, "shape"))
        self.input_shape = shape
        name = f"input{i}"
        one = dict(k=1)
        if "neuron" not in f:       # Lava: the source feeds the first synapse, one step of delay
            # netx's input_message_bits 0 (its default): the synapse reads every event as a spike.
            self.input_mode = "events" if self.input_message_bits else "spikes"
            relay = QConnection(self.input_name, Kind.DW, wconst=1, **one)
            self.add(_population(name, shape, [relay], "relay", arith.Neuron(), None, op="relay"))
            return
        kind, neuron, _ = _neuron(where, f, self.keep_current)
        if kind == "sdnn":          # Lava's Delta: act = input << 12
            self.input_mode = "levels"
            conn = QConnection(self.input_name, Kind.DW, wconst=1, wshift=SDNN_STATE_SHIFT, **one)
            self.add(_population(name, shape, [conn], "delta", neuron, None, op="input"))
        elif kind == "loihi":       # the host's values are the neuron's a_in at every step
            self.input_mode = "events"
            conn = QConnection(self.input_name, Kind.DW, wconst=1, **one)
            self.add(_population(name, shape, [conn], "loihi", neuron, None, op="input"))
        else:
            raise NetxError(f"{where}: a sigma_output input neuron is not supported; supported: SDNN, LOIHI, CUBA")

    def window_input(self, where: str, f: dict) -> tuple[int, int, int]:
        """(C, H, W) of the source a kernel-window layer (conv, pool) reads; dilation refused."""
        src = self.need_source(where)
        _refuse_dilation(where, f)
        return self.shape_of(src)

    def conv(self, i: int, f: dict) -> None:
        where = f"layer {i} (conv)"
        c, h, w = self.window_input(where, f)
        weight = _ints(where, "weight", _required(where, f, "weight"))
        weight = weight.reshape(weight.shape[:4]) if weight.ndim > 4 else weight
        if weight.ndim != 4 or not weight.size:
            raise NetxError(f"{where}: field weight has shape {list(weight.shape)}; supported: (out, in, kH, kW)")
        co, ci, kh, kw = weight.shape
        groups = _int_field(where, f, "groups", 1)
        if groups == 1 and ci == c:
            conn_kind = Kind.CONV
        elif groups == c == co and ci == 1:
            conn_kind = Kind.DW
        else:
            raise NetxError(f"{where}: field groups = {groups} with weight {list(weight.shape)} on {c} channels; "
                            f"supported: groups 1 or depthwise (groups = in = out channels)")
        (sh, sw), (ph, pw) = self.pair(where, f, "stride", 1), self.pair(where, f, "padding", 0)
        shape = (co, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))
        self.weighted(i, where, f, shape, conn_kind, weight, dict(k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh,
                                                                  pad_y=ph), "conv")

    def pool(self, i: int, f: dict) -> None:
        where = f"layer {i} (pool)"
        c, h, w = self.window_input(where, f)
        kernel = _ints(where, "weight", _required(where, f, "weight"))
        kh, kw = self.pair(where, f, "kernelSize", None)
        if kh < 1 or kw < 1 or kernel.size != kh * kw:
            raise NetxError(f"{where}: field weight has {kernel.size} values for a {kh}x{kw} kernelSize")
        kernel = kernel.reshape(kh, kw)
        (sh, sw), (ph, pw) = self.pair(where, f, "stride", None, (kh, kw)), self.pair(where, f, "padding", 0)
        shape = (c, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))
        weight = np.broadcast_to(kernel, (c, 1, kh, kw)).copy()      # one kernel for every channel
        self.weighted(i, where, f, shape, Kind.DW, weight, dict(k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh,
                                                                pad_y=ph), "pool")

    def dense(self, i: int, f: dict) -> None:
        where = f"layer {i} (dense)"
        src = self.need_source(where)
        c, h, w = self.shape_of(src)
        if h * w > 1 and not self.flat:
            raise NetxError(f"{where}: reads a {c}x{h}x{w} layer without a flatten before it; supported: a flatten "
                            f"layer between conv/pool and dense layers")
        weight = _ints(where, "weight", _required(where, f, "weight"))
        out = _int_field(where, f, "outFeatures", None if "shape" not in f else int(np.prod(_shape(where, f["shape"]))))
        if out < 1 or weight.size == 0 or weight.size % out:
            raise NetxError(f"{where}: field weight has {weight.size} values, not a whole number of rows for "
                            f"{out} outputs")
        weight = weight.reshape(out, -1)
        if weight.shape[1] != c * h * w:
            raise NetxError(f"{where}: field weight has {weight.shape[1]} inputs but its source has {c * h * w}")
        weight = lava_dense_weights(weight, where)
        self.weighted(i, where, f, (out, 1, 1), Kind.DENSE, weight, {}, "dense")
        self.flat = False

    def flatten(self, i: int, f: dict) -> None:
        self.need_source(f"layer {i} (flatten)")
        self.flat = True

    def average(self, i: int, f: dict) -> None:
        where = f"layer {i} (average)"
        src = self.need_source(where)
        n_in = int(np.prod(self.shape_of(src)))
        out = int(np.prod(_shape(where, _required(where, f, "shape"))))
        if out < 1 or n_in % out:
            raise NetxError(f"{where}: field shape {_show(f['shape'])} does not divide its {n_in} "
                            f"inputs into equal groups; supported: {n_in} = groups * group size")
        group = n_in // out
        weight = np.kron(np.eye(out, dtype=np.int64), np.ones((1, group), np.int64))   # sum of each group
        layer = _population(f"average{i}", (out, 1, 1), [QConnection(src, Kind.DENSE)], "sigma", arith.Neuron(),
                            None, weight.astype(np.int8), "average")
        self.add(layer)
        self.output_scale = 1.0 / group
        self.flat = False

    # -- helpers -------------------------------------------------------------------------
    def pair(self, where: str, f: dict, key: str, default, fallback=None) -> tuple[int, int]:
        if key not in f:
            if fallback is not None:
                return fallback
            if default is None:
                raise NetxError(f"{where}: field {key!r} is missing")
            return default, default
        v = _numbers(where, key, f[key]).reshape(-1)
        if v.size == 1:
            v = np.repeat(v, 2)
        if v.size != 2 or np.any(v != np.round(v)) or np.any(np.abs(v) > MAX_SIDE):
            raise NetxError(f"{where}: field {key} = {_show(f[key])}; supported: an integer or (H, W)")
        return int(v[0]), int(v[1])

    def need_source(self, where: str) -> str:
        if self.cur is None:
            raise NetxError(f"{where}: comes before any input layer; supported: an input layer first")
        return self.cur

    def weighted(self, i: int, where: str, f: dict, shape, conn_kind, weight, geo: dict, op: str) -> None:
        kind, neuron, wexp = _neuron(where, f, self.keep_current)
        shape = self.expect_shape(where, f, shape)
        w8, s = weight_shift(weight, where)
        if s + wexp >= 1 << WSHIFT_BITS:
            raise NetxError(f"{where}: weight shift {s} + wgtExp {wexp} exceeds {(1 << WSHIFT_BITS) - 1}")
        conn = QConnection(self.cur, conn_kind, wshift=s + wexp, **geo)
        self.add(_population(f"{op}{i}", shape, [conn], kind, neuron, self.bias(where, f, kind), w8, op))

    def add(self, layer: QLayer) -> None:
        self.layers.append(layer)
        self.cur = layer.name

    def network(self, name: str, reset_interval: int) -> QNetwork:
        if not self.layers:
            raise NetxError(f"{self.path}: no layers after the input; supported: input followed by conv, pool, "
                            f"dense, flatten or average layers")
        lo, hi = self.input_range()
        return QNetwork(name, self.input_name, self.input_shape, self.layers, self.layers[-1].name,
                        output_scale=self.output_scale, input_hi=hi, input_lo=lo, pipelined=True,
                        reset_interval=reset_interval, input_mode=self.input_mode)

    def input_range(self) -> tuple[int, int]:
        """Input values that keep every state exact: x << 12 within the accumulator (Delta), a_in << 6
        within Loihi's 24-bit current (LIF input), 16-bit events otherwise."""
        first = self.layers[0]
        if first.op == "input" and first.neuron.model == "sigma_delta":
            top = 1 << (self.acc_bits - 1 - SDNN_STATE_SHIFT)
        else:
            top = 1 << 15
        return -top, top - 1


READERS = {"input": _Importer.input, "conv": _Importer.conv, "dense": _Importer.dense,
           "flatten": _Importer.flatten, "pool": _Importer.pool, "average": _Importer.average}


def load(path, keep_current: bool = False, reset_interval: int = 0, acc_bits: int = 24,
         input_message_bits: int = 0) -> QNetwork:
    """The QNetwork of a lava-dl netx file (pipelined, as Lava runs it).

    input_message_bits: netx's argument of that name: for an input layer without a neuron, 0
    (Lava's default) reads every input value as a spike of 1, more passes the values on.
    keep_current: import iDecay = 4096 layers as cuba_lif (keeping u, as Lava does) instead of
    lif (u is then this step's input alone: the same spikes and voltages, one word less).
    reset_interval: Lava's netx reset_interval (LIFReset): layer i's u, v and refractory count are
    cleared at steps t with t % reset_interval == i % reset_interval (0: never)."""
    path = Path(path)
    if not path.is_file():
        raise NetxError(f"netx file {path} not found")
    imp = _Importer(path, keep_current, acc_bits, input_message_bits)
    for i, fields in enumerate(read_layers(path)):
        kind = fields.get("type")
        if not isinstance(kind, str) or kind not in LAYER_TYPES:
            raise NetxError(f"layer {i}: type {_label(kind)} is not supported; supported: {', '.join(LAYER_TYPES)}")
        _check_fields(f"layer {i} ({kind})", fields, LAYER_FIELDS[kind], f"{kind} layer")
        if kind != "input" and imp.input_shape is None:
            raise NetxError(f"layer {i} ({kind}): comes before the input layer; supported: an input layer first")
        _read_layer(imp, i, kind, fields)
    if imp.input_shape is None:
        raise NetxError(f"{path}: no input layer; supported: an input layer first")
    return imp.network(path.stem, reset_interval)


def _read_layer(imp: _Importer, i: int, kind: str, fields: dict) -> None:
    try:
        READERS[kind](imp, i, fields)
    except NetxError:
        raise
    except (ValueError, TypeError, OverflowError, ZeroDivisionError, MemoryError) as e:
        # Field values the checks above let through but the layer arithmetic cannot use (sizes that
        # do not fit the geometry, absurd magnitudes): the file's fault, reported against the layer.
        raise NetxError(f"layer {i} ({kind}): a field's value does not fit the layer ({_line(e)}); "
                        "export the network again with lava-dl") from None


# Tables sized for netx networks on the golden model: Lava's 24-bit state and events, generous
# per-core tables (conv layers split into many parts fan out widely).
NETX_FABRIC = dict(event_bits=24, acc_bits=24, neurons_per_core=4096, weight_words_per_core=16384,
                   peg_entries_per_core=256, esu_descriptors_per_core=64, populations_per_core=16,
                   input_peg_entries=256)


def fabric(qnet: QNetwork, max_cores: int = 4096):
    """The smallest square-ish mesh of NETX_FABRIC cores that the network maps onto."""
    from ..config import FabricConfig
    from ..compiler.mapper import MappingError, map_network
    neurons = sum(int(np.prod(l.shape)) for l in qnet.layers)
    n = max(1, -(-neurons // NETX_FABRIC["neurons_per_core"]))
    last = None
    while n <= max_cores:
        mx = math.ceil(math.sqrt(n))
        cfg = FabricConfig(mesh_x=mx, mesh_y=-(-n // mx), name=f"netx-{mx}x{-(-n // mx)}", **NETX_FABRIC)
        try:
            map_network(qnet, cfg)
            return cfg
        except MappingError as e:
            last = e
            n = max(n + 1, int(n * 1.25))
    raise NetxError(f"network {qnet.name} does not map onto {max_cores} cores: {last}")
