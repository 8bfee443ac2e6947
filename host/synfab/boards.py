"""The boards synfab builds for, the resources of their FPGAs, and the margins a fabric keeps on them.

    board = BOARDS["ulx3s"]                     # Board(name, description, device, preset, reserved)
    DEVICES[board.device].capacity()            # {"lut", "ff", "bram", "dsp"}: what the FPGA has

Units per family (UNITS): ECP5 counts LUT4 sites (nextpnr's TRELLIS_COMB), flip-flops, DP16KD block
RAMs (18 Kbit) and MULT18X18D multipliers; Xilinx 7-series counts LUT6s, flip-flops, RAMB36 block
RAMs (36 Kbit; a RAMB18 is half of one) and DSP48E1 slices.  The ECP5 figures are the ones
nextpnr-ecp5 reports as available (tests/test_fit.py reads them back from nextpnr); the xc7z020
figures are Xilinx's (DS190, Zynq-7000 overview: Z-7020), as no Xilinx tool runs here.

`synfab fit` (synfab_gateware.fit) finds the largest fabric within MARGIN of every resource;
its result for a board is the committed preset `board.preset` (data/boards/PRESET.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SynfabError

RESOURCES = ("lut", "ff", "bram", "dsp")
UNITS = {"ecp5": {"lut": "LUT4", "ff": "FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
         "xc7": {"lut": "LUT6", "ff": "FF", "bram": "RAMB36", "dsp": "DSP48E1"}}
# Kept free when choosing a fabric: logic below 85% leaves the placer room to meet timing; block
# RAM and multipliers are placed in fixed sites, so they may be filled further.
MARGIN = {"lut": 0.85, "ff": 0.85, "bram": 0.95, "dsp": 0.95}


@dataclass(frozen=True)
class Device:
    name: str
    family: str          # "ecp5" or "xc7"
    lut: int
    ff: int
    bram: int
    dsp: int

    def capacity(self) -> dict:
        return {r: getattr(self, r) for r in RESOURCES}

    def allowed(self) -> dict:
        """What a fabric may use: capacity x MARGIN."""
        return {r: getattr(self, r) * MARGIN[r] for r in RESOURCES}


DEVICES = {d.name: d for d in [
    Device("LFE5U-25F", "ecp5", lut=24288, ff=24288, bram=56, dsp=28),
    Device("LFE5U-45F", "ecp5", lut=43848, ff=43848, bram=108, dsp=72),
    Device("LFE5U-85F", "ecp5", lut=83640, ff=83640, bram=208, dsp=156),
    Device("xc7z020", "xc7", lut=53200, ff=106400, bram=140, dsp=220),
]}


@dataclass(frozen=True)
class Board:
    name: str            # `synfab build --board NAME`
    description: str
    device: str          # a DEVICES key
    preset: str          # the FabricConfig preset `synfab fit` chose for it
    # Synaptic lanes per core of its preset (FabricConfig.lanes), chosen from measurements: 2 on every
    # ECP5 board (the ULX3S-85F's placed and routed at its 80 MHz clock within the margins, 195 of
    # 208 DP16KD, 4 lanes need 201, over the margin; every preset's Fmax: bitstreams/README.md and
    # placements.json); the PYNQ-Z2's 1 (no timing without Vivado).
    lanes: int = 1
    # Resources the design needs beyond what synfab synthesizes (Vivado IP on the PYNQ-Z2).
    reserved: dict = field(default_factory=dict)
    reserved_note: str = ""

    @property
    def fpga(self) -> Device:
        return DEVICES[self.device]

    @property
    def family(self) -> str:
        return self.fpga.family

    @property
    def units(self) -> dict:
        return UNITS[self.family]


BOARDS = {b.name: b for b in [
    Board("ulx3s", "Radiona ULX3S-85F", "LFE5U-85F", "ulx3s-85f", lanes=2),
    Board("ulx3s-45f", "Radiona ULX3S-45F", "LFE5U-45F", "ulx3s-45f", lanes=2),
    Board("colorlight-i5", "Colorlight i5 v7.0", "LFE5U-25F", "colorlight-i5", lanes=2),
    Board("colorlight-i9", "Colorlight i9 v7.2", "LFE5U-45F", "colorlight-i9", lanes=2),
    Board("pynq-z2", "TUL PYNQ-Z2", "xc7z020", "pynq-z2",
          reserved={"lut": 5000, "ff": 7000, "bram": 4, "dsp": 0},
          reserved_note="an allowance for the Vivado IP around the fabric (AXI DMA, two AXI interconnects, "
                        "reset): an estimate, not measured here (no Vivado)"),
]}


# Boards with an Ethernet PHY the Ethernet SoC (synfab build --ethernet) uses, and its line rate:
# the Colorlight i5 / i9 carry Broadcom B50612D gigabit PHYs on RGMII.
ETHERNET_BOARDS = {"colorlight-i5": 1e9, "colorlight-i9": 1e9}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise SynfabError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]
