"""Seeded faults on the host link: a byte-pipe wrapper that drops, duplicates and flips bytes.

`FaultyPipe(pipe, rates, seed)` sits between `runtime.litex.UartBoneLink` and the real pipe (the
LiteX sim's TCP socket or a serial port) and offers the same methods (send, recv_some, recv_exact,
pending, close).  Every byte crossing it in a direction gets a fault of a kind with the probability
`rates[(direction, kind)]`: `drop` (lost), `dup` (sent twice), `flip` (XORed with a random non-zero
byte).  `targets` adds faults at chosen bytes (the n-th byte of a kind of traffic, below), which
tests use to hit every place exactly once.  Faults are injected only while `enabled`.

Every fault is recorded as a `Fault`: its sequence number, direction, kind, offset in that
direction's byte stream, and `where` -- what the byte belonged to, found by following the UARTBone
commands the host sends (well formed, as the host wrote them) and the answers they ask for:

    header              the 6-byte header of a read or write command
    input_beats         data written into the bridge's input FIFO (IN_DATA, IN_LAST)
    bridge_regs         data written to the bridge's registers (ctrl)
    fabric              data written to the fabric's registers and tables
    answer:out_data     answer bytes of output beats (bridge OUT_DATA)
    answer:bridge_regs  answer bytes of the bridge's registers (the check word included)
    answer:fabric       answer bytes of the fabric's registers, counters, tables and neuron state
    answer:unasked      bytes the device sent that no command asked for
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..layouts import BRIDGE_BASE, BRIDGE_SIZE, FABRIC_BASE, IN_DATA, IN_LAST, OUT_DATA, REGS
from .litex import LinkError, UartBoneLink

DIRECTIONS = ("to_device", "from_device")
KINDS = ("drop", "dup", "flip")
HEADER_BYTES = UartBoneLink.HEADER_BYTES


@dataclass(frozen=True)
class Fault:
    seq: int
    direction: str
    kind: str
    offset: int         # byte offset in the direction's stream (before the fault)
    where: str          # what the byte belonged to (module docstring)
    addr: int | None = None     # SoC byte address of the word the byte carried (data and answers)


def region(addr: int) -> str:
    """What a SoC byte address is, for labelling the bytes that carry its data."""
    if BRIDGE_BASE <= addr < BRIDGE_BASE + BRIDGE_SIZE:
        window = (addr - BRIDGE_BASE) // (IN_LAST - IN_DATA) * (IN_LAST - IN_DATA)
        return {IN_DATA: "input_beats", IN_LAST: "input_beats", OUT_DATA: "out_data", REGS: "bridge_regs"}[window]
    return "fabric" if addr >= FABRIC_BASE else "other"


class CommandTracker:
    """Follows the host's UARTBone byte stream and labels its bytes; queues the answer bytes its
    reads ask for, to label what comes back."""

    def __init__(self):
        self._header = bytearray()
        self._data_left = 0
        self._data_where = ""
        self._data_addr = 0               # SoC byte address of the next data byte's word
        self._answers = deque()           # [bytes left, label, address of the next byte's word]

    def sent(self, data: bytes) -> list[tuple[int, int, str, int | None]]:
        """(start, end, label, address of the word at start) segments covering `data`, the next
        bytes the host sends.  The host sends only once it has every answer it waits for, or has
        given up on them: answers still queued will not come."""
        self._answers.clear()
        segs, i = [], 0
        while i < len(data):
            if self._data_left:
                k = min(self._data_left, len(data) - i)
                segs.append((i, i + k, self._data_where, self._data_addr))
                self._data_left -= k
                self._data_addr += k
            else:
                k = min(HEADER_BYTES - len(self._header), len(data) - i)
                segs.append((i, i + k, "header", None))
                self._header += data[i:i + k]
                if len(self._header) == HEADER_BYTES:
                    self._command(bytes(self._header))
                    self._header.clear()
            i += k
        return segs

    def _command(self, header: bytes) -> None:
        cmd, n, addr = UartBoneLink.parse_header(header)
        if cmd == UartBoneLink.WRITE_INCR:
            self._data_left, self._data_where, self._data_addr = 4 * n, region(addr), addr
        elif cmd == UartBoneLink.READ_INCR:
            self._answers.append([4 * n, "answer:" + region(addr), addr])

    def received(self, data: bytes) -> list[tuple[int, int, str, int | None]]:
        """(start, end, label, address of the word at start) segments covering `data`, the next
        bytes the device sent."""
        segs, i = [], 0
        while i < len(data):
            if not self._answers:
                segs.append((i, len(data), "answer:unasked", None))
                break
            left = self._answers[0]
            k = min(left[0], len(data) - i)
            segs.append((i, i + k, left[1], left[2]))
            left[0] -= k
            left[2] += k
            if left[0] == 0:
                self._answers.popleft()
            i += k
        return segs


def uniform_rates(p: float, kinds=KINDS, directions=DIRECTIONS) -> dict:
    """A per-byte fault probability p in each direction, shared equally by the kinds."""
    return {(d, k): p / len(kinds) for d in directions for k in kinds}


class FaultyPipe:
    """A byte pipe that injects seeded faults (module docstring)."""

    def __init__(self, pipe, rates: dict | None = None, seed: int = 0, targets=()):
        """rates: {(direction, kind): probability per byte}; targets: (direction, where, n, kind)
        tuples: the n-th byte (from 0) labelled `where` in that direction gets that fault."""
        self.pipe = pipe
        self.where = getattr(pipe, "where", "the link")
        self.rates = dict(rates or {})
        for d, k in self.rates:
            if d not in DIRECTIONS or k not in KINDS:
                raise ValueError(f"fault rate for ({d!r}, {k!r}): directions are {DIRECTIONS}, kinds {KINDS}")
        self.rng = np.random.default_rng(seed)
        self.targets = [list(t) for t in targets]
        self._seen = {}                   # (direction, where) -> bytes labelled so far
        self.enabled = True
        self.faults: list[Fault] = []
        self.offsets = dict.fromkeys(DIRECTIONS, 0)
        self.tracker = CommandTracker()
        self._buf = bytearray()           # received, faults applied, not yet read

    # -- fault injection ---------------------------------------------------------------------------
    def _targeted(self, direction: str, segs) -> dict:
        """{byte index: kind} of targets that fall into these segments."""
        hits = {}
        for start, end, where, _ in segs:
            seen = self._seen.get((direction, where), 0)
            for t in self.targets:
                if t[0] == direction and t[1] == where and seen <= t[2] < seen + end - start:
                    hits[start + t[2] - seen] = t[3]
            self._seen[(direction, where)] = seen + end - start
        return hits

    def _inject(self, direction: str, data: bytes, segs) -> bytes:
        hits = self._targeted(direction, segs) if self.enabled else {}
        kinds = [k for (d, k) in self.rates if d == direction]
        p = sum(self.rates[(direction, k)] for k in kinds)
        if self.enabled and p > 0:
            for i in np.flatnonzero(self.rng.random(len(data)) < p).tolist():
                weights = np.array([self.rates[(direction, k)] for k in kinds]) / p
                hits.setdefault(i, kinds[int(self.rng.choice(len(kinds), p=weights))])
        base = self.offsets[direction]
        self.offsets[direction] += len(data)
        if not hits:
            return data
        out, last = bytearray(), 0
        for i in sorted(hits):
            kind = hits[i]
            out += data[last:i]
            if kind == "dup":
                out += data[i:i + 1] * 2
            elif kind == "flip":
                out.append(data[i] ^ int(self.rng.integers(1, 256)))
            elif kind != "drop":
                raise ValueError(f"unknown fault kind {kind!r}; use one of {KINDS}")
            last = i + 1
            start, where, addr = next((s, w, a) for s, e, w, a in segs if s <= i < e)
            # A segment may start inside a word: its address counts bytes; the word's is below.
            word = None if addr is None else (addr + i - start) // 4 * 4
            self.faults.append(Fault(len(self.faults), direction, kind, base + i, where, word))
        return bytes(out + data[last:])

    # -- the pipe ------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.pipe.send(self._inject("to_device", bytes(data), self.tracker.sent(bytes(data))))

    def recv_some(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not self._buf:
            part = self.pipe.recv_some(1 << 16, max(0.0, deadline - time.monotonic()))
            if not part:
                return b""
            self._buf += self._inject("from_device", part, self.tracker.received(part))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def recv_exact(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (getattr(self.pipe, "timeout", 30.0) if timeout is None else timeout)
        buf = bytearray()
        while len(buf) < n:
            part = self.recv_some(n - len(buf), deadline - time.monotonic())
            if not part:
                raise LinkError(f"litex: no answer from {self.where} (got {len(buf)} of {n} bytes)")
            buf += part
        return bytes(buf)

    def pending(self) -> int:
        return len(self._buf) + self.pipe.pending()

    def close(self) -> None:
        self.pipe.close()
