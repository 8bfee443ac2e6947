"""One mesh router: per-input FIFOs, XY routing on `packet.dest`, round-robin output arbitration.

Ports are named by where the neighbour sits: north = y-1, south = y+1, west = x-1, east = x+1;
`local` connects the router's own core and `host` (core 0 only) is the fabric's host port: host
events enter there (from the input PEG) and HOST packets (`packet.host` = 1) leave there.
Packets are single beats, so every output re-arbitrates after each transfer; a packet never
waits for more than one packet from each competing input (round-robin), and the path between
two ports is fixed, so packets from one source to one destination keep their order.
"""
from __future__ import annotations

from migen import Case, Cat, Constant, If, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream

from synfab.config import FabricConfig
from synfab.layouts import packet

from ..common import sync_fifo

DIRECTIONS = ("north", "east", "south", "west")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
# Pseudo output that swallows packets whose dest names no core (only when core ids have spare codes).
DROP = "drop"


def router_ports(cfg: FabricConfig, x: int, y: int) -> list[str]:
    """The ports a router at (x, y) has: local, its existing neighbours, and host at core 0."""
    ports = ["local"]
    ports += [d for d, ok in (("north", y > 0), ("east", x < cfg.mesh_x - 1),
                              ("south", y < cfg.mesh_y - 1), ("west", x > 0)) if ok]
    if (x, y) == (0, 0):
        ports.append("host")
    return ports


def _turn_allowed(src: str, dst: str) -> bool:
    """Which input may ever feed which output under XY routing (prunes arbiter inputs)."""
    if dst == DROP:
        return src in ("local", "host")          # bad dests are caught where packets enter
    if src in DIRECTIONS and dst == src:
        return False                             # no U-turns
    if src in ("north", "south") and dst in ("east", "west"):
        return False                             # X is finished before Y starts
    return True


class RoundRobinArbiter(LiteXModule):
    """Combinational grant rotating from the input after the last one served (no idle cycle)."""

    def __init__(self, n: int):
        self.request = Signal(n)
        self.grant = Signal(max=max(2, n))
        self.served = Signal()     # in: the granted request was transferred this cycle

        # # #

        last = Signal(max=max(2, n))
        cases = {}
        for p in range(n):
            chain = []
            for i in reversed([(p + 1 + k) % n for k in range(n)]):
                chain = [If(self.request[i], self.grant.eq(i)).Else(*chain)]
            cases[p] = chain
        self.comb += Case(last, cases)
        self.sync += If(self.served, last.eq(self.grant))


class Router(LiteXModule):
    """A mesh router (see the module doc).

        sinks[port]    in   packets arriving from a neighbour, the local core, or the host port
        sources[port]  out  packets leaving (registered)
        dropped        out  a packet whose dest names no core was discarded this clock

    Each input computes its packet's output port as the packet enters (XY routing on `dest`) and
    keeps it in the FIFO beside the packet, whose head is registered (LiteX PipeValid); each output
    has a round-robin arbiter over the registered heads that want it and a register (PipeValid) in
    front of the neighbour. A hop costs two clocks."""

    def __init__(self, cfg: FabricConfig, x: int, y: int):
        layout = packet(cfg).migen()
        self.ports = router_ports(cfg, x, y)
        has_drop = cfg.n_cores < (1 << cfg.core_bits)
        outputs = self.ports + ([DROP] if has_drop else [])
        allowed = {p: [q for q in outputs if _turn_allowed(p, q)] for p in self.ports}
        self.sinks = {p: stream.Endpoint(layout) for p in self.ports}
        self.sources = {}
        self.dropped = Signal()

        # # #

        # Inputs: route on entry, then the FIFO (packet + one bit per output it may take).
        heads, want = {}, {}
        for p in self.ports:
            route_layout = layout + [(f"to_{q}", 1) for q in allowed[p]]
            # The host port's FIFO drives the fabric's output even while idle: LiteX's FIFO keeps
            # its stale head when empty, so the output port's data does not change.
            fifo = (stream.SyncFIFO if "host" in self.ports else sync_fifo)(route_layout, cfg.event_fifo_depth)
            self.add_module(f"fifo_{p}", fifo)
            sel = {q: getattr(fifo.sink, f"to_{q}") for q in allowed[p]}
            self.comb += [
                self.sinks[p].connect(fifo.sink),
                self._route(cfg, x, y, self.sinks[p], sel),
            ]
            # The head the arbiters see is a register (LiteX PipeValid): the FIFO's read (LUT RAM)
            # and the arbitration over every input's head never meet in one clock. Its ready is
            # registered too (LiteX PipeReady before it): the arbiters' grant reaches the head's
            # registers, not the FIFO's pop and level (the 2x2's worst path at two placement seeds).
            # Neither adds a clock while the output takes a packet every clock.
            ready_cut = stream.PipeReady(route_layout)
            head = stream.PipeValid(route_layout)
            self.add_module(f"ready_cut_{p}", ready_cut)
            self.add_module(f"head_{p}", head)
            self.comb += [fifo.source.connect(ready_cut.sink), ready_cut.source.connect(head.sink)]
            heads[p] = head.source
            want[p] = {q: getattr(head.source, f"to_{q}") for q in allowed[p]}

        # Outputs: arbiter, payload mux, register.
        for q in outputs:
            cands = [p for p in self.ports if q in want[p]]
            arb = RoundRobinArbiter(len(cands))
            self.add_module(f"arb_{q}", arb)
            self.comb += arb.request.eq(Cat(*[heads[p].valid & want[p][q] for p in cands]))
            if q == DROP:
                out_valid, out_ready = Signal(), Constant(1, 1)   # dropping never waits
                self.comb += [out_valid.eq(arb.request != 0), self.dropped.eq(out_valid)]
            else:
                reg = stream.PipeValid(layout)
                self.add_module(f"out_{q}", reg)
                self.sources[q] = reg.source
                src = reg.sink
                out_valid, out_ready = src.valid, src.ready
                self.comb += out_valid.eq(arb.request != 0)
                select = Case(arb.grant, {i: src.payload.eq(heads[p].payload) for i, p in enumerate(cands)})
                # The payload only matters with valid; the simulation skips the mux otherwise. The
                # host output keeps it ungated: it drives the fabric's output port even when idle.
                self.comb += select if q == "host" else If(out_valid, select)
            self.comb += arb.served.eq(out_valid & out_ready)
            for i, p in enumerate(cands):
                self.comb += If(want[p][q] & (arb.grant == i) & out_ready, heads[p].ready.eq(1))

    @staticmethod
    def _route(cfg: FabricConfig, x: int, y: int, head, sel: dict) -> list:
        """Statements setting exactly one of `sel` (output -> Signal) for the packet `head`."""
        cb = max(1, (cfg.mesh_x - 1).bit_length()), max(1, (cfg.mesh_y - 1).bit_length())
        tx, ty, valid = Signal(cb[0]), Signal(cb[1]), Signal()
        dest = head.dest
        if cfg.mesh_x & (cfg.mesh_x - 1) == 0:
            # Power-of-two columns: the core id is just {y, x}.
            xb = (cfg.mesh_x - 1).bit_length()
            coords = [tx.eq(dest[:xb] if xb else 0), ty.eq(dest[xb:] if len(dest) > xb else 0),
                      valid.eq(dest < cfg.n_cores)]
        else:
            coords = [Case(dest, {
                **{i: [tx.eq(i % cfg.mesh_x), ty.eq(i // cfg.mesh_x), valid.eq(1)]
                   for i in range(cfg.n_cores)},
                "default": valid.eq(0)})]
        # HOST packets travel to core 0's router and leave on the host port there.
        stmts = coords + [If(head.host, tx.eq(0), ty.eq(0), valid.eq(1))]

        def go(q):
            return sel[q].eq(1) if q in sel else []

        here = If(head.host, go("host")).Else(go("local"))
        decision = If(~valid, go(DROP)) \
            .Elif(tx > x, go("east")).Elif(tx < x, go("west")) \
            .Elif(ty > y, go("south")).Elif(ty < y, go("north")) \
            .Else(here)
        return stmts + [decision]
