"""PYNQ-Z2 Vivado scripts (gateware/vivado): consistent with the register map, the VLNV, the
generated Verilog ports, and runnable by tclsh with stand-ins for the Vivado commands."""
import re
import shutil
import subprocess

import pytest

pytest.importorskip("migen")

from synfab.config import PRESETS  # noqa: E402
from synfab.layouts import IP_VLNV, RegisterMap  # noqa: E402
from synfab_gateware.vivado import project as vp  # noqa: E402

# Stand-ins for Vivado's commands: every call is recorded; a few answer what the scripts test.
HARNESS = r"""
set calls {}
set rundir [lindex $argv 1]
proc unknown {args} {
    lappend ::calls $args
    set cmd [lindex $args 0]
    switch -- $cmd {
        get_board_parts { return "tul.com.tw:pynq-z2:part0:1.0" }
        ipx::get_bus_interfaces { return "busif" }
        make_wrapper { return "synfab_wrapper.v" }
        get_files { if {[lsearch $args synfab.hwh] >= 0} { return [file join $::rundir synfab.hwh] } else { return "synfab.bd" } }
        get_property {
            switch -- [lindex $args 1] {
                PROGRESS { return "100%" }
                DIRECTORY { return $::rundir }
                default { return "value" }
            }
        }
        default { return "handle" }
    }
}
source [lindex $argv 0]
foreach c $calls { puts $c }
"""


@pytest.fixture(scope="module", params=["tiny", "default"])
def project(request, tmp_path_factory):
    cfg = PRESETS[request.param]
    out = tmp_path_factory.mktemp(f"pynq-{cfg.name}")
    files = vp.write_project(cfg, out)
    return cfg, files


def test_vlnv_is_the_shared_constant(project):
    cfg, files = project
    pkg = files["package_ip"].read_text()
    vendor = re.search(r"-vendor (\S+)", pkg).group(1)
    library = re.search(r"-library (\S+)", pkg).group(1)
    name = re.search(r"set_property name (\S+) \$core", pkg).group(1)
    version = re.search(r"set_property version (\S+) \$core", pkg).group(1)
    assert f"{vendor}:{library}:{name}:{version}" == IP_VLNV == "synfab.org:synfab:synfab_fabric:1.0"
    bd = files["block_design"].read_text()
    assert re.findall(r"create_bd_cell -type ip -vlnv (\S+) synfab\]", bd) == [IP_VLNV]


def test_address_window_covers_the_register_map(project):
    cfg, files = project
    rm = RegisterMap(cfg)
    pkg, bd = files["package_ip"].read_text(), files["block_design"].read_text()
    rng = int(re.search(r"set_property range (0x[0-9a-f]+) \$block", pkg).group(1), 16)
    seg = re.search(r"synfab/s_axil/regs\] -offset (0x[0-9a-f]+) -range (0x[0-9a-f]+)", bd)
    base, bd_rng = int(seg.group(1), 16), int(seg.group(2), 16)
    assert rng == bd_rng
    assert rng & (rng - 1) == 0 and rng >= max(rm.size, 4096)
    # The window is what the address ports can name: no larger, so no alias of the map.
    assert rng == max(4096, 1 << rm.addr_bits)
    assert base % rng == 0 and 0x4000_0000 <= base and base + rng <= 0x8000_0000
    dma = re.search(r"dma/S_AXI_LITE/Reg\] -offset (0x[0-9a-f]+) -range (0x[0-9a-f]+)", bd)
    dma_base, dma_rng = int(dma.group(1), 16), int(dma.group(2), 16)
    assert dma_base + dma_rng <= base or base + rng <= dma_base


def test_port_names_match_the_generated_verilog(project):
    cfg, files = project
    ports = vp.verilog_ports(files["verilog"].read_text())
    a = RegisterMap(cfg).addr_bits
    expected = {"clk": 1, "rst": 1}
    widths = {"awaddr": a, "araddr": a, "wdata": 32, "rdata": 32, "wstrb": 4, "bresp": 2, "rresp": 2,
              "tdata": 64}
    for bus, signals in vp.TOP_PORTS.items():
        for s in signals:
            expected[f"{bus}_{s}"] = widths.get(s, 1)
    assert ports == expected
    bd = files["block_design"].read_text()
    pins = set(re.findall(r"get_bd_pins synfab/(\w+)", bd))
    intf = set(re.findall(r"get_bd_intf_pins synfab/(\w+)", bd))
    assert pins == {"clk", "rst"} and pins <= set(ports)
    assert intf == set(vp.TOP_PORTS)
    pkg = files["package_ip"].read_text()
    assert "foreach name {s_axil s_axis m_axis clk rst}" in pkg


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed (setup.sh installs the Debian package tcl)")
def test_scripts_run_under_tclsh_with_vivado_stand_ins(project, tmp_path):
    cfg, files = project
    out = files["build"].parent
    (tmp_path / "impl.bit").write_bytes(b"bit")
    (tmp_path / "synfab.hwh").write_text("<hwh/>")
    harness = tmp_path / "harness.tcl"
    harness.write_text(HARNESS)
    proc = subprocess.run(["tclsh", str(harness), str(files["build"]), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = proc.stdout.splitlines()
    names = [c.split()[0] for c in calls]
    # Package first, then the block design with the packaged IP, then the bitstream.
    assert names.index("ipx::package_project") < names.index("create_bd_design") < names.index("launch_runs")
    assert any(c.startswith("create_project -force synfab_ip_pkg") and vp.PART in c for c in calls)
    assert any(c.startswith(f"create_bd_cell -type ip -vlnv {IP_VLNV} synfab") for c in calls)
    assert "ipx::save_core handle" in calls
    # The .bit and .hwh end up beside the scripts under the overlay's one base name.
    name = vp.overlay_name(cfg)
    assert (out / f"{name}.bit").read_bytes() == b"bit"
    assert (out / f"{name}.hwh").read_text() == "<hwh/>"


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed (setup.sh installs the Debian package tcl)")
def test_missing_board_files_stop_with_a_clear_error(project, tmp_path):
    cfg, files = project
    harness = tmp_path / "harness.tcl"
    harness.write_text(HARNESS.replace('get_board_parts { return "tul.com.tw:pynq-z2:part0:1.0" }',
                                       'get_board_parts { return "" }'))
    proc = subprocess.run(["tclsh", str(harness), str(files["block_design"]), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "PYNQ-Z2 board files not installed" in proc.stderr


def test_cli_writes_the_scripts_and_fails_clearly_without_vivado(tmp_path):
    import os
    import sys
    out = tmp_path / "pynq"
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}     # no vivado here
    proc = subprocess.run([sys.executable, "-m", "synfab.cli", "build", "--board", "pynq-z2", "--fabric", "tiny",
                           "--output", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1
    assert "Vivado not found on PATH" in proc.stderr and str(out) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    for name in ("synfab_fabric.v", "package_ip.tcl", "block_design.tcl", "build.tcl", "README.md"):
        assert (out / name).is_file(), name
    assert f"vivado -mode batch -source {out / 'build.tcl'}" in proc.stderr
