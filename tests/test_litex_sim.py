"""The `litex` backend against the LiteX sim SoC (Verilator): identify, load, and end-to-end
inference of compiled random networks checked against the golden model and the dense reference.

The sim build (a few minutes, cached in ~/.cache/synfab/litex-sim) needs Verilator and the
libevent/json-c headers (setup.sh installs them); a skip for their absence fails the session.
"""
import socket
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("migen")
pytest.importorskip("litex")

from envtools import check_random_network, find_tool, litex_sim_marks, running_litex_sim  # noqa: E402
from test_partition import assert_chain_matches, residual_case, residual_net  # noqa: E402
from synfab import api, randnet
from synfab.config import PRESETS  # noqa: E402
from synfab.model import reference  # noqa: E402
from synfab.layouts import EXTENDED_FEATURES, FABRIC_LAYOUT_VERSION, ID_MAGIC, feature_mask  # noqa: E402
from synfab.runtime.device import DeviceError  # noqa: E402
from synfab.runtime.litex import LitexDevice  # noqa: E402
from synfab.runtime.stream import MismatchError  # noqa: E402

CFG = PRESETS["small"]     # two cores: packets cross the mesh
pytestmark = litex_sim_marks()


@pytest.fixture(scope="module")
def litex_sim():
    yield from running_litex_sim(CFG)


def _frames(qnet, n, seed):
    return randnet.random_frames(qnet, np.random.default_rng(seed), n)


def test_device_identifies_the_fabric_behind_the_bridge(litex_sim):
    with LitexDevice(CFG, port=litex_sim.port) as dev:
        ident = dev.identify()
        assert ident == {"id": ID_MAGIC, "version": FABRIC_LAYOUT_VERSION, "config_crc": CFG.crc(),
                         "features": feature_mask(f for f in EXTENDED_FEATURES if not f.endswith(" neurons") and f != "unclamped activation")}
        # 512-deep buffered FIFOs + their output registers + the registers after them
        assert dev.in_depth == dev.out_depth == 514
        # Table memory through the bus: two input PEG entries with every field at its maximum.
        win = dev.regmap.input_peg
        lay = win.layout
        words = lay.pack({f.name: [lay.field_range(f)[1]] * 2 for f in lay.fields}).reshape(-1)
        addrs = dev._window_addrs(win, 2)
        dev._write(addrs, words)
        assert np.array_equal(dev._read(addrs), words)
        assert lay.unpack(dev._read(addrs).reshape(2, -1))["chan_off"].tolist() == [2**CFG.chan_bits - 1] * 2


def test_wrong_fabric_config_is_refused(litex_sim):
    with LitexDevice(PRESETS["tiny"], port=litex_sim.port) as dev:
        with pytest.raises(DeviceError, match="another fabric configuration"):
            dev.identify()


@pytest.mark.parametrize("seed,threshold", [(3, 0), (11, 0), (5, 2)])
def test_end_to_end_inference_matches_model_and_reference(litex_sim, seed, threshold):
    check_random_network(CFG, litex_sim.port, seed, threshold)


def test_check_compares_the_counters_read_over_the_bridge(litex_sim, monkeypatch):
    """--check on the litex backend compares counters too: one counter word read wrong stops the run."""
    qnet = randnet.random_qnetwork(3, CFG)
    tables = api.compile_qnetwork(qnet, CFG)
    with LitexDevice(CFG, port=litex_sim.port) as dev:
        dev.load(tables)
        addr = dev.regmap.global_counters["events_in"]
        read = dev._read

        def off_by_one(addrs):
            words = np.array(read(addrs), dtype=np.int64)
            words[np.asarray(addrs) == addr] += 1
            return words
        monkeypatch.setattr(dev, "_read", off_by_one)
        with pytest.raises(MismatchError, match=r"^frame 0: counter events_in: (\d+) vs model (?!\1)\d+$"):
            api.run_frames(tables, _frames(qnet, 2, 3), check=True, device=dev)


def test_through_litex_server(litex_sim):
    """The board path: litex_server --uart (here on the sim's TCP port) + RemoteClient."""
    exe = find_tool("litex_server")
    assert exe, "litex_server (from the litex package) is neither beside this interpreter nor on PATH"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, "--uart", "--uart-port", f"socket://127.0.0.1:{litex_sim.tcp_port}",
                               "--bind-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "litex_server did not start"
                time.sleep(0.2)
        qnet = randnet.random_qnetwork(7, CFG)
        tables = api.compile_qnetwork(qnet, CFG)
        frames = _frames(qnet, 2, 7)
        out = api.run_frames(tables, frames, backend="litex", check=True,
                             device_args={"port": f"127.0.0.1:{port}"})
        for frame, got in zip(frames, out["result"].outputs):
            assert np.array_equal(got, reference.run(qnet, frame)[qnet.output])
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_packed_events_take_half_the_input_bytes_and_stay_exact(litex_sim):
    """Frames whose events fit layouts.PACKED_EVENT go one word an event (the bridge's packed mode):
    the same outputs as word pairs, exact against the reference, and 4 bytes fewer per event."""
    qnet = randnet.random_qnetwork(3, CFG)
    tables = api.compile_qnetwork(qnet, CFG)
    rng = np.random.default_rng(0)
    frames = rng.integers(max(qnet.input_lo, 0), min(qnet.input_hi, 255) + 1, size=(3, *qnet.input_shape))
    sent, outputs = {}, {}
    for pack in (True, False):
        with LitexDevice(CFG, port=litex_sim.port, pack=pack) as dev:
            dev.load(tables)
            before = dev.link.traffic()["to_device"] - dev.idle_poll_bytes["to_device"]
            out = api.run_frames(tables, frames, check=True, device=dev)
            sent[pack] = dev.link.traffic()["to_device"] - dev.idle_poll_bytes["to_device"] - before
            outputs[pack] = out["result"].outputs
            events = out["result"].events_in
    for frame, a, b in zip(frames, outputs[True], outputs[False]):
        want = reference.run(qnet, frame)[qnet.output]
        assert np.array_equal(a, want) and np.array_equal(b, want)
    assert events > 50 and sent[False] - sent[True] >= 3.5 * events


def test_an_event_that_does_not_fit_a_packed_word_sends_the_frame_as_word_pairs(litex_sim):
    from synfab.runtime.device import frame_beats
    with LitexDevice(CFG, port=litex_sim.port) as dev:
        small = frame_beats({"x": [1, 255], "y": [3, 4], "c": [0, 127], "d": [-256, 255]})
        assert dev._packed(*small) is not None
        for field, value in (("d", 256), ("d", -257), ("c", 128), ("x", 256), ("y", 256)):
            cols = {"x": [1, 2], "y": [3, 4], "c": [0, 1], "d": [-5, 7]}
            cols[field] = [cols[field][0], value]
            assert dev._packed(*frame_beats(cols)) is None, (field, value)
    with LitexDevice(CFG, port=litex_sim.port, pack=False) as dev:
        assert dev._packed(*small) is None


def test_a_network_over_two_litex_boards(litex_sim):
    """A partition over two LiteX sim SoCs (this module's and a second one: two boards, each the
    SoC a bitstream is built from), the host carrying the cut layer's events from board 0's output
    stream to board 1's input stream: bit-exact with the whole network's golden model, and each
    board's counters balance against what crossed."""
    from synfab_gateware.soc.sim import LitexSim
    qnet, frames, (want_out, want_spikes) = residual_case(2)
    with LitexSim(CFG, quiet=True) as second:
        out = api.run_partitioned(qnet, frames, [CFG, CFG], cuts=["a"], backend="litex", check=True,
                                  device_args=[{"port": litex_sim.port}, {"port": second.port}])
    res = out["result"]
    assert len(list(assert_chain_matches(qnet, out["partition"], res, want_out, want_spikes))) == len(frames)
    s = out["summary"]
    assert s["checked_against_whole_network"] and s["frames"] == 2


def test_litex_boards_take_one_port_each(litex_sim, capsys):
    from synfab.cli import main
    from synfab.runtime.multi import MultiDevice
    from synfab.compiler.partition import partition
    part = partition(residual_net(c=2), [CFG, CFG], cuts=["a"])
    with pytest.raises(DeviceError, match=r"^1 sets of device arguments for 2 boards: give one per board"):
        MultiDevice(part, "litex", device_args=[{"port": litex_sim.port}])
    assert main(["partition", "demo_mnist", "--boards", "default,default", "--backend", "litex",
                 "--ports", litex_sim.port]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--backend litex takes one --ports entry per board (2 boards, 1 ports)" in err


# ---------------------------------------------------------------------------------------
# Linked boards: the linked SoC (soc.links), board k's next link end cabled to board k+1's prev
@pytest.fixture(scope="module")
def linked_boards():
    """Two LiteX sims of the linked SoC joined by a SimCable (their link ends' bytes over host UDP
    sockets: the cable between two boards is the one part that is not gateware)."""
    from synfab_gateware.soc.sim import linked_sims
    with linked_sims([CFG, CFG]) as (sims, cables):
        yield sims, cables


def test_linked_litex_boards_pass_the_cut_layer_over_their_own_link(linked_boards):
    """The host sends each frame to board 0 only and reads the last board's output: board 0's
    output beats cross the cable through its LinkSender and board 1's LinkReceiver (frames with seq
    and CRC-8, credits back) into board 1's input. Bit-exact with the whole network's golden
    model; the link ends' counters balance with the boards' and with the bytes on the cable."""
    from synfab import linkframe as lf
    sims, (cable,) = linked_boards
    qnet, frames, (want_out, want_spikes) = residual_case(2)
    before = cable.forward_bytes
    out = api.run_partitioned(qnet, frames, [CFG, CFG], cuts=["a"], backend="litex", check=True,
                              link=lf.Wire(kind="uart"), device_args=[{"port": s.port} for s in sims])
    res = out["result"]
    assert len(list(assert_chain_matches(qnet, out["partition"], res, want_out, want_spikes))) == len(frames)
    # every beat of the cut layer and each frame's end crossed as a frame of the spec (7 or 11 bytes)
    wire = sum(h[0].bytes for h in res.hops)
    assert 7 * sum(h[0].beats for h in res.hops) <= wire <= 11 * sum(h[0].beats for h in res.hops)
    assert cable.forward_bytes - before == wire
    link, = out["summary"]["links"]
    assert link["kind"] == "uart gateware (linked LiteX boards)" and out["summary"]["checked_against_whole_network"]


def test_a_corrupt_byte_on_the_cable_raises_link_error_and_reset_recovers(linked_boards):
    from synfab.compiler.partition import partition
    from synfab.runtime.linked_litex import LinkedLitexBoards
    from synfab.runtime.multi import LinkError, chain_frames
    sims, (cable,) = linked_boards
    qnet, frames, (want_out, _) = residual_case(2)
    part = partition(qnet, [CFG, CFG], cuts=["a"])
    with LinkedLitexBoards(part, [{"port": s.port} for s in sims], timeout=30) as boards:
        cable.corrupt_at(150)            # inside frame 0's beats (some 500 bytes)
        with pytest.raises(LinkError) as e:
            chain_frames(boards, frames[:1])
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("link 0 (board 0 -> 1): frame 0: ") and "dropped" in msg
        link, = boards.read_links()
        assert link["broken"] == 1 and link["errors"] >= 1 and link["received"] < link["sent"]
        boards.reset()
        res = chain_frames(boards, frames, check=True)
        for got, want in zip(res.outputs, want_out):
            np.testing.assert_array_equal(got, want)


def test_a_board_without_links_is_refused_in_one_line(litex_sim, linked_boards):
    from synfab.compiler.partition import partition
    from synfab.runtime.linked_litex import LinkedLitexBoards
    sims, _ = linked_boards
    qnet, _, _ = residual_case(2)
    part = partition(qnet, [CFG, CFG], cuts=["a"])
    with pytest.raises(DeviceError, match=r"^linked LiteX board 1 \(tcp://127\.0\.0\.1:\d+\): no board links \((link id "
                                          r"reads 0x[0-9a-f]+|no answer at the link registers)\); load a linked "
                                          r"bitstream \(synfab build --link uart\)$"):
        # The SoC without links never answers the link id read: the host's read timeout (30 s by
        # default) bounds the wait, shortened here so the test does not spend it.
        LinkedLitexBoards(part, [{"port": sims[0].port}, {"port": litex_sim.port, "timeout": 5.0}])
