"""The mesh network-on-chip: one Router per core, neighbours linked, host port at core 0."""
from __future__ import annotations

from migen import Signal
from litex.gen import LiteXModule

from synfab.config import FabricConfig
from synfab.errors import SynfabError

from .router import Router


def popcount(bits):
    """Number of set 1-bit signals, as an expression (0 when there are none)."""
    return sum(bits) if bits else 0


class Mesh(LiteXModule):
    """`sinks[i]`: packets leaving core i into the network; `sources[i]`: packets for core i;
    `host_sink`: host events (from the input PEG) entering at core 0's router; `host_source`:
    HOST packets for the output stream. `idle` is exact: it counts packets in against packets
    out (delivered or dropped), so a packet anywhere between the ports keeps it low."""

    def __init__(self, cfg: FabricConfig):
        if cfg.event_fifo_depth < 1:
            raise SynfabError(f"fabric config: event_fifo_depth={cfg.event_fifo_depth} cannot buffer "
                              "router packets; use event_fifo_depth >= 1")
        self.routers = [Router(cfg, i % cfg.mesh_x, i // cfg.mesh_x)
                        for i in range(cfg.n_cores)]
        self.sinks = [r.sinks["local"] for r in self.routers]
        self.sources = [r.sources["local"] for r in self.routers]
        self.host_sink = self.routers[0].sinks["host"]
        self.host_source = self.routers[0].sources["host"]
        capacity = sum(len(r.ports) for r in self.routers) * cfg.event_fifo_depth
        self.in_flight = Signal(max=capacity + 1)
        self.idle = Signal()

        # # #

        for i, r in enumerate(self.routers):
            self.add_module(f"router{i}", r)
        for i, r in enumerate(self.routers):
            x, y = i % cfg.mesh_x, i // cfg.mesh_x
            if x + 1 < cfg.mesh_x:
                east = self.routers[i + 1]
                self.comb += [r.sources["east"].connect(east.sinks["west"]),
                              east.sources["west"].connect(r.sinks["east"])]
            if y + 1 < cfg.mesh_y:
                south = self.routers[i + cfg.mesh_x]
                self.comb += [r.sources["south"].connect(south.sinks["north"]),
                              south.sources["north"].connect(r.sinks["south"])]

        injected = popcount([e.valid & e.ready for e in self.sinks + [self.host_sink]])
        removed = popcount([e.valid & e.ready for e in self.sources + [self.host_source]]
                         + [r.dropped for r in self.routers])
        self.sync += self.in_flight.eq(self.in_flight + injected - removed)
        self.comb += self.idle.eq(self.in_flight == 0)
