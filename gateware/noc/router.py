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
    def __init__(self, cfg: FabricConfig, x: int, y: int):
        layout = packet(cfg).migen()
        self.ports = router_ports(cfg, x, y)
        # The host port's router feeds the fabric's output even while idle: its FIFOs keep LiteX's
        # stale head when empty, so the output port's data does not change.
        fifo = stream.SyncFIFO if "host" in self.ports else sync_fifo
        self.fifos = {p: fifo(layout, cfg.event_fifo_depth) for p in self.ports}
        self.sinks = {p: self.fifos[p].sink for p in self.ports}     # each input port is its FIFO
        self.sources = {p: stream.Endpoint(layout) for p in self.ports}
        self.dropped = Signal()   # out: a packet with a dest that names no core was discarded

        # # #

        has_drop = cfg.n_cores < (1 << cfg.core_bits)
        outputs = self.ports + ([DROP] if has_drop else [])

        heads = {}
        for p, fifo in self.fifos.items():
            self.add_module(f"fifo_{p}", fifo)
            heads[p] = fifo.source

        # Route of each input's head packet: one-hot over the outputs it may use.
        want = {}
        for p in self.ports:
            allowed = [q for q in outputs if _turn_allowed(p, q)]
            sel = {q: Signal(name=f"route_{p}_to_{q}") for q in allowed}
            self.comb += self._route(cfg, x, y, heads[p], sel)
            want[p] = sel

        # One arbiter per output among the inputs that can reach it.
        for q in outputs:
            cands = [p for p in self.ports if q in want[p]]
            arb = RoundRobinArbiter(len(cands))
            self.add_module(f"arb_{q}", arb)
            self.comb += arb.request.eq(Cat(*[heads[p].valid & want[p][q] for p in cands]))
            if q == DROP:
                out_valid, out_ready = Signal(), Constant(1, 1)   # dropping never waits
                self.comb += [out_valid.eq(arb.request != 0), self.dropped.eq(out_valid)]
            else:
                src = self.sources[q]
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
        """Statements setting exactly one of `sel` (output -> Signal) for the head packet."""
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
