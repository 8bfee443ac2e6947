"""Board-to-board links (synfab.linkframe): a board's output stream into the next board's input.

Only a chain of boards instantiates these (gateware/sim/chain.py; a linked board SoC): the
committed single-board bitstreams do not, so their source key leaves this package out
(soc/toolchain.BOARD_LINKS) and a linked build adds it.
"""
from .core import LinkRX, LinkTX
from .uart import LinkReceiver, LinkSender, link_pads

__all__ = ["LinkRX", "LinkTX", "LinkReceiver", "LinkSender", "link_pads"]
