"""A simulated PYNQ-Z2 for the `pynq` backend: a `pynq` Device whose programmable logic is the
Verilator simulation of the fabric, so the PYNQ driver code (runtime/pynq.py) and PYNQ's own
Overlay, MMIO, DefaultIP, allocate and `pynq.lib.dma.DMA` run unchanged on a PC.

    from synfab.runtime import pynq_mock
    bit = pynq_mock.write_overlay(cfg, "build/")       # stand-in .bit + generated .hwh
    pynq_mock.activate()                               # or SYNFAB_PYNQ_MOCK=1 in the environment
    api.run_frames(tables, frames, backend="pynq", device_args={"bitstream": str(bit)})

What is modelled:
  - the bitstream: a stand-in .bit file naming the fabric configuration to simulate; the .hwh
    beside it (runtime/hwh.py) is parsed by PYNQ as on a board and places the IP;
  - AXI-Lite: register accesses inside the fabric IP's window go to SimFabric.write/read;
  - the AXI DMA in simple (register) mode, at its documented register offsets (PG021): MM2S and
    S2MM control (run/stop, reset), status (halted, idle, error, IOC bits; IOC is write-1-to-clear),
    address and length registers, the length register `c_sg_length_width` bits wide.  Writing
    MM2S_LENGTH queues the buffer's beats into the simulation with TLAST on the transfer's last
    beat; writing S2MM_LENGTH arms a receive that ends at a TLAST beat or when the length is
    filled, after which S2MM_LENGTH reads the bytes written;
  - time: the simulation's clock runs while software polls a busy channel's status register
    (POLL_CYCLES per read) and during every AXI-Lite access;
  - the PS7 clock registers (SLCR) that `Overlay.download` programs, with PYNQ-Z2 PLL settings;
  - contiguous memory: `allocate` hands out buffers at distinct physical addresses that the DMA
    reads and writes; flush/invalidate are no-ops (one memory, no caches).
Not modelled: interrupts, scatter-gather mode, bus timing.  Output beats the fabric sends while no
receive is armed wait in a queue here (on a board the fabric would stall on TREADY instead), so
results are the same and only cycle counts differ.
"""
from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pynq
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device
from pynq.ps import ZYNQ_ARCH, ZYNQ_SLCR_REGISTERS

from ..config import FabricConfig
from ..errors import SynfabError
from ..layouts import IP_VLNV, STREAM_BITS
from .hwh import DDR_LOW, DMA_LENGTH_WIDTH, DMA_VLNV, write_hwh
from .pynq import (ADDR, BEAT_BYTES, CR_RESET, CR_RS, DMACR, DMASR, LENGTH, S2MM_OFFSET, SR_DEC_ERR, SR_DLY_IRQ,
                   SR_ERR_IRQ, SR_HALTED, SR_IDLE, SR_INT_ERR, SR_IOC_IRQ)

MOCK_ENV = "SYNFAB_PYNQ_MOCK"        # set to 1: pynq finds the simulated board as its device
BITSTREAM_MAGIC = b"synfab simulated PYNQ-Z2 bitstream\n"
POLL_CYCLES = 2048                   # simulated clock cycles per status read of a busy DMA channel

SR_WRITE_1_TO_CLEAR = SR_IOC_IRQ | SR_DLY_IRQ | SR_ERR_IRQ

# PS7 system-level control registers: the clock part pynq's Clocks reads and writes.
SLCR_BASE, SLCR_SIZE = 0xF800_0000, 0x200
# PYNQ-Z2 boot settings: PLL feedback dividers (x 50 MHz: ARM 1300, DDR 1050, IO 1000 MHz), CPU at
# 650 MHz, PL clocks from the IO PLL as the base overlay leaves them (100, 142.9, 200, 166.7 MHz).
SLCR_BOOT_FIELDS = {
    "ARM_PLL_CTRL": {"PLL_FDIV": 26}, "DDR_PLL_CTRL": {"PLL_FDIV": 21}, "IO_PLL_CTRL": {"PLL_FDIV": 20},
    "ARM_CLK_CTRL": {"SRCSEL": 0, "DIVISOR": 2},
    **{f"FPGA{i}_CLK_CTRL": {"SRCSEL": 0, "DIVISOR0": div, "DIVISOR1": 1} for i, div in enumerate((10, 7, 5, 6))},
}
BUFFER_BASE = DDR_LOW[0] + 0x1000_0000   # where allocate() places buffers (inside HP0's DDR range)
PAGE = 4096


class MockError(SynfabError):
    """The simulated board was used in a way the real one does not support."""


def write_overlay(cfg: FabricConfig, out_dir, *, name: str | None = None,
                  dma_length_width: int = DMA_LENGTH_WIDTH) -> Path:
    """Write a stand-in bitstream for fabric `cfg` and its .hwh; returns the .bit path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bit = out / f"{name or 'synfab_' + cfg.name}.bit"
    bit.write_bytes(BITSTREAM_MAGIC + cfg.to_json().encode())
    write_hwh(cfg, bit.with_suffix(".hwh"), dma_length_width=dma_length_width)
    return bit


def read_bitstream(path) -> FabricConfig:
    """The fabric configuration a stand-in bitstream describes."""
    data = Path(path).read_bytes()
    if not data.startswith(BITSTREAM_MAGIC):
        raise MockError(f"{path} is not a simulated-board bitstream (a real .bit cannot be simulated); "
                        f"write one with synfab.runtime.pynq_mock.write_overlay")
    return FabricConfig.from_dict(json.loads(data[len(BITSTREAM_MAGIC):]))


@dataclass
class Transfer:
    """One DMA transfer the simulated board started: its channel, the length written and, once
    finished, the bytes moved (less than the length when TLAST ended an S2MM transfer).  An MM2S
    transfer also records the simulated cycles from its start to the fabric taking its last beat:
    the rate the fabric's TREADY allows, one beat per clock at most (the DMA offers one per clock)."""
    channel: str
    length: int
    moved: int | None = None
    start_cycle: int | None = None       # MM2S: the simulation's cycle count when the length was written
    taken_cycle: int | None = None       # MM2S: ... when the fabric took the transfer's last beat

    @property
    def beats(self) -> int:
        return self.length // BEAT_BYTES

    @property
    def cycles(self) -> int | None:
        """MM2S: clock cycles from the start to the last beat taken (None until it finished)."""
        return None if self.taken_cycle is None else self.taken_cycle - self.start_cycle


class _DmaChannel:
    """One direction of the AXI DMA in simple mode."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.cr = 0
        self.sr = SR_HALTED          # after reset: halted and not idle until a transfer completes
        self.addr = 0
        self.length = 0
        self.busy = False
        self.buffer = None           # (uint8 view of the target buffer's bytes, byte offset)
        self.beats_done = 0
        self.log = None              # the Transfer being made

    @property
    def running(self) -> bool:
        return bool(self.cr & CR_RS)

    def fail(self, bit: int) -> None:
        """An error halts the channel gracefully (PG021): RS cleared, Halted set."""
        self.sr |= bit | SR_HALTED
        self.cr &= ~CR_RS
        self.busy = False
        self.buffer = None

    def complete(self, nbytes: int) -> None:
        self.length = self.log.moved = nbytes
        self.sr |= SR_IDLE | SR_IOC_IRQ
        self.busy = False
        self.buffer = None


class SimPynqDevice(Device):
    """A PYNQ-Z2 whose programmable logic is simulated (see the module docstring)."""

    _probe_priority_ = 10          # before every real device type: only present when asked for
    _instance = None

    @classmethod
    def _probe_(cls):
        return [cls.instance()] if os.environ.get(MOCK_ENV, "") not in ("", "0") else []

    @classmethod
    def instance(cls) -> "SimPynqDevice":
        """The one simulated board of this process (PYNQ keeps one per physical device)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        super().__init__("synfab_sim_pynq_z2")
        self.name = "synfab simulated PYNQ-Z2"
        self.arch = ZYNQ_ARCH
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.timestamp = ""
        self.bitfile_name = None
        self.sim = None
        self.fabric_window = None       # (base, size) of the fabric IP's AXI-Lite window
        self.dma_window = None          # (base, size) of the DMA's register window
        self.dma_length_width = DMA_LENGTH_WIDTH
        self.mm2s, self.s2mm = _DmaChannel("MM2S"), _DmaChannel("S2MM")
        self.transfers: list[Transfer] = []          # every DMA transfer since the last download
        self._sims: dict[FabricConfig, object] = {}
        self._out_words = np.zeros(0, np.uint64)     # fabric output beats not yet written by S2MM
        self._out_lasts = np.zeros(0, bool)
        self._buffers: dict[int, tuple[int, weakref.ref]] = {}
        self._next_addr = BUFFER_BASE
        self._slcr = np.zeros(SLCR_SIZE // 4, np.uint32)
        for reg, fields in SLCR_BOOT_FIELDS.items():
            spec = ZYNQ_SLCR_REGISTERS[reg]
            for field, value in fields.items():
                f = spec["fields"][field]
                self._slcr[spec["address_offset"] // 4] |= np.uint32(value << f["bit_offset"])

    # -- metadata and download (what EmbeddedDevice does with the FPGA manager) ------------------
    def get_bitfile_metadata(self, bitfile_name: str, partial: bool = False):
        from pynq.pl_server.hwh_parser import get_hwh_name
        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import RuntimeMetadataParser
        hwh = get_hwh_name(bitfile_name)
        if not os.path.isfile(hwh):
            raise RuntimeError("Unable to find metadata for bitstream")   # EmbeddedDevice's words
        return RuntimeMetadataParser(Metadata(input=hwh))

    def download(self, bitstream, parser=None) -> None:
        if bitstream.partial:
            raise MockError("the simulated board has no partial reconfiguration")
        cfg = read_bitstream(bitstream.bitfile_name)
        fabric = [ip for ip in parser.ip_dict.values() if ip.get("type") == IP_VLNV]
        dmas = [ip for ip in parser.ip_dict.values() if ip.get("type") == DMA_VLNV]
        if len(fabric) != 1 or len(dmas) != 1:
            raise MockError(f"the simulated board holds one fabric IP and one AXI DMA; the .hwh of "
                            f"{bitstream.bitfile_name} has {len(fabric)} and {len(dmas)}")
        self.sim = self._sim_for(cfg)
        self.sim.reset()
        self.fabric_window = (fabric[0]["phys_addr"], fabric[0]["addr_range"])
        self.dma_window = (dmas[0]["phys_addr"], dmas[0]["addr_range"])
        self.dma_length_width = int(dmas[0]["parameters"]["c_sg_length_width"])
        self._reset_dma()
        self.transfers.clear()
        self.post_download(bitstream, parser, self.name)

    def _sim_for(self, cfg: FabricConfig):
        if cfg not in self._sims:
            from synfab_gateware.sim.fabric_sim import SimFabric
            self._sims[cfg] = SimFabric(cfg, quiet=True)
        return self._sims[cfg]

    def _reset_dma(self) -> None:
        self.mm2s.reset()
        self.s2mm.reset()
        self._out_words = np.zeros(0, np.uint64)
        self._out_lasts = np.zeros(0, bool)

    # -- memory ---------------------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs) -> PynqBuffer:
        buf = PynqBuffer(shape, dtype, device=self, device_address=self._next_addr, bo=self._next_addr,
                         coherent=False)
        self._buffers[self._next_addr] = (buf.nbytes, weakref.ref(buf))
        self._next_addr += -(-max(buf.nbytes, 1) // PAGE) * PAGE
        if self._next_addr > DDR_LOW[1]:
            raise MockError("the simulated board's DDR is exhausted; free (delete) unused buffers")
        return buf

    def flush(self, bo, offset, vaddr, nbytes) -> None:
        """One memory without caches: nothing to write back."""

    def invalidate(self, bo, offset, vaddr, nbytes) -> None:
        """One memory without caches: nothing to drop."""

    def _memory(self, addr: int, nbytes: int):
        """(uint8 view of the live buffer holding [addr, addr + nbytes), offset) or None."""
        for base, (size, ref) in list(self._buffers.items()):
            buf = ref()
            if buf is None:
                del self._buffers[base]
            elif base <= addr and addr + nbytes <= base + size:
                return buf.reshape(-1).view(np.uint8), addr - base
        return None

    # -- register bus (capability REGISTER_RW: pynq.MMIO calls these) ----------------------------
    def read_registers(self, address: int, length: int) -> bytes:
        words = [self._read_word(address + 4 * i) for i in range(self._word_count(address, length))]
        return np.array(words, dtype="<u4").tobytes()

    def write_registers(self, address: int, data: bytes) -> None:
        n = self._word_count(address, len(data))
        for i, v in enumerate(np.frombuffer(bytes(data), dtype="<u4", count=n)):
            self._write_word(address + 4 * i, int(v))

    @staticmethod
    def _word_count(address: int, length: int) -> int:
        if address % 4 or length % 4 or length <= 0:
            raise MockError(f"register access of {length} bytes at {address:#x}: the simulated "
                            f"buses take whole aligned 32-bit words")
        return length // 4

    def _target(self, addr: int) -> tuple[str, int]:
        for name, window in (("fabric", self.fabric_window), ("dma", self.dma_window),
                             ("slcr", (SLCR_BASE, SLCR_SIZE))):
            if window is not None and window[0] <= addr < window[0] + window[1]:
                return name, addr - window[0]
        raise MockError(f"no register at {addr:#010x} on the simulated board (bus error); "
                        f"download an overlay whose .hwh maps this address")

    def _read_word(self, addr: int) -> int:
        target, off = self._target(addr)
        if target == "fabric":
            return self.sim.read(off)
        if target == "slcr":
            return int(self._slcr[off // 4])
        return self._dma_read(off)

    def _write_word(self, addr: int, value: int) -> None:
        target, off = self._target(addr)
        if target == "fabric":
            self.sim.write(off, value)
        elif target == "slcr":
            self._slcr[off // 4] = value
        else:
            self._dma_write(off, value)

    # -- AXI DMA, simple mode ----------------------------------------------------------------------
    def _channel(self, off: int) -> tuple[_DmaChannel, int]:
        return (self.s2mm, off - S2MM_OFFSET) if off >= S2MM_OFFSET else (self.mm2s, off)

    def _dma_read(self, off: int) -> int:
        ch, reg = self._channel(off)
        if reg == DMASR:
            if ch.busy:
                self._advance()
            return ch.sr
        if reg == DMACR:
            return ch.cr
        if reg == ADDR:
            return ch.addr & 0xFFFFFFFF
        if reg == LENGTH:
            return ch.length
        return 0        # registers of scatter-gather mode read as zero in simple mode

    def _dma_write(self, off: int, value: int) -> None:
        ch, reg = self._channel(off)
        if reg == DMACR:
            if value & CR_RESET:          # soft reset resets both channels and self-clears
                self._reset_dma()
                return
            ch.cr = value & ~CR_RESET
            ch.sr = (ch.sr & ~SR_HALTED) if ch.running else (ch.sr | SR_HALTED)
        elif reg == DMASR:
            ch.sr &= ~(value & SR_WRITE_1_TO_CLEAR)
        elif reg == ADDR:
            ch.addr = value
        elif reg == LENGTH and ch.running:    # a halted channel ignores the length write
            self._start(ch, value & ((1 << self.dma_length_width) - 1))

    def _start(self, ch: _DmaChannel, nbytes: int) -> None:
        if ch.busy:
            raise MockError(f"DMA {ch.name}: length written while a transfer is running (undefined on "
                            f"the AXI DMA); wait until the channel is idle")
        ch.log = Transfer(ch.name, nbytes)
        self.transfers.append(ch.log)
        ch.sr &= ~SR_IDLE
        if nbytes == 0:
            return ch.fail(SR_INT_ERR)
        mem = self._memory(ch.addr, nbytes)
        if mem is None:
            return ch.fail(SR_DEC_ERR)   # no memory answers at that address
        if ch.addr % BEAT_BYTES or nbytes % BEAT_BYTES:
            raise MockError(f"DMA {ch.name}: transfer of {nbytes} bytes at {ch.addr:#x} is not whole "
                            f"{STREAM_BITS}-bit beats at an aligned address (the DMA has no DRE)")
        ch.busy, ch.buffer, ch.length, ch.beats_done = True, mem, nbytes, 0
        if ch is self.mm2s:
            view, off = mem
            words = view[off:off + nbytes].view(np.uint64).copy()
            lasts = np.zeros(len(words), np.uint8)
            lasts[-1] = 1       # simple mode: every MM2S transfer is one packet
            ch.log.start_cycle = self.sim.cycles
            self.sim.push(words, lasts)
        self._advance(run=False)

    def _advance(self, run: bool = True) -> None:
        """Let the simulated clock run (while a channel waits) and move what the fabric did."""
        if run:
            self.sim.run(POLL_CYCLES)
        words, lasts = self.sim.pull()
        if len(words):
            self._out_words = np.concatenate([self._out_words, words])
            self._out_lasts = np.concatenate([self._out_lasts, lasts])
        if self.mm2s.busy and self.sim.pending_input == 0:
            self.mm2s.log.taken_cycle = self.sim.input_taken[1]
            self.mm2s.complete(self.mm2s.length)
        ch = self.s2mm
        if ch.busy and len(self._out_words):
            room = ch.length // BEAT_BYTES - ch.beats_done
            ends = np.flatnonzero(self._out_lasts[:room])
            n = int(ends[0]) + 1 if ends.size else min(room, len(self._out_words))
            view, off = ch.buffer
            start = off + ch.beats_done * BEAT_BYTES
            view[start:start + n * BEAT_BYTES] = self._out_words[:n].view(np.uint8)
            ch.beats_done += n
            self._out_words, self._out_lasts = self._out_words[n:], self._out_lasts[n:]
            if ends.size or ch.beats_done * BEAT_BYTES == ch.length:
                ch.complete(ch.beats_done * BEAT_BYTES)


def activate() -> SimPynqDevice:
    """Make the simulated board PYNQ's active device (what Overlay, MMIO and allocate use)."""
    dev = SimPynqDevice.instance()
    pynq.Device.active_device = dev
    return dev


def deactivate() -> None:
    """Forget the simulated board as PYNQ's active device (if it is)."""
    if getattr(Device, "_active_device", None) is SimPynqDevice._instance:
        del Device._active_device
