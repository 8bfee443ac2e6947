"""Migen's simulator, faster: the design's statements compiled to Python once per simulation run.

Migen's simulator interprets the design's statement trees every clock: each comb pass walks every
comb statement again, dispatching on node types and asking `len()` of slices, Cats and If
conditions (each answer walks the expression tree again). A core's test spent four milliseconds a
clock there. Here the fragment's comb list and each clock domain's sync list become one Python
function each, generated from the same trees: the same operations on the same Python integers, in
the same order, reading the committed values and writing the pending ones exactly as
`migen.sim.core.Evaluator` does, so a simulation is the same clock for clock. Anything unusual
(Display, a slice of a memory word as a target, ...) is handed back to the Evaluator node by node,
so nothing is approximated.

What stays Migen's: the testbench generators (their `yield` requests go to the Evaluator), the
clocks, the commit of pending values, and simulations that write a VCD file (they run as before).

    install()     # once per process (tests/conftest.py)

Also here: an expression's width worked out once per run (`value_bits_sign`), for what the
Evaluator still interprets.
"""
from __future__ import annotations

import functools
import itertools

from migen.fhdl.bitcontainer import value_bits_sign
from migen.fhdl.structure import (Case, Cat, ClockSignal, Constant, If, Replicate, ResetSignal, Signal, _ArrayProxy,
                                  _Assign, _Operator, _Part, _Slice)

_INSTALLED = False

# Python's parser nests at most 200 parentheses and 100 indents: deeper trees go through temporaries
# (expressions) or the Evaluator (statements).
MAX_EXPRESSION_DEPTH = 48
MAX_STATEMENT_DEPTH = 60
# Migen's binary operators as Python's (the Evaluator's own mapping; "m", "~" and unary "-" apart).
PYTHON_OPERATORS = {"+": "+", "-": "-", "*": "*", ">>>": ">>", "<<<": "<<", "&": "&", "^": "^", "|": "|",
                    "<": "<", "<=": "<=", "==": "==", "!=": "!=", ">": ">", ">=": ">="}


class _Compiler:
    """One generated function for one statement list; `known` collects the signals it reads, whose
    unset values are filled with their reset values before it runs (the Evaluator's own rule)."""

    def __init__(self, clock_domains):
        self.clock_domains = clock_domains
        self.names: dict[str, object] = {}      # constants of the generated code (nodes, duid tuples)
        self.signals: dict[int, object] = {}
        self.lines: list[str] = []
        self.temps = itertools.count()

    # -- naming --
    def _bind(self, prefix: str, obj) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = obj
        return name

    def _temp(self) -> str:
        return f"t{next(self.temps)}"

    def _emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def _signal(self, sig) -> int:
        self.signals[sig.duid] = sig
        return sig.duid

    # -- expressions: (python source, nesting depth); reads are of committed values --
    def expr(self, node, indent: int) -> str:
        code, depth = self._expr(node, indent)
        return code

    def _hoisted(self, code: str, depth: int, indent: int) -> tuple[str, int]:
        if depth < MAX_EXPRESSION_DEPTH:
            return code, depth
        t = self._temp()
        self._emit(indent, f"{t} = {code}")
        return t, 1

    def _expr(self, node, indent: int) -> tuple[str, int]:
        if isinstance(node, Constant):
            return repr(node.value), 1
        if isinstance(node, Signal):
            return f"sv[{self._signal(node)}]", 1
        if isinstance(node, ClockSignal):
            return self._expr(self.clock_domains[node.cd].clk, indent)
        if isinstance(node, ResetSignal):
            rst = self.clock_domains[node.cd].rst
            if rst is None and node.allow_reset_less:
                return "0", 1
            if rst is not None:
                return self._expr(rst, indent)
            return self._fallback_expr(node)
        if isinstance(node, _Operator):
            return self._operator(node, indent)
        if isinstance(node, _Slice):
            v, d = self._expr(node.value, indent)
            mask = (1 << (node.stop - node.start)) - 1
            return self._hoisted(f"(({v} >> {node.start}) & {mask})", d + 1, indent)
        if isinstance(node, _Part):
            v, d1 = self._expr(node.value, indent)
            o, d2 = self._expr(node.offset, indent)
            return self._hoisted(f"(({v} >> {o}) & {(1 << node.width) - 1})", max(d1, d2) + 1, indent)
        if isinstance(node, Cat):
            parts, shift, depth = [], 0, 1
            for element in node.l:
                nbits = len(element)
                e, d = self._expr(element, indent)
                depth = max(depth, d)
                if not self._unsigned_signal(element):
                    e = f"({e} & {(1 << nbits) - 1})"
                parts.append(e if shift == 0 else f"({e} << {shift})")
                shift += nbits
            if not parts:
                return "0", 1
            return self._hoisted("(" + " | ".join(parts) + ")", depth + 1, indent)
        if isinstance(node, Replicate):
            nbits = len(node.v)
            v, d = self._expr(node.v, indent)
            factor = sum(1 << (i * nbits) for i in range(node.n))
            return self._hoisted(f"(({v} & {(1 << nbits) - 1}) * {factor})", d + 1, indent)
        if isinstance(node, _ArrayProxy):
            return self._array_read(node, indent)
        return self._fallback_expr(node)

    def _fallback_expr(self, node) -> tuple[str, int]:
        return f"ev.eval({self._bind('n', node)})", 1

    def _unsigned_signal(self, node) -> bool:
        return isinstance(node, Signal) and not node.signed

    def _operator(self, node, indent: int) -> tuple[str, int]:
        op, ops = node.op, node.operands
        a, da = self._expr(ops[0], indent)
        if op == "~":
            return self._hoisted(f"(~{a})", da + 1, indent)
        if op == "-" and len(ops) == 1:
            return self._hoisted(f"(-{a})", da + 1, indent)
        if op == "m":
            b, db = self._expr(ops[1], indent)
            c, dc = self._expr(ops[2], indent)
            return self._hoisted(f"({b} if {a} else {c})", max(da, db, dc) + 1, indent)
        python = PYTHON_OPERATORS.get(op)
        if python is None:
            return self._fallback_expr(node)
        b, db = self._expr(ops[1], indent)
        return self._hoisted(f"({a} {python} {b})", max(da, db) + 1, indent)

    def _signal_choices(self, node):
        """The duids of an Array of plain signals (a memory's words), else None."""
        if node.choices and all(type(c) is Signal for c in node.choices):
            return tuple(self._signal(c) for c in node.choices)
        return None

    def _index(self, node, indent: int) -> tuple[str, int]:
        """The Evaluator's index: min(len - 1, key); a plain unsigned signal that cannot pass the
        last choice needs no min (its values are kept truncated)."""
        key, d = self._expr(node.key, indent)
        n = len(node.choices)
        if isinstance(node.key, Signal) and not node.key.signed and (1 << node.key.nbits) <= n:
            return key, d
        return f"min({n - 1}, {key})", d + 1

    def _array_read(self, node, indent: int) -> tuple[str, int]:
        duids = self._signal_choices(node)
        if duids is None:
            return self._fallback_expr(node)
        idx, d = self._index(node, indent)
        return self._hoisted(f"sv[{self._bind('d', duids)}[{idx}]]", d + 1, indent)

    # -- targets: writes are pending values, truncated to the target's width and sign --
    def _store(self, duid_code: str, nbits: int, signed: bool, value: str, indent: int) -> None:
        full = 1 << nbits
        if signed:
            t = self._temp()
            self._emit(indent, f"{t} = {value} & {full - 1}")
            self._emit(indent, f"m[{duid_code}] = {t} - {full} if {t} & {full >> 1} else {t}")
        else:
            self._emit(indent, f"m[{duid_code}] = {value} & {full - 1}")

    def assign(self, target, value: str, indent: int) -> None:
        """`value` is a local name or a literal (evaluated once)."""
        if isinstance(target, Signal):
            self._store(str(self._signal(target)), target.nbits, target.signed, value, indent)
        elif isinstance(target, Cat):
            rest = value
            for k, element in enumerate(target.l):
                nbits = len(element)
                part = self._temp()
                self._emit(indent, f"{part} = {rest} & {(1 << nbits) - 1}")
                self.assign(element, part, indent)
                if k + 1 < len(target.l):
                    nxt = self._temp()
                    self._emit(indent, f"{nxt} = {rest} >> {nbits}")
                    rest = nxt
        elif isinstance(target, _Slice) and isinstance(target.value, Signal):
            sig, width = target.value, target.stop - target.start
            duid = self._signal(sig)
            full = self._temp()
            clear = ~(((1 << width) - 1) << target.start)
            self._emit(indent, f"{full} = m.get({duid}, sv[{duid}])")
            self._emit(indent, f"{full} = ({full} & {clear}) | (({value} & {(1 << width) - 1}) << {target.start})")
            self._store(str(duid), sig.nbits, sig.signed, full, indent)
        elif isinstance(target, _ArrayProxy) and self._uniform(target):
            first = target.choices[0]
            idx, _ = self._index(target, indent)
            d = self._temp()
            self._emit(indent, f"{d} = {self._bind('d', self._signal_choices(target))}[{idx}]")
            self._store(d, first.nbits, first.signed, value, indent)
        else:
            self._emit(indent, f"ev.assign({self._bind('n', target)}, {value})")

    def _uniform(self, node) -> bool:
        c = node.choices
        return bool(c) and all(type(s) is Signal for s in c) and \
            len({(s.nbits, s.signed) for s in c}) == 1

    # -- statements --
    def statements(self, stmts, indent: int) -> None:
        start = len(self.lines)
        for s in stmts:
            if indent > MAX_STATEMENT_DEPTH:
                self._emit(indent, f"ev.execute([{self._bind('n', s)}])")
            elif isinstance(s, _Assign):
                value = self.expr(s.r, indent)
                if not value.isidentifier() and not _is_literal(value):
                    t = self._temp()
                    self._emit(indent, f"{t} = {value}")
                    value = t
                self.assign(s.l, value, indent)
            elif isinstance(s, If):
                cond = self.expr(s.cond, indent)
                self._emit(indent, f"if {cond} & {(1 << len(s.cond)) - 1}:")
                self.statements(s.t, indent + 1)
                if s.f:
                    self._emit(indent, "else:")
                    self.statements(s.f, indent + 1)
            elif isinstance(s, Case):
                self._case(s, indent)
            elif isinstance(s, (list, tuple)):
                self.statements(s, indent)
            else:                                   # Display and anything new: the Evaluator
                self._emit(indent, f"ev.execute([{self._bind('n', s)}])")
        if len(self.lines) == start:
            self._emit(indent, "pass")

    def _case(self, s, indent: int) -> None:
        nbits, signed = value_bits_sign(s.test)
        test = self._temp()
        self._emit(indent, f"{test} = {self.expr(s.test, indent)} & {(1 << nbits) - 1}")
        if signed:
            self._emit(indent, f"{test} = {test} - {1 << nbits} if {test} & {1 << (nbits - 1)} else {test}")
        keyword = "if"
        for k, body in s.cases.items():
            if isinstance(k, Constant):
                self._emit(indent, f"{keyword} {test} == {k.value!r}:")
                self.statements(body, indent + 1)
                keyword = "elif"
        if "default" in s.cases:
            if keyword == "if":
                self.statements(s.cases["default"], indent)
            else:
                self._emit(indent, "else:")
                self.statements(s.cases["default"], indent + 1)

    def function(self, stmts, name: str):
        self.lines = []
        self.statements(stmts, 1)
        source = f"def {name}(sv, m, ev):\n" + "\n".join(self.lines) + "\n"
        namespace = dict(self.names)
        exec(compile(source, f"<migen_speed {name}>", "exec"), namespace)
        return namespace[name]


def _is_literal(code: str) -> bool:
    try:
        int(code)
        return True
    except ValueError:
        return False


def compiled_run(sim) -> None:
    """Simulator.run with the comb and sync lists compiled (no VCD file)."""
    ev = sim.evaluator
    compiler = _Compiler(sim.fragment.clock_domains)
    comb = compiler.function(sim.fragment.comb, "comb")
    syncs = {cd: compiler.function(stmts, f"sync_{cd}") for cd, stmts in sim.fragment.sync.items()}
    sv, m = ev.signal_values, ev.modifications
    for duid, sig in compiler.signals.items():
        if sv[duid] is None:
            sv[duid] = sig.reset.value

    def propagate():
        while ev.commit_changed():
            comb(sv, m, ev)

    comb(sv, m, ev)
    propagate()
    domains = sim.fragment.clock_domains
    while True:
        dt, rising, falling = sim.time.tick()
        for cd in rising:
            ev.assign(domains[cd].clk, 1)
            if cd in syncs:
                syncs[cd](sv, m, ev)
            if cd in sim.generators:
                sim._process_generators(cd)
        for cd in falling:
            ev.assign(domains[cd].clk, 0)
        propagate()
        if not sim._continue_simulation():
            break


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    import migen.fhdl.bitcontainer as bits
    import migen.sim.core as sim
    from migen.sim.vcd import DummyVCDWriter

    original = bits.value_bits_sign
    run = sim.Simulator.run

    @functools.wraps(run)
    def run_compiled(self, *args, **kwargs):
        known: dict[int, tuple] = {}

        def value_bits_sign(v):
            hit = known.get(id(v))
            if hit is not None and hit[0] is v:
                return hit[1]
            answer = original(v)        # its recursion comes back through here
            known[id(v)] = (v, answer)
            return answer

        bits.value_bits_sign = sim.value_bits_sign = value_bits_sign
        try:
            if type(self.vcd) is DummyVCDWriter:
                return compiled_run(self)
            return run(self, *args, **kwargs)
        finally:
            bits.value_bits_sign = sim.value_bits_sign = original

    sim.Simulator.run = run_compiled
    _INSTALLED = True
