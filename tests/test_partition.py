"""A network over several boards (compiler/partition.py, runtime/multi.py): whole-layer slabs joined
by host-side event links.  Every expected value comes from the WHOLE network: its golden model (the
network compiled onto one fabric that holds it) or its dense reference, never from the chain."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synfab import demo
from synfab.analysis.workloads import demo_mnist, lenet_mnist, lenet_wide_mnist
from synfab.boards import BOARDS
from synfab.api import compile_qnetwork, run_frames, run_partitioned
from synfab.arith import Neuron
from synfab.cli import main
from synfab.compiler.partition import PartitionError, cut_points, one_fabric, partition
from synfab.config import PRESETS
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import Kind
from synfab.randnet import random_frames, random_qnetwork
from synfab.runtime.model import ModelDevice
from synfab.runtime.multi import Hop, LinkError, LinkModel, MultiDevice, chain_frames, overlapped_cycles
from synfab.runtime.stream import stream

LENET_FRAMES = 4
WIDE_FRAMES = 2


def whole_golden(qnet, frames, cfg, threshold=0):
    """The whole network's golden model on one fabric: (outputs per frame, spikes per layer per frame)."""
    dev = ModelDevice(cfg)
    dev.load(compile_qnetwork(qnet, cfg))
    dev.set_threshold(threshold)
    res = stream(dev, frames)
    return res.outputs, res.layer_spikes_per_step


def layer_index(qnet, name):
    return [l.name for l in qnet.layers].index(name)


@pytest.fixture(scope="module")
def lenet():
    qnet, frames = lenet_mnist(LENET_FRAMES)
    return qnet, frames, whole_golden(qnet, frames, demo.fabric("lenet"))


@pytest.mark.parametrize("n_boards", [2, 4])
def test_lenet_over_boards_is_bit_exact_with_the_whole_network(lenet, n_boards):
    qnet, frames, (want_out, want_spikes) = lenet
    part = partition(qnet, ["ulx3s-85f"] * n_boards)
    assert len(part.slabs) == n_boards and all(s.layers for s in part.slabs)
    assert sum((s.layers for s in part.slabs), []) == [l.name for l in qnet.layers]
    with MultiDevice(part, "model", LinkModel(latency=100, events_per_cycle=2)) as multi:
        res = chain_frames(multi, frames)
    assert len(res.outputs) == LENET_FRAMES
    for t, hop, cut_events in assert_chain_matches(qnet, part, res, want_out, want_spikes):
        assert hop.bytes == 8 * (cut_events + 1)                 # 64-bit beats and the trailer
        assert hop.added_cycles == 100 + -(-(cut_events + 1) // 2)


def assert_chain_matches(qnet, part, res, want_out, want_spikes):
    """The chain's outputs and spikes are the whole network's, and every link carried what its
    cut layer sent and the next board took in; yields (frame, hop, cut events) for more checks."""
    for got, want in zip(res.outputs, want_out):
        np.testing.assert_array_equal(got, want)
    assert res.layer_spikes_per_step == want_spikes
    for t, hops in enumerate(res.hops):
        for k, hop in enumerate(hops):
            cut_events = want_spikes[t][layer_index(qnet, part.slabs[k].cut)]
            # what board k sent == what the link carried == what board k+1 took in
            assert hop.events == cut_events == res.board_events_in[t][k + 1]
            yield t, hop, cut_events


def test_cuts_with_fewest_neurons_are_chosen(lenet):
    qnet = lenet[0]
    # Every LeNet layer ends a slab one layer alone leaves; pool3 (128 neurons) is the smallest,
    # then pool2 (512) and fc1 (500): two boards cut at pool3, four at pool2, pool3, fc1.
    assert [qnet.layers[i].name for i in cut_points(qnet)] == [l.name for l in qnet.layers[:-1]]
    assert partition(qnet, ["ulx3s-85f"] * 2).cuts == ["pool3"]
    assert partition(qnet, ["ulx3s-85f"] * 4).cuts == ["pool2", "pool3", "fc1"]


def test_a_sample_predicts_the_link_events(lenet):
    qnet, frames, (_, want_spikes) = lenet
    part = partition(qnet, ["ulx3s-85f"] * 2, sample=frames)
    assert part.events_from == "sample" and part.cuts == ["pool3"]
    assert part.crossing[0] == pytest.approx(np.mean([t[layer_index(qnet, "pool3")] for t in want_spikes]))


def test_explicit_cuts_and_threshold_stay_exact():
    qnet, frames = demo_mnist(4)
    want_out, want_spikes = whole_golden(qnet, frames, demo.fabric("demo"), threshold=3)
    part = partition(qnet, ["default", "default"], cuts=["conv1"])
    assert [s.layers for s in part.slabs] == [["conv1"], ["conv2", "fc"]]
    with MultiDevice(part) as multi:
        multi.set_threshold(3)
        res = chain_frames(multi, frames, check=True)
    for got, want in zip(res.outputs, want_out):
        np.testing.assert_array_equal(got, want)
    assert res.layer_spikes_per_step == want_spikes


# ---------------------------------------------------------------------------------------
# Refusals, one line each
def _conv(name, src, c_in, c_out, k=3, pad=1, neuron=Neuron()):
    rng = np.random.default_rng(len(name))
    return QLayer(name, (c_out, 8, 8), [QConnection(src, Kind.CONV, k=k, pad=pad)], np.zeros(c_out, np.int64),
                  mult=1, shift=4, weight=rng.integers(-20, 20, (c_out, c_in, k, k)), neuron=neuron)


def residual_net(c: int = 4, **kw) -> QNetwork:
    """input -> a -> b; c = a + b (a skip connection over b) -> d, c channels of 8x8 each."""
    add = QLayer("c", (c, 8, 8), [QConnection("a", Kind.DW, wconst=1), QConnection("b", Kind.DW, wconst=1)],
                 np.zeros(c, np.int64))
    layers = [_conv("a", "in", 1, c), _conv("b", "a", c, c), add, _conv("d", "c", c, c)]
    return QNetwork("res", "in", (1, 8, 8), layers, "d", **kw)


def residual_case(frames: int, seed: int = 5):
    """residual_net(c=2), `frames` random frames and the whole network's golden model of them on
    the default fabric: (qnet, frames, (outputs, spikes))."""
    qnet = residual_net(c=2)
    inputs = random_frames(qnet, np.random.default_rng(seed), frames)
    return qnet, inputs, whole_golden(qnet, inputs, PRESETS["default"])


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_a_cut_across_a_skip_connection_is_refused():
    qnet = residual_net()
    assert [qnet.layers[i].name for i in cut_points(qnet)] == ["a", "c"]
    with pytest.raises(PartitionError) as e:
        partition(qnet, ["default", "default"], cuts=["b"])
    assert "cut after b: a also crosses it" in one_line(e)
    # the skip is whole on one board: bit-exact with the whole network
    frames = random_frames(qnet, np.random.default_rng(1), 3)
    want_out, want_spikes = whole_golden(qnet, frames, PRESETS["default"])
    out = run_partitioned(qnet, frames, ["default", "default"], cuts=["a"], check=True)
    for got, want in zip(out["result"].outputs, want_out):
        np.testing.assert_array_equal(got, want)
    assert out["result"].layer_spikes_per_step == want_spikes


@pytest.mark.parametrize("change, words", [
    (dict(pipelined=True), "is pipelined"),
    (dict(reset_interval=2), "state reset interval"),
])
def test_timing_a_cut_would_change_is_refused(change, words):
    with pytest.raises(PartitionError) as e:
        partition(residual_net(**change), ["default", "default"])
    assert words in one_line(e)


@pytest.mark.parametrize("neuron, lo, words", [
    (Neuron("if", theta=4), 0, "if events"),
    (Neuron(msg_shift=2), 0, "message shift"),
    (Neuron(), None, "unclamped"),
])
def test_a_cut_after_a_layer_whose_events_are_not_levels_is_refused(neuron, lo, words):
    qnet = residual_net()
    qnet.layers[0] = dataclasses.replace(qnet.layers[0], neuron=neuron, lo=lo)
    with pytest.raises(PartitionError) as e:
        partition(qnet, ["default", "default"], cuts=["a"])
    assert words in one_line(e)


@pytest.mark.parametrize("boards, cuts, words", [
    (["default"] * 2, ["a", "c"], "2 boards need 1 cut(s), got 2"),
    (["default"] * 2, ["zz"], "no layer 'zz' to cut after"),
    (["default"] * 2, ["d"], "leaves a board without layers"),
    (["default", "nosuch"], None, "unknown board preset 'nosuch'"),
    (["default"] * 4, None, "has 2 place(s) to cut"),
    (["default", dataclasses.replace(PRESETS["default"], acc_bits=20, name="acc20")], None,
     "different acc_bits (24, 20)"),
])
def test_bad_requests_are_one_line(boards, cuts, words):
    with pytest.raises(PartitionError) as e:
        partition(residual_net(), boards, cuts=cuts)
    assert words in one_line(e)


def test_too_many_ways_to_cut_asks_for_the_cuts(lenet, monkeypatch):
    import synfab.compiler.partition as partition_module
    monkeypatch.setattr(partition_module, "MAX_COMBINATIONS", 20)
    with pytest.raises(PartitionError) as e:       # 7 places to cut, 2 cuts: 21 ways
        partition(lenet[0], ["ulx3s-85f"] * 3)
    assert "21 ways to cut it for 3 boards" in one_line(e)


def test_a_slab_that_fits_no_board_names_the_board(lenet):
    with pytest.raises(PartitionError) as e:
        partition(lenet[0], ["tiny", "tiny"])
    msg = one_line(e)
    assert msg.startswith("board ") and "(tiny) cannot hold layers" in msg


# ---------------------------------------------------------------------------------------
# A network no single board holds
@pytest.fixture(scope="module")
def lenet_wide():
    qnet, frames = lenet_wide_mnist(WIDE_FRAMES)
    return qnet, frames, whole_golden(qnet, frames, demo.fabric("lenet_wide"))


def test_lenet_wide_fits_no_board_preset(lenet_wide):
    qnet = lenet_wide[0]
    assert sum(int(np.prod(l.shape)) for l in qnet.layers) == 31685
    for preset in sorted({b.preset for b in BOARDS.values()}):
        with pytest.raises(Exception) as e:
            compile_qnetwork(qnet, PRESETS[preset])
        # the PYNQ-Z2's preset runs out of weight words first, the ECP5 presets of neurons
        msg = one_line(e)
        assert ("needs at least 31685 neurons" in msg or "needs at least 367521 weight words" in msg), (preset, msg)


def test_lenet_wide_over_four_boards_is_bit_exact_with_the_whole_network(lenet_wide):
    qnet, frames, (want_out, want_spikes) = lenet_wide
    with pytest.raises(PartitionError, match=r"^board 0 \(ulx3s-85f\) cannot hold layers"):
        partition(qnet, ["ulx3s-85f"] * 2)
    part = partition(qnet, ["ulx3s-85f"] * 4)
    assert [s.layers for s in part.slabs] == [["conv1"], ["pool1", "conv2", "pool2", "conv3", "pool3"],
                                              ["fc1"], ["fc2"]]
    with MultiDevice(part, "model", LinkModel(latency=64)) as multi:
        res = chain_frames(multi, frames, check=True)
    assert len(res.outputs) == WIDE_FRAMES
    assert all(cut_events > 0 for _, _, cut_events in assert_chain_matches(qnet, part, res, want_out, want_spikes))


@pytest.mark.slow
def test_lenet_wide_on_four_verilator_boards(lenet_wide, capsys):
    """The CLI over four ULX3S-85F preset fabrics in Verilator, every frame checked against the
    whole network; its report against the golden spike counts."""
    pytest.importorskip("synfab_gateware.sim.fabric_sim")
    qnet, _, (want_out, want_spikes) = lenet_wide
    assert main(["partition", "lenet_wide_mnist", "--boards", ",".join(["ulx3s-85f"] * 4), "--frames",
                 str(WIDE_FRAMES), "--backend", "sim", "--check", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["checked_against_whole_network"] and s["cycles_from"] == "measured"
    assert [b["layers"] for b in s["boards"]][0] == ["conv1"]
    assert all(b["cycles_per_frame"] > 0 for b in s["boards"])
    for k, link in enumerate(s["links"]):
        cut = layer_index(qnet, s["boards"][k]["layers"][-1])
        assert link["events"] == sum(t[cut] for t in want_spikes)


# ---------------------------------------------------------------------------------------
# Links
def test_a_lossy_link_is_detected_not_silent(lenet):
    qnet, frames, _ = lenet
    part = partition(qnet, ["ulx3s-85f"] * 2)
    with MultiDevice(part, "model", LinkModel(drop=0.05, seed=3)) as multi:
        with pytest.raises(LinkError) as e:
            chain_frames(multi, frames)
    msg = one_line(e)
    assert msg.startswith("link 0 (board 0 -> 1): frame 0: ") and "events arrived" in msg


def test_cli_partition_json_reports_boards_links_and_slowdown(lenet, capsys):
    qnet, _, (_, want_spikes) = lenet
    assert main(["partition", "lenet_mnist", "--boards", "ulx3s-85f,ulx3s-85f", "--frames", str(LENET_FRAMES),
                 "--latency", "50", "--check", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["checked_against_whole_network"] and s["cycles_from"] == "predicted"
    assert [b["layers"] for b in s["boards"]] == [[l.name for l in qnet.layers[:6]], ["fc1", "fc2"]]
    link, = s["links"]
    pool3 = [t[layer_index(qnet, "pool3")] for t in want_spikes]
    assert link["events"] == sum(pool3) and link["bytes"] == 8 * (sum(pool3) + LENET_FRAMES)
    assert link["added_cycles_per_frame"] == round(np.mean([50 + p + 1 for p in pool3]), 1)
    assert s["one_fabric"]["cores"] == 2 * PRESETS["ulx3s-85f"].n_cores
    assert s["slowdown_predicted"] > 1     # slabs run one after the other within a frame


def test_cli_lossy_link_exits_with_one_line(capsys):
    assert main(["partition", "demo_mnist", "--boards", "default,default", "--frames", "2",
                 "--link-drop", "0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("synfab: error: link 0 (board 0 -> 1): frame 0:")


@pytest.mark.parametrize("cycles, busy, latency, end", [
    # board 0 the slowest: it ends frames at 100, 200, 300, 400; the last arrives at 415, ends 465
    ([100, 50], 10, 5, 465.0),
    # board 1 the slowest: frames arrive at 20, 30, 40, 50 and leave it at 120, 220, 320, 420
    ([10, 100], 5, 5, 420.0),
    # the link the slowest, one frame's beats at a time: arrivals at 50, 90, 130, 170, ends 180
    ([10, 10], 40, 0, 180.0),
])
def test_overlapped_frames_follow_the_slowest_stage(cycles, busy, latency, end):
    hops = [[Hop(events=busy - 1, beats=busy, bytes=8 * busy, busy_cycles=busy, added_cycles=latency + busy)]] * 4
    assert overlapped_cycles(np.array([cycles] * 4, dtype=float), hops) == end


def test_overlapped_frames_wait_for_a_slow_first_frame():
    # Frame 0 takes board 1 300 cycles, later frames 50. Frame 0 arrives at 100 + 15, board 1 ends it
    # at 415; frame 1 arrives at 215 and ends at max(415, 215) + 50 = 465, then 515, 565.
    cycles = np.array([[100, 300], [100, 50], [100, 50], [100, 50]], dtype=float)
    hop = Hop(events=9, beats=10, bytes=80, busy_cycles=10, added_cycles=15)
    assert overlapped_cycles(cycles, [[hop]] * 4) == 565.0


# ---------------------------------------------------------------------------------------
# Verilator boards
def test_sim_boards_are_bit_exact_and_cycles_add_up():
    pytest.importorskip("synfab_gateware.sim.fabric_sim")
    qnet, frames = demo_mnist(3)
    want_out, want_spikes = whole_golden(qnet, frames, demo.fabric("demo"))
    part = partition(qnet, ["default", "default"])
    with MultiDevice(part, "sim", LinkModel(latency=40)) as multi:
        res = chain_frames(multi, frames)
        frame = [multi.run_frame({"x": [], "y": [], "c": [], "d": []})]   # a quiet frame: links carry 0
    for got, want in zip(res.outputs, want_out):
        np.testing.assert_array_equal(got, want)
    assert res.layer_spikes_per_step == want_spikes
    assert all(c > 0 for per in res.board_cycles for c in per)
    cf = frame[0]
    assert cf.hops[0].events == 0 and cf.cycles == sum(b.cycles for b in cf.boards) + 40 + 1


@pytest.mark.slow
def test_sim_tiny_boards_against_one_measured_fabric():
    """Two tiny Verilator boards against one Verilator fabric with both their cores (a build of
    its own: slow)."""
    pytest.importorskip("synfab_gateware.sim.fabric_sim")
    qnet, frames, (want_out, want_spikes) = residual_case(3)
    out = run_partitioned(qnet, frames, ["tiny", "tiny"], cuts=["a"], backend="sim", check=True,
                          link=LinkModel(latency=10), measure_one_fabric=True)
    res, s = out["result"], out["summary"]
    for got, want in zip(res.outputs, want_out):
        np.testing.assert_array_equal(got, want)
    assert res.layer_spikes_per_step == want_spikes
    chain = [sum(c) + sum(h.added_cycles for h in hops) for c, hops in zip(res.board_cycles, res.hops)]
    assert s["cycles_from"] == "measured" and s["frame_cycles"] == round(float(np.mean(chain)), 1)
    one = s["one_fabric"]
    assert one["cores"] == 2 and one["measured_cycles_per_frame"] > 0
    assert s["slowdown_measured"] == round(s["frame_cycles"] / one["measured_cycles_per_frame"], 3)


# ---------------------------------------------------------------------------------------
# Random networks
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(0, 2 ** 31))
def test_random_networks_over_boards_are_bit_exact(data, seed):
    cfg = PRESETS["default"]
    qnet = random_qnetwork(data.draw, cfg)
    points = [qnet.layers[i].name for i in cut_points(qnet)]
    if not points:
        return                      # one layer, or every boundary crossed by a skip
    cuts = sorted(data.draw(st.sets(st.sampled_from(points), min_size=1, max_size=min(3, len(points)))),
                  key=lambda name: layer_index(qnet, name))
    frames = random_frames(qnet, np.random.default_rng(seed), 3)
    want_out, want_spikes = whole_golden(qnet, frames, cfg)
    out = run_partitioned(qnet, frames, [cfg] * (len(cuts) + 1), cuts=cuts, check=True)
    for got, want in zip(out["result"].outputs, want_out):
        np.testing.assert_array_equal(got, want)
    assert out["result"].layer_spikes_per_step == want_spikes


@pytest.mark.slow
def test_bench_boards_reports_link_traffic_and_the_measured_slowdown():
    """`synfab bench --boards`' figures (the same fabrics as the test above: their builds are cached)."""
    pytest.importorskip("synfab_gateware.sim.fabric_sim")
    from synfab.analysis import bench
    qnet = residual_net(c=2)
    frames = random_frames(qnet, np.random.default_rng(5), 3)
    m = bench.multi_board_bench(["tiny", "tiny"], {"res": (qnet, frames)}, cuts=["a"])
    s = m["res"]
    assert m["boards"] == ["tiny", "tiny"] and s["checked_against_whole_network"] and s["frames"] == 3
    link = s["links"][0]
    assert link["events"] > 0 and link["bytes"] > 0 and 0 < link["utilisation"] < 1
    # The one fabric's cycles: the same frames on a fabric of both boards' cores, run on its own.
    one = one_fabric([PRESETS["tiny"], PRESETS["tiny"]])
    alone = run_frames(compile_qnetwork(qnet, one), frames, "sim")["summary"]["cycles"]
    assert s["one_fabric"]["cores"] == 2 and s["one_fabric"]["measured_cycles_per_frame"] == round(alone / 3, 1)
    assert s["slowdown_measured"] > 0
    text = bench._multi_board_text(m)
    assert f"slowdown {s['slowdown_measured']} measured" in text and "0->1" in text
    # The same slabs over the boards' link gateware (the frames checked there too): every cut event
    # and each frame's end cross as 11-byte frames; overlapped frames come no slower.
    u = s["uart_link"]
    assert u["beats_per_frame"] == [round(link["events"] / 3 + 1, 1)] and 7 <= u["bytes_per_beat"] <= 11
    assert 0 < u["overlapped_cycles_per_frame"] <= u["frame_cycles"] and u["overlap_speedup"] >= 1
    assert u["link_beats_per_s"] == round(u["at_mhz"] * 1e6 / u["clocks_per_beat"])
    assert "over the link gateware (UART" in text
    # and over the Ethernet link: the same beats in packets of up to 32, a byte a clock on the wire
    e = s["eth_link"]
    assert e["kind"] == "eth" and e["beats_per_frame"] == u["beats_per_frame"]
    assert e["bytes_per_beat"] > 8 and e["clocks_per_beat"] < u["clocks_per_beat"]
    assert e["link_mbit_per_s"] == round(8 * e["at_mhz"], 2)
    assert 0 < e["overlapped_cycles_per_frame"] <= e["frame_cycles"] and e["overlap_speedup"] >= 1
    assert "over the link gateware (Ethernet" in text


def test_cli_bench_boards_default_workload_is_a_workload():
    from synfab.analysis import bench
    from synfab.analysis.workloads import WORKLOADS
    assert bench.MULTI_BOARD_WORKLOAD in WORKLOADS


@pytest.mark.parametrize("args, words", [
    (["--boards", "ulx3s-85f"], "--boards takes two or more board presets separated by commas, got 'ulx3s-85f'"),
    (["--boards", "tiny,tiny", "--fabric", "tiny"], "--boards runs a workload over board presets: leave out --fabric"),
])
def test_cli_bench_boards_misuse_is_one_line(args, words, capsys):
    assert main(["bench", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"synfab: error: {words}")
