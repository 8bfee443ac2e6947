"""The Ethernet SoC: Etherbone and the UDP stream port, in the LiteX sim (LiteEthPHYModel on host UDP
sockets through the sim module synfab_udp: no tap device, no network configuration), and the
`udp://HOST:PORT` port strings of the litex backend.
"""
import socket
import struct
import sys

import numpy as np
import pytest

from synfab.layouts import STREAM_EVENT, UDP_MAGIC
from synfab.config import PRESETS as PRESETS_FOR_BENCH
from synfab.runtime.litex import PortError, open_link, parse_udp_port


# -- port strings (no sim) ----------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["udp://", "udp://host", "udp://host:", "udp://:1234", "udp://host:http",
                                  "udp://host:0", "udp://host:65535", "udp://host:-5"])
def test_bad_udp_port_strings_are_refused_in_one_line(port):
    with pytest.raises(PortError) as e:
        open_link(port)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"litex: bad port {port!r}; use udp://HOST:PORT")


def test_udp_port_string_names_the_etherbone_port():
    assert parse_udp_port("udp://192.168.1.50:1234") == ("192.168.1.50", 1234)
    assert parse_udp_port("udp://localhost:40000") == ("localhost", 40000)


def test_udp_port_refuses_verify():
    with pytest.raises(PortError, match="verify is for the UARTBone byte link"):
        open_link("udp://127.0.0.1:1234", verify=True)


def test_cli_bad_udp_port_is_one_line_and_exit_1(capsys):
    from synfab.cli import main
    assert main(["demo", "--backend", "litex", "--port", "udp://nohost", "--frames", "1"]) == 1
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "bad port 'udp://nohost'" in lines[0] and lines[0].endswith("e.g. udp://192.168.1.50:1234")


def test_ethernet_line_rate_counts_every_wire_byte():
    """256 events + end of frame = 257 beats in 3 packets (128, 128, 1): 8 * (257 + 3 header words)
    = 2080 payload bytes + 3 * 66 (preamble 8, Ethernet 14, IPv4 20, UDP 8, FCS 4, gap 12) = 2278
    bytes; 127 output events + eof = 128 beats, one packet with a 2-word header: 1040 + 66 = 1106.
    At 1 Gbit/s the input direction limits: 125e6 / 2278 frames/s."""
    from synfab.analysis.bench import ethernet_line_rate
    r = ethernet_line_rate(256, 127, 1e9)
    assert r["wire_bytes_in_per_frame"] == 2278 and r["wire_bytes_out_per_frame"] == 1106
    assert r["frames_per_s"] == round(125e6 / 2278, 1)
    assert r["input_events_per_s"] == round(125e6 / 2278 * 256, 1)
    # one event: 2 beats, 1 packet of 24 payload bytes (no padding: >= 18) + 66
    assert ethernet_line_rate(1, 0, 1e9)["wire_bytes_in_per_frame"] == 24 + 66
    # no output event: 1 beat + 2 header words = 24 bytes
    assert ethernet_line_rate(1, 0, 1e9)["wire_bytes_out_per_frame"] == 24 + 66


def test_bench_at_fmax_adds_the_ethernet_line_rate_for_colorlight_boards():
    from synfab.analysis import bench
    clock = {"fmax_mhz": 50.0, "board": "colorlight-i5", "baudrate": 1_000_000}
    micro = {"conv_sops_per_clock_per_core": 1.0, "input_events_per_clock": 1.0}
    whole = {"w": {"frames": 2, "cycles": 1000, "cycles_per_frame": {"max": 600}, "synaptic_ops": 10,
                   "n_cores": 2, "input_events": 512, "output_events": 254}}
    f = bench.at_fmax(PRESETS_FOR_BENCH["tiny"], clock, micro, whole, None)
    eth = f["workloads"]["w"]["ethernet_link"]
    assert eth["wire_bytes_in_per_frame"] == 2278 and eth["input_events_per_s"] == round(125e6 / 2278 * 256, 1)
    # the fabric: 256 events per 500 cycles at 50 MHz = 25.6 M events/s against the wire's 14.05 M
    assert eth["fabric_over_link"] == round(25.6e6 / (125e6 / 2278 * 256), 2)
    assert "ethernet_link" in f and "ethernet_link" not in bench.at_fmax(
        PRESETS_FOR_BENCH["tiny"], {**clock, "board": "ulx3s"}, micro, whole, None)["workloads"]["w"]


# -- the LiteX sim of the Ethernet SoC -------------------------------------------------------------------
pytest.importorskip("migen")
pytest.importorskip("litex")
pytest.importorskip("liteeth")

from envtools import check_random_network, litex_sim_marks, running_litex_sim  # noqa: E402
from test_partition import assert_chain_matches, residual_case  # noqa: E402
from synfab import api, randnet  # noqa: E402
from synfab.config import PRESETS  # noqa: E402
from synfab.runtime.device import OUT_DTYPE, frame_beats, stream_columns  # noqa: E402
from synfab.runtime.litex import LitexDevice  # noqa: E402
from synfab.runtime.model import ModelDevice  # noqa: E402
from synfab.runtime.stream import input_deltas  # noqa: E402

CFG = PRESETS["small"]


SIM_MARKS = litex_sim_marks()


@pytest.fixture(scope="module")
def eth_sim():
    skip = SIM_MARKS[1]
    if skip.args[0]:
        pytest.skip(skip.kwargs["reason"])
    yield from running_litex_sim(CFG, ethernet=True)


def _frames(qnet, n, seed):
    return randnet.random_frames(qnet, np.random.default_rng(seed), n)


@pytest.mark.slow
@pytest.mark.parametrize("seed,threshold", [(3, 0), (5, 2)])
def test_random_network_over_udp_matches_model_and_reference(eth_sim, seed, threshold):
    """Tables loaded over Etherbone (read back), frames over the UDP stream port, --check: every
    frame's outputs, spikes and counters equal the golden model's; at threshold 0 the outputs are
    the dense integer reference's."""
    check_random_network(CFG, eth_sim.port, seed, threshold)


@pytest.mark.slow
def test_pipelined_udp_stream_beats_a_million_events_per_simulated_second(eth_sim):
    """The benchmark's network (2 synapses per event: the link limits), 40 frames of 256 changed
    inputs back to back: every frame's output events equal the golden model's, the run's counters
    its totals, and the fabric's cycle counter says >= 1 M events per simulated second at 50 MHz."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_ethernet as bench
    qnet = bench.network()
    tables = api.compile_qnetwork(qnet, CFG)
    golden = ModelDevice(CFG)
    golden.load(tables)
    prev, events, want = np.zeros(bench.SHAPE, np.int64), [], []
    for cur in bench.frames(40, 256):
        events.append(input_deltas(prev, cur))
        prev = cur
        want.append(golden.run_frame(events[-1]))
    with LitexDevice(CFG, port=eth_sim.port) as dev:
        dev.load(tables)
        dev.write_reg("ctrl", 1)
        outs, cost = dev.run_frames_pipelined(events)
        counters = dev.read_counters()
    assert len(outs) == 40
    for t, (got, w) in enumerate(zip(outs, want)):
        assert np.array_equal(np.sort(got, order=["tag", "c", "y", "x", "d"]), w.sorted_events()), f"frame {t}"
    assert counters["events_in"] == 40 * 256 and counters["frames"] == 40
    assert counters["events_out"] == sum(len(w.events) for w in want)
    assert cost["input_beats"] == 40 * 257
    rate = 40 * 256 / (cost["cycles"] / eth_sim.clk_freq)
    assert eth_sim.clk_freq == 50e6 and rate >= 1e6, rate


def _packet(seq, beats, flags=0, magic=UDP_MAGIC, count=None):
    words = np.asarray(beats, dtype="<u8")
    n = len(words) if count is None else count
    return struct.pack("<Q", magic | flags << 16 | seq << 32 | n << 48) + words.tobytes()


def _wide_network():
    """4x16x16 input (1024 values, so a frame can outgrow the 514-beat input FIFO) -> 1x1 conv x2."""
    from synfab.frontend.ir import Kind, QConnection, QLayer, QNetwork
    weight = np.random.default_rng(7).integers(-9, 10, size=(2, 4, 1, 1)).astype(np.int8)
    layer = QLayer("conv0", (2, 16, 16), [QConnection("input", Kind.CONV, k=1)], np.zeros(2, np.int64),
                   1, 1, -128, 127, weight)
    return QNetwork("wide", "input", (4, 16, 16), [layer], "conv0")


@pytest.mark.slow
def test_bad_lost_and_unfitting_packets_are_counted_and_change_nothing(eth_sim):
    """Packets sent by hand: a wrong magic, a length that disagrees with the beat count, a packet
    whose seq is not the next one (as after a lost packet), and one with no room left in the input
    FIFO are each dropped whole and counted; the frame they were sent into comes out exactly as the
    golden model's, as if they had never been sent."""
    qnet = _wide_network()
    tables = api.compile_qnetwork(qnet, CFG)
    golden = ModelDevice(CFG)
    golden.load(tables)
    rng = np.random.default_rng(11)
    frame = np.zeros(qnet.input_shape, np.int64).reshape(-1)
    frame[rng.choice(frame.size, size=513, replace=False)] = rng.integers(1, 256, size=513)
    ev = input_deltas(np.zeros(qnet.input_shape, np.int64), frame.reshape(qnet.input_shape))
    want = golden.run_frame(ev)
    words, lasts = frame_beats(stream_columns(ev, CFG.event_bits))
    assert len(words) == 514 and lasts[-1] == 1           # 513 events + end of frame: the FIFO's depth
    junk = np.full(128, 0x0123_4567_89AB_CDEF, dtype=np.uint64)
    with LitexDevice(CFG, port=eth_sim.port) as dev:
        dev.load(tables)
        dev.write_reg("ctrl", 1)
        assert dev.in_depth == 514
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(30)
        sock.bind(("127.0.0.1", 0))
        where = dev.udp.sock.getpeername()
        sock.sendto(_packet(0, junk[:4], magic=0x1234), where)           # malformed: magic
        sock.sendto(_packet(0, junk[:4], count=5), where)                # malformed: 4 beats, says 5
        sock.sendto(_packet(1, junk[:4]), where)                         # out of sequence: 0 is due
        for k in range(4):                                               # 512 events, no frame end
            sock.sendto(_packet(k, words[128 * k:128 * (k + 1)]), where)
        sock.sendto(_packet(4, junk[:3]), where)                         # 3 beats, room for 2: dropped
        sock.sendto(_packet(4, words[512:], flags=1), where)             # the last event + end of frame
        got, drops = [], None
        while not got or not STREAM_EVENT.unpack64(got[-1])["eof"][-1]:
            msg = sock.recv(65536)
            head = struct.unpack("<QQ", msg[:16])
            assert head[0] & 0xFFFF == UDP_MAGIC
            drops = head[1] >> 48
            got.append(np.frombuffer(msg[16:], dtype="<u8").astype(np.uint64))
        regs = dev.udp.counters()
        sock.close()
        assert {k: regs[k] for k in ("rx_malformed", "rx_out_of_seq", "rx_no_room", "rx_packets", "rx_beats",
                                      "expected_seq")} == {"rx_malformed": 2, "rx_out_of_seq": 1, "rx_no_room": 1,
                                                           "rx_packets": 5, "rx_beats": 514, "expected_seq": 5}
        assert drops == 4
        beats = np.concatenate(got)
        f = STREAM_EVENT.unpack64(beats)
        assert f["eof"][-1] == 1 and not f["eof"][:-1].any()
        out = np.zeros(len(beats) - 1, dtype=OUT_DTYPE)
        for k in OUT_DTYPE.names:
            out[k] = f[k][:-1]
        assert len(out) == len(want.events) > 0
        assert np.array_equal(np.sort(out, order=["tag", "c", "y", "x", "d"]), want.sorted_events())
        # The device carries on: the next frame through the ordinary path, checked.
        dev.udp.reset()
        ev2 = input_deltas(frame.reshape(qnet.input_shape), np.zeros(qnet.input_shape, np.int64))
        got2 = dev.run_frame(ev2)
        assert np.array_equal(got2.sorted_events(), golden.run_frame(ev2).sorted_events())


@pytest.mark.slow
def test_frames_larger_than_the_input_fifo_stream_exactly(eth_sim):
    """Frames of 900 and 1000 input events (the bridge's input FIFO holds 514 beats): the host fills
    the FIFO to the brim, the bridge releases it to the fabric, the credits come back over
    Etherbone; pipelined and frame by frame, every frame equals the golden model's."""
    qnet = _wide_network()
    tables = api.compile_qnetwork(qnet, CFG)
    golden = ModelDevice(CFG)
    golden.load(tables)
    rng = np.random.default_rng(1)
    prev, events, want = np.zeros(qnet.input_shape, np.int64), [], []
    for n in (900, 1000, 300):
        cur = prev.copy().reshape(-1)
        idx = rng.choice(cur.size, n, replace=False)
        cur[idx] = (cur[idx] + rng.integers(1, 100, n)) % 256
        cur = cur.reshape(qnet.input_shape)
        events.append(input_deltas(prev, cur))
        prev = cur
        want.append(golden.run_frame(events[-1]))
    assert [len(e["x"]) for e in events] == [900, 1000, 300]
    with LitexDevice(CFG, port=eth_sim.port) as dev:
        dev.load(tables)
        outs, cost = dev.run_frames_pipelined(events)
        assert cost["input_beats"] == 900 + 1000 + 300 + 3
        for t, (got, w) in enumerate(zip(outs, want)):
            assert np.array_equal(np.sort(got, order=["tag", "c", "y", "x", "d"]), w.sorted_events()), f"frame {t}"
        dev.load(tables)                      # from the start again, a frame at a time
        golden.load(tables)
        for e in events[:2]:
            got, w = dev.run_frame(e), golden.run_frame(e)
            assert len(got.events) > 0 and np.array_equal(got.sorted_events(), w.sorted_events())
            assert got.cycles is None         # the frame outgrew the FIFO: host time is in the count


# -- linked Ethernet boards: the Ethernet link ends on the SoC's one UDP core (soc.links) ---------------
@pytest.fixture(scope="module")
def eth_linked_boards():
    """Three LiteX sims of the linked Ethernet SoC (the middle one takes its input from a link and
    gives its output to one): Etherbone, the host's stream port and both link ends on each one's
    UDP core, board k's link packets relayed to board k + 1 (and its credits back) by a SimCable,
    one datagram a packet."""
    skip = SIM_MARKS[1]
    if skip.args[0]:
        pytest.skip(skip.kwargs["reason"])
    from synfab_gateware.soc.sim import linked_sims
    with linked_sims([CFG] * 3, ethernet=True) as (sims, cables):
        yield sims, cables


def _cable_counts(cable) -> tuple[int, int, int]:
    return cable.forward_datagrams, cable.forward_bytes, cable.backward_bytes


def _assert_packets_as_the_spec_counts_them(cable, before, hops) -> None:
    """The datagrams `cable` carried since `before` (_cable_counts) are link packets of the spec
    (linkframe.eth_data_header / eth_credit_word) holding the `hops`' beats: every frame a new epoch
    (the host clears the links), seq from 0, the beats sent before each packet; the sender's byte
    count the frames' (70 + 8 per beat a packet), the cable's payload 8 bytes a word."""
    from synfab import linkframe as lf
    datagrams, payload, credit_bytes = before
    beats = sum(h.beats for h in hops)
    packets = cable.forward_datagrams - datagrams
    assert packets <= cable.LOG_DATAGRAMS
    assert sum(-(-h.beats // lf.ETH_MAX_BEATS) for h in hops) <= packets      # at most 32 beats a packet
    assert cable.forward_bytes - payload == 8 * (lf.ETH_DATA_HEADER_WORDS * packets + beats)
    assert sum(h.bytes for h in hops) == lf.eth_data_bytes(packets, beats)
    sent_in_epoch = {}
    for data in list(cable.forward_log)[-packets:]:
        words = np.frombuffer(data, "<u8")
        epoch, n = int(words[0]) >> 24 & 0xFF, len(words) - lf.ETH_DATA_HEADER_WORDS
        seq, sent = sent_in_epoch.get(epoch, (0, 0))
        assert (int(words[0]), int(words[1])) == lf.eth_data_header(seq, n, sent, epoch)
        sent_in_epoch[epoch] = (seq + 1, sent + n)
    assert sorted(b for _, b in sent_in_epoch.values()) == sorted(h.beats for h in hops)
    # credit packets: one 64-bit word each, the beats freed so far in the epoch
    assert (cable.backward_bytes - credit_bytes) % 8 == 0 and cable.backward_bytes > credit_bytes
    credits = (cable.backward_bytes - credit_bytes) // 8
    assert credits <= cable.LOG_DATAGRAMS
    for data in list(cable.backward_log)[-credits:]:
        word = int(np.frombuffer(data, "<u8")[0])
        epoch, freed = word >> 24 & 0xFF, word >> 32
        assert len(data) == 8 and word == lf.eth_credit_word(freed, epoch) and 0 < freed <= sent_in_epoch[epoch][1]


def test_linked_ethernet_boards_pass_the_cut_layers_as_udp_packets(eth_linked_boards):
    """The host loads the three boards over Etherbone and sends each frame to board 0 only: each
    board's output beats go to the next as data packets of the spec (two header words, then up to
    32 beats) from its UDP core, credits come back; bit-exact with the whole network's golden model,
    and each link's counters balance with the boards', with the datagrams on its cable and with the
    packets' headers and bytes as the spec writes and counts them."""
    from synfab import linkframe as lf
    sims, cables = eth_linked_boards
    qnet, frames, (want_out, want_spikes) = residual_case(3)
    before = [_cable_counts(c) for c in cables]
    out = api.run_partitioned(qnet, frames, [CFG] * 3, cuts=["a", "c"], backend="litex", check=True,
                              link=lf.Wire(kind="eth"), device_args=[{"port": s.port} for s in sims])
    res = out["result"]
    crossed = list(assert_chain_matches(qnet, out["partition"], res, want_out, want_spikes))
    assert len(crossed) == 2 * len(frames) and all(events > 0 for _, _, events in crossed)   # per frame and link
    for k, cable in enumerate(cables):
        _assert_packets_as_the_spec_counts_them(cable, before[k], [h[k] for h in res.hops])
    assert [l["kind"] for l in out["summary"]["links"]] == ["eth gateware (linked LiteX boards)"] * 2
    assert out["summary"]["checked_against_whole_network"]


def test_a_lost_link_packet_raises_link_error_and_reset_recovers(eth_linked_boards):
    """A data packet lost between the boards: board 1's end sees the next packet's count of beats
    sent before it disagree with its own, drops it and every later one (LinkError naming the link,
    nothing passed on); reset clears the links (a new epoch) and the frames run bit-exact again."""
    from synfab import linkframe as lf
    from synfab.compiler.partition import partition
    from synfab.runtime.linked_litex import LinkedLitexBoards
    from synfab.runtime.multi import LinkError, chain_frames
    sims, cables = eth_linked_boards
    qnet, frames, (want_out, _) = residual_case(3)
    part = partition(qnet, [CFG] * 3, cuts=["a", "c"])
    with LinkedLitexBoards(part, [{"port": s.port} for s in sims], timeout=30, wire=lf.Wire(kind="eth")) as boards:
        cables[0].drop_datagram(0)        # frame 0's first packet on link 0 (its 72 beats take three)
        with pytest.raises(LinkError) as e:
            chain_frames(boards, frames[:1])
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("link 0 (board 0 -> 1): frame 0: ") and "dropped" in msg
        link, after = boards.read_links()
        assert link["broken"] == 1 and link["errors"] >= 1 and link["received"] == 0 < link["sent"]
        assert after["broken"] == after["errors"] == after["sent"] == 0         # nothing passed on
        boards.reset()
        res = chain_frames(boards, frames, check=True)
        for got, want in zip(res.outputs, want_out):
            np.testing.assert_array_equal(got, want)


def test_linked_ethernet_boards_want_udp_ports(eth_linked_boards):
    from synfab import linkframe as lf
    from synfab.compiler.partition import partition
    from synfab.errors import SynfabError
    from synfab.runtime.linked_litex import LinkedLitexBoards
    sims, _ = eth_linked_boards
    qnet, _, _ = residual_case(3)
    part = partition(qnet, [CFG, CFG], cuts=["a"])
    with pytest.raises(SynfabError, match=r"^linked LiteX board 1 \(tcp://127\.0\.0\.1:9\): eth links' boards are "
                                          r"reached over Ethernet: give udp:// ports$"):
        LinkedLitexBoards(part, [{"port": sims[0].port}, {"port": "tcp://127.0.0.1:9"}], wire=lf.Wire(kind="eth"))
    with pytest.raises(SynfabError, match=r"^linked LiteX board 0 \(udp://127\.0\.0\.1:\d+\): uart links' boards are "
                                          r"reached over UARTBone: give tcp:// or serial ports$"):
        LinkedLitexBoards(part, [{"port": s.port} for s in sims[:2]], wire=lf.Wire(kind="uart"))
