"""ECP5 board SoC and its open-toolchain bitstream; the committed bitstream manifest; flashing errors."""
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("migen")
pytest.importorskip("litex_boards")

from synfab import cli  # noqa: E402
from synfab.config import PRESETS  # noqa: E402
from synfab.errors import SynfabError  # noqa: E402
from synfab.hwcli import board_links_key, gateware_source_key  # noqa: E402
from synfab.layouts import RegisterMap  # noqa: E402
from synfab.runtime import litex as soc_map  # noqa: E402
from synfab_gateware.soc import ecp5  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "bitstreams" / "manifest.json"
# ECP5 bitstreams (ecppack) carry this preamble after the comment header.
ECP5_PREAMBLE = bytes([0xFF, 0xFF, 0xBD, 0xB3])


def test_soc_puts_fabric_and_bridge_on_the_bus():
    cfg = PRESETS["tiny"]
    soc = ecp5.SynfabECP5SoC("ulx3s", cfg)
    regions = soc.bus.regions
    size = regions["synfab"].size
    assert regions["synfab"].origin == soc_map.FABRIC_BASE
    assert size >= RegisterMap(cfg).size and size & (size - 1) == 0 and size < 2 * RegisterMap(cfg).size
    assert (regions["synfab_stream"].origin, regions["synfab_stream"].size) == (soc_map.BRIDGE_BASE,
                                                                                soc_map.BRIDGE_SIZE)
    assert "uartbone" in soc.bus.masters
    assert soc.platform.device.startswith("LFE5U-85F")
    assert soc.cpu_type is None


def test_nextpnr_report_parsing(tmp_path):
    rep = {"fmax": {"$glbnet$crg_clkout": {"achieved": 61.234, "constraint": 50.0},
                    "$glbnet$other": {"achieved": 200.0, "constraint": 100.0}},
           "utilization": {"TRELLIS_COMB": {"used": 1200, "available": 83640},
                           "DP16KD": {"used": 3, "available": 208},
                           "DCUA": {"used": 0, "available": 2}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rep))
    out = ecp5.parse_nextpnr_report(path)
    assert out["fmax_mhz"] == 61.23            # the slowest clock
    assert out["utilization"] == {"TRELLIS_COMB": {"used": 1200, "available": 83640},
                                  "DP16KD": {"used": 3, "available": 208}}
    assert out["timing_met"] and out["failing_clocks"] == []
    assert out["clocks"]["crg_clkout"] == {"achieved_mhz": 61.23, "constraint_mhz": 50.0, "met": True}


def test_every_clock_is_held_to_its_own_constraint(tmp_path):
    """An Ethernet SoC whose sys clock passes but whose PHY receive clock (a fixed 125 MHz) fails
    is not timing met, and the summary names the failing clock and says a lower sys clock won't
    help (the linked Colorlight i9 build of stop 26: sys 50.57 of 50, eth rx 59.09 of 125 MHz)."""
    from synfab_gateware.soc.report import timing_summary
    rep = {"fmax": {"$glbnet$eth_clocks0_rx$TRELLIS_IO_IN": {"achieved": 59.0946, "constraint": 125},
                    "$glbnet$synfabecp5ethsoc_clkout": {"achieved": 50.5714, "constraint": 50}},
           "utilization": {}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rep))
    out = ecp5.parse_nextpnr_report(path)
    assert out["fmax_mhz"] == 50.57
    assert not out["timing_met"] and out["failing_clocks"] == ["eth_clocks0_rx"]
    assert timing_summary(out) == ("NOT MET: eth_clocks0_rx 59.09 of 125 MHz: a fixed clock (its PHY's): "
                                   "no --sys-clk-mhz helps, the design must get faster")
    rep["fmax"]["$glbnet$synfabecp5ethsoc_clkout"]["achieved"] = 41.35
    path.write_text(json.dumps(rep))
    out = ecp5.parse_nextpnr_report(path)
    assert out["failing_clocks"] == ["eth_clocks0_rx", "synfabecp5ethsoc_clkout"]
    assert timing_summary(out).endswith("synfabecp5ethsoc_clkout 41.35 of 50 MHz: rebuild with --sys-clk-mhz 37 "
                                        "before using it")


def test_unknown_board_is_a_user_error():
    with pytest.raises(SynfabError, match="unknown ECP5 board 'nexys'"):
        ecp5.board("nexys")


def test_flash_without_openfpgaloader_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SynfabError, match="openFPGALoader not found"):
        ecp5.flash(tmp_path / "x.bit", "ulx3s")


def test_flash_reports_a_missing_board(tmp_path, monkeypatch):
    fake = tmp_path / "openFPGALoader"
    fake.write_text("#!/bin/sh\necho 'unable to open ftdi device: -3 (device not found)' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    bit = tmp_path / "x.bit"
    bit.write_bytes(b"\xff")
    with pytest.raises(SynfabError, match="could not program the ulx3s .*device not found"):
        ecp5.flash(bit, "ulx3s")
    with pytest.raises(SynfabError, match="bitstream .* not found"):
        ecp5.flash(tmp_path / "missing.bit", "ulx3s")


@pytest.mark.skipif(not MANIFEST.is_file(), reason="no committed bitstreams")
def test_committed_bitstreams_match_the_manifest():
    data = json.loads(MANIFEST.read_text())
    assert data["artifacts"]
    for a in data["artifacts"]:
        path = MANIFEST.parent / a["path"]
        blob = path.read_bytes()
        assert hashlib.sha256(blob).hexdigest() == a["sha256"] and len(blob) == a["bytes"]
        assert ECP5_PREAMBLE in blob[:4096]
        assert a["command"].startswith(f"synfab build --board {a['board']} --fabric {a['fabric']} ")
        assert a["config_crc"] == f"{PRESETS[a['fabric']].crc():#010x}"
        report = json.loads((path.parent / "report.json").read_text())
        assert report["sha256"] == a["sha256"] and report["fmax_mhz"] == a["fmax_mhz"]
        # The recorded command rebuilds this very bitstream: parsed by the CLI, it asks for the
        # manifest's clock and baud rate, and the clock met timing: the clock the PLL makes of the
        # one asked (within 1% of it; 68 asked gives 67.86 MHz), every clock of the report.
        args = cli.build_parser().parse_args(shlex.split(a["command"])[1:])
        assert args.sys_clk_mhz == a["sys_clk_mhz"] and args.baudrate == a.get("uart_baudrate", args.baudrate)
        sys_clk = report["clocks"]["sys_clk"]
        assert abs(sys_clk["constraint_mhz"] - a["sys_clk_mhz"]) <= 0.01 * a["sys_clk_mhz"], a["path"]
        assert report["timing_met"] and a["fmax_mhz"] >= sys_clk["constraint_mhz"], a["path"]
        assert all(c["met"] and c["achieved_mhz"] >= c["constraint_mhz"] for c in report["clocks"].values()), a["path"]


@pytest.mark.skipif(not MANIFEST.is_file(), reason="no committed bitstreams")
def test_committed_bitstreams_are_built_from_the_current_gateware():
    """A committed bitstream is stale once the gateware it was generated from changed: say which
    one and how to rebuild it (the manifest's command), instead of shipping an old design."""
    now, links_now = gateware_source_key(), board_links_key()
    stale = [f"{a['path']} (built from source key {a.get('source_key', 'unrecorded')[:12]}, gateware now "
             f"{now[:12]}): rebuild with `{a['command']}` and commit the bitstream and the manifest"
             for a in json.loads(MANIFEST.read_text())["artifacts"] if a.get("source_key") != now]
    # A linked SoC is made of the link gateware too (soc/links.py, link/: outside the source key).
    stale += [f"{a['path']} (its link gateware changed): rebuild with `{a['command']}`"
              for a in json.loads(MANIFEST.read_text())["artifacts"]
              if a.get("link") and a.get("links_key") != links_now]
    assert not stale, "stale committed bitstream(s): " + "; ".join(stale)


@pytest.mark.slow
def test_cli_builds_the_tiny_fabric_bitstream(tmp_path):
    """The whole open flow (yosys, nextpnr-ecp5, ecppack) on the smallest preset, via `synfab build`."""
    out = tmp_path / "ulx3s-tiny"
    manifest = tmp_path / "manifest.json"
    proc = subprocess.run([sys.executable, "-m", "synfab.cli", "build", "--board", "ulx3s", "--fabric", "tiny",
                           "--output", str(out), "--manifest", str(manifest), "--json"],
                          capture_output=True, text=True, timeout=3600, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(proc.stdout)
    bit = out / rep["bitstream"]
    blob = bit.read_bytes()
    assert ECP5_PREAMBLE in blob[:4096]
    assert rep["sha256"] == hashlib.sha256(blob).hexdigest()
    assert rep["board"] == "ulx3s" and rep["fabric"] == "tiny" and rep["device"].startswith("LFE5U-85F")
    util = rep["utilization"]
    assert 0 < util["TRELLIS_COMB"]["used"] <= util["TRELLIS_COMB"]["available"]
    assert util["DP16KD"]["used"] >= 4          # at least the bridge FIFOs are block RAM
    assert util["TRELLIS_IO"]["used"] == 3      # clk25, serial tx, serial rx
    assert rep["fmax_mhz"] > 0
    assert json.loads((out / "report.json").read_text())["sha256"] == rep["sha256"]
    entry, = json.loads(manifest.read_text())["artifacts"]
    assert entry["path"] == f"ulx3s-tiny/{bit.name}" and entry["sha256"] == rep["sha256"]
    assert entry["source_key"] == gateware_source_key()
    assert (out / "csr.json").is_file()
