"""Backend `pynq`: the fabric on a PYNQ board (PYNQ-Z2 overlay from synfab_gateware.vivado).

The overlay (.bit with its .hwh beside it) holds the fabric IP (`layouts.IP_VLNV`), reached over
AXI-Lite through the `SynfabCore` driver below, and an AXI DMA in simple mode whose MM2S stream
feeds the fabric's input and whose S2MM stream takes its output.  A frame's input beats go out in
MM2S transfers of at most the DMA's length register (`c_sg_length_width` bits, read from the
.hwh); the output is received into a buffer sized to the most beats the frame can produce, in
several S2MM transfers only when that exceeds one transfer.  The fabric closes every frame's
output with an end-of-frame beat carrying TLAST, which ends a receive transfer early.

On a PC, `runtime/pynq_mock.py` provides a simulated PYNQ-Z2 on which this code runs unchanged.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..layouts import IP_VLNV, STREAM_BITS, STREAM_EVENT, Kind
from .device import BEAT_BYTES, DeviceError, RegisterDevice
from .hwh import DMA_INSTANCE, DMA_VLNV, PS_VLNV

try:
    import pynq
    from pynq import DefaultIP
except ImportError:      # optional: PynqDevice says how to install it
    pynq = None

# AXI DMA registers (PG021, simple mode): MM2S channel at 0x00, S2MM channel at S2MM_OFFSET.
S2MM_OFFSET = 0x30
DMACR, DMASR, ADDR, LENGTH = 0x00, 0x04, 0x18, 0x28
CR_RS, CR_RESET = 1 << 0, 1 << 2
SR_HALTED, SR_IDLE, SR_INT_ERR, SR_DEC_ERR = 1 << 0, 1 << 1, 1 << 4, 1 << 6
SR_IOC_IRQ, SR_DLY_IRQ, SR_ERR_IRQ = 1 << 12, 1 << 13, 1 << 14
DEFAULT_TIMEOUT_S = 30.0      # longest wait for one DMA transfer before the fabric counts as stuck

if pynq is not None:
    class SynfabCore(DefaultIP):
        """PYNQ driver of the synfab fabric IP: 32-bit registers at the RegisterMap's byte offsets."""
        bindto = [IP_VLNV]

        def write_words(self, offsets, values) -> None:
            for off, v in zip(offsets, values):
                self.write(int(off), int(v))

        def read_words(self, offsets) -> np.ndarray:
            return np.array([self.read(int(off)) for off in offsets], dtype=np.uint32)


def output_bound(tables) -> tuple[int, int]:
    """(fixed, per input event): a frame of n input events produces at most fixed + n * per_event
    output beats on these tables.  Every neuron fires at most once per frame and sends one beat
    per HOST entry of its population's PEG range; every input event sends one per HOST entry of
    the input PEG; `fixed` includes the end-of-frame beat."""
    fixed = 1
    for ct in tables.cores:
        host = np.concatenate([[0], np.cumsum(np.asarray(ct.peg["kind"]) == Kind.HOST)])
        p = ct.pop
        for i in range(ct.pop_count):
            first, count = int(p["peg_base"][i]), int(p["peg_count"][i])
            fixed += int(p["tw"][i] * p["th"][i] * p["cc"][i]) * int(host[first + count] - host[first])
    n_in = int(tables.regs["input_peg_count"])
    return fixed, int(np.sum(np.asarray(tables.input_peg["kind"][:n_in]) == Kind.HOST))


def _active_pynq_device():
    if pynq is None:
        raise DeviceError("the pynq backend needs the pynq package: pip install -e '.[pynq]' "
                          "(on a PC, the simulated board in synfab.runtime.pynq_mock needs it too)")
    from .pynq_mock import MOCK_ENV
    if os.environ.get(MOCK_ENV, "") not in ("", "0"):
        from . import pynq_mock  # noqa: F401  (registers the simulated board before pynq probes)
    try:
        return pynq.Device.active_device
    except RuntimeError:
        raise DeviceError(f"no PYNQ device found: run on a PYNQ board, or on a PC set {MOCK_ENV}=1 "
                          f"(or call synfab.runtime.pynq_mock.activate()) to use the simulated board") from None


def _fill_clock_frequencies(overlay) -> None:
    """pynqmetadata reads no PL clock frequency for a Zynq-7000 PS (only the ZynqMP parameter), and
    Overlay.download cannot set an enabled clock without one: take it from the PS7's parameters."""
    ps_family = PS_VLNV.rpartition(":")[0]
    ps = [ip for ip in overlay.ip_dict.values() if str(ip.get("type", "")).rpartition(":")[0] == ps_family]
    if not ps:
        return
    params = ps[0].get("parameters", {})
    for i, clk in overlay.clock_dict.items():
        if clk.get("enable") and "frequency" in clk and clk["frequency"] is None:
            mhz = params.get(f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ") or params.get(f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ")
            if mhz is not None:
                clk["frequency"] = float(mhz)


class PynqDevice(RegisterDevice):
    name = "pynq"

    def __init__(self, cfg, bitstream=None, *, dma_name: str = DMA_INSTANCE,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        super().__init__(cfg)
        if bitstream is None:
            raise DeviceError("the pynq backend needs the overlay: pass --bitstream OVERLAY.bit "
                              "(device_args={'bitstream': ...}) with its .hwh beside it")
        bit = Path(bitstream)
        if not bit.is_file():
            raise DeviceError(f"bitstream {bit} not found; build it with synfab's Vivado flow "
                              f"(gateware/vivado) and pass its path")
        hwh = bit.with_suffix(".hwh")
        if not hwh.is_file():
            raise DeviceError(f"{hwh} not found: PYNQ needs the hardware handoff beside the bitstream under "
                              f"the same base name; copy {bit.stem}.hwh from the Vivado build next to {bit.name}")
        self.timeout_s = float(timeout_s)
        device = _active_pynq_device()
        overlay = pynq.Overlay(str(bit.resolve()), download=False, device=device)
        cores = [n for n, ip in overlay.ip_dict.items() if ip.get("type") == IP_VLNV]
        if len(cores) != 1:
            raise DeviceError(f"overlay {bit.name} has {len(cores)} synfab IPs ({IP_VLNV}), expected one "
                              f"(its IPs: {', '.join(sorted(overlay.ip_dict))}); build it with synfab's Vivado flow")
        core_ip = overlay.ip_dict[cores[0]]
        if core_ip["addr_range"] < self.regmap.size:
            raise DeviceError(f"overlay {bit.name} maps {core_ip['addr_range']:#x} bytes to the synfab IP but "
                              f"fabric {cfg.name!r} has a {self.regmap.size:#x}-byte register map; the bitstream "
                              f"was built for another fabric configuration")
        dma_ip = overlay.ip_dict.get(dma_name)
        if dma_ip is None or dma_ip.get("type") != DMA_VLNV:
            found = [n for n, ip in overlay.ip_dict.items() if ip.get("type") == DMA_VLNV]
            raise DeviceError(f"overlay {bit.name} has no AXI DMA ({DMA_VLNV}) named {dma_name!r} (AXI DMAs: "
                              f"{', '.join(found) or 'none'}); pass dma_name=... of the one on the fabric's streams")
        p = dma_ip["parameters"]
        if int(p.get("c_include_sg", 0)) or int(p.get("c_micro_dma", 0)):
            raise DeviceError(f"AXI DMA {dma_name!r} is in scatter-gather or micro mode; the fabric needs simple "
                              f"mode (c_include_sg=0, c_micro_dma=0) as in synfab's block design")
        for key in ("c_m_axis_mm2s_tdata_width", "c_s_axis_s2mm_tdata_width"):
            if int(p.get(key, STREAM_BITS)) != STREAM_BITS:
                raise DeviceError(f"AXI DMA {dma_name!r} has {key}={p[key]}; the fabric's streams are "
                                  f"{STREAM_BITS} bits wide")
        _fill_clock_frequencies(overlay)
        overlay.download()
        self.overlay = overlay
        self.core = getattr(overlay, cores[0])
        self.dma = getattr(overlay, dma_name)
        # pynq's DMA driver: buffer_max_size = 2**c_sg_length_width - 1 bytes per transfer.
        self.max_transfer_beats = self.dma.buffer_max_size // BEAT_BYTES
        self._in_buf = self._out_buf = None
        self._out_bound = None
        self.identify()

    # -- transport -----------------------------------------------------------------------------
    def _write(self, addrs, values) -> None:
        self.core.write_words(addrs, values)

    def _read(self, addrs) -> np.ndarray:
        return self.core.read_words(addrs).astype(np.int64)

    def load(self, tables) -> None:
        super().load(tables)
        self._out_bound = output_bound(tables)

    def _buffer(self, current, beats: int):
        """A uint64 DMA buffer of at least `beats` beats (the current one if it is big enough)."""
        if current is not None and len(current) >= beats:
            return current
        return pynq.allocate(shape=(max(beats, 1),), dtype=np.uint64, target=self.overlay.device)

    def _exchange(self, words, lasts):
        fixed, per_event = self._out_bound
        # One receive transfer holds the frame's whole output whenever the DMA allows it: the AXI
        # DMA leaves a packet longer than the S2MM length undefined (PG021), so splitting the
        # output over several receives is the fallback for overlays with a narrow length register.
        recv_beats = min(fixed + per_event * len(words), self.max_transfer_beats)
        self._in_buf = self._buffer(self._in_buf, len(words))
        self._out_buf = self._buffer(self._out_buf, recv_beats)
        self._in_buf[:len(words)] = words
        try:
            out = self._transfer_frame(len(words), recv_beats)
        except DeviceError:
            self._restart_dma()
            raise
        out_lasts = np.zeros(len(out), dtype=bool)
        out_lasts[-1] = True
        return out, out_lasts, None

    def _transfer_frame(self, n_words: int, recv_beats: int) -> np.ndarray:
        """Send the input buffer's first n_words beats in transfers the DMA allows while receiving
        until a receive ends on TLAST; returns the received beats."""
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        received: list[np.ndarray] = []

        def receive_ended() -> bool:
            """Keep a finished receive's beats.  It ended on TLAST if it stopped short of its length
            or its last beat is the end-of-frame beat; otherwise the next receive is armed."""
            recv.wait()
            n = recv.transferred // BEAT_BYTES
            received.append(np.array(self._out_buf[:n], dtype=np.uint64))
            if n < recv_beats or (n and STREAM_EVENT.unpack64(received[-1][-1:])["eof"][0] == 1):
                return True
            recv.transfer(self._out_buf, nbytes=recv_beats * BEAT_BYTES)
            return False

        ended = False
        recv.transfer(self._out_buf, nbytes=recv_beats * BEAT_BYTES)
        for start in range(0, n_words, self.max_transfer_beats):
            chunk = min(self.max_transfer_beats, n_words - start)
            send.transfer(self._in_buf, start=start * BEAT_BYTES, nbytes=chunk * BEAT_BYTES)
            deadline = time.monotonic() + self.timeout_s
            while not send.idle:
                # A full receive is re-armed meanwhile so the fabric's output never blocks its input.
                if not ended and recv.idle:
                    ended = receive_ended()
                self._check_progress(deadline, "send")
            send.wait()
        while not ended:
            deadline = time.monotonic() + self.timeout_s
            while not recv.idle:
                self._check_progress(deadline, "receive")
            ended = receive_ended()
        return np.concatenate(received)

    def _check_progress(self, deadline: float, what: str) -> None:
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        if send.error or recv.error:
            raise DeviceError(f"{self.name}: the AXI DMA reports an error during the {what} transfer "
                              f"(MM2S status {self.dma.read(DMASR):#x}, S2MM status "
                              f"{self.dma.read(S2MM_OFFSET + DMASR):#x}); "
                              f"check the overlay's DMA wiring")
        if time.monotonic() > deadline:
            raise DeviceError(f"{self.name}: DMA {what} transfer did not finish within {self.timeout_s:g} s; "
                              f"the fabric is stuck or the overlay does not match this fabric")

    def _restart_dma(self) -> None:
        """After a failed frame: reset the DMA (both channels) and start them again, so the next
        transfer does not meet a busy channel."""
        self.dma.write(DMACR, CR_RESET)     # either channel's reset bit resets the whole DMA
        self.dma.sendchannel.start()
        self.dma.recvchannel.start()

    def close(self) -> None:
        self._in_buf = self._out_buf = None
