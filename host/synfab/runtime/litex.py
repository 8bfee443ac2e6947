"""The `litex` backend: the fabric inside a LiteX SoC, reached over its UARTBone bridge.

The SoC (synfab_gateware.soc) puts the fabric's RegisterMap at FABRIC_BASE on its wishbone bus
and a stream bridge at BRIDGE_BASE; the host pushes input beats into the bridge's input FIFO,
pops output beats from its output FIFO and reads the frame's cycle count.  The SoC address map
and the bridge registers live in synfab.layouts (the gateware imports them from there).

Three ways to reach the bus (`port`):
  "HOST:PORT" (or "PORT")       a `litex_server --uart ...` (Etherbone over TCP, RemoteClient)
  "tcp://HOST:PORT"             the UARTBone byte protocol over TCP (the LiteX sim's serial2tcp)
  "/dev/ttyUSB0[@BAUD]"         the UARTBone byte protocol over a serial port (pyserial; any
                                pyserial URL such as rfc2217://HOST:PORT works too)
"""
from __future__ import annotations

import socket
import time

import numpy as np

from .device import DeviceError, RegisterDevice

# The SoC address map and the stream bridge's registers: defined once in synfab.layouts.
from ..layouts import (  # noqa: F401  (re-exported: this backend's public names)
    FABRIC_BASE, BRIDGE_BASE, BRIDGE_SIZE, BRIDGE_MAGIC, DEFAULT_BAUDRATE, ALIAS_WORDS, IN_DATA, IN_LAST,
    OUT_DATA, REGS, BRIDGE_REGS, OUT_WORDS_PER_BEAT, FLAG_IN_OVERFLOW, FLAG_OUT_STALL, FLAG_IN_OVERRUN, CTRL_RESYNC, bridge_reg,
)


# -- links: move 32-bit words to and from SoC bus addresses --------------------------------------
class UartBoneLink:
    """LiteX's UARTBone protocol (litex.soc.cores.uart.Stream2Wishbone) over a byte pipe.

    Commands: [cmd, length, word address (4 bytes, big-endian)] + data words (big-endian).
    Writes are never answered, and LiteX's serial2tcp buffers only 2 KiB, so before unanswered
    bytes would exceed WINDOW a read of the bridge id waits for the SoC to catch up.

    `bytes_to_device` and `bytes_from_device` count every byte that crossed the link (the serial
    line of a board, or the LiteX sim's serial2tcp, byte for byte): what `synfab bench` divides
    by the events of a frame for the host-link budget.
    """
    WRITE_INCR, READ_INCR = 0x01, 0x02
    MAX_BURST = 255
    WINDOW = 1536

    def __init__(self, pipe, name: str):
        self.pipe = pipe
        self.name = name
        self.unanswered = 0
        self.bytes_to_device = 0
        self.bytes_from_device = 0

    def traffic(self) -> dict:
        """Bytes that crossed the link so far, per direction."""
        return {"to_device": self.bytes_to_device, "from_device": self.bytes_from_device}

    @staticmethod
    def _header(cmd: int, addr: int, n: int) -> bytes:
        return bytes([cmd, n]) + (addr // 4).to_bytes(4, "big")

    def write(self, addr: int, words) -> None:
        words = np.asarray(words, dtype=">u4")
        for i in range(0, len(words), self.MAX_BURST):
            chunk = words[i:i + self.MAX_BURST]
            msg = self._header(self.WRITE_INCR, addr + 4 * i, len(chunk)) + chunk.tobytes()
            if self.unanswered and self.unanswered + len(msg) > self.WINDOW:
                self.read(bridge_reg("id"), 1)
            self.pipe.send(msg)
            self.unanswered += len(msg)
            self.bytes_to_device += len(msg)

    def read(self, addr: int, n: int) -> np.ndarray:
        out = []
        for i in range(0, n, self.MAX_BURST):
            k = min(self.MAX_BURST, n - i)
            command = self._header(self.READ_INCR, addr + 4 * i, k)
            self.pipe.send(command)
            answer = self.pipe.recv_exact(4 * k)
            out.append(np.frombuffer(answer, dtype=">u4"))
            self.unanswered = 0
            self.bytes_to_device += len(command)
            self.bytes_from_device += len(answer)
        return np.concatenate(out).astype(np.uint32) if out else np.zeros(0, np.uint32)

    def close(self) -> None:
        self.pipe.close()


QUICKACK = getattr(socket, "TCP_QUICKACK", None)     # Linux only


class _TcpPipe:
    def __init__(self, host: str, port: int, timeout: float):
        self.where = f"tcp://{host}:{port}"
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise DeviceError(f"litex: cannot connect to {self.where} ({e}); is the LiteX sim running?")
        # One command per round trip: Nagle would hold each small command back.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if QUICKACK is not None:
                # The LiteX sim's serial2tcp writes every byte of an answer with its own write() on
                # a socket with Nagle's algorithm on: it sends the first byte, then holds the rest
                # until that byte is acknowledged.  A delayed ACK (40 ms on Linux) made every read
                # a 47 ms round trip; Linux clears QUICKACK again after a while, so it is set before
                # every receive.
                self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            try:
                part = self.sock.recv(n - len(buf))
            except socket.timeout:
                part = None
            if not part:
                raise DeviceError(f"litex: no answer from {self.where} (got {len(buf)} of {n} bytes); "
                                  "check that the SoC is running and nothing else is connected")
            buf += part
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()


class _SerialPipe:
    def __init__(self, device: str, baudrate: int, timeout: float):
        try:
            import serial
        except ImportError:
            raise DeviceError("litex: a serial port needs pyserial; pip install pyserial")
        self.where = device
        try:
            self.port = serial.serial_for_url(device, baudrate, timeout=timeout)
        except (serial.SerialException, ValueError) as e:
            raise DeviceError(f"litex: cannot open serial port {device} ({e}); check the cable and --port")
        self.port.reset_input_buffer()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def recv_exact(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            raise DeviceError(f"litex: no answer from {self.where} (got {len(data)} of {n} bytes); "
                              "check the bitstream, the baud rate (PORT@BAUD) and the cable")
        return data

    def close(self) -> None:
        self.port.close()


class ServerLink:
    """A running `litex_server` (Etherbone over TCP) through litex's RemoteClient."""
    MAX_BURST = 255

    def __init__(self, host: str, port: int, timeout: float):
        try:
            from litex.tools.litex_client import RemoteClient
        except ImportError:
            raise DeviceError("litex: reaching a litex_server needs litex; pip install litex")
        self.name = f"{host}:{port}"
        self.client = RemoteClient(host=host, port=port)
        try:
            self.client.open()
        except OSError as e:
            raise DeviceError(f"litex: cannot reach litex_server at {self.name} ({e}); start it with "
                              "`litex_server --uart --uart-port /dev/ttyUSB0 --uart-baudrate 1000000`")
        # RemoteClient answers zeros on a timeout; a long timeout keeps slow links from doing that.
        self.client.socket.settimeout(timeout)

    def write(self, addr: int, words) -> None:
        words = [int(w) for w in np.asarray(words, dtype=np.uint32)]
        for i in range(0, len(words), self.MAX_BURST):
            self.client.write(addr + 4 * i, words[i:i + self.MAX_BURST])

    def read(self, addr: int, n: int) -> np.ndarray:
        out = []
        for i in range(0, n, self.MAX_BURST):
            k = min(self.MAX_BURST, n - i)
            out += self.client.read(addr + 4 * i, length=k)
        return np.array(out, dtype=np.uint32)

    def close(self) -> None:
        self.client.close()


def open_link(port: str, timeout: float = 30.0):
    """A link for a `port` string (see the module docstring)."""
    port = str(port)
    if port.startswith("tcp://"):
        host, _, num = port[len("tcp://"):].rpartition(":")
        if not num.isdigit():
            raise DeviceError(f"litex: bad port {port!r}; use tcp://HOST:PORT")
        return UartBoneLink(_TcpPipe(host or "localhost", int(num), timeout), port)
    if port.startswith(("/dev/", "COM")) or "://" in port:        # pyserial device or URL
        dev, _, baud = port.removeprefix("serial://").partition("@")
        if baud and not baud.isdigit():
            raise DeviceError(f"litex: bad baud rate in {port!r}; use DEVICE@BAUD, e.g. /dev/ttyUSB0@1000000")
        return UartBoneLink(_SerialPipe(dev, int(baud or DEFAULT_BAUDRATE), timeout), port)
    host, _, num = port.rpartition(":")
    if not num.isdigit():
        raise DeviceError(f"litex: bad port {port!r}; use HOST:PORT (litex_server), tcp://HOST:PORT "
                          "(LiteX sim) or /dev/ttyUSB0@BAUD")
    return ServerLink(host or "localhost", int(num), timeout)


# -- the device ---------------------------------------------------------------------------------------
def _runs(addrs: np.ndarray) -> list[tuple[int, int]]:
    """(start index, length) of runs of consecutive word addresses."""
    if len(addrs) == 0:
        return []
    breaks = np.flatnonzero(np.diff(addrs) != 4) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(addrs)]])
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


class LitexDevice(RegisterDevice):
    """The fabric in a LiteX SoC (board or LiteX sim) as a synfab Device."""
    name = "litex"

    def __init__(self, cfg, port: str = "localhost:1234", timeout: float = 30.0, link=None, bitstream=None):
        if bitstream is not None:
            raise DeviceError("litex: --bitstream is for pynq; program an ECP5 board with `synfab flash --board "
                              "NAME` and pass --port")
        super().__init__(cfg)
        self.timeout = timeout
        self.link = link or open_link(port, timeout)
        ident = int(self.link.read(bridge_reg("id"), 1)[0])
        if ident != BRIDGE_MAGIC:
            self.link.close()
            raise DeviceError(f"litex: no synfab SoC behind {port} (bridge id reads {ident:#010x}, expected "
                              f"{BRIDGE_MAGIC:#010x}); load a bitstream built with `synfab build`")
        self.link.write(bridge_reg("ctrl"), [CTRL_RESYNC])
        regs = self._bridge_regs()
        self.in_depth, self.out_depth = regs["in_depth"], regs["out_depth"]
        # Bytes of bridge polls that found nothing to do (the fabric still working on a frame): they
        # fill time the link would otherwise be idle, and how many there are depends on how fast
        # the SoC runs against the link (a LiteX sim is thousands of times slower than a board).
        self.idle_poll_bytes = {"to_device": 0, "from_device": 0}

    def close(self) -> None:
        self.link.close()

    def _bridge_regs(self) -> dict:
        vals = self.link.read(BRIDGE_BASE + REGS, len(BRIDGE_REGS))
        return {n: int(v) for n, v in zip(BRIDGE_REGS, vals)}

    # -- transport ------------------------------------------------------------------------------
    def _write(self, addrs, values) -> None:
        addrs = np.asarray(addrs, dtype=np.int64)
        values = np.asarray(values, dtype=np.uint32)
        for s, n in _runs(addrs):
            self.link.write(FABRIC_BASE + int(addrs[s]), values[s:s + n])

    def _read(self, addrs) -> np.ndarray:
        addrs = np.asarray(addrs, dtype=np.int64)
        out = np.zeros(len(addrs), dtype=np.uint32)
        for s, n in _runs(addrs):
            out[s:s + n] = self.link.read(FABRIC_BASE + int(addrs[s]), n)
        return out

    def _push(self, words: np.ndarray, lasts: np.ndarray) -> None:
        """Write beats into the input FIFO: runs without last go to IN_DATA, a last beat to IN_LAST."""
        pairs = np.stack([words & np.uint64(0xFFFFFFFF), words >> np.uint64(32)], axis=1).astype(np.uint32)
        start = 0
        per_burst = ALIAS_WORDS // 2
        for i in np.flatnonzero(lasts).tolist() + [len(words)]:
            for s in range(start, i, per_burst):
                self.link.write(BRIDGE_BASE + IN_DATA, pairs[s:min(i, s + per_burst)].reshape(-1))
            if i < len(words):
                self.link.write(BRIDGE_BASE + IN_LAST, pairs[i])
            start = i + 1

    def _pop(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        raw = self.link.read(BRIDGE_BASE + OUT_DATA, n * OUT_WORDS_PER_BEAT).reshape(n, OUT_WORDS_PER_BEAT)
        if not (raw[:, 2] & 1).all():
            raise DeviceError("litex: the output FIFO ran empty while its level said otherwise; "
                              "another client may be reading the SoC")
        words = raw[:, 0].astype(np.uint64) | (raw[:, 1].astype(np.uint64) << np.uint64(32))
        return words, ((raw[:, 2] >> 1) & 1).astype(np.uint8)

    def _exchange(self, words, lasts):
        words = np.asarray(words, dtype=np.uint64)
        lasts = np.asarray(lasts, dtype=np.uint8)
        out_words, out_lasts = [], []
        sent, deadline = 0, time.monotonic() + self.timeout
        while True:
            before = self.link.traffic() if hasattr(self.link, "traffic") else None
            regs = self._bridge_regs()
            if regs["flags"] & FLAG_IN_OVERRUN:
                raise DeviceError("litex: input beats were lost (written into a full FIFO); "
                                  "another client may be writing to the SoC")
            progress = False
            if sent < len(words) and regs["in_free"]:
                k = min(regs["in_free"], len(words) - sent)
                self._push(words[sent:sent + k], lasts[sent:sent + k])
                sent += k
                progress = True
            if regs["out_level"]:
                w, l = self._pop(min(regs["out_level"], ALIAS_WORDS // OUT_WORDS_PER_BEAT))
                out_words.append(w)
                out_lasts.append(l)
                progress = True
                if l.any():
                    break
            if progress:
                deadline = time.monotonic() + self.timeout
                continue
            if before is not None:
                after = self.link.traffic()
                for k in self.idle_poll_bytes:
                    self.idle_poll_bytes[k] += after[k] - before[k]
            if time.monotonic() > deadline:
                raise DeviceError(f"litex: frame did not finish within {self.timeout:.0f} s (sent {sent} of "
                                  f"{len(words)} beats, {sum(map(len, out_words))} out); the fabric may be stuck")
        out_w, out_l = np.concatenate(out_words), np.concatenate(out_lasts)
        end = int(np.flatnonzero(out_l)[0]) + 1
        if end != len(out_w):
            raise DeviceError("litex: output beats after the end-of-frame beat; one frame at a time please")
        regs = self._bridge_regs()
        exact = not regs["flags"] & (FLAG_IN_OVERFLOW | FLAG_OUT_STALL)
        return out_w, out_l, (regs["frame_cycles"] if exact else None)
