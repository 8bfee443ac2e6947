"""ECP5 board SoC: fabric + stream bridge + UARTBone, no CPU; built with the open toolchain.

    soc = SynfabECP5SoC("ulx3s", cfg)           # the LiteX SoC
    report = build_bitstream("ulx3s", cfg)      # bitstream + nextpnr report, cached by content

The host reaches the bus through the board's USB serial port: either directly
(`--port /dev/ttyUSB0@1000000`) or through `litex_server --uart --uart-port /dev/ttyUSB0
--uart-baudrate 1000000` (`--port localhost:1234`).
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from migen import ClockDomain
from litex.gen import LiteXModule
from litex.soc.cores.clock import ECP5PLL
from litex.soc.integration.builder import Builder
from litex.soc.integration.soc_core import SoCCore

from synfab.config import FabricConfig
from synfab.errors import SynfabError
from synfab.runtime.litex import DEFAULT_BAUDRATE

from . import toolchain as tc
from .common import add_synfab

DEFAULT_SYS_CLK = 50e6


@dataclass(frozen=True)
class Board:
    platform_module: str          # litex_boards.platforms.<module>
    platform_kwargs: dict = field(default_factory=dict)
    loader_board: str = ""        # openFPGALoader -b NAME
    description: str = ""
    clk_name: str = "clk25"
    clk_freq: float = 25e6

    def platform(self):
        try:
            module = importlib.import_module(f"litex_boards.platforms.{self.platform_module}")
        except ImportError:
            raise SynfabError("ECP5 board targets need litex-boards; pip install litex-boards")
        return module.Platform(**self.platform_kwargs, toolchain="trellis")


BOARDS = {
    "ulx3s": Board("radiona_ulx3s", {"device": "LFE5U-85F"}, "ulx3s", "Radiona ULX3S, LFE5U-85F"),
    "ulx3s-45f": Board("radiona_ulx3s", {"device": "LFE5U-45F"}, "ulx3s", "Radiona ULX3S, LFE5U-45F"),
    "colorlight-i5": Board("colorlight_i5", {"board": "i5", "revision": "7.0"}, "colorlight-i5",
                           "Colorlight i5 v7.0, LFE5U-25F"),
    "colorlight-i9": Board("colorlight_i5", {"board": "i9", "revision": "7.2"}, "colorlight-i9",
                           "Colorlight i9 v7.2, LFE5U-45F"),
}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise SynfabError(f"unknown ECP5 board {name!r}; choose one of {', '.join(BOARDS)} (or pynq-z2)")
    return BOARDS[name]


class _CRG(LiteXModule):
    def __init__(self, platform, spec: Board, sys_clk_freq: float):
        self.cd_sys = ClockDomain()

        # # #

        self.pll = pll = ECP5PLL()
        pll.register_clkin(platform.request(spec.clk_name), spec.clk_freq)
        pll.create_clkout(self.cd_sys, sys_clk_freq)   # sys held in reset until the PLL locks


class SynfabECP5SoC(SoCCore):
    def __init__(self, board_name: str, cfg: FabricConfig, sys_clk_freq: float = DEFAULT_SYS_CLK,
                 baudrate: int = DEFAULT_BAUDRATE):
        spec = board(board_name)
        platform = spec.platform()
        SoCCore.__init__(self, platform, sys_clk_freq, cpu_type=None, integrated_sram_size=0,
                         with_uart=False, with_timer=False, with_ctrl=False,
                         ident=f"synfab {cfg.name} on {board_name}", ident_version=False)
        self.crg = _CRG(platform, spec, sys_clk_freq)
        self.add_uartbone(uart_name="serial", baudrate=baudrate)
        add_synfab(self, cfg)


def build_name(board_name: str, cfg: FabricConfig) -> str:
    return f"synfab_{board_name.replace('-', '_')}_{cfg.name}"


def parse_nextpnr_report(path: Path) -> dict:
    """fmax (MHz) of the sys clock and utilization {bel type: {used, available}} from --report JSON."""
    rep = json.loads(Path(path).read_text())
    fmax = {name: v["achieved"] for name, v in rep.get("fmax", {}).items()}
    sys_fmax = [v for name, v in fmax.items() if "sys" in name] or list(fmax.values())
    return {"fmax_mhz": round(min(sys_fmax), 2) if sys_fmax else None,
            "fmax_by_clock": fmax,
            "utilization": {k: {"used": v["used"], "available": v["available"]}
                            for k, v in rep.get("utilization", {}).items() if v["used"]}}


def _run_build(board_name, cfg, sys_clk_freq, baudrate, seed, out: Path, name: str, key: str, quiet: bool):
    gw = out / "gateware"
    (gw / "stamp.json").unlink(missing_ok=True)
    soc = SynfabECP5SoC(board_name, cfg, sys_clk_freq, baudrate)
    builder = Builder(soc, output_dir=str(out), compile_software=False, compile_gateware=False,
                      csr_json=str(out / "csr.json"))
    soc.platform.toolchain._pnr_opts += f" --report {name}_report.json"
    with contextlib.redirect_stdout(sys.stderr):     # LiteX's generator chatter stays off stdout
        builder.build(build_name=name, run=False, seed=seed)
    if not quiet:
        print(f"synfab: building {name} bitstream with yosys/nextpnr ({tc.toolchain()[1].split(':')[0]}); "
              f"log: {gw / 'build.log'}", file=sys.stderr, flush=True)
    start = time.monotonic()
    tc.run_tool(["bash", f"build_{name}.sh"], gw, gw / "build.log")
    (gw / "stamp.json").write_text(json.dumps({"key": key, "seconds": round(time.monotonic() - start, 1)}))


def build_bitstream(board_name: str, cfg: FabricConfig, sys_clk_freq: float = DEFAULT_SYS_CLK,
                    baudrate: int = DEFAULT_BAUDRATE, seed: int = 1, quiet: bool = False) -> dict:
    """Generate the SoC and run yosys/nextpnr-ecp5/ecppack, unless this very source state was
    built before; return the report: bitstream path, fmax, utilization, board, fabric, cache key."""
    spec = board(board_name)
    name = build_name(board_name, cfg)
    out = tc.build_root() / "ecp5" / name
    gw = out / "gateware"
    _, tool_version = tc.toolchain()
    key = tc.source_digest("ecp5", board_name, cfg.to_json(), sys_clk_freq, baudrate, seed, tool_version)
    stamp = gw / "stamp.json"
    bit = gw / f"{name}.bit"

    def fresh() -> bool:
        return stamp.is_file() and json.loads(stamp.read_text()).get("key") == key and bit.is_file()

    cached = fresh()
    if not cached:
        out.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)         # one build per directory at a time
            if not fresh():
                _run_build(board_name, cfg, sys_clk_freq, baudrate, seed, out, name, key, quiet)
    report = parse_nextpnr_report(gw / f"{name}_report.json")
    return {"bitstream": str(bit), "board": board_name, "board_description": spec.description,
            "device": spec.platform().device, "fabric": cfg.name, "fabric_config": cfg.to_dict(),
            "config_crc": f"{cfg.crc():#010x}", "sys_clk_mhz": sys_clk_freq / 1e6,
            "timing_met": report["fmax_mhz"] is not None and report["fmax_mhz"] >= sys_clk_freq / 1e6,
            **report, "uart_baudrate": baudrate, "toolchain": tool_version, "cache_key": key,
            "cached": cached, "build_seconds": json.loads(stamp.read_text())["seconds"],
            "csr_json": str(out / "csr.json"), "build_dir": str(gw)}


def flash(bitstream: Path, board_name: str, write_flash: bool = False) -> None:
    """Program the board with openFPGALoader (SRAM by default; --write-flash makes it persist)."""
    spec = board(board_name)
    loader = shutil.which("openFPGALoader")
    if loader is None:
        raise SynfabError("openFPGALoader not found; install it (apt install openfpgaloader, or "
                          "https://github.com/trabucayre/openFPGALoader) and retry")
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise SynfabError(f"bitstream {bitstream} not found; build it with `synfab build --board {board_name}`")
    args = [loader, "-b", spec.loader_board] + (["-f"] if write_flash else []) + [str(bitstream)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
        raise SynfabError(f"openFPGALoader could not program the {board_name} ({lines[-1] if lines else 'no output'}); "
                          "is the board plugged in and its USB port accessible?")
