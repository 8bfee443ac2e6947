"""What every synfab LiteX SoC has: the fabric and the stream bridge on the wishbone bus."""
from __future__ import annotations

from migen import Module
from litex.soc.integration.soc import SoCRegion

from synfab.config import FabricConfig
from synfab.layouts import RegisterMap
from synfab import layouts as soc_map

from .bridge import StreamBridge

BRIDGE_FIFO_DEPTH = 512


def fabric_region_size(cfg: FabricConfig) -> int:
    """The fabric's bus region: the RegisterMap rounded up to a power of two (LiteX decodes by mask)."""
    size = 1 << (RegisterMap(cfg).size - 1).bit_length()
    if soc_map.FABRIC_BASE % size or soc_map.FABRIC_BASE + size > 1 << 32:
        raise ValueError(f"fabric register map of {size:#x} bytes does not fit at {soc_map.FABRIC_BASE:#x}")
    return size


class _Opaque(Module):
    """Holds the fabric and bridge out of LiteX's CSR scan (a plain Module has no get_memories),
    which would otherwise try to map every table memory as a CSR memory."""


def add_synfab(soc, cfg: FabricConfig, fifo_depth: int = BRIDGE_FIFO_DEPTH, with_ext: bool = False) -> None:
    """Add `soc.synfab.fabric` (Fabric(cfg)) at FABRIC_BASE and `soc.synfab.stream_bridge` at BRIDGE_BASE
    (with_ext: the bridge's second stream port, for soc.eth.add_ethernet)."""
    from synfab_gateware.common import WishboneSlice
    from synfab_gateware.fabric import Fabric

    soc.submodules.synfab = holder = _Opaque()
    holder.submodules.fabric = fabric = Fabric(cfg)
    holder.submodules.stream_bridge = bridge = StreamBridge(fifo_depth, fifo_depth, with_ext=with_ext)
    # A registered stage between the SoC's bus decoder and the fabric's own decoder: the two
    # address decodes in one clock were the SoC's critical path (two clocks more per access).
    holder.submodules.bus_slice = cut = WishboneSlice(len(fabric.bus.adr))
    soc.comb += cut.source.connect(fabric.bus)
    soc.bus.add_slave("synfab", cut.sink,
                      SoCRegion(origin=soc_map.FABRIC_BASE, size=fabric_region_size(cfg), cached=False))
    soc.bus.add_slave("synfab_stream", bridge.bus,
                      SoCRegion(origin=soc_map.BRIDGE_BASE, size=soc_map.BRIDGE_SIZE, cached=False))
    soc.comb += [bridge.source.connect(fabric.sink), fabric.source.connect(bridge.sink)]
