"""Neuron models, time steps and pipelined timing.

Oracles: hand-computed steps of every model (written out below from DESIGN.md "Neuron models"
and Lava's fixed-point code), and the dense reference `reference.simulate`, which steps every
neuron of every layer at every step: the event-driven model, which evaluates only the neurons a
synapse touched or that are live, must equal it bit for bit (events and every state word).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synfab import PRESETS, FabricConfig, arith
from synfab.model import reference
from synfab.arith import Activation, Neuron, NeuronError
from synfab.compiler.bundle import decode, encode
from synfab.compiler import compile_network
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, Kind
from synfab.compiler.mapper import MappingError, map_network
from synfab.model import Model, frame_events
from synfab.randnet import random_frames, random_neuron_qnetwork, random_qnetwork

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Fabrics wide enough for Lava-style events (24-bit events, open activation bounds) and narrow ones.
WIDE = PRESETS["small"].with_(event_bits=24, name="wide")
# SPLIT: tiny cores, so layers split into spatial tiles and channel groups over many cores.
SPLIT = FabricConfig(mesh_x=4, mesh_y=2, neurons_per_core=64, weight_words_per_core=512, peg_entries_per_core=64,
                     esu_descriptors_per_core=32, populations_per_core=8, input_peg_entries=64, event_bits=24,
                     name="split")
FABRICS = (WIDE, PRESETS["small"].with_(event_bits=24, acc_bits=20, name="acc20"),
           PRESETS["tiny"].with_(event_bits=24, name="tiny24"), PRESETS["small"], SPLIT)


def one(neuron, acc, act=Activation(), acc_bits=24, threshold=0, **words):
    state = {"acc": np.array([acc], np.int64)}
    for w in neuron.words:
        if w != "acc":
            state[w] = np.array([words.get(w, 0)], np.int64)
    s, v = arith.step(neuron, state, acc_bits, act, threshold)
    return {k: int(x[0]) for k, x in s.items()}, int(v[0])


# -- sigma-delta with Lava's options ------------------------------------------------------------
def test_sigma_delta_default_is_todays_rule():
    n = Neuron()
    act = Activation(3, 2, 0, 255)            # a = (acc*3 + 2) >> 2
    s, v = one(n, 10, act)                    # a = 8, sent 0 -> event 8
    assert (s["sent"], v) == (8, 8)
    s, v = one(n, 10, act, threshold=9, sent=0)
    assert (s["sent"], v) == (0, 0)           # |8| < 9: nothing sent, nothing recorded


def test_sigma_delta_theta_and_message_shift():
    n = Neuron(theta=64, msg_shift=6)
    act = Activation(1, 0, 0, None)           # ReLU without an upper clamp (Lava)
    s, v = one(n, 100, act)                   # change 100 >= 64: sent 100, event 100 >> 6 = 1
    assert (s["sent"], v) == (100, 1)
    s, v = one(n, 150, act, sent=100)         # change 50 < 64: held back
    assert (s["sent"], v) == (100, 0)
    s, v = one(n, 30, act, sent=100)          # change -70: event -70 >> 6 = -2 (floor), full change kept
    assert (s["sent"], v) == (30, -2)
    s, v = one(n, -5, act, sent=100)          # ReLU: a = 0, change -100
    assert (s["sent"], v) == (0, -2)


def test_sigma_delta_event_of_a_small_change_is_zero_but_recorded():
    # Lava sends s_out >> 6 = 0 for a change of 10 but records it (residue = 0): no event travels.
    s, v = one(Neuron(msg_shift=6), 10, Activation(1, 0, None, None))
    assert (s["sent"], v) == (10, 0)


# -- integrate and fire --------------------------------------------------------------------------
@pytest.mark.parametrize("neuron, acc, bias, want_v, want_event", [
    (Neuron("if", theta=10), 7, 3, 0, 1),                                  # 10 >= 10, subtract
    (Neuron("if", theta=10, fire_gt=True), 7, 3, 10, 0),                   # 10 > 10 is false
    (Neuron("if", theta=10, fire_gt=True), 8, 3, 1, 1),
    (Neuron("if", theta=10), 25, 0, 15, 1),                                # one spike per step
    (Neuron("if", theta=10, multi_spike=True), 25, 0, 5, 2),               # floor(25 / 10) spikes
    (Neuron("if", theta=10, multi_spike=True, fire_gt=True), 30, 0, 10, 2),  # floor(29 / 10)
    (Neuron("if", theta=10, reset_to=-3), 25, 0, -3, 1),
    (Neuron("if", theta=10, v_min=-4), -9, 0, -4, 0),                      # lower bound
    (Neuron("if", theta=10, v_min=-4), -2, -1, -3, 0),
])
def test_if_steps_by_hand(neuron, acc, bias, want_v, want_event):
    s, v = one(neuron, acc, bias=bias)
    assert (s["acc"], v) == (want_v, want_event)
    assert s["bias"] == bias


def test_if_wraps_at_acc_bits():
    s, v = one(Neuron("if", theta=1000), (1 << 15) - 1, acc_bits=16, bias=1)   # 32767 + 1 wraps to -32768
    assert (s["acc"], v) == (-32768, 0)


# -- Loihi CUBA LIF, as Lava's PyLifModelBitAcc rounds ------------------------------------------
def test_loihi_decay_rounds_toward_zero():
    # -1001 * (4096 - 1024) / 4096 = -750.75: Lava's sign(p) * (|p| >> 12) gives -750, floor -751.
    assert int(arith.loihi_decay(-1001, 1024)) == -750
    assert int(arith.loihi_decay(1001, 1024)) == 750
    assert int(arith.loihi_decay(12345, 4096)) == 0 and int(arith.loihi_decay(12345, 0)) == 12345


def test_loihi_current_wraps_at_24_bits_and_voltage_clips():
    m = 1 << 23
    assert arith.loihi_wrap_current([m, m + 1, -m, -m + 1]).tolist() == [m, -m + 1, m, -m + 1]
    # Lava's one fold within +-3 * 2**23; beyond, Loihi's 24 bits wrap again, as the gateware does
    # (Lava's CPU model would leave such a sum outside 24 bits).
    assert arith.loihi_wrap_current([3 * m, 3 * m + 1, 10632192, 10 * m + 5, -5 * m - 7]).tolist() == \
        [m, -m + 1, 10632192 - 2 * m, 10 * m + 5 - 10 * m, -5 * m - 7 + 6 * m]
    assert arith.loihi_clip_voltage([m, -m, 5]).tolist() == [m - 1, -(m - 1), 5]


def test_cuba_lif_step_by_hand():
    n = Neuron("cuba_lif", theta=25, du=1024, dv=2048)      # fires when v > 25 << 6 = 1600
    # u = decay(1000, 1024) + (3 << 6) = 750 + 192 = 942; v = decay(900, 2048) + 942 + 100 = 1492
    s, v = one(n, 3, u=1000, v=900, bias=100)
    assert (s["u"], s["v"], s["acc"], v) == (942, 1492, 0, 0)
    s, v = one(n, 4, u=1000, v=900, bias=100)                # u = 1006, v = 1556: still <= 1600
    assert (s["v"], v) == (1556, 0)
    s, v = one(n, 5, u=1000, v=900, bias=100)                # u = 1070, v = 1620 > 1600: spike, v = 0
    assert (s["u"], s["v"], v) == (1070, 0, 1)


def test_refractory_holds_v_at_zero():
    n = Neuron("lif", theta=1, dv=0, refractory=2)
    state = {"acc": np.array([5]), "v": np.array([0]), "ref": np.array([0]), "bias": np.array([0])}
    got = []
    for acc in (5, 5, 5, 5):                  # v = 320 > 64 fires; then two held steps; then again
        state["acc"] = np.array([acc])
        state, v = arith.step(n, state, 24)
        got.append((int(v[0]), int(state["v"][0]), int(state["ref"][0])))
    assert got == [(1, 0, 2), (0, 0, 1), (0, 0, 0), (1, 0, 2)]


def test_lif_is_cuba_lif_with_a_full_current_decay():
    rng = np.random.default_rng(1)
    acc = rng.integers(-50, 50, size=(20, 64))
    bias = rng.integers(-200, 200, size=64)
    cuba = {"acc": acc[0], "u": np.zeros(64, np.int64), "v": np.zeros(64, np.int64),
            "ref": np.zeros(64, np.int64), "bias": bias}
    lif = {k: v for k, v in cuba.items() if k != "u"}
    a, b = Neuron("cuba_lif", theta=30, du=4096, dv=300, refractory=1), Neuron("lif", theta=30, dv=300, refractory=1)
    for t in range(20):
        cuba["acc"], lif["acc"] = acc[t], acc[t]
        cuba, ea = arith.step(a, cuba, 24)
        lif, eb = arith.step(b, lif, 24)
        assert np.array_equal(ea, eb) and np.array_equal(cuba["v"], lif["v"])


def test_live_rules():
    assert not arith.live(Neuron(), {"acc": [5], "sent": [0]})[0]                 # idempotent
    assert arith.live(Neuron("if", theta=3), {"acc": [4], "bias": [0]})[0]       # fires again
    assert not arith.live(Neuron("if", theta=3), {"acc": [2], "bias": [0]})[0]
    assert arith.live(Neuron("if", theta=3), {"acc": [0], "bias": [1]})[0]       # bias every step
    lif = {"acc": [0], "v": [0], "ref": [0], "bias": [0]}
    assert not arith.live(Neuron("lif", theta=1), lif)[0]
    assert arith.live(Neuron("lif", theta=1), {**lif, "v": [-3]})[0]
    assert arith.live(Neuron("lif", theta=1), {**lif, "ref": [1]})[0]
    assert arith.live(Neuron("cuba_lif", theta=1), {**lif, "u": [2]})[0]


def test_neuron_parameters_are_checked():
    with pytest.raises(NeuronError, match="unknown neuron model"):
        Neuron("izhikevich")
    with pytest.raises(NeuronError, match="theta >= 1"):
        Neuron("if")
    with pytest.raises(NeuronError, match="do not use du"):
        Neuron("if", theta=1, du=3)
    with pytest.raises(NeuronError, match="17 bits"):
        Neuron("lif", theta=(1 << 17) + 1)
    assert Neuron.from_dict(Neuron("if", theta=3, v_min=-1).to_dict()) == Neuron("if", theta=3, v_min=-1)


# -- networks: the model against the dense reference ---------------------------------------------
def frames_through_model(tables, frames):
    model = Model(tables)
    prev, results = None, []
    for frame in frames:
        results.append(model.run_frame(frame_events(prev, frame, tables.input_mode)))
        prev = frame
        yield model, results[-1]


def scatter(spikes, shape):
    out = np.zeros(shape, np.int64)
    np.add.at(out, (spikes["c"], spikes["y"], spikes["x"]), spikes["d"])
    return out


def assert_model_equals_reference(qnet, cfg, frames, threshold=0):
    tables = compile_network(qnet, cfg, map_network(qnet, cfg))
    trace = reference.simulate(qnet, frames, cfg.acc_bits, threshold)
    model = Model(tables, threshold)
    prev = None
    for t, frame in enumerate(frames):
        res = model.run_frame(frame_events(prev, frame, qnet.input_mode))
        prev = frame
        for i, layer in enumerate(qnet.layers):
            events = scatter(res.spikes[i], layer.shape)
            assert np.array_equal(events, trace.events[layer.name][t]), (t, layer.name, layer.neuron)
            assert res.layer_spikes[i] == np.count_nonzero(trace.events[layer.name][t])
            for w in layer.neuron.words:
                assert np.array_equal(model.layer_word(layer.name, w), trace.states[layer.name][t][w]), \
                    (t, layer.name, w, layer.neuron)
    return tables


@SETTINGS
@given(st.data())
def test_every_neuron_model_matches_the_dense_reference(data):
    cfg = data.draw(st.sampled_from(FABRICS))
    qnet = random_neuron_qnetwork(data.draw, cfg)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    frames = random_frames(qnet, rng, data.draw(st.integers(2, 6)), change=data.draw(st.sampled_from([0.05, 0.3, 1.0])))
    threshold = data.draw(st.sampled_from([0, 0, 1, 3]))
    tables = assert_model_equals_reference(qnet, cfg, frames, threshold)
    assert tables.version == (EXTENDED_LAYOUT_VERSION if qnet.extended_features() else LAYOUT_VERSION)
    # The bundle carries all of it: decoded tables run the same.
    assert decode(encode(tables)) == tables


def test_split_layers_of_every_model_match_the_reference():
    parts = 0
    for seed in range(8):
        qnet = random_neuron_qnetwork(seed, SPLIT)
        parts += len(map_network(qnet, SPLIT).parts) - len(qnet.layers)
        assert_model_equals_reference(qnet, SPLIT, random_frames(qnet, np.random.default_rng(seed), 4))
    assert parts > 20        # layers really are split over cores


@pytest.mark.parametrize("model", arith.MODELS)
def test_each_model_alone_matches_the_reference(model):
    for seed in range(6):
        cfg = FABRICS[seed % len(FABRICS)]
        qnet = random_neuron_qnetwork(seed, cfg, models=(model,))
        frames = random_frames(qnet, np.random.default_rng(seed), 5)
        assert_model_equals_reference(qnet, cfg, frames)


def test_default_sigma_delta_simulation_is_the_static_reference_every_step():
    cfg = PRESETS["small"]
    qnet = random_qnetwork(7, cfg)
    frames = random_frames(qnet, np.random.default_rng(3), 4)
    trace = reference.simulate(qnet, frames, cfg.acc_bits)
    for t, x in enumerate(frames):
        ref = reference.run(qnet, x, cfg.acc_bits)
        for layer in qnet.layers:
            assert np.array_equal(trace.states[layer.name][t]["sent"], ref[layer.name])


# -- time steps and pipelined timing by hand ----------------------------------------------------
def chain(model_neuron, pipelined=False, depth=3, reset_interval=0):
    """input (1,1,1) -> depth identity layers (DW k=1, weight 1) of one neuron each."""
    layers, src = [], "in"
    for i in range(depth):
        layers.append(QLayer(f"l{i}", (1, 1, 1), [QConnection(src, Kind.DW, k=1, wconst=1)],
                             np.zeros(1, np.int64), 1, 0, 0, 255, None, "dw", model_neuron))
        src = f"l{i}"
    return QNetwork("chain", "in", (1, 1, 1), layers, src, pipelined=pipelined, reset_interval=reset_interval)


def test_pipelined_events_reach_the_next_layer_one_step_later():
    frames = np.array([5, 5, 5, 5, 5]).reshape(5, 1, 1, 1)
    for pipelined, arrive in ((False, [0, 0, 0]), (True, [0, 1, 2])):
        qnet = chain(Neuron(), pipelined)
        tables = compile_network(qnet, WIDE)
        model, got = Model(tables), []
        prev = None
        for frame in frames:
            got.append(model.run_frame(frame_events(prev, frame)).layer_spikes.tolist())
            prev = frame
        # Layer i first sends its change 5 at step arrive[i] and nothing afterwards.
        for i, t0 in enumerate(arrive):
            assert [g[i] for g in got] == [int(t == t0) for t in range(5)], (pipelined, got)
        assert_model_equals_reference(qnet, WIDE, frames)


def test_a_leaky_neuron_is_evaluated_without_input_while_its_state_is_non_zero():
    # One input spike into a lif layer whose voltage halves every step (dv = 2048) and never fires.
    qnet = chain(Neuron("lif", theta=1000, dv=2048), depth=1)
    tables = compile_network(qnet, WIDE)
    frames = np.zeros((8, 1, 1, 1), np.int64)
    frames[1] = 1
    qnet.input_mode = "events"
    tables = compile_network(qnet, WIDE)
    model = Model(tables)
    evaluations, voltages = [], []
    for frame in frames:
        res = model.run_frame(frame_events(None, frame, "events"))
        evaluations.append(int(res.evaluations.sum()))
        voltages.append(int(model.layer_word("l0", "v")[0, 0, 0]))
    # v: 64, 32, 16, 8, 4, 2, 1, 0 (toward zero); evaluated at load (dirty), on the spike and while v != 0.
    assert voltages == [0, 64, 32, 16, 8, 4, 2, 1]
    assert evaluations == [1, 1, 1, 1, 1, 1, 1, 1]
    res = model.run_frame(frame_events(None, frames[0], "events"))      # v: 1 -> 0: evaluated once more
    assert (int(res.evaluations.sum()), int(model.layer_word("l0", "v")[0, 0, 0])) == (1, 0)
    res = model.run_frame(frame_events(None, frames[0], "events"))      # all zero: nothing to evaluate
    assert int(res.evaluations.sum()) == 0
    assert_model_equals_reference(qnet, WIDE, frames)


def test_reset_interval_clears_layer_i_at_steps_i_mod_interval():
    qnet = chain(Neuron("lif", theta=1000, dv=0), depth=2, reset_interval=3)
    qnet.input_mode = "events"
    frames = np.full((7, 1, 1, 1), 1, np.int64)
    trace = reference.simulate(qnet, frames)
    # l0 integrates 64 per step and is cleared before steps 0, 3, 6: v = 64, 128, 192, 64, 128, 192, 64.
    assert [int(s["v"][0, 0, 0]) for s in trace.states["l0"]] == [64, 128, 192, 64, 128, 192, 64]
    assert_model_equals_reference(qnet, WIDE, frames)


def test_extended_networks_need_wide_enough_events():
    qnet = chain(Neuron(), depth=1)
    qnet.layers[0].hi = None
    with pytest.raises(MappingError, match="events reach"):
        map_network(qnet, PRESETS["small"])      # 16-bit events cannot carry a 24-bit activation change
    qnet.layers[0].neuron = Neuron(msg_shift=9)
    map_network(qnet, PRESETS["small"])


def test_hardware_backends_refuse_models_their_fabric_does_not_carry_in_one_line_before_touching_the_device():
    """A bundle using a neuron model its fabric does not carry (FabricConfig.neuron_models) is
    refused in one line naming the model, the fabric and the way out, before the device is
    touched; the same network compiled for a fabric that carries lif is accepted."""
    from synfab.runtime.device import DeviceError, RegisterDevice, check_fabric_runs

    class Untouchable(RegisterDevice):
        name = "board"

        def _write(self, addrs, values):
            raise AssertionError("wrote to the device")

        _read = _exchange = _write

    qnet = chain(Neuron("lif", theta=3), depth=1)
    qnet.input_mode = "events"
    assert WIDE.models == ("sigma_delta",)
    tables = compile_network(qnet, WIDE)
    with pytest.raises(DeviceError, match=r"^board: fabric 'wide' does not carry lif neurons \(layer l0\) \(its "
                                          r"neuron_models: sigma_delta\); compile for a fabric that carries them") as e:
        Untouchable(WIDE).load(tables)
    assert "\n" not in str(e.value) and "--backend model" in str(e.value)
    check_fabric_runs(compile_network(qnet, WIDE.with_(neuron_models="lif")), "sim")     # carried: accepted
    cfg = PRESETS["small"]
    check_fabric_runs(compile_network(random_qnetwork(1, cfg), cfg), "sim")      # version 1: accepted


def test_hardware_backends_accept_the_geometry_and_check_the_fabrics_features_register():
    """Rectangular geometry and weight shifts are what the gateware runs of version 2: accepted
    before any device is touched; a fabric whose `features` register lacks one refuses the bundle
    in one line naming it (and writes nothing)."""
    from dataclasses import replace

    from synfab.layouts import FABRIC_LAYOUT_VERSION, ID_MAGIC, RegisterMap, feature_mask, gateware_features
    from synfab.randnet import GEOMETRY_KINDS, with_weight_shifts
    from synfab.runtime.device import DeviceError, RegisterDevice, check_fabric_runs

    cfg = PRESETS["small"]
    qnet = with_weight_shifts(5, random_qnetwork(5, cfg, GEOMETRY_KINDS), cfg)
    tables = compile_network(qnet, cfg)
    assert tables.version == 2 and len(tables.extended_features) == 2 and not tables.unsupported_features
    check_fabric_runs(tables, "sim")

    class Registers(RegisterDevice):
        """Answers the identification registers; any table write is a test failure."""
        name = "board"

        def __init__(self, cfg, features):
            super().__init__(cfg)
            rm = RegisterMap(cfg)
            self.answers = {rm.reg("id"): ID_MAGIC, rm.reg("version"): FABRIC_LAYOUT_VERSION,
                            rm.reg("config_crc"): cfg.crc(), rm.reg("features"): features}

        def _read(self, addrs):
            return np.array([self.answers[int(a)] for a in addrs], dtype=np.uint32)

        def _write(self, addrs, values):
            raise AssertionError("wrote to the device")

        _exchange = _write

    rect = replace(qnet, layers=[replace(l, inputs=[replace(c, wshift=0) for c in l.inputs]) for l in qnet.layers])
    with pytest.raises(DeviceError, match=r"^board: this fabric's gateware does not run rectangular kernel, stride "
                                          r"or padding \(layers .*\(features register 0x2\); rebuild") as e:
        Registers(cfg, 0b10).load(compile_network(rect, cfg))
    assert "\n" not in str(e.value)
    with pytest.raises(AssertionError, match="wrote to the device"):    # identified, features fine: loads
        Registers(cfg, feature_mask(gateware_features(cfg))).load(tables)
