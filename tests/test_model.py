"""The event-driven golden model against the dense integer reference, and its counters.

Oracles: `synfab.reference` (dense computation, no event logic) for activations and accumulators;
connection counts recomputed here by brute force from the network geometry for synaptic ops;
hand-computed numbers for a single event through a 3x3 convolution.
"""
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from synfab import PRESETS, FabricConfig, arith
from synfab.model import reference
from synfab.compiler import compile_network
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import Kind
from synfab.compiler.mapper import MappingError, map_network
from synfab.model import EVENT_DTYPE, Model, ModelError, input_events
from synfab.randnet import BLOCKS, EXTRA_BLOCKS, configs_and_qnetworks, random_input, random_qnetwork

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def axis_fanout(pos, n_dst, k, stride, pad, up):
    """Brute force: for each source position, how many destination positions o use it
    (some tap t in 0..k-1 with o*stride + t - pad == pos*up)."""
    o = np.arange(n_dst)[None, :]
    t = np.asarray(pos)[:, None] * up + pad - o * stride
    return ((t >= 0) & (t < k)).sum(axis=1)


def expected_synops(qnet, spikes_by_source):
    """(neuron, weight) pairs caused by the given spikes (source name -> (x, y, c) arrays)."""
    total = 0
    for layer in qnet.layers:
        co, ho, wo = layer.shape
        for conn in layer.inputs:
            x, y, c = spikes_by_source[conn.src]
            if conn.kind == Kind.DENSE:
                total += len(x) * co
                continue
            n = (axis_fanout(x, wo, conn.kw, conn.sw, conn.pw, conn.up)
                 * axis_fanout(y, ho, conn.kh, conn.sh, conn.ph, conn.up))
            total += int(n.sum()) * (co if conn.kind == Kind.CONV else 1)
    return total


def changes(prev, cur):
    c, y, x = np.nonzero(cur != prev)
    return x, y, c


def check_balance(res, n_out_events):
    cnt = res.counters
    assert cnt["packets_in"].sum() == res.input_packets + cnt["packets_out"].sum() - n_out_events
    assert cnt["spikes"].sum() == res.layer_spikes.sum()
    assert np.all(cnt["dropped"] == 0)


def run_against_reference(qnet, cfg, rng, frames=3, strategy="auto"):
    tables = compile_network(qnet, cfg, map_network(qnet, cfg, strategy))
    model = Model(tables, threshold=0)
    out_tag = tables.metadata["output_tag"]
    prev_x, prev_ref = None, {l.name: np.zeros(l.shape, np.int64) for l in qnet.layers}
    host_out = np.zeros(qnet.layer(qnet.output).shape, np.int64)
    for f in range(frames):
        x = random_input(qnet, rng, prev_x, change=rng.choice([1.0, 0.3, 0.05]))
        ev = input_events(prev_x, x)
        res = model.run_frame(ev)
        ref = reference.run(qnet, x, cfg.acc_bits)
        ref_acc = reference.run_acc(qnet, x, cfg.acc_bits)
        for i, layer in enumerate(qnet.layers):
            assert np.array_equal(model.activation(layer.name), ref[layer.name]), (f, layer.name)
            assert np.array_equal(model.accumulator(layer.name), ref_acc[layer.name]), (f, layer.name)
            # At threshold 0 exactly the neurons whose activation changed spike.
            assert res.layer_spikes[i] == np.count_nonzero(ref[layer.name] != prev_ref[layer.name])
        spikes = {qnet.input_name: (ev["x"], ev["y"], ev["c"])}
        spikes.update({l.name: changes(prev_ref[l.name], ref[l.name]) for l in qnet.layers})
        assert res.synops == expected_synops(qnet, spikes)
        check_balance(res, len(res.events))
        assert np.all(res.events["tag"] == out_tag)
        np.add.at(host_out, (res.events["c"], res.events["y"], res.events["x"]), res.events["d"])
        assert np.array_equal(host_out, ref[qnet.output])
        assert np.array_equal(model.output_state(), ref[qnet.output])
        prev_x, prev_ref = x, {k: ref[k] for k in prev_ref}
    return model


@SETTINGS
@given(configs_and_qnetworks(), st.integers(0, 2 ** 31), st.sampled_from(["auto", "channel", "spatial"]))
def test_threshold0_matches_reference_random_fabrics(cfg_net, seed, strategy):
    cfg, qnet = cfg_net
    try:
        map_network(qnet, cfg, strategy)
    except MappingError:
        # randnet sizes networks for "auto", so "auto" must map; a forced strategy may not fit a
        # tight fabric: reject the example (hypothesis draws another) instead of passing it untested.
        if strategy == "auto":
            raise
        assume(False)
    run_against_reference(qnet, cfg, np.random.default_rng(seed), frames=3, strategy=strategy)


@SETTINGS
@given(configs_and_qnetworks(BLOCKS + EXTRA_BLOCKS + ("rect", "rect_pool")), st.integers(0, 2 ** 31))
def test_rectangular_layers_match_reference_with_exact_synops(cfg_net, seed):
    cfg, qnet = cfg_net
    run_against_reference(qnet, cfg, np.random.default_rng(seed), frames=3)


@pytest.mark.parametrize("preset", ["tiny", "small", "default"])
def test_threshold0_matches_reference_presets(preset):
    cfg = PRESETS[preset]
    for seed in range(8):
        run_against_reference(random_qnetwork(seed, cfg), cfg, np.random.default_rng(seed), frames=3)


def test_split_layers_match_reference():
    """Small cores force every layer into many parts (tiles x channel groups, halos, shared weights)."""
    cfg = FabricConfig(mesh_x=8, mesh_y=4, neurons_per_core=64, weight_words_per_core=512,
                       peg_entries_per_core=64, esu_descriptors_per_core=32, populations_per_core=8,
                       input_peg_entries=64)
    split = 0
    for seed in range(16):
        qnet = random_qnetwork(seed, cfg)
        split += len(map_network(qnet, cfg).parts) - len(qnet.layers)
        run_against_reference(qnet, cfg, np.random.default_rng(seed), frames=2)
    assert split > 100   # the test really exercises split layers


@SETTINGS
@given(configs_and_qnetworks(), st.integers(0, 2 ** 31), st.integers(1, 40))
def test_threshold_counters_balance(cfg_net, seed, threshold):
    cfg, qnet = cfg_net
    rng = np.random.default_rng(seed)
    model = Model(compile_network(qnet, cfg), threshold=threshold)
    prev = None
    for _ in range(3):
        x = random_input(qnet, rng, prev, change=0.5)
        ev = input_events(prev, x)
        prev = x
        res = model.run_frame(ev)
        check_balance(res, len(res.events))
        spikes = {qnet.input_name: (ev["x"], ev["y"], ev["c"])}
        for i, layer in enumerate(qnet.layers):
            s = res.spikes[i]
            assert len(s) == res.layer_spikes[i]
            assert np.all(np.abs(s["d"]) >= threshold) and np.all(s["d"] != 0)
            spikes[layer.name] = (s["x"], s["y"], s["c"])
        assert res.synops == expected_synops(qnet, spikes)
        # Every neuron was evaluated since its last input: its activation is within the threshold of sent.
        for layer in qnet.layers:
            a = arith.requantize(model.accumulator(layer.name), layer.mult, layer.shift, layer.lo, layer.hi)
            assert np.all(np.abs(a - model.activation(layer.name)) < threshold)


def single_conv_net():
    w = np.arange(9, dtype=np.int8).reshape(1, 1, 3, 3) + 1      # w[ky, kx] = 3*ky + kx + 1
    layer = QLayer("conv", (1, 3, 3), [QConnection("in", Kind.CONV, k=3, pad=1)], np.array([5]), 1, 0, -100, 100,
                   w, "conv")
    return QNetwork("one", "in", (1, 3, 3), [layer], "conv")


def test_single_event_hand_computed():
    """Event d=2 at the centre: output (oy, ox) reads the input through tap (2-oy, 2-ox)."""
    qnet = single_conv_net()
    model = Model(compile_network(qnet, PRESETS["tiny"]))
    ev = np.array([(1, 1, 0, 2)], dtype=EVENT_DTYPE)
    res = model.run_frame(ev)
    want = 5 + 2 * np.array([[9, 8, 7], [6, 5, 4], [3, 2, 1]])
    assert np.array_equal(model.accumulator("conv")[0], want)
    assert np.array_equal(model.activation("conv")[0], np.minimum(want, 100))
    assert res.synops == 9 and res.layer_spikes.tolist() == [9]
    # A corner event reaches the 2x2 outputs around it only.
    res = model.run_frame(np.array([(0, 0, 0, -1)], dtype=EVENT_DTYPE))
    want2 = want.copy()
    want2[:2, :2] -= np.array([[5, 4], [2, 1]])
    assert np.array_equal(model.accumulator("conv")[0], want2)
    assert res.synops == 4 and res.layer_spikes.tolist() == [4]


def test_out_of_range_input_events_are_dropped_and_counted():
    qnet = single_conv_net()
    model = Model(compile_network(qnet, PRESETS["tiny"]))
    ev = np.array([(3, 0, 0, 7), (0, 3, 0, 7), (0, 0, 1, 7), (-1, 0, 0, 7), (2, 2, 0, 1)], dtype=EVENT_DTYPE)
    res = model.run_frame(ev)
    assert res.input_dropped == 4
    assert res.synops == 4          # only the (2, 2) event went in
    assert model.accumulator("conv")[0, 2, 2] == 5 + 5 * 1   # centre tap w[1, 1] = 5


def test_packets_to_missing_descriptors_are_dropped():
    qnet = single_conv_net()
    tables = compile_network(qnet, PRESETS["tiny"])
    core = tables.cores[0]
    tables.cores[0] = dataclasses.replace(core, esu_count=0)
    model = Model(tables)
    res = model.run_frame(np.array([(1, 1, 0, 3)], dtype=EVENT_DTYPE))
    assert res.counters["packets_in"][0] == 1 and res.counters["dropped"][0] == 1
    assert res.synops == 0
    assert np.array_equal(model.accumulator("conv")[0], np.full((3, 3), 5))


def test_pairs_outside_the_memories_are_dropped_one_by_one():
    """A descriptor moved to the last 4 neurons: of the 9 pairs of a centre event, the 4 that
    land on neurons Nc-4..Nc-1 apply, the other 5 are dropped (as the hardware guard does)."""
    tables = compile_network(single_conv_net(), PRESETS["tiny"])
    n_mem = PRESETS["tiny"].neurons_per_core
    esu = dict(tables.cores[0].esu)
    esu["nbase"] = np.array([n_mem - 4])
    tables.cores[0] = dataclasses.replace(tables.cores[0], esu=esu)
    model = Model(tables)
    res = model.run_frame(np.array([(1, 1, 0, 2)], dtype=EVENT_DTYPE))
    assert res.counters["synops"][0] == 4 and res.counters["dropped"][0] == 5
    # outputs (0,0), (1,0), (2,0), (0,1) are the first 4 pixels: taps w[2,2], w[2,1], w[2,0], w[1,2]
    assert model.acc(0)[n_mem - 4:].tolist() == [2 * 9, 2 * 8, 2 * 7, 2 * 6]
    esu["kind"] = np.array([int(Kind.HOST)])
    model = Model(tables)
    res = model.run_frame(np.array([(1, 1, 0, 2)], dtype=EVENT_DTYPE))
    assert res.counters["dropped"][0] == 1 and res.synops == 0


def test_reset_restores_the_initial_state():
    cfg = PRESETS["small"]
    qnet = random_qnetwork(3, cfg)
    model = Model(compile_network(qnet, cfg))
    rng = np.random.default_rng(1)
    x = random_input(qnet, rng)
    first = model.run_frame(input_events(None, x))
    model.run_frame(input_events(x, random_input(qnet, rng)))
    model.reset()
    again = model.run_frame(input_events(None, x))
    assert np.array_equal(first.sorted_events(), again.sorted_events())
    assert np.array_equal(first.layer_spikes, again.layer_spikes)
    for k in first.counters:
        assert np.array_equal(first.counters[k], again.counters[k])


def test_input_events_are_the_changes():
    prev = np.zeros((2, 2, 3), np.int64)
    cur = prev.copy()
    cur[1, 0, 2] = 9
    cur[0, 1, 0] = 4
    ev = input_events(prev, cur)
    assert sorted(ev.tolist()) == [(0, 1, 0, 4), (2, 0, 1, 9)]
    assert len(input_events(cur, cur)) == 0
    assert sorted(input_events(None, cur).tolist()) == sorted(ev.tolist())
    with pytest.raises(ModelError):
        input_events(prev, cur[0])


def test_events_need_xycd():
    model = Model(compile_network(single_conv_net(), PRESETS["tiny"]))
    with pytest.raises(ModelError, match="x, y, c, d"):
        model.run_frame({"x": [0], "y": [0]})


def test_random_networks_cover_every_layer_kind():
    ops, geometry = set(), set()
    for seed in range(60):
        for layer in random_qnetwork(seed, PRESETS["default"]).layers:
            ops.add(layer.op)
            for c in layer.inputs:
                geometry.add((c.kind, c.stride > 1, c.pad > 0, c.up > 1, c.chan_off > 0, c.wconst is not None))
            if layer.lo < 0:
                ops.add("no relu")
    assert {"conv", "tconv", "dw", "pw", "sumpool", "avgpool", "up", "add", "cat", "catconv", "fc",
            "no relu"} <= ops
    kinds = {g[0] for g in geometry}
    assert kinds == {Kind.CONV, Kind.DW, Kind.DENSE}
    assert any(g[1] for g in geometry) and any(g[2] for g in geometry) and any(g[3] for g in geometry)
    assert (Kind.DENSE, False, False, False, True, False) in geometry      # dense over a concatenation
    assert (Kind.CONV, False, True, False, True, False) in geometry        # conv over a concatenation
