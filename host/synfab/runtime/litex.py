"""The `litex` backend: the fabric inside a LiteX SoC, reached over its UARTBone bridge.

The SoC (synfab_gateware.soc) puts the fabric's RegisterMap at FABRIC_BASE on its wishbone bus
and a stream bridge at BRIDGE_BASE; the host pushes input beats into the bridge's input FIFO,
pops output beats from its output FIFO and reads the frame's cycle count.  The SoC address map
and the bridge registers live in synfab.layouts (the gateware imports them from there).

Four ways to reach the bus (`port`):
  "HOST:PORT" (or "PORT")       a `litex_server --uart ...` (Etherbone over TCP, RemoteClient)
  "tcp://HOST:PORT"             the UARTBone byte protocol over TCP (the LiteX sim's serial2tcp)
  "/dev/ttyUSB0[@BAUD]"         the UARTBone byte protocol over a serial port (pyserial; any
                                pyserial URL such as rfc2217://HOST:PORT works too)
  "udp://HOST:PORT"             an Ethernet SoC (synfab_gateware.soc.eth): Etherbone over UDP on
                                PORT for the bus, and the fabric's streams as UDP packets on
                                PORT + 1 (layouts UDP_*: flow control by credits, every packet
                                numbered; the SoC drops and counts what it cannot take whole)

UARTBone has no checksum, sequence number or acknowledgement: a byte lost, duplicated or changed on
the line makes the SoC write or answer something else, and nothing says so.  `verify=True` (link and
device) adds what the host can check without a gateware change (docs/DESIGN.md "Host link faults"):
a check word after every answer (a read of the bridge id in the same round trip: a lost or extra
byte shifts it), stray answer bytes, answer timeouts, every value read twice (output beats too:
the bridge's resync rewinds its word phase), registers read back after writing and again after
every frame, tables read back, and the fabric's counters balanced against what the host sent and
received.  A fault so detected raises LinkError; `recover()` brings the link back in step and
flushes the stream FIFOs, after which the tables and neuron state must be written again
(runtime.guard does so and retries the frame).  What no host check sees: a changed byte in the
value of an input beat the bridge takes (its FIFO cannot be read back); the golden model's check
catches it.
"""
from __future__ import annotations

import select
import socket
import struct
import time

import numpy as np

from .check import link_balance
from .device import DeviceError, RegisterDevice, eof_word, frame_beats, stream_columns

# The SoC address map and the stream bridge's registers: defined once in synfab.layouts.
from ..layouts import (  # noqa: F401  (re-exported: this backend's public names)
    FABRIC_BASE, BRIDGE_BASE, BRIDGE_SIZE, BRIDGE_MAGIC, DEFAULT_BAUDRATE, ALIAS_WORDS, IN_DATA, IN_LAST,
    OUT_DATA, REGS, BRIDGE_REGS, OUT_WORDS_PER_BEAT, FLAG_IN_OVERFLOW, FLAG_OUT_STALL, FLAG_IN_OVERRUN, CTRL_RESYNC, bridge_reg,
    CTRL_PACKED, PACKED_EVENT,
    ETH_SOC_IP, ETHERBONE_MAX_WORDS, ETHERBONE_UDP_PORT, STREAM_EVENT, UDP_CTRL_OUTPUT, UDP_CTRL_RESET, UDP_FLAG_FRAME_END,
    UDP_MAGIC, UDP_MAX_BEATS, UDP_OUT_HEADER_WORDS, UDP_STREAM_BASE, UDP_STREAM_MAGIC, UDP_STREAM_REGS,
    udp_stream_reg,
)


class PortError(DeviceError):
    """A --port string the litex backend cannot use (one line; the CLI exits 1)."""


class LinkError(DeviceError):
    """A fault on the host link was detected (lost, extra or changed bytes, no answer): what was
    written or read in the operation cannot be trusted."""


def drain_pipe(pipe, quiet: float) -> int:
    """Read and drop whatever the device sends until it has been quiet for `quiet` seconds."""
    dropped = 0
    while True:
        part = pipe.recv_some(1 << 16, quiet)
        if not part:
            return dropped
        dropped += len(part)


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
    # verify: after a fault, how often the link is probed (each failed probe waits for the SoC's
    # command parser to time out) before it counts as lost.
    RESYNC_TRIES = 5

    def __init__(self, pipe, name: str, verify: bool = False, answer_timeout: float = 2.0):
        self.pipe = pipe
        self.name = name
        self.verify = verify
        self.answer_timeout = answer_timeout
        self.timed_out = False          # verify: an answer did not come since the last resync
        self._nonce = 0
        self.unanswered = 0
        self.bytes_to_device = 0
        self.bytes_from_device = 0

    def traffic(self) -> dict:
        """Bytes that crossed the link so far, per direction."""
        return {"to_device": self.bytes_to_device, "from_device": self.bytes_from_device}

    HEADER_BYTES = 6

    @staticmethod
    def _header(cmd: int, addr: int, n: int) -> bytes:
        return bytes([cmd, n]) + (addr // 4).to_bytes(4, "big")

    @staticmethod
    def parse_header(header: bytes) -> tuple[int, int, int]:
        """(cmd, words, byte address) of a command header (`_header`'s inverse; a length byte of
        0 stands for 256 words)."""
        return header[0], header[1] or 256, int.from_bytes(header[2:UartBoneLink.HEADER_BYTES], "big") * 4

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
            if self.verify:
                answer = self.exchange(command, 4 * k)
            else:
                self.pipe.send(command)
                answer = self.pipe.recv_exact(4 * k)
                self.unanswered = 0
                self.bytes_to_device += len(command)
                self.bytes_from_device += len(answer)
            out.append(np.frombuffer(answer, dtype=">u4"))
        return np.concatenate(out).astype(np.uint32) if out else np.zeros(0, np.uint32)

    # -- verify mode ----------------------------------------------------------------------------
    def check_word(self) -> bytes:
        """The command whose answer closes every verified exchange: one read of the bridge id."""
        return self._header(self.READ_INCR, bridge_reg("id"), 1)

    def exchange(self, commands: bytes, answer_bytes: int) -> bytes:
        """Send commands (at most WINDOW bytes) and a read of the bridge id; return the
        `answer_bytes` answer bytes before the id's.  LinkError when bytes no command asked for
        are waiting, when the answer does not come, or when its last word is not the bridge id
        (a byte lost or added anywhere on the way shifts it; a changed one changes it)."""
        stray = self.pipe.pending()
        if stray:
            drain_pipe(self.pipe, 0.02)
            raise LinkError(f"{self.name}: {stray} byte(s) from the device that no command asked for "
                            "(a duplicated or misparsed byte on the link)")
        msg = commands + self.check_word()
        self.pipe.send(msg)
        self.bytes_to_device += len(msg)
        try:
            answer = self.pipe.recv_exact(answer_bytes + 4, self.answer_timeout)
        except LinkError:
            self.timed_out = True
            raise
        self.bytes_from_device += len(answer)
        self.unanswered = 0
        if answer[-4:] != BRIDGE_MAGIC.to_bytes(4, "big"):
            raise LinkError(f"{self.name}: an answer's check word reads {answer[-4:].hex()} instead of the "
                            f"bridge id {BRIDGE_MAGIC:08x} (bytes lost, added or changed on the link)")
        return answer[:-4]

    def resync(self, parser_wait: float, scratch: tuple[int, int] | None = None) -> None:
        """Back in step after a fault.  After an answer that did not come (the SoC may be stuck in a
        command, its answer still to come) first wait `parser_wait` seconds: UARTBone's parser drops
        a command stalled for 100 ms of its clock.  Then drop whatever the device still sends and
        probe: write a fresh value to the `scratch` register (address, mask) and read it back (a
        late answer cannot hold it), with the check word; no byte may follow.  While the probe
        fails, wait and probe again, each wait twice the one before (the SoC's clock against real
        time may be slower than the host assumed: a LiteX sim)."""
        for attempt in range(self.RESYNC_TRIES):
            if attempt or self.timed_out:
                time.sleep(parser_wait * 2 ** max(0, attempt - 1))
            self.timed_out = False
            drain_pipe(self.pipe, 0.02)
            try:
                if scratch:
                    addr, mask = scratch
                    self._nonce = self._nonce % mask + 1
                    probe = (self._header(self.WRITE_INCR, addr, 1) + self._nonce.to_bytes(4, "big")
                             + self._header(self.READ_INCR, addr, 1))
                    if int.from_bytes(self.exchange(probe, 4), "big") != self._nonce:
                        raise LinkError(f"{self.name}: the probe read back another value")
                else:
                    self.exchange(b"", 0)
                time.sleep(0.05)
                if self.pipe.pending():
                    raise LinkError(f"{self.name}: bytes after the probe's answer")
            except LinkError:
                continue
            return
        raise LinkError(f"{self.name}: the link did not come back after {self.RESYNC_TRIES} probes; "
                        "check the cable and the baud rate, or restart the SoC")

    def close(self) -> None:
        self.pipe.close()


QUICKACK = getattr(socket, "TCP_QUICKACK", None)     # Linux only


class _TcpPipe:
    def __init__(self, host: str, port: int, timeout: float):
        self.where = f"tcp://{host}:{port}"
        self.timeout = timeout
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise DeviceError(f"litex: cannot connect to {self.where} ({e}); is the LiteX sim running?")
        # One command per round trip: Nagle would hold each small command back.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def recv_some(self, n: int, timeout: float) -> bytes:
        """Up to n bytes, at least one; b"" when nothing came within `timeout` seconds."""
        if QUICKACK is not None:
            # The LiteX sim's serial2tcp writes every byte of an answer with its own write() on
            # a socket with Nagle's algorithm on: it sends the first byte, then holds the rest
            # until that byte is acknowledged.  A delayed ACK (40 ms on Linux) made every read
            # a 47 ms round trip; Linux clears QUICKACK again after a while, so it is set before
            # every receive.
            self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        self.sock.settimeout(max(timeout, 1e-3))
        try:
            part = self.sock.recv(n)
        except socket.timeout:
            return b""
        if not part:
            raise LinkError(f"litex: {self.where} closed the connection; is the SoC still running?")
        return part

    def recv_exact(self, n: int, timeout: float | None = None) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(buf) < n:
            part = self.recv_some(n - len(buf), deadline - time.monotonic())
            if not part:
                raise LinkError(f"litex: no answer from {self.where} (got {len(buf)} of {n} bytes); "
                                "check that the SoC is running and nothing else is connected")
            buf += part
        return bytes(buf)

    def pending(self) -> int:
        """Bytes received and not yet read (0 when none)."""
        if not select.select([self.sock], [], [], 0)[0]:
            return 0
        try:
            return len(self.sock.recv(1 << 16, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.sock.close()


class _SerialPipe:
    def __init__(self, device: str, baudrate: int, timeout: float):
        try:
            import serial
        except ImportError:
            raise DeviceError("litex: a serial port needs pyserial; pip install pyserial")
        self.where = device
        self.timeout = timeout
        try:
            self.port = serial.serial_for_url(device, baudrate, timeout=timeout)
        except (serial.SerialException, ValueError) as e:
            raise DeviceError(f"litex: cannot open serial port {device} ({e}); check the cable and --port")
        self.port.reset_input_buffer()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def recv_some(self, n: int, timeout: float) -> bytes:
        """Up to n bytes, at least one; b"" when nothing came within `timeout` seconds."""
        self.port.timeout = max(timeout, 1e-3)
        first = self.port.read(1)
        if not first:
            return b""
        return first + self.port.read(min(n - 1, self.port.in_waiting))

    def recv_exact(self, n: int, timeout: float | None = None) -> bytes:
        self.port.timeout = self.timeout if timeout is None else timeout
        data = self.port.read(n)
        if len(data) != n:
            raise LinkError(f"litex: no answer from {self.where} (got {len(data)} of {n} bytes); "
                            "check the bitstream, the baud rate (PORT@BAUD) and the cable")
        return data

    def pending(self) -> int:
        return self.port.in_waiting

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


# -- Ethernet: Etherbone over UDP, and the UDP stream port ----------------------------------------
ETHERBONE_HEADER = bytes([0x4E, 0x6F, 0x10, 0x44, 0, 0, 0, 0])   # magic, version 1, 32-bit addr/port


def parse_udp_port(port: str) -> tuple[str, int]:
    """(host, Etherbone UDP port) of "udp://HOST:PORT"; PortError for anything else."""
    rest = port[len("udp://"):] if is_ethernet_port(port) else None
    host, sep, num = (rest or "").rpartition(":")
    if rest is None or not sep or not host or not num.isdigit() or not 0 < int(num) < 65535:
        raise PortError(f"litex: bad port {port!r}; use udp://HOST:PORT (PORT: the SoC's Etherbone port, "
                        f"1..65534; its stream port is PORT + 1), e.g. udp://{ETH_SOC_IP}:{ETHERBONE_UDP_PORT}")
    return host, int(num)


def _loopback(host: str) -> bool:
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


class EtherboneLink:
    """LiteEth's Etherbone (one record per packet) over UDP: write and read 32-bit bus words.

    A board answers to the Etherbone port itself, so the host listens on that port unless the
    SoC is on this machine (the LiteX sim's synfab_udp module answers whoever asked).  An answer
    that does not come within `answer_timeout` is a LinkError (UDP may lose a packet)."""
    MAX_WRITE = ETHERBONE_MAX_WORDS     # words per write packet
    MAX_READ = ETHERBONE_MAX_WORDS      # words per read packet

    def __init__(self, host: str, port: int, timeout: float, answer_timeout: float = 5.0):
        self.name = f"udp://{host}:{port}"
        self.where = (host, port)
        self.answer_timeout = answer_timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("", 0) if _loopback(host) else ("", port))
            self.sock.connect(self.where)
        except OSError as e:
            self.sock.close()
            raise DeviceError(f"litex: cannot open UDP to {self.name} ({e})")
        self.bytes_to_device = 0
        self.bytes_from_device = 0
        self.packets = 0

    def traffic(self) -> dict:
        return {"to_device": self.bytes_to_device, "from_device": self.bytes_from_device}

    def _send(self, payload: bytes) -> None:
        msg = ETHERBONE_HEADER + payload
        self.sock.send(msg)
        self.bytes_to_device += len(msg)
        self.packets += 1

    def write(self, addr: int, words) -> None:
        """Every write packet also reads the bridge id back, and waits for it: the SoC cannot hold
        up a PHY, so a packet arriving while the last one's writes still drain could overflow
        LiteEth's buffers."""
        words = np.asarray(words, dtype=">u4")
        for i in range(0, len(words), self.MAX_WRITE):
            chunk = words[i:i + self.MAX_WRITE]
            self._send(bytes([0, 0x0F, len(chunk), 0]) + struct.pack(">I", addr + 4 * i) + chunk.tobytes())
            self._send(bytes([0, 0x0F, 0, 1]) + struct.pack(">II", 0, bridge_reg("id")))
            if int.from_bytes(self._answer(1), "big") != BRIDGE_MAGIC:
                raise LinkError(f"litex: {self.name}: a write's check read did not return the bridge id ({self._last.hex()})")

    def read(self, addr: int, n: int) -> np.ndarray:
        out = []
        for i in range(0, n, self.MAX_READ):
            k = min(self.MAX_READ, n - i)
            addrs = (addr + 4 * i + 4 * np.arange(k)).astype(">u4")
            self._send(bytes([0, 0x0F, 0, k]) + struct.pack(">I", 0) + addrs.tobytes())
            answer = self._answer(k)
            out.append(np.frombuffer(answer, dtype=">u4"))
        return np.concatenate(out).astype(np.uint32) if out else np.zeros(0, np.uint32)

    def _answer(self, k: int) -> bytes:
        deadline = time.monotonic() + self.answer_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(f"litex: no Etherbone answer from {self.name} within {self.answer_timeout:.0f} s; "
                                "is the SoC up (ping it) and the port its Etherbone port?")
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError as e:
                raise LinkError(f"litex: {self.name}: {e}")
            self.bytes_from_device += len(msg)
            self._last = msg
            if len(msg) == 16 + 4 * k and msg[:2] == ETHERBONE_HEADER[:2] and msg[10] == k:
                return msg[16:]
            # anything else (a late answer of an earlier read) is dropped

    def close(self) -> None:
        self.sock.close()


class UdpStreamLink:
    """The SoC's UDP stream port (gateware soc.eth.UDPStreamPort; packet layout in synfab.layouts).

    `run(frames)` streams frames of (words, lasts) beats and returns each frame's output beats:
    input packets of up to UDP_MAX_BEATS beats, sent while the beats in flight (sent minus those
    the bridge released to the fabric, which every output packet reports) fit the bridge's input
    FIFO, so the SoC never has to drop one; output packets are checked for their sequence.  The
    bus link (`regs`) refreshes the credits when no output packet comes (a frame larger than the
    FIFO) and reads the drop counters; a dropped, lost or malformed packet is a LinkError, counted
    by the SoC (`counters()`)."""

    def __init__(self, host: str, port: int, regs: EtherboneLink, capacity: int, timeout: float):
        self.name = f"udp://{host}:{port}"
        self.regs = regs
        self.capacity = capacity
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("", 0))
        self.sock.connect((host, port))
        self.bytes_to_device = 0
        self.bytes_from_device = 0
        self.packets_to_device = 0
        self.packets_from_device = 0
        self.reset()

    def reset(self) -> None:
        """Counters and sequence numbers back to 0 on both sides; output beats to this port."""
        self.regs.write(udp_stream_reg("ctrl"), [UDP_CTRL_RESET | UDP_CTRL_OUTPUT])
        self.seq = 0
        self.out_seq = 0
        self.drops = 0
        self.released = int(self.regs.read(udp_stream_reg("released"), 1)[0])
        self.sent = self.released          # beats sent (mod 2**32), as the bridge counts released ones
        self.sock.setblocking(False)
        while True:                         # output packets of an earlier run: dropped
            try:
                self.sock.recv(65536)
            except (BlockingIOError, OSError):
                break

    def counters(self) -> dict:
        vals = self.regs.read(UDP_STREAM_BASE, len(UDP_STREAM_REGS))
        return {n: int(v) for n, v in zip(UDP_STREAM_REGS, vals)}

    def packets(self, words: np.ndarray, lasts: np.ndarray) -> list[tuple[int, bytes]]:
        """A frame's input packets as (beats, payload without header); a packet ends at every last beat."""
        out = []
        ends = set(np.flatnonzero(lasts).tolist())
        start = 0
        while start < len(words):
            stop = min(start + UDP_MAX_BEATS, len(words))
            nxt = next((e + 1 for e in sorted(ends) if start <= e < stop), None)
            stop = nxt or stop
            flags = UDP_FLAG_FRAME_END if (stop - 1) in ends else 0
            out.append((stop - start, flags, np.asarray(words[start:stop], dtype="<u8").tobytes()))
            start = stop
        return out

    def _send(self, beats: int, flags: int, body: bytes) -> None:
        header = UDP_MAGIC | flags << 16 | (self.seq & 0xFFFF) << 32 | beats << 48
        msg = struct.pack("<Q", header) + body
        self.sock.send(msg)
        self.seq += 1
        self.sent = (self.sent + beats) & 0xFFFFFFFF
        self.bytes_to_device += len(msg)
        self.packets_to_device += 1

    def _recv(self, timeout: float):
        self.sock.settimeout(timeout if timeout > 0 else None)
        if timeout <= 0:
            self.sock.setblocking(False)
        try:
            msg = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return None
        except OSError as e:
            raise LinkError(f"litex: {self.name}: {e}")
        self.bytes_from_device += len(msg)
        self.packets_from_device += 1
        head = np.frombuffer(msg[:16], dtype="<u8") if len(msg) >= 16 else None
        if head is None or len(msg) % 8 or int(head[0]) & 0xFFFF != UDP_MAGIC:
            raise LinkError(f"litex: {self.name}: a malformed output packet ({len(msg)} bytes)")
        h0, h1 = int(head[0]), int(head[1])
        seq, n = (h0 >> 32) & 0xFFFF, h0 >> 48
        if seq != self.out_seq & 0xFFFF:
            raise LinkError(f"litex: {self.name}: output packet {seq} arrived where {self.out_seq & 0xFFFF} was due "
                            "(output packets lost)")
        if len(msg) != 8 * (UDP_OUT_HEADER_WORDS + n):
            raise LinkError(f"litex: {self.name}: output packet {seq} holds {len(msg)} bytes for {n} beats")
        self.out_seq += 1
        self.released = h1 & 0xFFFFFFFF
        drops = h1 >> 48
        if drops != self.drops & 0xFFFF:
            self.drops = drops
            raise LinkError(f"litex: the SoC dropped input packets ({self.counters()}); resend after reset()")
        return np.frombuffer(msg[16:], dtype="<u8").astype(np.uint64)

    def in_flight(self) -> int:
        return (self.sent - self.released) & 0xFFFFFFFF

    def run(self, frames) -> list[np.ndarray]:
        """Output beats of each frame of `frames` ((words, lasts) pairs), pipelined."""
        queue = [p for words, lasts in frames for p in self.packets(words, lasts)]
        results, current = [], []
        nframes = len(frames)
        i = 0
        deadline = time.monotonic() + self.timeout
        quiet_since = time.monotonic()
        while len(results) < nframes:
            while i < len(queue):
                room = self.capacity - self.in_flight()
                beats, flags, body = queue[i]
                if beats > room > 0:
                    # Fill the FIFO to the brim: a frame larger than it is released to the fabric
                    # only once the FIFO is full (StreamBridge), so a partial packet goes first.
                    queue[i:i + 1] = [(room, 0, body[:8 * room]), (beats - room, flags, body[8 * room:])]
                    continue
                if beats > room:
                    break
                self._send(beats, flags, body)
                i += 1
            beats = self._recv(0.002)
            now = time.monotonic()
            if beats is None:
                if now > deadline:
                    raise DeviceError(f"litex: frames did not finish within {self.timeout:.0f} s on {self.name} "
                                      f"({len(results)} of {nframes} done; SoC counters {self.counters()})")
                if i < len(queue) and now - quiet_since > 0.005:
                    # No output for a while and the credits are out: ask the bus.
                    self.released = int(self.regs.read(udp_stream_reg("released"), 1)[0])
                    quiet_since = now
                continue
            quiet_since = now
            deadline = now + self.timeout
            eof = STREAM_EVENT.unpack64(beats)["eof"]
            start = 0
            for e in np.flatnonzero(eof).tolist():
                current.append(beats[start:e + 1])
                results.append(np.concatenate(current))
                current, start = [], e + 1
            if start < len(beats):
                current.append(beats[start:])
        if current and sum(map(len, current)):
            raise DeviceError("litex: output beats after the last frame's end-of-frame beat")
        return results

    def traffic(self) -> dict:
        return {"to_device": self.bytes_to_device, "from_device": self.bytes_from_device,
                "packets_to_device": self.packets_to_device, "packets_from_device": self.packets_from_device}

    def close(self) -> None:
        self.sock.close()


def is_ethernet_port(port) -> bool:
    """Whether a `port` string names an Ethernet SoC (Etherbone over UDP) rather than UARTBone."""
    return str(port).startswith("udp://")


def open_link(port: str, timeout: float = 30.0, verify: bool = False, answer_timeout: float = 2.0):
    """A link for a `port` string (see the module docstring); `verify` (UARTBone links only):
    every answer checked (UartBoneLink.exchange), waiting at most `answer_timeout` seconds."""
    port = str(port)
    if is_ethernet_port(port):
        if verify:
            raise PortError("litex: verify is for the UARTBone byte link; a udp:// port checks its packets itself")
        host, num = parse_udp_port(port)
        return EtherboneLink(host, num, timeout)
    if port.startswith("tcp://"):
        host, _, num = port[len("tcp://"):].rpartition(":")
        if not num.isdigit():
            raise DeviceError(f"litex: bad port {port!r}; use tcp://HOST:PORT")
        return UartBoneLink(_TcpPipe(host or "localhost", int(num), timeout), port, verify, answer_timeout)
    if port.startswith(("/dev/", "COM")) or "://" in port:        # pyserial device or URL
        dev, _, baud = port.removeprefix("serial://").partition("@")
        if baud and not baud.isdigit():
            raise DeviceError(f"litex: bad baud rate in {port!r}; use DEVICE@BAUD, e.g. /dev/ttyUSB0@1000000")
        return UartBoneLink(_SerialPipe(dev, int(baud or DEFAULT_BAUDRATE), timeout), port, verify, answer_timeout)
    host, _, num = port.rpartition(":")
    if not num.isdigit():
        raise DeviceError(f"litex: bad port {port!r}; use HOST:PORT (litex_server), tcp://HOST:PORT "
                          "(LiteX sim) or /dev/ttyUSB0@BAUD")
    if verify:
        raise DeviceError("litex: verify needs the UARTBone byte link (tcp://HOST:PORT or a serial port), "
                          "not a litex_server")
    return ServerLink(host or "localhost", int(num), timeout)


# -- the device ---------------------------------------------------------------------------------------
UARTBONE_TIMEOUT_S = 0.1        # LiteX's Stream2Wishbone drops a command stalled this long (its clock)
PARSER_SLACK = 1.3              # wait this much longer than that before probing again
CYCLES_BETWEEN_READS = 1 << 24  # verify: how far the cycle counter may run between two reads of it
POP_BATCH = 48                  # verify: output beats per exchange (22 command bytes each, within WINDOW)


def _first_difference(a: dict, b: dict) -> str:
    k = next(k for k in a if a[k] != b[k])
    return f"{k}: {a[k]} then {b[k]}"


def _runs(addrs: np.ndarray) -> list[tuple[int, int]]:
    """(start index, length) of runs of consecutive word addresses."""
    if len(addrs) == 0:
        return []
    breaks = np.flatnonzero(np.diff(addrs) != 4) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(addrs)]])
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


def _word_pairs(words: np.ndarray) -> np.ndarray:
    """64-bit beats as the bridge's 32-bit word pairs (low word first), flattened."""
    return np.stack([words & np.uint64(0xFFFFFFFF), words >> np.uint64(32)], axis=1).astype(np.uint32).reshape(-1)


class LitexDevice(RegisterDevice):
    """The fabric in a LiteX SoC (board or LiteX sim) as a synfab Device."""
    name = "litex"

    def __init__(self, cfg, port: str = "localhost:1234", timeout: float = 30.0, link=None, bitstream=None,
                 verify: bool = False, answer_timeout: float = 2.0, parser_timeout_cycles: int | None = None,
                 pack: bool = True):
        """`verify`: check every operation for link faults (module docstring; LinkError).
        `pack`: send frames whose events fit layouts.PACKED_EVENT one word an event (the bridge's
        packed mode: half the input bytes on the link); False: always word pairs.
        `parser_timeout_cycles`: the SoC clocks after which UARTBone's parser drops a stalled command
        (100 ms of its clock; None: a board, whose clock the host measures in real time)."""
        if bitstream is not None:
            raise DeviceError("litex: --bitstream is for pynq; program an ECP5 board with `synfab flash --board "
                              "NAME` and pass --port")
        super().__init__(cfg)
        self.timeout = timeout
        self.link = link or open_link(port, timeout, verify, answer_timeout)
        self.verify = verify
        if verify:
            if not getattr(self.link, "verify", False):
                raise DeviceError("litex: verify needs a verifying UARTBone link (open_link(..., verify=True))")
            self.readback_error = LinkError
        self._written = {}                  # (register, core) -> value, read back after every frame
        ident = int(self.link.read(bridge_reg("id"), 1)[0])
        if ident != BRIDGE_MAGIC:
            self.link.close()
            raise DeviceError(f"litex: no synfab SoC behind {port} (bridge id reads {ident:#010x}, expected "
                              f"{BRIDGE_MAGIC:#010x}); load a bitstream built with `synfab build`")
        self.link.write(bridge_reg("ctrl"), [CTRL_RESYNC])      # also ends packed mode
        self._packed_mode = False
        self.pack = pack
        regs = self._bridge_regs()
        self.in_depth, self.out_depth = regs["in_depth"], regs["out_depth"]
        self.udp = None
        if isinstance(self.link, EtherboneLink):
            ident = int(self.link.read(udp_stream_reg("id"), 1)[0])
            if ident != UDP_STREAM_MAGIC:
                self.link.close()
                raise DeviceError(f"litex: the SoC behind {port} has no UDP stream port (id reads {ident:#010x}); "
                                  "load an Ethernet bitstream (synfab build --board colorlight-i5 --ethernet)")
            host, num = parse_udp_port(str(port))
            self.udp = UdpStreamLink(host, num + 1, self.link, self.in_depth, timeout)
        # Bytes of bridge polls that found nothing to do (the fabric still working on a frame): they
        # fill time the link would otherwise be idle, and how many there are depends on how fast
        # the SoC runs against the link (a LiteX sim is thousands of times slower than a board).
        self.idle_poll_bytes = {"to_device": 0, "from_device": 0}
        if verify:
            clock = self.measure_clock()
            self.parser_wait = (PARSER_SLACK * parser_timeout_cycles / clock if parser_timeout_cycles
                                else PARSER_SLACK * UARTBONE_TIMEOUT_S) + 0.05

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        self.link.close()

    def run_frames_pipelined(self, events_list) -> tuple[list, dict]:
        """Frames (event dicts) streamed back to back over the UDP stream port, the next frames'
        packets in flight while the fabric works: each frame's output events (OUT_DTYPE, arrival
        order), and what it cost: fabric clock cycles from before the first packet to after the
        last output (the fabric's free-running `cycles` counter, read over Etherbone), bytes and
        packets each way.  Counters are not cleared between frames (the fabric's run totals)."""
        from .device import OUT_DTYPE
        if self.udp is None:
            raise DeviceError("litex: pipelined frames need a udp:// port (the Ethernet SoC)")
        self._need_tables()
        frames = [frame_beats(stream_columns(ev, self.cfg.event_bits)) for ev in events_list]
        before = self.udp.traffic()
        cyc = self.regmap.global_counters["cycles"]
        c0 = int(self._read_once(np.array([cyc]))[0])
        outs = self.udp.run(frames)
        c1 = int(self._read_once(np.array([cyc]))[0])
        result = []
        for t, words in enumerate(outs):
            f = STREAM_EVENT.unpack64(words)
            if f["eof"][-1] != 1 or f["eof"][:-1].any():
                raise DeviceError(f"litex: frame {t}'s output did not end with exactly one end-of-frame beat")
            ev = np.zeros(len(words) - 1, dtype=OUT_DTYPE)
            for k in OUT_DTYPE.names:
                ev[k] = f[k][:-1]
            result.append(ev)
        after = self.udp.traffic()
        cost = {"cycles": (c1 - c0) & 0xFFFFFFFF, "input_beats": int(sum(len(w) for w, _ in frames)),
                **{k: after[k] - before[k] for k in after}}
        return result, cost

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
        return self._read_twice(addrs) if self.verify else self._read_once(addrs)

    def _read_back(self, addrs) -> np.ndarray:
        return self._read_once(addrs)

    def _push(self, words: np.ndarray, lasts: np.ndarray) -> None:
        """Write beats into the input FIFO: runs without last go to IN_DATA, a last beat to IN_LAST
        (a word pair).  The runs go as one PACKED_EVENT word a beat where every event of the push
        fits one (half the bytes on the link), else as word pairs."""
        packed = self._packed(words, lasts)
        self._set_packed_mode(packed is not None)
        start = 0
        per_burst = ALIAS_WORDS if packed is not None else ALIAS_WORDS // 2
        for i in np.flatnonzero(lasts).tolist() + [len(words)]:
            for s in range(start, i, per_burst):
                run = packed[s:min(i, s + per_burst)] if packed is not None else _word_pairs(words[s:min(i, s + per_burst)])
                self.link.write(BRIDGE_BASE + IN_DATA, run)
            if i < len(words):
                self.link.write(BRIDGE_BASE + IN_LAST, _word_pairs(words[i:i + 1]))
            start = i + 1

    def _packed(self, words: np.ndarray, lasts: np.ndarray) -> np.ndarray | None:
        """The beats as PACKED_EVENT words (uint32; last beats' entries unused), or None where one
        event does not fit, the device packs nothing (`pack=False`), or it verifies the link (its
        checks read ctrl back as 0 and rewind with CTRL_RESYNC, which ends packed mode)."""
        if not self.pack or self.verify:
            return None
        cols = STREAM_EVENT.unpack64(words)
        events = lasts == 0
        if cols["tag"][events].any() or cols["eof"][events].any():
            return None
        fields = {k: np.where(events, cols[k], 0) for k in PACKED_EVENT.names}
        try:
            return PACKED_EVENT.pack64(fields).astype(np.uint32)
        except ValueError:
            return None

    def _set_packed_mode(self, on: bool) -> None:
        if on != self._packed_mode:
            self.link.write(bridge_reg("ctrl"), [CTRL_PACKED if on else 0])
            self._packed_mode = on

    def _pop(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.verify:
            return self._pop_verified(n)
        raw = self.link.read(BRIDGE_BASE + OUT_DATA, n * OUT_WORDS_PER_BEAT).reshape(n, OUT_WORDS_PER_BEAT)
        if not (raw[:, 2] & 1).all():
            raise DeviceError("litex: the output FIFO ran empty while its level said otherwise; "
                              "another client may be reading the SoC")
        words = raw[:, 0].astype(np.uint64) | (raw[:, 1].astype(np.uint64) << np.uint64(32))
        return words, ((raw[:, 2] >> 1) & 1).astype(np.uint8)

    def push_room(self, words, lasts, regs: dict) -> int:
        """As many of the beats as the input FIFO has room for (`regs`: the bridge registers just
        read) pushed; how many."""
        k = min(regs["in_free"], len(words))
        if k:
            self._push(words[:k], lasts[:k])
        return k

    def take_output(self, regs: dict, out_words: list, out_lasts: list) -> bool | None:
        """The output beats waiting, up to a burst (`regs` as push_room's), appended to the lists:
        None if there were none, else whether a frame's last beat came."""
        if not regs["out_level"]:
            return None
        w, l = self._pop(min(regs["out_level"], ALIAS_WORDS // OUT_WORDS_PER_BEAT))
        out_words.append(w)
        out_lasts.append(l)
        return bool(l.any())

    def _exchange(self, words, lasts):
        words = np.asarray(words, dtype=np.uint64)
        lasts = np.asarray(lasts, dtype=np.uint8)
        if self.udp is not None:
            out_w = self.udp.run([(words, lasts)])[0]
            out_l = np.zeros(len(out_w), np.uint8)
            out_l[-1] = 1
            regs = self._bridge_regs()
            exact = not regs["flags"] & (FLAG_IN_OVERFLOW | FLAG_OUT_STALL)
            return out_w, out_l, (regs["frame_cycles"] if exact else None)
        out_words, out_lasts = [], []
        sent, deadline = 0, time.monotonic() + self.timeout
        waiting = None
        while True:
            before = self.link.traffic() if hasattr(self.link, "traffic") else None
            regs = self._bridge_regs()
            if self.verify:
                self._check_bridge_regs(regs)
            if regs["flags"] & FLAG_IN_OVERRUN:
                raise DeviceError("litex: input beats were lost (written into a full FIFO); "
                                  "another client may be writing to the SoC")
            pushed = self.push_room(words[sent:], lasts[sent:], regs)
            sent += pushed
            progress = pushed > 0
            ended = self.take_output(regs, out_words, out_lasts)
            if ended is not None:
                progress = True
                if ended:
                    break
            if progress:
                deadline = time.monotonic() + self.timeout
                continue
            if before is not None:
                after = self.link.traffic()
                for k in self.idle_poll_bytes:
                    self.idle_poll_bytes[k] += after[k] - before[k]
            if self.verify and sent == len(words) and regs["in_free"] < self.in_depth:
                # Beats that stay in the bridge (two polls alike) with the fabric idle: a frame the
                # bridge holds back for want of its last beat.
                if regs["in_free"] == waiting and not self.read_reg("status") & 1:
                    raise LinkError("litex: input beats wait in the bridge with the fabric idle: the frame's "
                                    "last beat did not arrive (lost or changed on the link)")
                waiting = regs["in_free"]
            if time.monotonic() > deadline:
                raise DeviceError(f"litex: frame did not finish within {self.timeout:.0f} s (sent {sent} of "
                                  f"{len(words)} beats, {sum(map(len, out_words))} out); the fabric may be stuck")
        out_w, out_l = np.concatenate(out_words), np.concatenate(out_lasts)
        end = int(np.flatnonzero(out_l)[0]) + 1
        if end != len(out_w):
            raise DeviceError("litex: output beats after the end-of-frame beat; one frame at a time please")
        regs = self._bridge_regs()
        if self.verify:         # the frame is over: nothing changes these any more
            again = self._bridge_regs()
            if again != regs:
                raise LinkError(f"litex: two reads of the bridge registers differ ({_first_difference(regs, again)}); "
                                "the link changed an answer")
            self._check_bridge_regs(regs)
        exact = not regs["flags"] & (FLAG_IN_OVERFLOW | FLAG_OUT_STALL)
        return out_w, out_l, (regs["frame_cycles"] if exact else None)

    # -- verify mode ------------------------------------------------------------------------------
    def measure_clock(self, seconds: float = 0.2) -> float:
        """The SoC's clock cycles per second of real time, from the fabric's free-running cycle counter."""
        addr = self.regmap.global_counters["cycles"]
        c0, t0 = int(self._read_once(np.array([addr]))[0]), time.monotonic()
        time.sleep(seconds)
        c1, t1 = int(self._read_once(np.array([addr]))[0]), time.monotonic()
        return max(((c1 - c0) & 0xFFFFFFFF) / (t1 - t0), 1.0)

    def _read_once(self, addrs) -> np.ndarray:
        addrs = np.asarray(addrs, dtype=np.int64)
        out = np.zeros(len(addrs), dtype=np.uint32)
        for s, n in _runs(addrs):
            out[s:s + n] = self.link.read(FABRIC_BASE + int(addrs[s]), n)
        return out

    def _read_twice(self, addrs) -> np.ndarray:
        """Every word read twice; LinkError where the two differ.  The free-running cycle counter
        is read three times and must rise by less than CYCLES_BETWEEN_READS: its middle read, so
        bracketed, is what it was at some moment of the read."""
        addrs = np.asarray(addrs, dtype=np.int64)
        first, second = self._read_once(addrs), self._read_once(addrs)
        running = addrs == self.regmap.global_counters["cycles"]
        bad = np.flatnonzero((first != second) & ~running)
        if running.any():
            third = self._read_once(addrs[running])
            rise = [(b.astype(np.int64) - a.astype(np.int64)) & 0xFFFFFFFF for a, b in
                    ((first[running], second[running]), (second[running], third))]
            late = np.flatnonzero(rise[0] + rise[1] >= CYCLES_BETWEEN_READS)
            bad = np.union1d(bad, np.flatnonzero(running)[late])
        if bad.size:
            k = int(bad[0])
            raise LinkError(f"litex: two reads of {int(addrs[k]):#x} gave {int(first[k]):#010x} and "
                            f"{int(second[k]):#010x}; the link changed an answer")
        return second

    def write_reg(self, name, value, core=None):
        super().write_reg(name, value, core)
        if self.verify and name != "ctrl":
            self._written[(name, core)] = int(value) & 0xFFFFFFFF
            self._check_registers([(name, core)])

    def _check_registers(self, keys=None) -> None:
        """LinkError unless every register written (or those of `keys`) still reads what was written:
        a command whose address changed on the link writes somewhere else."""
        keys = list(self._written) if keys is None else keys
        if not keys:
            return
        addrs = np.array([self.regmap.reg(n) if c is None else self.regmap.core_reg(c, n) for n, c in keys])
        order = np.argsort(addrs)
        got = np.zeros(len(keys), dtype=np.int64)
        got[order] = self._read_back(addrs[order])
        for (name, core), value in zip(keys, got):
            if int(value) != self._written[(name, core)]:
                where = f"core {core} " if core is not None else ""
                raise LinkError(f"litex: {where}register {name} reads {int(value)}, {self._written[(name, core)]} "
                                "was written (a write went astray on the link)")

    def _check_bridge_regs(self, regs: dict) -> None:
        """The bridge registers that cannot change read what they must; the levels within the FIFOs."""
        if (regs["id"] != BRIDGE_MAGIC or regs["in_depth"] != self.in_depth or regs["out_depth"] != self.out_depth
                or regs["ctrl"] != 0 or regs["in_free"] > self.in_depth or regs["out_level"] > self.out_depth
                or regs["flags"] & ~(FLAG_IN_OVERFLOW | FLAG_OUT_STALL | FLAG_IN_OVERRUN)):
            raise LinkError(f"litex: the bridge registers read impossible values ({regs}); the link changed an answer")

    def _pop_verified(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Pop n output beats, each read twice: the beat's two data words, a bridge resync (which
        rewinds the word phase), then data and flags again, which pops it."""
        link = self.link
        one = (link._header(link.READ_INCR, BRIDGE_BASE + OUT_DATA, 2)
               + link._header(link.WRITE_INCR, bridge_reg("ctrl"), 1) + CTRL_RESYNC.to_bytes(4, "big")
               + link._header(link.READ_INCR, BRIDGE_BASE + OUT_DATA, OUT_WORDS_PER_BEAT))
        words, lasts = [], []
        for s in range(0, n, POP_BATCH):
            k = min(POP_BATCH, n - s)
            raw = np.frombuffer(link.exchange(one * k, 4 * 5 * k), dtype=">u4").reshape(k, 5).astype(np.int64)
            if not (raw[:, :2] == raw[:, 2:4]).all():
                raise LinkError("litex: an output beat read twice differs; the link changed an answer")
            flags = raw[:, 4]
            if (flags & ~3).any() or not (flags & 1).all():
                raise LinkError(f"litex: output beat flags read {int(flags[np.flatnonzero((flags & ~3) | ~flags & 1)[0]])}"
                                " (valid bit clear or unknown bits set); the link changed an answer or lost a beat")
            words.append(raw[:, 2].astype(np.uint64) | (raw[:, 3].astype(np.uint64) << np.uint64(32)))
            lasts.append(((flags >> 1) & 1).astype(np.uint8))
        return np.concatenate(words), np.concatenate(lasts)

    def run_frame(self, events: dict):
        if not self.verify:
            return super().run_frame(events)
        self._need_tables()
        cols = stream_columns(events, self.cfg.event_bits)     # input the host refuses: not a link fault
        try:
            out = super().run_frame(events)
        except LinkError:
            raise
        except DeviceError as e:        # the frame went wrong on the way: a link fault too
            raise LinkError(str(e)) from None
        problem = link_balance(self.tables, cols, out)
        if problem:
            raise LinkError(f"litex: the fabric's counters do not balance: {problem} (lost, added or changed on "
                            "the link)")
        self._check_registers()
        return out

    def recover(self) -> None:
        """After a LinkError: the link back in step, the bridge's word phases reset, whatever a fault
        put in the stream FIFOs flushed through the fabric and dropped, the fabric idle.  A fault may
        have written anywhere: the device is left unloaded; load the tables (and write_state) again."""
        self.tables = None
        self.link.resync(self.parser_wait, (FABRIC_BASE + self.regmap.reg("threshold"),
                                            (1 << (self.cfg.event_bits - 1)) - 1))
        self.link.write(bridge_reg("ctrl"), [CTRL_RESYNC])
        self._packed_mode = False               # a resync writes ctrl's packed bit 0 too
        self.drain_streams()
        self.link.write(bridge_reg("ctrl"), [CTRL_RESYNC])
        self._packed_mode = False

    def drain_streams(self) -> None:
        """Whatever waits in the stream FIFOs (beats a fault left, a frame's part without its end)
        sent through the fabric with an end-of-frame beat, and every output beat read and
        dropped, until the fabric is idle and both FIFOs are empty. The fabric's neuron state is
        then whatever those beats made it: write the state again (reset)."""
        deadline = time.monotonic() + self.timeout
        quiet = 0
        while quiet < 2:            # two polls in a row with nothing anywhere
            if time.monotonic() > deadline:
                raise LinkError(f"litex: the stream FIFOs did not drain within {self.timeout:.0f} s after a link fault")
            regs = self._bridge_regs()
            if self.verify:
                self._check_bridge_regs(regs)
            if regs["out_level"]:
                self.link.read(BRIDGE_BASE + OUT_DATA,
                               min(regs["out_level"], ALIAS_WORDS // OUT_WORDS_PER_BEAT) * OUT_WORDS_PER_BEAT)
                quiet = 0
            elif self.read_reg("status") & 1:
                quiet = 0
            elif regs["in_free"] < self.in_depth:
                # Beats a fault pushed wait for a last beat: an end of frame sends them through.
                self._push(eof_word(), np.ones(1, np.uint8))
                quiet = 0
            else:
                quiet += 1
            time.sleep(0.01)
