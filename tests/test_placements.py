"""Recorded place-and-route results (bitstreams/placements.json): what `synfab build --record`
writes, which record `synfab fit` and `synfab bench` use, and the committed records themselves."""
import json

import pytest

from synfab.analysis import bench, placements
from synfab.config import PRESETS

CFG = PRESETS["colorlight-i5"]


def build_report(fmax, seed_note="", board="colorlight-i5", cfg=CFG, sys_clk=80.0):
    """What hwcli.build_ecp5 returns for one ECP5 build (the fields a record keeps)."""
    return {"board": board, "device": "LFE5U-25F-6BG256C", "fabric": cfg.name, "fabric_config": cfg.to_dict(),
            "config_crc": f"{cfg.crc():#010x}", "sys_clk_mhz": sys_clk, "fmax_mhz": fmax,
            "timing_met": fmax >= sys_clk, "utilization": {"DP16KD": {"used": 44, "available": 56}},
            "build_seconds": 300.0, "toolchain": "yowasp" + seed_note}


def test_a_rebuild_replaces_its_record_and_other_seeds_add_records(tmp_path):
    path = tmp_path / "placements.json"
    placements.record(path, placements.entry(build_report(81.0), 1, False, "aaa", "k1", "synfab build ..."))
    placements.record(path, placements.entry(build_report(83.5), 1, False, "bbb", "k2", "synfab build ..."))
    placements.record(path, placements.entry(build_report(79.25), 2, False, "bbb", "k2", "synfab build ... --seed 2"))
    rows = json.loads(path.read_text())["placements"]
    assert [(r["seed"], r["fmax_mhz"], r["source_revision"]) for r in rows] == [(1, 83.5, "bbb"), (2, 79.25, "bbb")]
    assert rows[0]["lanes"] == 2 and rows[0]["config_crc"] == f"{CFG.crc():#010x}" and rows[0]["ethernet"] is False
    # a linked SoC's build at the same clock and seed is a record of its own (each Ethernet board's too)
    placements.record(path, placements.entry(build_report(77.0), 1, False, "ccc", "k3", "c", link="uart"))
    placements.record(path, placements.entry(build_report(76.0), 1, True, "ccc", "k3", "c", link="eth"))
    placements.record(path, placements.entry(build_report(75.0), 1, True, "ccc", "k3", "c", link="eth", board_index=1))
    rows = json.loads(path.read_text())["placements"]
    assert sorted((r["fmax_mhz"], r.get("link"), r.get("board_index")) for r in rows) == [
        (75.0, "eth", 1), (76.0, "eth", 0), (77.0, "uart", None), (79.25, None, None), (83.5, None, None)]


def test_the_lowest_seed_is_the_figure_and_current_sources_come_first(tmp_path):
    path = tmp_path / "placements.json"
    placements.record(path, placements.entry(build_report(90.0), 1, False, "old", "k-old", "c"))
    placements.record(path, placements.entry(build_report(84.0), 2, False, "new", "k-new", "c"))
    placements.record(path, placements.entry(build_report(86.5), 3, False, "new", "k-new", "c"))
    placements.record(path, placements.entry(build_report(70.0), 4, True, "new", "k-new", "c"))   # Ethernet SoC
    now = placements.measured("colorlight-i5", CFG, path, source_key="k-new")
    assert now["fmax_mhz"] == 84.0 and now["fmax_spread_mhz"] == [84.0, 86.5] and now["current_sources"]
    assert [r["seed"] for r in now["runs"]] == [2, 3]
    # No record of the current sources: every record, flagged as not current.
    other = placements.measured("colorlight-i5", CFG, path, source_key="k-next")
    assert other["fmax_mhz"] == 84.0 and not other["current_sources"]
    assert other["source_revisions"] == ["new", "old"] and len(other["runs"]) == 3
    assert placements.measured("colorlight-i9", CFG, path) is None
    assert placements.measured("colorlight-i5", PRESETS["tiny"], path) is None


def test_bench_takes_fmax_from_a_placement_when_no_bitstream_is_committed(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": []}))
    assert bench.board_clock(CFG, tmp_path)["fmax_measured"] is False      # assumed 100 MHz
    placements.record(tmp_path / placements.FILE_NAME, placements.entry(build_report(88.12), 1, False, "abc",
                                                                          "k", "c"))
    placements.record(tmp_path / placements.FILE_NAME, placements.entry(build_report(86.0), 2, False, "abc",
                                                                          "k", "c"))
    clock = bench.board_clock(CFG, tmp_path)
    assert clock["fmax_mhz"] == 86.0 and clock["fmax_measured"] and clock["board"] == "colorlight-i5"
    assert "placements.json: placed and routed, bitstream not committed" in clock["fmax_source"]
    assert "seed 1 88.12 MHz, seed 2 86.0 MHz" in clock["fmax_source"]


def test_committed_records_name_their_build():
    """Every committed record carries its command, revision and source key, the sys clock's Fmax,
    and is of a preset as it is now."""
    rows = placements.load()
    if not rows:
        pytest.fail("bitstreams/placements.json holds no placement")
    for r in rows:
        assert r["command"].startswith("synfab build --board ") and "--record" in r["command"]
        assert r["fmax_mhz"] > 20 and len(r["source_key"]) == 64 and r["source_revision"]
        # Records are of presets (at their lane count): `synfab build --fabric PRESET --lanes P`; a
        # preset changed since its record is measured again or its record removed.
        cfg = PRESETS[r["fabric"]].with_(lanes=r["lanes"])
        assert f"{cfg.crc():#010x}" == r["config_crc"], f"{r['fabric']} changed since its placement was recorded"


def test_the_critical_path_is_read_from_nextpnrs_report(tmp_path):
    def seg(kind, delay, frm, to, net=None):
        s = {"type": kind, "delay": delay, "from": {"cell": frm, "port": "Q", "loc": [1, 2]},
             "to": {"cell": to, "port": "D", "loc": [3, 4]}}
        return {**s, "net": net, "sources": []} if net else s
    clk = "$glbnet$crg_clkout"
    rep = {"fmax": {clk: {"achieved": 84.47, "constraint": 80.0}, "$glbnet$eth_rx": {"achieved": 140.0,
                                                                                    "constraint": 125.0}},
           "critical_paths": [
               {"from": "posedge $glbnet$eth_rx", "to": "posedge $glbnet$eth_rx",
                "path": [seg("clk-to-q", 1.0, "a", "b")]},
               {"from": f"posedge {clk}", "to": f"posedge {clk}",
                "path": [seg("clk-to-q", 5.83, "ram", "ram"), seg("routing", 5.27, "ram", "reg", "w_word"),
                         seg("logic", 0.0, "c0", "c1"), seg("routing", 0.0, "c1", "c2", "carry"),
                         seg("setup", 0.74, "reg", "reg")]}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rep))
    cp = placements.critical_path(path)
    assert cp == {"clock": clk, "delay_ns": 11.84, "from": "ram.Q", "to": "reg.D", "routing_ns": 5.27,
                  "logic_ns": 6.57, "segments": [["clk-to-q", 5.83, "ram"], ["routing", 5.27, "w_word"],
                                                 ["setup", 0.74, "reg"]]}
    assert placements.critical_path(tmp_path / "missing.json") is None
