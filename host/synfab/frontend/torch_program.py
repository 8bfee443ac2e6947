"""PyTorch files as float synfab networks: a `torch.export` program (`.pt2`,
`torch.export.save`) and a saved `nn.Module` (`.pt` / `.pth`, `torch.save(model)`).

A saved module goes through `synfab.torch_import.from_torch` (torch.fx) with the
`input_shape=(C, H, W)` the file does not record.  An exported program is already a graph of
ATen ops with its input shape: each op type has one handler in `ATEN_HANDLERS` that calls the
same layer builders as `torch_import` (so both doors accept and refuse alike), and layers are
named as torch.fx names them (module paths with '.' -> '_', e.g. Sequential's '0' -> '_0'), so
a program and the module it was exported from compile to the same bundle.

torch.load unpickles: load only module files you trust.  The class of a saved module must be
importable where it is loaded (nn.Sequential always is).
"""
from __future__ import annotations

import re
from types import SimpleNamespace

from ..errors import SynfabError
from .ir import Network, NetworkError
from .torch_import import _Importer, from_torch, import_torch
from . import first_line, is_torch_pickle, is_torch_program, register

ATEN_HANDLERS: dict = {}


def handles(*ops: str):
    """Decorator: the function handles calls of these ATen ops (by overload packet name)."""
    def add(fn):
        for op in ops:
            ATEN_HANDLERS[op] = fn
        return fn
    return add


def _fx_name(module_path: str) -> str:
    """The node name torch.fx gives a call of the module at this path ('features.0' -> 'features_0')."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", module_path)
    return f"_{name}" if name[:1].isdigit() else name


def _type_name(t) -> str:
    return (t if isinstance(t, str) else t.__qualname__).rsplit(".", 1)[-1]


class _ProgramImporter(_Importer):
    """Walks an ExportedProgram's graph; parameters and buffers come from its state dict."""

    def __init__(self, program):
        import_torch()
        self.program = program
        sig = program.graph_signature
        self.tensors = {}   # placeholder name -> parameter / buffer / constant tensor
        for table, store in ((sig.inputs_to_parameters, program.state_dict),
                             (sig.inputs_to_buffers, {**program.state_dict, **program.constants}),
                             (getattr(sig, "inputs_to_lifted_tensor_constants", {}), program.constants)):
            for placeholder, fqn in table.items():
                self.tensors[placeholder] = store[fqn]
        user_inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name not in self.tensors]
        if len(user_inputs) != 1:
            raise NetworkError(f"the program takes {len(user_inputs)} inputs; synfab networks have one")
        shape = tuple(user_inputs[0].meta["val"].shape)
        if len(shape) != 4:
            raise NetworkError(f"the program's input has shape {shape}; supported: images (N, C, H, W)")
        super().__init__(None, shape[1:], graph_module=program.graph_module)
        self.used_names: set[str] = set()
        self.node_alias: dict[str, str] = {}   # program node -> ir node holding its value
        self.made: dict[str, str] = {}         # program node -> the ir node it made (not an alias)

    # -- helpers -------------------------------------------------------------------------
    def src(self, arg, name: str) -> str:
        # Program node names and ir layer names are separate namespaces: keyed apart.
        if not isinstance(arg, self.torch.fx.Node) or arg.name not in self.node_alias:
            raise NetworkError(f"layer {name!r}: operand {arg!r} is not a tensor the network computes; "
                               f"supported: tensors computed from the input")
        return self.node_alias[arg.name]

    def tensor(self, arg, name: str, what: str):
        if arg is None:
            return None
        if getattr(arg, "name", None) not in self.tensors:
            raise NetworkError(f"node {name!r}: its {what} is computed at run time; supported: a parameter")
        return self.tensors[arg.name]

    def layer_name(self, node) -> str:
        """torch.fx's name for the node: a torch.nn leaf module's path, else the node's own name."""
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        name = re.sub(r"_\d+$", "", node.name)     # numbered below in this graph's order, as torch.fx does
        if len(stack) > 1:
            path, kind = stack[-1]
            # torch.fx's leaf modules: torch's own (they appear in the graph as one call each).
            if (kind if isinstance(kind, str) else f"{kind.__module__}.").startswith(("torch.nn.", "torch.ao.nn.")):
                name = _fx_name(path)
        base, i = name, 1
        while name in self.used_names:
            name, i = f"{base}_{i}", i + 1
        self.used_names.add(name)
        return name

    def note_result(self, node, name: str, nodes_before: int) -> None:
        """Where the value of a program node now lives, and the readers of a layer it made."""
        if len(self.nodes) > nodes_before:
            self.made[node.name] = name
            self.users[name] = len(node.users)
        if node.name not in self.node_alias and name in self.alias:
            self.node_alias[node.name] = self.alias[name]

    def network_name(self) -> str:
        for node in self.gm.graph.nodes:
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            if stack:
                return _type_name(stack[0][1])
        return "program"

    # -- graph walk ----------------------------------------------------------------------
    def run(self) -> Network:
        from torch.fx.operator_schemas import normalize_function
        graph = self.gm.graph
        output = None
        taken = {n.name for n in graph.nodes}
        for node in graph.nodes:
            if node.op == "placeholder":
                if node.name not in self.tensors:
                    in_name = node.target if node.target not in taken - {node.name} else node.name
                    self.add(in_name, "input", [], {"shape": self.input_shape})
                    self.node_alias[node.name] = in_name
                    self.used_names.add(in_name)
            elif node.op == "output":
                outs = node.args[0]
                if len(outs) != 1:
                    raise NetworkError("the program returns several tensors; return one output tensor")
                output = self.src(outs[0], "output")
            elif node.op == "call_function":
                op = getattr(getattr(node.target, "overloadpacket", None), "__name__", str(node.target))
                handler = ATEN_HANDLERS.get(op)
                if handler is None:
                    raise NetworkError(f"node {node.name!r} (aten.{op}) is not supported; supported ATen ops: "
                                       f"{', '.join(sorted(ATEN_HANDLERS))}")
                normalized = normalize_function(node.target, node.args, node.kwargs,
                                                normalize_to_only_use_kwargs=True)
                name, made = self.layer_name(node), len(self.nodes)
                handler(self, node, name, normalized.kwargs if normalized else dict(node.kwargs))
                self.note_result(node, name, made)
            else:
                raise NetworkError(f"node {node.name!r} ({node.op} {node.target}) is not supported in an "
                                   f"exported program")
        return Network(self.nodes, output=output, name=self.network_name())


# ---------------------------------------------------------------------------------------
# ATen op handlers: each builds its layer with torch_import's builders
@handles("conv2d", "convolution")
def _conv(p: _ProgramImporter, node, name: str, a: dict) -> None:
    if a.get("transposed"):
        raise NetworkError(f"node {name!r}: transposed convolution is not supported; use Upsample then Conv2d")
    weight = p.tensor(a["weight"], name, "weight")
    conv = SimpleNamespace(weight=weight, bias=p.tensor(a.get("bias"), name, "bias"), out_channels=weight.shape[0],
                           kernel_size=tuple(weight.shape[2:]), stride=tuple(a.get("stride", (1, 1))),
                           padding=a.get("padding", (0, 0)), dilation=tuple(a.get("dilation", (1, 1))),
                           groups=a.get("groups", 1), padding_mode="zeros")
    conv.padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    p.conv(name, conv, p.src(a["input"], name))


@handles("batch_norm", "_native_batch_norm_legit_no_training")
def _batch_norm(p: _ProgramImporter, node, name: str, a: dict) -> None:
    if a.get("training"):
        raise NetworkError(f"node {name!r}: BatchNorm2d in training mode; export the module in eval() mode")
    weight = p.tensor(a.get("weight"), name, "weight")
    bn = SimpleNamespace(running_mean=p.tensor(a["running_mean"], name, "running mean"),
                         running_var=p.tensor(a["running_var"], name, "running variance"),
                         weight=weight, bias=p.tensor(a.get("bias"), name, "bias"), affine=weight is not None,
                         eps=a["eps"])
    src = a["input"]
    # torch_import folds a batch norm only into the conv node it reads directly: that node's layer.
    p.batchnorm(name, bn, p.src(src, name), SimpleNamespace(name=p.made.get(src.name)))


@handles("getitem")
def _getitem(p: _ProgramImporter, node, name: str, a: dict) -> None:
    """Output 0 of a batch norm that returns (output, saved statistics...)."""
    src, index = node.args
    if index != 0 or src.name not in p.node_alias:
        raise NetworkError(f"node {name!r}: item {index} of {src.name!r} is not supported; supported: a batch "
                           f"norm's output")
    p.node_alias[node.name] = p.node_alias[src.name]


@handles("linear")
def _linear(p: _ProgramImporter, node, name: str, a: dict) -> None:
    weight = p.tensor(a["weight"], name, "weight")
    p.linear(name, SimpleNamespace(weight=weight, bias=p.tensor(a.get("bias"), name, "bias"),
                                   out_features=weight.shape[0]), p.src(a["input"], name))


@handles("relu", "relu_")
def _relu(p: _ProgramImporter, node, name: str, a: dict) -> None:
    p.relu(name, p.src(a["input"], name))


@handles("avg_pool2d")
def _avg_pool(p: _ProgramImporter, node, name: str, a: dict) -> None:
    p.avgpool(name, p.src(a["input"], name), tuple(a["kernel_size"]), tuple(a.get("stride") or ()),
              tuple(a.get("padding", (0, 0))), a.get("ceil_mode", False), a.get("divisor_override"))


@handles("upsample_nearest2d")
def _upsample(p: _ProgramImporter, node, name: str, a: dict) -> None:
    scale = a.get("scale_factors") or None
    p.upsample(name, p.src(a["input"], name), a.get("output_size"), scale and tuple(scale), "nearest")


@handles("flatten")
def _flatten(p: _ProgramImporter, node, name: str, a: dict) -> None:
    p.flatten(name, p.src(a["input"], name), a.get("start_dim", 0), a.get("end_dim", -1))


@handles("view", "reshape", "_unsafe_view")
def _view(p: _ProgramImporter, node, name: str, a: dict) -> None:
    """Only the view x.view(n, -1) of a flatten: (N, C, H, W) -> (N, C*H*W)."""
    x = p.src(a["input"], name)
    size = list(a["size"])
    if len(size) != 2 or not (size[1] == -1 or (p.rank[x] == 4 and size[1] == int(_numel(p.shape(x))))):
        raise NetworkError(f"node {name!r}: view/reshape to {size} is not supported; supported: flattening to "
                           f"(N, -1)")
    p.flatten(name, x, 1, -1)


def _numel(shape) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


@handles("cat")
def _cat(p: _ProgramImporter, node, name: str, a: dict) -> None:
    p.cat(name, a["tensors"], a.get("dim", 0))


@handles("add")
def _add(p: _ProgramImporter, node, name: str, a: dict) -> None:
    if a.get("alpha", 1) != 1:
        raise NetworkError(f"layer {name!r}: torch.add with alpha is not supported; use a + b")
    p.binary_add(name, a["input"], a["other"])


@handles("dropout", "clone", "contiguous", "alias", "detach")
def _identity(p: _ProgramImporter, node, name: str, a: dict) -> None:
    p.node_alias[node.name] = p.src(a["input"], name)


# ---------------------------------------------------------------------------------------
def from_program(program) -> Network:
    """Float network of a `torch.export.ExportedProgram`."""
    return _ProgramImporter(program).run()


@register("torch.export program", (".pt2",), requires=("torch",), extra="torch", sniff=is_torch_program)
def load_program(path):
    torch, _, _ = import_torch()
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # torch raises many kinds for a file that is not an exported program
        raise SynfabError(f"{path} is not a readable torch.export program ({first_line(e)})") from None
    return from_program(program)


@register("saved nn.Module", (".pt", ".pth"), options=("input_shape",), requires=("torch",), extra="torch",
          sniff=is_torch_pickle)
def load_module(path, input_shape=None):
    if input_shape is None:
        raise SynfabError(f"{path} holds a saved nn.Module, which does not record its input shape: pass "
                          f"input_shape=(C, H, W) (command line: --input-shape C,H,W)")
    torch, nn, _ = import_torch()
    try:
        # A whole module is a pickle of its class: weights_only=False is what loading one takes.
        module = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:  # unpickling raises many kinds
        raise SynfabError(f"{path} is not a loadable torch.save file ({first_line(e)}); its module class must "
                          f"be importable") from None
    if not isinstance(module, nn.Module):
        raise SynfabError(f"{path} holds a {type(module).__name__}, not an nn.Module: save the model itself "
                          f"(torch.save(model)) or export it (torch.export.save)")
    return from_torch(module.eval(), input_shape)
