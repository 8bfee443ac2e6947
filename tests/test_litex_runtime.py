"""The litex backend's transport (no simulation): UARTBone framing against LiteX's own CommUART,
burst splitting, port strings, and errors."""
import socket

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from synfab.runtime import litex as lx
from synfab.runtime.device import DeviceError


class RecordingPipe:
    """A byte pipe that records what is sent and answers reads with a counter pattern."""

    def __init__(self):
        self.sent = bytearray()
        self.reads = []

    def send(self, data):
        self.sent += data

    def recv_exact(self, n):
        self.reads.append(n)
        return bytes((i * 7 + 1) & 0xFF for i in range(n))

    def close(self):
        pass


class FakeSerial:
    """What LiteX's CommUART writes to its serial port, for comparison."""

    def __init__(self):
        self.out = bytearray()

    def write(self, data):
        self.out += bytes(data)
        return len(data)

    def inWaiting(self):
        return 0


def commuart_bytes(addr, words):
    litex_uart = pytest.importorskip("litex.tools.remote.comm_uart")
    comm = litex_uart.CommUART.__new__(litex_uart.CommUART)
    comm.port, comm.debug, comm.addr_bytes = FakeSerial(), False, 4
    comm.write(addr, [int(w) for w in words])
    return bytes(comm.port.out)


@settings(max_examples=30, deadline=None)
@given(addr=st.integers(0, 2**28 - 1).map(lambda a: a * 4),
       words=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8))
def test_write_framing_matches_litex_commuart(addr, words):
    pipe = RecordingPipe()
    lx.UartBoneLink(pipe, "test").write(addr, words)
    assert bytes(pipe.sent) == commuart_bytes(addr, words)


@settings(max_examples=30, deadline=None)
@given(addr=st.integers(0, 2**28 - 1).map(lambda a: a * 4),
       words=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8))
def test_header_parser_reads_litex_commuart_headers(addr, words):
    """The fault injector follows the host's commands with UartBoneLink.parse_header: it reads the
    header LiteX's own CommUART writes."""
    header = commuart_bytes(addr, words)[:lx.UartBoneLink.HEADER_BYTES]
    assert lx.UartBoneLink.parse_header(header) == (lx.UartBoneLink.WRITE_INCR, len(words), addr)


def test_long_writes_split_into_bursts_and_sync_on_the_window():
    pipe = RecordingPipe()
    link = lx.UartBoneLink(pipe, "test")
    link.write(0x1000, np.arange(600, dtype=np.uint32))
    # 255 + 255 + 90 words (1026 + 1026 + 366 bytes): the second burst would take the unanswered
    # bytes past the window, so a 1-word read of the bridge id goes first; the third still fits.
    headers = []
    i = 0
    data = bytes(pipe.sent)
    while i < len(data):
        cmd, n = data[i], data[i + 1]
        addr = int.from_bytes(data[i + 2:i + 6], "big") * 4
        headers.append((cmd, n, addr))
        i += 6 + (4 * n if cmd == lx.UartBoneLink.WRITE_INCR else 0)
    sync = (lx.UartBoneLink.READ_INCR, 1, lx.bridge_reg("id"))
    assert headers == [(1, 255, 0x1000), sync, (1, 255, 0x1000 + 4 * 255), (1, 90, 0x1000 + 4 * 510)]
    assert pipe.reads == [4]
    assert 1026 + 366 <= lx.UartBoneLink.WINDOW < 2048      # LiteX serial2tcp's ring buffer


def test_link_counts_every_byte_it_moves():
    """The byte counts `synfab bench` turns into the host-link budget are the bytes on the pipe."""
    pipe = RecordingPipe()
    link = lx.UartBoneLink(pipe, "test")
    link.write(0x1000, np.arange(600, dtype=np.uint32))     # three bursts and one sync read
    link.read(0x2000, 300)                                  # two bursts
    assert link.traffic() == {"to_device": len(pipe.sent), "from_device": sum(pipe.reads)}
    # 600 + 1 + 300 words of data, each command a 6-byte header
    assert sum(pipe.reads) == 4 * (1 + 300) and len(pipe.sent) == 4 * 600 + 6 * (3 + 1 + 2)


def test_reads_are_big_endian_words_in_bursts():
    pipe = RecordingPipe()
    got = lx.UartBoneLink(pipe, "test").read(0x2000, 300)
    assert pipe.reads == [4 * 255, 4 * 45]
    raw = bytes((i * 7 + 1) & 0xFF for i in range(4 * 255))
    assert got[0] == int.from_bytes(raw[:4], "big") and got[254] == int.from_bytes(raw[-4:], "big")
    assert bytes(pipe.sent[:6]) == bytes([2, 255]) + (0x2000 // 4).to_bytes(4, "big")


def test_runs_of_consecutive_addresses():
    addrs = np.array([0, 4, 8, 16, 20, 100, 96])
    assert lx._runs(addrs) == [(0, 3), (3, 2), (5, 1), (6, 1)]
    assert lx._runs(np.array([], dtype=np.int64)) == []


def test_bad_port_strings_are_user_errors():
    with pytest.raises(DeviceError, match="bad port"):
        lx.open_link("tcp://localhost:notaport")
    with pytest.raises(DeviceError, match="bad port"):
        lx.open_link("nohost")
    with pytest.raises(DeviceError, match="bad baud rate"):
        lx.open_link("/dev/ttyUSB9@fast")


def test_nothing_listening_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeviceError, match="cannot connect to tcp://127.0.0.1"):
        lx.open_link(f"tcp://127.0.0.1:{port}", timeout=2)
    with pytest.raises(DeviceError, match="cannot reach litex_server"):
        lx.open_link(f"127.0.0.1:{port}", timeout=2)


def test_bridge_constants_agree_with_the_gateware():
    pytest.importorskip("migen")
    from synfab_gateware.soc.bridge import StreamBridge, _window
    bridge = StreamBridge(4, 4)
    assert len(bridge.bus.adr) == (lx.BRIDGE_SIZE // 4 - 1).bit_length()
    assert [_window(o) for o in (lx.IN_DATA, lx.IN_LAST, lx.OUT_DATA, lx.REGS)] == [0, 1, 2, 3]
    assert lx.ALIAS_WORDS * 4 == lx.IN_LAST - lx.IN_DATA
    assert lx.BRIDGE_REGS.index("id") == 0


def test_bitstream_option_is_refused_with_a_hint():
    with pytest.raises(DeviceError, match="synfab flash"):
        lx.LitexDevice(None, port="tcp://127.0.0.1:1", bitstream="x.bit")


def test_serial_ports_go_through_pyserial():
    pytest.importorskip("serial")
    # pyserial's loop:// echoes what is written: a 1-word read gets the first four bytes of its own
    # command back, which shows the bytes went out and came in through the serial pipe.
    link = lx.open_link("loop://@115200", timeout=2)
    assert isinstance(link, lx.UartBoneLink)
    got = link.read(0x1234_5678, 1)
    command = bytes([lx.UartBoneLink.READ_INCR, 1]) + (0x1234_5678 // 4).to_bytes(4, "big")
    assert int(got[0]) == int.from_bytes(command[:4], "big")
    link.close()
