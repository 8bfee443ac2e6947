"""Plain network files for users without torch: a JSON graph plus a sibling .npz of arrays.

`net.json` holds the graph; `net.npz` (same stem, same folder) holds the parameters under
"<layer>/<param>" keys.  The JSON records "kind": "float" (an `ir.Network`) or "quantized"
(an `ir.QNetwork`).  A float network without parameters (shape only) has no .npz and
"params": null.

Float:     {"format": "synfab-network", "version": 1, "kind": "float", "name", "output",
            "params": "net.npz" | null, "nodes": [{"name", "op", "inputs", "attrs"}]}
Quantized: {..., "kind": "quantized", "name", "input_name", "input_shape", "input_scale",
            "output_scale", "input_hi", "output", "params": "net.npz",
            "layers": [{"name", "op", "shape", "mult", "shift", "lo", "hi",
                        "inputs": [{"src", "kind", "k", "stride", "pad", "up", "chan_off", "wconst"}]}]}
Written only when they differ from their defaults (files of today's networks do not change):
network "pipelined", "reset_interval", "input_mode", "input_lo"; layer "neuron" (arith.Neuron:
{"model", ...non-default fields}); connection "k_y", "stride_y", "pad_y", "wshift".  A null lo
or hi is an open activation bound.
"""
from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..arith import Neuron, NeuronError
from .ir import OPS, Network, NetworkError, Node, QConnection, QLayer, QNetwork
from ..layouts import Kind

FORMAT = "synfab-network"
VERSION = 1
# Parameters each float op carries (weight required, bias optional: zeros when absent).
FLOAT_PARAMS = {"conv": ("weight", "bias"), "dense": ("weight", "bias")}
REQUIRED_ATTRS = {"input": ("shape",), "conv": ("out_channels", "kernel"), "dense": ("out_features",),
                  "sumpool": ("kernel",), "avgpool": ("kernel",), "upsample": ("scale",)}


def _npz_path(path: Path) -> Path:
    return path.with_suffix(".npz")


def _write(path, doc: dict, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    if arrays:
        doc["params"] = _npz_path(path).name
        np.savez(_npz_path(path), **arrays)
    else:
        doc["params"] = None
    path.write_text(json.dumps(doc, indent=1))


def _read(path, kind: str) -> tuple[dict, dict[str, np.ndarray] | None]:
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"network file {path} not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: json's parser recurses once per nesting level of [ and {.
        raise NetworkError(f"network file {path} is not valid JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise NetworkError(f"{path} is not a synfab network file (expected \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise NetworkError(f"{path}: network file version {_short(doc.get('version'))} is not supported "
                           f"(this synfab reads version {VERSION})")
    if doc.get("kind") != kind:
        other = {"float": "synfab.netfile.load_q", "quantized": "synfab.netfile.load"}
        raise NetworkError(f"{path} holds a {doc.get('kind')!r} network, not a {kind!r} one; "
                           f"read it with {other.get(kind, 'load or load_q')}")
    if doc.get("params") is None:
        return doc, None
    if not isinstance(doc["params"], str):
        raise NetworkError(f"{path}: \"params\" must name the .npz file beside it (a string) or be null, "
                           f"not {doc['params']!r}")
    npz = path.parent / doc["params"]
    if not npz.is_file():
        raise NetworkError(f"parameter file {_printable(npz)} (named by {path}) not found; keep it beside the "
                           "JSON file")
    try:
        with np.load(npz, allow_pickle=False) as z:
            return doc, {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        # NotImplementedError: zipfile's answer to a damaged version or compression field;
        # RuntimeError: to a member whose flags say it is encrypted.
        raise NetworkError(f"parameter file {_printable(npz)} is not a valid .npz archive: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _printable(path) -> str:
    """A file name from the JSON as written, or quoted when it holds line breaks or other controls."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _field(obj: dict, key: str, where: str, kind: type | tuple | None = None):
    """obj[key], of JSON type `kind` when given (a hand-edited file may hold anything)."""
    if not isinstance(obj, dict):
        raise NetworkError(f"{where}: expected a JSON object of fields, got {_short(obj)}")
    if key not in obj:
        raise NetworkError(f"{where}: missing field {key!r}")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise NetworkError(f"{where}: field {key!r} must be a JSON {_JSON_NAMES.get(names, names)}, "
                           f"got {_short(value)}")
    return value


_JSON_NAMES = {"list": "array", "dict": "object", "str": "string", "int": "integer"}


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@contextlib.contextmanager
def _values_of(where: str):
    """Field values of the wrong type or range (a string for a kernel size, a list for a name) fail
    deep in shape inference as TypeError or ValueError; report them against the file."""
    try:
        yield
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, NetworkError):
            raise
        raise NetworkError(f"{where}: a field has a value of the wrong type or range "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                           "write the file with synfab.netfile.save") from None


def _json_attrs(attrs: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


# ---------------------------------------------------------------------------------------
def save(net: Network, path) -> None:
    """Write a float network as `path` (JSON) and, if it has parameters, `path` with .npz."""
    nodes, arrays = [], {}
    for n in net:
        nodes.append({"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": _json_attrs(n.attrs)})
        for key, value in n.params.items():
            arrays[f"{n.name}/{key}"] = np.asarray(value)
    _write(path, {"format": FORMAT, "version": VERSION, "kind": "float", "name": net.name,
                  "output": net.output, "nodes": nodes}, arrays)


def load(path) -> Network:
    """Read a float network written by `save` (or by hand)."""
    doc, arrays = _read(path, "float")
    nodes = []
    for i, nd in enumerate(_field(doc, "nodes", str(path), list)):
        where = f"{path}: node {i}"
        name = _field(nd, "name", where, str)
        op = _field(nd, "op", where, str)
        if op not in OPS:
            raise NetworkError(f"{path}: layer {name!r} has unknown op {op!r}; supported ops: {', '.join(OPS)}")
        attrs = _field(nd, "attrs", where, dict) if "attrs" in nd else {}
        inputs = _field(nd, "inputs", where, list) if "inputs" in nd else []
        if not all(isinstance(s, str) for s in inputs):
            raise NetworkError(f"{where}: field 'inputs' must list layer names (strings), got {_short(inputs)}")
        missing = [a for a in REQUIRED_ATTRS.get(op, ()) if a not in attrs]
        if missing:
            raise NetworkError(f"{path}: layer {name!r} ({op}) lacks attribute(s) {', '.join(missing)}")
        params = {}
        if arrays is not None:
            for key in FLOAT_PARAMS.get(op, ()):
                if f"{name}/{key}" in arrays:
                    params[key] = arrays[f"{name}/{key}"].astype(np.float64)
                elif key == "weight":
                    raise NetworkError(f"{path}: layer {name!r} ({op}) has no {key!r} in {_printable(doc['params'])}")
        nodes.append(Node(name, op, list(inputs), attrs, params))
    if not nodes:
        raise NetworkError(f"{path}: the network has no nodes")
    output = doc.get("output")
    if output is not None and not isinstance(output, str):
        raise NetworkError(f"{path}: field 'output' must name a layer (a string), got {_short(output)}")
    with _values_of(str(path)):
        net = Network(nodes, output=output, name=str(doc.get("name", Path(path).stem)))
    for n in net:
        bias = n.params.get("bias")
        if bias is not None and bias.shape != (n.shape[0],):
            raise NetworkError(f"{path}: layer {n.name!r} bias has shape {bias.shape}, expected ({n.shape[0]},)")
    if net.output not in net.nodes:
        raise NetworkError(f"{path}: output {net.output!r} is not a layer of the network")
    return net


# ---------------------------------------------------------------------------------------
# Optional fields and their defaults: written only when a network uses them.
_NETWORK_OPTIONS = {"pipelined": False, "reset_interval": 0, "input_mode": "levels", "input_lo": 0}
_CONNECTION_OPTIONS = {"k_y": None, "stride_y": None, "pad_y": None, "wshift": 0}


def _options(obj, defaults: dict) -> dict:
    return {k: getattr(obj, k) for k, default in defaults.items() if getattr(obj, k) != default}


def save_q(qnet: QNetwork, path) -> None:
    """Write a quantized network as `path` (JSON) + `path` with .npz (int biases and weights)."""
    layers, arrays = [], {}
    for layer in qnet.layers:
        conns = [{"src": c.src, "kind": c.kind.name, "k": c.k, "stride": c.stride, "pad": c.pad, "up": c.up,
                  "chan_off": c.chan_off, "wconst": c.wconst, **_options(c, _CONNECTION_OPTIONS)}
                 for c in layer.inputs]
        entry = {"name": layer.name, "op": layer.op, "shape": list(layer.shape), "mult": layer.mult,
                 "shift": layer.shift, "lo": layer.lo, "hi": layer.hi, "inputs": conns}
        if not layer.neuron.is_default:
            entry["neuron"] = layer.neuron.to_dict()
        layers.append(entry)
        arrays[f"{layer.name}/bias"] = np.asarray(layer.bias, dtype=np.int64)
        if layer.weight is not None:
            arrays[f"{layer.name}/weight"] = np.asarray(layer.weight, dtype=np.int8)
    _write(path, {"format": FORMAT, "version": VERSION, "kind": "quantized", "name": qnet.name,
                  "input_name": qnet.input_name, "input_shape": list(qnet.input_shape),
                  "input_scale": qnet.input_scale, "output_scale": qnet.output_scale,
                  "input_hi": qnet.input_hi, "output": qnet.output, **_options(qnet, _NETWORK_OPTIONS),
                  "layers": layers}, arrays)


def _weight_shape(layer: QLayer, shapes: dict[str, tuple]) -> tuple | None:
    """Shape of the int8 weight the layer's stored-weight connections need (None: no such connection)."""
    stored = [c for c in layer.inputs if c.wconst is None]
    if not stored:
        return None
    co = layer.shape[0]
    total = max(c.chan_off + shapes[c.src][0] for c in stored)
    kh, kw = stored[0].kh, stored[0].kw
    if stored[0].kind == Kind.CONV:
        return (co, total, kh, kw)
    if stored[0].kind == Kind.DW:
        return (co, 1, kh, kw)
    _, h, w = shapes[stored[0].src]
    return (co, total * h * w)


def load_q(path) -> QNetwork:
    """Read a quantized network written by `save_q`."""
    doc, arrays = _read(path, "quantized")
    arrays = arrays or {}
    input_name = _field(doc, "input_name", str(path), str)
    shapes = {input_name: tuple(_field(doc, "input_shape", str(path), list))}
    layers = []
    for i, ld in enumerate(_field(doc, "layers", str(path), list)):
        name = _field(ld, "name", f"{path}: layer {i}", str)
        where = f"{path}: layer {name!r}"
        with _values_of(where):
            layers.append(_q_layer(ld, name, where, shapes, arrays))
        shapes[name] = layers[-1].shape
    output = _field(doc, "output", str(path), str)
    if output not in shapes or output == input_name:
        raise NetworkError(f"{path}: output {output!r} is not a layer of the network")
    with _values_of(str(path)):
        return QNetwork(str(doc.get("name", Path(path).stem)), input_name, shapes[input_name], layers, output,
                        input_scale=float(doc.get("input_scale", 1.0)),
                        output_scale=float(doc.get("output_scale", 1.0)), input_hi=int(doc.get("input_hi", 255)),
                        **{k: doc.get(k, default) for k, default in _NETWORK_OPTIONS.items()})


def _q_layer(ld: dict, name: str, where: str, shapes: dict, arrays: dict) -> QLayer:
    """One layer of a quantized network file."""
    conns = []
    for cd in _field(ld, "inputs", where, list):
        kind = _field(cd, "kind", where, str)
        if kind not in Kind.__members__ or kind == "HOST":
            raise NetworkError(f"{where}: unknown connection kind {kind!r}; supported: CONV, DW, DENSE")
        src = _field(cd, "src", where, str)
        if src not in shapes:
            raise NetworkError(f"{where}: input {src!r} is not defined before it")
        conns.append(QConnection(src, Kind[kind], k=cd.get("k", 1), stride=cd.get("stride", 1),
                                 pad=cd.get("pad", 0), up=cd.get("up", 1), chan_off=cd.get("chan_off", 0),
                                 wconst=cd.get("wconst"),
                                 **{k: cd.get(k, default) for k, default in _CONNECTION_OPTIONS.items()}))
    shape = tuple(_field(ld, "shape", where, list))
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
        raise NetworkError(f"{where}: field 'shape' must be (C, H, W), three positive integers, got {_short(shape)}")
    bias = arrays.get(f"{name}/bias")
    if bias is None or bias.shape != (shape[0],):
        raise NetworkError(f"{where}: bias missing or not of shape ({shape[0]},) in the .npz file")
    try:
        neuron = Neuron.from_dict(ld.get("neuron", {}))
    except (NeuronError, TypeError) as e:
        raise NetworkError(f"{where}: neuron {ld.get('neuron')!r}: {e}") from None
    layer = QLayer(name, shape, conns, bias.astype(np.int64), mult=_field(ld, "mult", where),
                   shift=_field(ld, "shift", where), lo=_field(ld, "lo", where), hi=_field(ld, "hi", where),
                   op=ld.get("op", ""), neuron=neuron)
    want = _weight_shape(layer, shapes)
    weight = arrays.get(f"{name}/weight")
    if want is not None:
        if weight is None or weight.shape != want:
            got = "missing" if weight is None else f"of shape {weight.shape}"
            raise NetworkError(f"{where}: weight {got}, expected int8 of shape {want} in the .npz file")
        layer.weight = weight.astype(np.int8)
    return layer
