"""Board-to-board links (synfab.linkframe): a board's output stream into the next board's input.

Only a chain of boards instantiates these (gateware/sim/chain.py; a linked board SoC): the
committed single-board bitstreams do not, so their source key leaves this package out
(soc/toolchain.BOARD_LINKS) and a linked build adds it.
"""
from pathlib import Path

from .core import LinkRX, LinkTX
from .uart import LinkReceiver, LinkSender, link_pads

__all__ = ["LinkRX", "LinkTX", "LinkReceiver", "LinkSender", "link_pads", "source_digest"]


def source_digest() -> str:
    """SHA-256 of the link gateware and the frame spec it implements (synfab.linkframe): the part
    of a linked build's key the single-board source key leaves out."""
    import synfab.linkframe as spec
    from ..soc.toolchain import digest
    files = sorted(Path(__file__).parent.glob("*.py")) + [Path(spec.__file__)]
    return digest(*[f"{p.name}\0{p.read_text()}" for p in files])
