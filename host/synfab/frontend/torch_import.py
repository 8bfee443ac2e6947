"""Import a PyTorch module as a float `ir.Network` (torch is optional: imported on use).

Works for `nn.Sequential` and any module torch.fx can trace, including residual adds
(`+`, `torch.add`) and `torch.cat(..., dim=1)`.  Inference semantics: BatchNorm2d uses
its running statistics and is folded into the conv before it; Dropout and Identity
vanish.  Layer names are torch.fx node names (module paths with '.' -> '_').
"""
from __future__ import annotations

import inspect
import operator

import numpy as np

from ..errors import SynfabError
from .ir import UNSUPPORTED_HINT, Network, NetworkError, Node


def _pair(value, what: str, name: str) -> int:
    """An int from an int or an (a, a) pair (dilation, upsampling: rectangular ones are not supported)."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise NetworkError(f"layer {name!r}: rectangular {what} {tuple(value)} is not supported; "
                               f"use equal height and width")
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise NetworkError(f"layer {name!r}: {what} {value!r} is not supported; use an integer")
    return value


def _hw(value, what: str, name: str):
    """Kernel, stride or padding as the IR takes it: an int when height and width agree (so
    square layers read exactly as before), else [h, w]."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise NetworkError(f"layer {name!r}: {what} {tuple(value)} must be an int or (height, width)")
        h, w = (_pair(v, what, name) for v in value)
        return h if h == w else [h, w]
    return _pair(value, what, name)


def _bind(fn, args, kwargs) -> dict:
    """Arguments of a Python-level torch function call by parameter name, defaults filled in."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def import_torch():
    """(torch, torch.nn, torch.nn.functional), or a one-line SynfabError saying how to install torch."""
    try:
        import torch
        import torch.fx
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        raise SynfabError("importing a PyTorch module needs torch: pip install 'synfab[torch]' "
                          "(or save the network with synfab.netfile)") from None
    return torch, nn, F


class _Importer:
    def __init__(self, module, input_shape, graph_module=None):
        """Traces `module` with torch.fx, or takes an already traced `graph_module` (subclasses
        walking other graphs, e.g. synfab.frontend.torch_program's exported programs)."""
        torch, nn, F = import_torch()
        self.torch, self.nn, self.F = torch, nn, F
        try:
            self.gm = graph_module if graph_module is not None else torch.fx.symbolic_trace(module)
        except Exception as e:  # tracing errors come in many types; all mean the same to the user
            raise NetworkError(f"could not trace {type(module).__name__} with torch.fx ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); avoid data-dependent control flow "
                               f"in forward or use nn.Sequential")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.alias: dict[str, str] = {}   # fx node name -> ir node name
        self.rank: dict[str, int] = {}    # ir node name -> tensor rank in torch (4: NCHW, 2: NC)
        self.users: dict[str, int] = {}

    # -- helpers -------------------------------------------------------------------------
    def src(self, arg, name: str) -> str:
        if not isinstance(arg, self.torch.fx.Node):
            raise NetworkError(f"layer {name!r}: operand {arg!r} is a constant; only tensors computed by the "
                               f"network are supported; {UNSUPPORTED_HINT}")
        return self.alias[arg.name]

    def shape(self, ir_name: str) -> tuple[int, int, int]:
        # The IR's own shape rules (and their error messages) on the graph built so far.
        return Network(list(self.nodes), output=ir_name).nodes[ir_name].shape

    def add(self, fx_name: str, op: str, inputs: list[str], attrs=None, params=None, rank: int = 4) -> None:
        node = Node(fx_name, op, inputs, attrs or {}, params or {})
        self.nodes.append(node)
        self.by_name[fx_name] = node
        self.alias[fx_name] = fx_name
        self.rank[fx_name] = rank

    def need_rank(self, ir_name: str, rank: int, name: str, what: str) -> None:
        if self.rank[ir_name] != rank:
            hint = "flatten before it" if rank == 2 else "it must come before flatten"
            raise NetworkError(f"layer {name!r} ({what}) gets a {self.rank[ir_name]}-D tensor; {hint}")

    def unsupported(self, name: str, what: str):
        return NetworkError(f"layer {name!r} ({what}) is not supported; {UNSUPPORTED_HINT}")

    # -- layers --------------------------------------------------------------------------
    def conv(self, name: str, m, x: str) -> None:
        self.need_rank(x, 4, name, "Conv2d")
        if m.padding_mode != "zeros" or _pair(m.dilation, "dilation", name) != 1:
            raise NetworkError(f"layer {name!r}: Conv2d with padding_mode={m.padding_mode!r} / dilation "
                               f"{m.dilation} is not supported; use zero padding and dilation 1")
        k = _hw(m.kernel_size, "kernel", name)
        stride = _hw(m.stride, "stride", name)
        pad = m.padding
        if isinstance(pad, str):
            kh, kw = (k, k) if isinstance(k, int) else k
            if pad == "same" and (kh % 2 == 0 or kw % 2 == 0):
                raise NetworkError(f"layer {name!r}: padding='same' with an even kernel is asymmetric; "
                                   f"use an explicit padding")
            pad = 0 if pad == "valid" else [(kh - 1) // 2, (kw - 1) // 2]
        pad = _hw(pad, "padding", name)
        weight = m.weight.detach().cpu().double().numpy()
        bias = (m.bias.detach().cpu().double().numpy() if m.bias is not None
                else np.zeros(m.out_channels))
        self.add(name, "conv", [x], {"out_channels": m.out_channels, "kernel": k, "stride": stride,
                                     "padding": pad, "groups": m.groups}, {"weight": weight, "bias": bias})

    def batchnorm(self, name: str, m, x: str, fx_src) -> None:
        conv = self.by_name.get(x)
        if conv is None or conv.op != "conv" or x != fx_src.name or self.users[fx_src.name] != 1:
            raise NetworkError(f"layer {name!r} (BatchNorm2d) must directly follow a Conv2d whose output "
                               f"nothing else reads, so it can be folded into it; {UNSUPPORTED_HINT}")
        if m.running_mean is None:
            raise NetworkError(f"layer {name!r}: BatchNorm2d without running statistics cannot be folded; "
                               f"use track_running_stats=True")
        mean = m.running_mean.detach().cpu().double().numpy()
        var = m.running_var.detach().cpu().double().numpy()
        gamma = m.weight.detach().cpu().double().numpy() if m.affine else np.ones_like(mean)
        beta = m.bias.detach().cpu().double().numpy() if m.affine else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + m.eps)
        conv.params["weight"] = conv.params["weight"] * scale[:, None, None, None]
        conv.params["bias"] = (conv.params["bias"] - mean) * scale + beta
        self.alias[name] = x

    def linear(self, name: str, m, x: str) -> None:
        self.need_rank(x, 2, name, "Linear")
        bias = (m.bias.detach().cpu().double().numpy() if m.bias is not None
                else np.zeros(m.out_features))
        self.add(name, "dense", [x], {"out_features": m.out_features},
                 {"weight": m.weight.detach().cpu().double().numpy(), "bias": bias}, rank=2)

    def avgpool(self, name: str, x: str, kernel, stride, padding, ceil_mode, divisor_override) -> None:
        self.need_rank(x, 4, name, "AvgPool2d")
        k = _hw(kernel, "kernel", name)
        s = _hw(stride, "stride", name) if stride not in (None, ()) else k
        if _hw(padding, "padding", name) != 0 or ceil_mode or divisor_override is not None:
            raise NetworkError(f"layer {name!r}: AvgPool2d with padding, ceil_mode or divisor_override is not "
                               f"supported; use padding=0, ceil_mode=False")
        self.add(name, "avgpool", [x], {"kernel": k, "stride": s})

    def upsample(self, name: str, x: str, size, scale_factor, mode) -> None:
        self.need_rank(x, 4, name, "Upsample")
        if mode != "nearest":
            raise NetworkError(f"layer {name!r}: upsampling mode {mode!r} is not supported; use mode='nearest'")
        if scale_factor is None:
            _, h, w = self.shape(x)
            oh, ow = (size, size) if isinstance(size, int) else tuple(size)
            if oh % h or ow % w or oh // h != ow // w:
                raise NetworkError(f"layer {name!r}: upsampling {h}x{w} to {oh}x{ow} is not an equal integer "
                                   f"scale; use scale_factor=2 (or 4, 8)")
            scale_factor = oh // h
        self.add(name, "upsample", [x], {"scale": _pair(scale_factor, "scale_factor", name)})

    def flatten(self, name: str, x: str, start_dim: int, end_dim: int) -> None:
        if start_dim != 1 or end_dim != -1:
            raise NetworkError(f"layer {name!r}: flatten(start_dim={start_dim}, end_dim={end_dim}) is not "
                               f"supported; flatten from dim 1 to the end (keeping the batch)")
        if self.rank[x] == 2:
            self.alias[name] = x
            return
        self.add(name, "flatten", [x], rank=2)

    def cat(self, name: str, tensors, dim: int) -> None:
        srcs = [self.src(t, name) for t in tensors]
        rank = self.rank[srcs[0]]
        if dim not in (1, 1 - rank) or any(self.rank[s] != rank for s in srcs):
            raise NetworkError(f"layer {name!r}: torch.cat on dim {dim} is not supported; concatenate channels "
                               f"(dim=1)")
        self.add(name, "concat", srcs, rank=rank)

    def binary_add(self, name: str, a, b) -> None:
        sa, sb = self.src(a, name), self.src(b, name)
        self.add(name, "add", [sa, sb], rank=self.rank[sa])

    def relu(self, name: str, x: str) -> None:
        self.add(name, "relu", [x], rank=self.rank[x])

    # -- graph walk ----------------------------------------------------------------------
    def run(self) -> Network:
        torch = self.torch
        graph = self.gm.graph
        for node in graph.nodes:
            self.users[node.name] = len(node.users)
        output = None
        for node in graph.nodes:
            name = node.name
            if node.op == "placeholder":
                if any(n.op == "input" for n in self.nodes):
                    raise NetworkError(f"the module takes several inputs ({name!r} is another); synfab networks "
                                       f"have one input")
                # Name the input after forward's parameter when no layer already uses that name.
                taken = {n.name for n in graph.nodes}
                in_name = node.target if node.target not in taken else name
                self.add(in_name, "input", [], {"shape": self.input_shape})
                self.alias[name] = in_name
            elif node.op == "output":
                if not isinstance(node.args[0], torch.fx.Node):
                    raise NetworkError("the module returns several tensors; return one output tensor")
                output = self.src(node.args[0], "output")
            elif node.op == "call_module":
                self.module(node, self.gm.get_submodule(node.target))
            elif node.op == "call_function":
                self.function(node)
            elif node.op == "call_method":
                self.method(node)
            else:
                raise self.unsupported(name, f"{node.op} {node.target}")
        return Network(self.nodes, output=output, name=type(self.gm).__name__)

    def module(self, node, m) -> None:
        nn, name = self.nn, node.name
        x = self.src(node.args[0], name) if node.args else None
        if isinstance(m, nn.Conv2d):
            self.conv(name, m, x)
        elif isinstance(m, nn.BatchNorm2d):
            self.batchnorm(name, m, x, node.args[0])
        elif isinstance(m, nn.Linear):
            self.linear(name, m, x)
        elif type(m) is nn.ReLU:
            self.relu(name, x)
        elif isinstance(m, nn.AvgPool2d):
            self.avgpool(name, x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.divisor_override)
        elif type(m) is nn.Upsample:
            self.upsample(name, x, m.size, m.scale_factor, m.mode)
        elif isinstance(m, nn.Flatten):
            self.flatten(name, x, m.start_dim, m.end_dim)
        elif isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)):
            self.alias[name] = x
        else:
            raise self.unsupported(name, type(m).__name__)

    def function(self, node) -> None:
        F, torch, name, fn = self.F, self.torch, node.name, node.target
        args, kwargs = node.args, node.kwargs
        if fn in (operator.add, operator.iadd):
            self.binary_add(name, *args)
        elif fn is torch.add:
            if kwargs.get("alpha", 1) != 1 or len(args) > 2:
                raise NetworkError(f"layer {name!r}: torch.add with alpha is not supported; use a + b")
            self.binary_add(name, args[0], args[1] if len(args) > 1 else kwargs["other"])
        elif fn in (torch.cat, torch.concat):
            tensors = args[0] if args else kwargs["tensors"]
            self.cat(name, tensors, args[1] if len(args) > 1 else kwargs.get("dim", 0))
        elif fn in (F.relu, torch.relu):
            self.relu(name, self.src(args[0], name))
        elif fn is torch.flatten:
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            self.flatten(name, self.src(args[0], name), start, end)
        elif fn is F.interpolate:
            a = _bind(F.interpolate, args, kwargs)
            self.upsample(name, self.src(a["input"], name), a["size"], a["scale_factor"], a["mode"])
        elif fn is F.avg_pool2d:
            a = {"stride": None, "padding": 0, "ceil_mode": False, "divisor_override": None}
            a.update(zip(("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                          "divisor_override"), args))
            a.update(kwargs)
            self.avgpool(name, self.src(a["input"], name), a["kernel_size"], a["stride"], a["padding"],
                         a["ceil_mode"], a["divisor_override"])
        elif fn is F.dropout:
            self.alias[name] = self.src(args[0], name)
        else:
            raise self.unsupported(name, getattr(fn, "__name__", str(fn)))

    def method(self, node) -> None:
        name, method = node.name, node.target
        x = self.src(node.args[0], name)
        if method == "relu":
            self.relu(name, x)
        elif method == "add" and len(node.args) == 2 and not node.kwargs:
            self.binary_add(name, node.args[0], node.args[1])
        elif method == "flatten":
            rest = list(node.args[1:])
            start = rest[0] if rest else node.kwargs.get("start_dim", 0)
            end = rest[1] if len(rest) > 1 else node.kwargs.get("end_dim", -1)
            self.flatten(name, x, start, end)
        else:
            raise self.unsupported(name, f"tensor.{method}()")


def from_torch(module, input_shape) -> Network:
    """Float network of a PyTorch module for inputs of shape (C, H, W) (inference semantics)."""
    if len(tuple(input_shape)) != 3:
        raise NetworkError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    return _Importer(module, input_shape).run()
