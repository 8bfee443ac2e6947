"""SimFabric: the Verilator model of synfab_fabric driven through ctypes.

Everything per cycle happens in C++ (harness.cpp); Python only hands over arrays of
register accesses and stream beats and takes back the collected output beats.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from synfab.config import FabricConfig
from synfab.errors import SynfabError
from synfab.layouts import RegisterMap

from .build import build_fabric, build_verilog

RESET_CYCLES = 16
# Longest wait for one AXI-Lite response; far above any access the fabric stalls legitimately.
AXIL_TIMEOUT_CYCLES = 1_000_000
RESP_TIMEOUT = -1   # harness.cpp's code for an access that got no response
RESP_NAMES = {1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}

_u64p = ctypes.POINTER(ctypes.c_uint64)
_u32p = ctypes.POINTER(ctypes.c_uint32)
_u8p = ctypes.POINTER(ctypes.c_uint8)
_SIGNATURES = {
    "sim_create": (ctypes.c_void_p, [ctypes.c_uint64]),
    "sim_destroy": (None, [ctypes.c_void_p]),
    "sim_reset": (None, [ctypes.c_void_p, ctypes.c_uint32]),
    "sim_set_gaps": (None, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64]),
    "sim_axil_write": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32]),
    "sim_axil_read": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_uint64, _u32p]),
    "sim_axil_write_block": (ctypes.c_int32, [ctypes.c_void_p, _u64p, _u32p, ctypes.c_uint64, _u64p]),
    "sim_axil_read_block": (ctypes.c_int32, [ctypes.c_void_p, _u64p, _u32p, ctypes.c_uint64, _u64p]),
    "sim_push": (None, [ctypes.c_void_p, _u64p, _u8p, ctypes.c_uint64]),
    "sim_run": (None, [ctypes.c_void_p, ctypes.c_uint64]),
    "sim_run_until_frames": (ctypes.c_int64, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]),
    "sim_out_count": (ctypes.c_uint64, [ctypes.c_void_p]),
    "sim_pull": (ctypes.c_uint64, [ctypes.c_void_p, _u64p, _u8p, ctypes.c_uint64]),
    "sim_cycles": (ctypes.c_uint64, [ctypes.c_void_p]),
    "sim_frames_out": (ctypes.c_uint64, [ctypes.c_void_p]),
    "sim_in_pending": (ctypes.c_uint64, [ctypes.c_void_p]),
    "sim_in_taken": (ctypes.c_uint64, [ctypes.c_void_p]),
    "sim_in_last_cycle": (ctypes.c_uint64, [ctypes.c_void_p]),
}


class SimError(SynfabError):
    """The simulated fabric did not do what was asked (error response, timeout)."""


class AXILiteError(SimError):
    """An AXI-Lite access answered with a non-OKAY response."""

    def __init__(self, op: str, addr: int, resp: int):
        self.op, self.addr, self.resp = op, addr, resp
        if resp == RESP_TIMEOUT:
            msg = (f"AXI-Lite {op} at 0x{addr:08x} got no response within {AXIL_TIMEOUT_CYCLES} cycles; "
                   f"the fabric's AXI-Lite port is stuck (a gateware bug)")
        else:
            msg = (f"AXI-Lite {op} at 0x{addr:08x} answered {RESP_NAMES.get(resp, resp)}; "
                   f"use an address inside the fabric's RegisterMap")
        super().__init__(msg)


def _load(lib_path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(lib_path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _ptr(a: np.ndarray, ptype):
    return a.ctypes.data_as(ptype)


def _probability_threshold(p: float, what: str) -> int:
    if not 0.0 <= p < 1.0:
        raise SimError(f"{what}={p} is not a probability in [0, 1); use e.g. 0.3")
    return int(round(p * 2**32))


class SimFabric:
    """Cycle-accurate simulation of the fabric for cfg.

    `verilog` replaces the generated fabric with another synfab_fabric Verilog file (same
    ports), e.g. a stand-in for harness tests; `library` with a built one (sim.chain.build_chain).
    """

    def __init__(self, cfg: FabricConfig, *, verilog: Path | None = None, quiet: bool = False,
                 addr_bits: int | None = None, library: Path | None = None):
        self.cfg = cfg
        self.regmap = RegisterMap(cfg)
        # The AXI-Lite address width: the fabric's, or that of the Verilog given (a chain of boards).
        self.addr_bits = addr_bits or self.regmap.addr_bits
        if library is not None:
            self.lib_path = Path(library)
        else:
            self.lib_path = build_verilog(verilog, quiet=quiet) if verilog else build_fabric(cfg, quiet=quiet)
        self._lib = _load(self.lib_path)
        self._h = self._lib.sim_create(AXIL_TIMEOUT_CYCLES)
        self.reset()

    # --- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        if self._h:
            self._lib.sim_destroy(self._h)
            self._h = None

    def __enter__(self) -> "SimFabric":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_h", None):
            self.close()

    def reset(self) -> None:
        """Synchronous reset; also drops queued input and collected output, cycles = 0."""
        self._lib.sim_reset(self._h, RESET_CYCLES)

    def set_gaps(self, p_in: float, p_out: float, seed: int = 0) -> None:
        """Per cycle, hold back s_axis_tvalid with probability p_in (only between beats: a
        beat once offered stays until taken) and drop m_axis_tready with probability p_out."""
        self._lib.sim_set_gaps(self._h, _probability_threshold(p_in, "p_in"),
                               _probability_threshold(p_out, "p_out"), int(seed) & (2**64 - 1))

    # --- AXI4-Lite ---------------------------------------------------------------------
    def _addrs(self, addrs) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(addrs, dtype=np.int64).reshape(-1))
        bad = a[(a < 0) | (a >= 1 << self.addr_bits) | (a % 4 != 0)]
        if bad.size:
            raise SimError(f"address 0x{int(bad[0]):x} is not a word-aligned byte address below "
                           f"2**{self.addr_bits} (the fabric's AXI-Lite address width)")
        return a.astype(np.uint64)

    def write(self, addr: int, value: int) -> None:
        a = int(self._addrs([addr])[0])
        resp = self._lib.sim_axil_write(self._h, a, int(value) & 0xFFFFFFFF)
        if resp != 0:
            raise AXILiteError("write", a, resp)

    def read(self, addr: int) -> int:
        a = int(self._addrs([addr])[0])
        out = ctypes.c_uint32()
        resp = self._lib.sim_axil_read(self._h, a, ctypes.byref(out))
        if resp != 0:
            raise AXILiteError("read", a, resp)
        return out.value

    def write_block(self, addrs, values) -> None:
        """One write per (addr, value), in order; stops at the first error response."""
        a = self._addrs(addrs)
        v = np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1) & 0xFFFFFFFF,
                                 dtype=np.uint32)
        if v.size != a.size:
            raise SimError(f"write_block: {a.size} addresses but {v.size} values; pass one value per address")
        done = ctypes.c_uint64()
        resp = self._lib.sim_axil_write_block(self._h, _ptr(a, _u64p), _ptr(v, _u32p), a.size,
                                              ctypes.byref(done))
        if resp != 0:
            raise AXILiteError("write", int(a[done.value]), resp)

    def read_block(self, addrs) -> np.ndarray:
        """Reads every address in order; returns uint32 values."""
        a = self._addrs(addrs)
        out = np.zeros(a.size, dtype=np.uint32)
        done = ctypes.c_uint64()
        resp = self._lib.sim_axil_read_block(self._h, _ptr(a, _u64p), _ptr(out, _u32p), a.size,
                                             ctypes.byref(done))
        if resp != 0:
            raise AXILiteError("read", int(a[done.value]), resp)
        return out

    # --- AXI4-Stream -------------------------------------------------------------------
    def push(self, words, lasts) -> None:
        """Queue input beats (64-bit words, TLAST flags); they enter as the clock runs."""
        w = np.ascontiguousarray(np.asarray(words, dtype=np.uint64).reshape(-1))
        l = np.ascontiguousarray(np.asarray(lasts, dtype=bool).reshape(-1), dtype=np.uint8)
        if w.size != l.size:
            raise SimError(f"push: {w.size} words but {l.size} last flags; pass one flag per word")
        self._lib.sim_push(self._h, _ptr(w, _u64p), _ptr(l, _u8p), w.size)

    def pull(self) -> tuple[np.ndarray, np.ndarray]:
        """Every output beat collected so far (uint64 words, bool TLAST), oldest first."""
        n = self._lib.sim_out_count(self._h)
        words = np.zeros(n, dtype=np.uint64)
        lasts = np.zeros(n, dtype=np.uint8)
        self._lib.sim_pull(self._h, _ptr(words, _u64p), _ptr(lasts, _u8p), n)
        return words, lasts.astype(bool)

    # --- clock -------------------------------------------------------------------------
    def run(self, cycles: int) -> None:
        self._lib.sim_run(self._h, int(cycles))

    def run_frames(self, n: int, max_cycles: int) -> int:
        """Clock until n more output frames (TLAST beats) arrived; returns the cycles taken."""
        before = self._lib.sim_frames_out(self._h)
        used = self._lib.sim_run_until_frames(self._h, int(n), int(max_cycles))
        if used < 0:
            got = self._lib.sim_frames_out(self._h) - before
            raise SimError(f"only {got} of {n} output frames within {max_cycles} cycles "
                           f"({self.pending_input} input beats still queued); raise max_cycles "
                           f"or end every input frame with an eof beat")
        return used

    @property
    def cycles(self) -> int:
        """Clock cycles since the last reset."""
        return self._lib.sim_cycles(self._h)

    @property
    def input_taken(self) -> tuple[int, int]:
        """(input beats the fabric took since the last reset, the cycle count when it took the latest)."""
        return self._lib.sim_in_taken(self._h), self._lib.sim_in_last_cycle(self._h)

    @property
    def pending_input(self) -> int:
        """Input beats queued but not yet taken by the fabric."""
        return self._lib.sim_in_pending(self._h)
