"""Real-time replay (`synfab run --events FILE --realtime`): the schedule decided exactly with a fake
clock, a real recording end to end on the model backend, latencies in cycles on the Verilator fabric."""
import json
from pathlib import Path

import numpy as np
import pytest

from synfab import api, events
from synfab.analysis import workloads
from synfab.cli import main
from synfab.compiler import bundle
from synfab.config import FabricConfig
from synfab.frontend import netfile
from synfab.runtime import replay
from synfab.runtime.model import ModelDevice


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps or a fake frame costs time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def pace(due_s, costs, drop_late):
    """Drive a Pacer over frames that cost `costs` seconds each (fake time): the pacer after the run."""
    clock = FakeClock()
    pacer = replay.Pacer(due_s, drop_late=drop_late, clock=clock, sleep=clock.sleep)
    pacer.start()
    for k, cost in enumerate(costs):
        if pacer.take(k):
            clock.now += cost
            pacer.finish(k)
    return pacer


# Due times and costs in eighths of a second: exact in binary, so every comparison is exact.
DUE_S = [1.0, 2.0, 3.0, 3.5, 4.0, 10.0]
COSTS = [0.5, 2.25, 0.125, 0.125, 0.125, 0.125]


def test_queued_late_frames_run_behind_schedule_and_are_counted():
    p = pace(DUE_S, COSTS, drop_late=False)
    # Frame 1 ends at 4.25: frames 2 (next due 3.5) and 3 (next due 4.0) start with a newer frame due.
    assert p.late.tolist() == [False, False, True, True, False, False]
    assert not p.dropped.any()
    assert p.started_s.tolist() == [1.0, 2.0, 4.25, 4.375, 4.5, 10.0]
    assert (p.done_s - p.due_s).tolist() == [0.5, 2.25, 1.375, 1.0, 0.625, 0.125]
    assert p.counts() == {"late": 2, "dropped": 0}


def test_dropped_late_frames_are_skipped_and_counted():
    p = pace(DUE_S, COSTS, drop_late=True)
    assert p.late.tolist() == p.dropped.tolist() == [False, False, True, True, False, False]
    assert np.isnan(p.started_s[[2, 3]]).all() and np.isnan(p.done_s[[2, 3]]).all()
    # Skipping costs nothing: frame 4 starts when frame 1's result is back.
    assert p.started_s[[0, 1, 4, 5]].tolist() == [1.0, 2.0, 4.25, 10.0]
    assert p.counts() == {"late": 2, "dropped": 2}


def test_a_frame_started_just_as_the_next_is_due_is_late_and_the_last_frame_never_is():
    p = pace([0.0, 0.5, 1.0], [1.0, 0.0, 5.0], drop_late=False)
    assert p.late.tolist() == [False, True, False]
    p = pace([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], drop_late=True)     # all at once: only the newest runs
    assert p.dropped.tolist() == [True, True, False]


def test_due_times_are_last_event_times_and_an_empty_window_its_end():
    ev = events.make_events([0, 1, 2, 3], [0, 0, 0, 0], [100, 350, 2100, 2900], [1, 0, 1, 1])
    slices = events.frames_by_time(ev, 1000)          # windows from t = 100: [100, 1100) ...
    assert [len(s) for s in slices] == [2, 0, 2]
    assert replay.frame_due_us(slices, 1000).tolist() == [250, 1999, 2800]
    assert replay.frame_due_us(events.frames_by_count(ev, 3), None).tolist() == [2000, 2800]


def test_fabric_clock_measured_assumed_or_given():
    tiny = replay.fabric_clock(FabricConfig.load("tiny"))
    manifest = json.loads((Path(__file__).parents[1] / "bitstreams" / "manifest.json").read_text())
    fmax = next(a["fmax_mhz"] for a in manifest["artifacts"] if a["fabric"] == "tiny")
    assert tiny["mhz"] == fmax and tiny["measured"] is True and "manifest" in tiny["source"]
    from synfab.analysis.bench import ASSUMED_FMAX_MHZ
    assumed = replay.fabric_clock(FabricConfig())
    assert assumed["mhz"] == ASSUMED_FMAX_MHZ and assumed["measured"] is False and "assumed" in assumed["source"]
    assert replay.fabric_clock(FabricConfig.load("tiny"), 25) == {"mhz": 25.0, "measured": False,
                                                                  "source": "--clock-mhz"}


# -- a real recording -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dvs(tmp_path_factory):
    """The bench's DVS workload as files: the DVXplorer sample cropped to 2x32x32 and a bundle of
    its CNN quantized on the recording's first frames."""
    d = tmp_path_factory.mktemp("replay")
    rec = events.read(events.samples.fetch(workloads.DVS_SAMPLE))
    rec = events.Compose([events.Crop(*workloads.DVS_CROP), events.Downsample(factor=workloads.DVS_DOWNSAMPLE)])(rec)
    recording = d / "dvs32.npz"
    events.write(recording, rec.replace(width=workloads.DVS_SHAPE[2], height=workloads.DVS_SHAPE[1]))
    net, calib, sfb = d / "dvs_cnn.json", d / "calib.npz", d / "dvs.sfb"
    netfile.save(workloads.dvs_network(), net)
    np.savez(calib, images=workloads.dvs_frames(workloads.DVS_CALIBRATION_FRAMES).astype(np.uint8))
    assert main(["compile", str(net), "-o", str(sfb), "--calib", str(calib)]) == 0
    return recording, sfb


def run_json(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


WINDOW = ["--window-ms", str(workloads.DVS_WINDOW_MS)]


def test_recording_replayed_fast_on_the_model_equals_a_normal_run(dvs, capsys):
    recording, sfb = dvs
    base = ["run", str(sfb), "--events", str(recording), *WINDOW, "--json"]
    normal = run_json(capsys, *base)
    fast = run_json(capsys, *base, "--realtime", "--speed", "1000")
    for key in ("output_per_step", "predictions", "layer_spikes", "layer_spikes_per_step"):
        assert fast[key] == normal[key]
    s, per = fast["realtime"]["summary"], fast["realtime"]["per_frame"]
    n = normal["summary"]["frames"]
    assert s["frames"] == s["taken"] == n > 20 and s["dropped"] == 0
    assert s["late"] == sum(per["late"]) and not per["late"][-1]
    assert sum(per["sensor_events"]) == len(events.read(recording))
    assert per["latency_cycles"] == [None] * n and s["latency_cycles"] == {"p50": None, "p99": None}
    assert all(w > 0 for w in per["wall_latency_us"]) and s["wall_latency_us"]["p50"] > 0

    dropping = run_json(capsys, *base, "--realtime", "--speed", "1000", "--drop-late")
    s, per = dropping["realtime"]["summary"], dropping["realtime"]["per_frame"]
    assert s["taken"] + s["dropped"] == s["frames"] == n and s["dropped"] == sum(per["dropped"]) > 0
    assert len(dropping["output_per_step"]) == s["taken"]
    assert s["dropped_sensor_events"] == sum(e for e, d in zip(per["sensor_events"], per["dropped"]) if d)
    # The frame after a dropped one carries its input changes, and sigma-delta neurons at threshold 0
    # follow their input exactly: the last output equals the normal run's.
    assert dropping["output_per_step"][-1] == normal["output_per_step"][-1]


def test_realtime_text_output_names_late_frames_and_the_clock(dvs, capsys):
    recording, sfb = dvs
    rc = main(["run", str(sfb), "--events", str(recording), *WINDOW, "--frames", "3", "--realtime",
               "--speed", "50", "--clock-mhz", "80"])
    out = capsys.readouterr().out
    assert rc == 0 and "real time x50: 3 frames" in out and "no fabric cycle counts" in out


def test_fake_clock_through_the_device_decides_which_frames_drop(dvs):
    """The whole path (api.replay_recording, stream, a device) on fake time: frames cost what the
    test says, so which frames are late and dropped is exact."""
    recording, sfb = dvs
    tables = bundle.load(sfb)
    cut = api.cut_recording(recording, workloads.DVS_SHAPE, window_ms=workloads.DVS_WINDOW_MS, max_frames=6)
    due_s = replay.frame_due_us(cut.slices, cut.window_us) / 1e6
    clock = FakeClock()
    # Frame 1 takes two and a half windows: frames 2 and 3 are due before it ends.
    window_s = workloads.DVS_WINDOW_MS / 1000
    costs = iter([0.001, 2.5 * window_s, 0.001, 0.001, 0.001, 0.001])

    class SlowModel(ModelDevice):
        def run_frame(self, ev):
            clock.now += next(costs)
            return super().run_frame(ev)

    dev = SlowModel(tables.cfg)
    dev.load(tables)
    out = api.replay_recording(tables, cut, drop_late=True, clock=clock, sleep=clock.sleep, device=dev)
    per = out["realtime"]["per_frame"]
    assert per["dropped"] == [False, False, True, False, False, False]
    assert per["late"] == per["dropped"]
    assert per["started_s"][0] == pytest.approx(due_s[0], abs=1e-6)
    assert per["started_s"][3] == pytest.approx(
        due_s[1] + 2.5 * window_s, abs=1e-6)


@pytest.mark.parametrize("argv, words", [
    (["--realtime", "--speed", "0"], "--speed 0"),
    (["--realtime", "--speed", "-2"], "--speed -2"),
    (["--realtime", "--speed", "nan"], "--speed nan"),
    (["--realtime", "--clock-mhz", "0"], "--clock-mhz 0"),
    (["--speed", "10"], "add --realtime"),
    (["--speed", "0", "--clock-mhz", "0"], "--speed, --clock-mhz only apply"),
    (["--drop-late"], "add --realtime"),
])
def test_bad_realtime_options_are_one_line_errors(dvs, capsys, argv, words):
    recording, sfb = dvs
    rc = main(["run", str(sfb), "--events", str(recording), *argv])
    err = capsys.readouterr().err
    assert rc == 1 and words in err and len(err.strip().splitlines()) == 1


def test_realtime_without_a_recording_is_a_one_line_error(dvs, tmp_path, capsys):
    _, sfb = dvs
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.zeros((2, *workloads.DVS_SHAPE), np.int64))
    rc = main(["run", str(sfb), "--inputs", str(inputs), "--realtime"])
    err = capsys.readouterr().err
    assert rc == 1 and "--events FILE" in err and len(err.strip().splitlines()) == 1


# -- the Verilator fabric ---------------------------------------------------------------------------
@pytest.mark.slow
def test_sim_latency_cycles_are_the_devices_frame_cycles(dvs):
    recording, sfb = dvs
    from synfab.runtime.sim import SimDevice
    tables = bundle.load(sfb)
    seen = []

    class Recorded(SimDevice):
        def run_frame(self, ev):
            fo = super().run_frame(ev)
            seen.append((fo.cycles, fo.counters["cycles"]))
            return fo

    cut = api.cut_recording(recording, workloads.DVS_SHAPE, window_ms=workloads.DVS_WINDOW_MS, max_frames=4)
    with Recorded(tables.cfg) as dev:
        dev.load(tables)
        out = api.replay_recording(tables, cut, speed=100, clock_mhz=50, backend="sim", device=dev)
    s, per = out["realtime"]["summary"], out["realtime"]["per_frame"]
    assert s["taken"] == len(seen) == 4 and s["cycles_from"] == ["frame"]
    assert per["latency_cycles"] == [c for c, _ in seen] and min(per["latency_cycles"]) > 0
    # The fabric's own cycle counter runs from its clear before the frame to its read after it: the
    # frame plus the same few register-access cycles every frame.
    extra = {counted - c for c, counted in seen}
    assert len(extra) == 1 and 0 < extra.pop() < 100
    assert per["latency_us"] == [round(c / 50, 3) for c in per["latency_cycles"]]
    assert s["clock_mhz"] == 50 and s["clock_source"] == "--clock-mhz"
    model = api.replay_recording(tables, cut, speed=100, backend="model")
    assert all(np.array_equal(a, b) for a, b in zip(out["result"].outputs, model["result"].outputs))


@pytest.mark.slow
def test_pynq_replay_takes_cycles_from_the_fabric_counter(dvs, tmp_path):
    """The simulated PYNQ-Z2 (pynq_mock): its DMA measures no frame, so the cycles are the fabric's
    counter's; the outputs are the model's."""
    pytest.importorskip("pynq")
    from synfab.runtime import pynq_mock
    recording, sfb = dvs
    tables = bundle.load(sfb)
    cut = api.cut_recording(recording, workloads.DVS_SHAPE, window_ms=workloads.DVS_WINDOW_MS, max_frames=3)
    pynq_mock.activate()
    try:
        bit = pynq_mock.write_overlay(tables.cfg, tmp_path, name="synfab_replay")
        out = api.replay_recording(tables, cut, speed=100, backend="pynq", device_args={"bitstream": str(bit)})
    finally:
        pynq_mock.deactivate()
    s, per = out["realtime"]["summary"], out["realtime"]["per_frame"]
    assert s["taken"] == 3 and s["cycles_from"] == ["counter"] and min(per["latency_cycles"]) > 0
    model = api.replay_recording(tables, cut, speed=100, backend="model")
    assert all(np.array_equal(a, b) for a, b in zip(out["result"].outputs, model["result"].outputs))
