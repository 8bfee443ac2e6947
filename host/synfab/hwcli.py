"""Hardware subcommands of `synfab`: build, flash, cost, fit, litex-sim (registered by cli.py).

    synfab build --board ulx3s --fabric tiny [--output DIR] [--manifest bitstreams/manifest.json]
    synfab build --board pynq-z2 --fabric small        # Vivado scripts (+ bitstream if vivado is on PATH)
    synfab flash --board ulx3s --fabric tiny
    synfab cost --fabric small [--fmax] [--network demo] [--json]
    synfab fit --board ulx3s [--write-preset] [--json]   # largest fabric that fits (synfab_gateware.fit)
    synfab litex-sim --fabric tiny [--tcp-port 4000]   # LiteX sim SoC for `--backend litex`
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from .errors import SynfabError
from .layouts import DEFAULT_BAUDRATE, DEFAULT_SYS_CLK_MHZ
from .linkframe import LINK_KINDS

PYNQ = "pynq-z2"


# `synfab build` defaults (the manifest's command names only the options that differ from them).
BUILD_DEFAULTS = {"sys_clk_mhz": DEFAULT_SYS_CLK_MHZ, "baudrate": DEFAULT_BAUDRATE, "seed": 1}

def _gateware(module: str):
    """Import a synfab_gateware module, or say what to install."""
    try:
        return __import__(f"synfab_gateware.{module}", fromlist=["_"])
    except ImportError as e:
        raise SynfabError(f"this needs the gateware tools ({e.name} missing); pip install -e .[gateware,boards]")


def _fabric(arg):
    from .config import FabricConfig
    return FabricConfig.load(arg) if arg else FabricConfig()


def _emit(obj, as_json: bool, text: str):
    if as_json:
        print(json.dumps(obj, indent=2))
    else:
        print(text)


def default_output(board: str, cfg) -> Path:
    return Path("bitstreams") / f"{board}-{cfg.name}"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def update_manifest(manifest: Path, entry: dict) -> None:
    """Add or replace (by path) one artifact entry; paths are relative to the manifest."""
    manifest = Path(manifest)
    data = json.loads(manifest.read_text()) if manifest.is_file() else {"artifacts": []}
    data["artifacts"] = [a for a in data["artifacts"] if a["path"] != entry["path"]] + [entry]
    data["artifacts"].sort(key=lambda a: a["path"])
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(data, indent=2) + "\n")


def source_revision() -> str | None:
    """`git describe --always --dirty` of the synfab checkout (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True,
                             text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def gateware_source_key() -> str:
    """What generated gateware is made from (gateware sources, the host spine they import, the
    migen/LiteX versions): recorded with every committed bitstream, so a stale one is detected."""
    return _gateware("soc.toolchain").source_digest()


def board_links_key() -> str:
    """What a linked SoC adds to gateware_source_key: the link gateware and its spec
    (soc.toolchain.board_links_digest); recorded with a linked bitstream."""
    return _gateware("soc.toolchain").board_links_digest()


def _command(argv_tail: list[str]) -> str:
    return "synfab " + " ".join(shlex.quote(a) for a in argv_tail)


# -- build ----------------------------------------------------------------------------------------------
def build_ecp5(board: str, cfg, out: Path, sys_clk_mhz: float, baudrate: int, seed: int, command: str,
               quiet: bool, ethernet: bool = False, link: str = "", board_index: int = 0) -> dict:
    ecp5 = _gateware("soc.ecp5")
    rep = ecp5.build_bitstream(board, cfg, sys_clk_freq=sys_clk_mhz * 1e6, baudrate=baudrate, seed=seed,
                               quiet=quiet, **({"ethernet": True} if ethernet else {}),
                               **({"link": link} if link else {}),
                               **({"board_index": board_index} if board_index else {}))
    out.mkdir(parents=True, exist_ok=True)
    bit = out / Path(rep["bitstream"]).name
    shutil.copyfile(rep["bitstream"], bit)
    shutil.copyfile(rep["csr_json"], out / "csr.json")
    report = {"bitstream": bit.name, "sha256": sha256(bit), "bytes": bit.stat().st_size, "command": command,
              **{k: v for k, v in rep.items() if k not in ("bitstream", "csr_json", "build_dir", "cached")}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["output_dir"] = str(out)
    report["build_dir"] = rep["build_dir"]          # nextpnr's own report (the critical path) is there
    return report


def build_pynq(cfg, out: Path, command: str) -> dict:
    _gateware("fit").check(cfg, PYNQ)          # before writing anything
    vivado = _gateware("vivado")
    files = vivado.write_project(cfg, out)
    info = {"board": PYNQ, "fabric": cfg.name, "config_crc": f"{cfg.crc():#010x}", "output_dir": str(out),
            "scripts": {k: str(v) for k, v in files.items()}, "command": command,
            "bitstream": str(out / f"{vivado.overlay_name(cfg)}.bit")}
    exe = shutil.which("vivado")
    if exe is None:
        raise SynfabError(f"Vivado not found on PATH: wrote the PYNQ-Z2 scripts to {out}; on a machine with "
                          f"Vivado run `vivado -mode batch -source {out / 'build.tcl'}`")
    proc = subprocess.run([exe, "-mode", "batch", "-source", "build.tcl", "-nojournal", "-log", "vivado.log"],
                          cwd=out)
    if proc.returncode != 0:
        raise SynfabError(f"Vivado failed (exit {proc.returncode}); see {out / 'vivado.log'}")
    return info


def cmd_build(a):
    cfg = _fabric(a.fabric)
    if a.lanes is not None:       # same name: `synfab bench --fabric F --lanes P` is this very fabric
        cfg = cfg.with_(lanes=a.lanes)
    # The build's own name for its SoC (ecp5.build_name's), in the dashes of output folders.
    suffix = _gateware("soc.ecp5").build_suffix(a.ethernet, a.link or "", a.board_index).replace("_", "-")
    out = Path(a.output) if a.output else default_output(a.board + suffix, cfg)
    # The exact command: build options that differ from their defaults are part of it.
    options = [(flag, value) for flag, value, default in (("--sys-clk-mhz", a.sys_clk_mhz, BUILD_DEFAULTS["sys_clk_mhz"]),
                                                         ("--baudrate", a.baudrate, BUILD_DEFAULTS["baudrate"]),
                                                         ("--seed", a.seed, BUILD_DEFAULTS["seed"])) if value != default]
    command = _command(["build", "--board", a.board, "--fabric", a.fabric or "default"]
                       + [str(x) for flag, value in options for x in (flag, f"{value:g}" if isinstance(value, float) else value)]
                       + (["--lanes", str(a.lanes)] if a.lanes is not None else [])
                       + (["--ethernet"] if a.ethernet else [])
                       + (["--link", a.link] if a.link else [])
                       + (["--board-index", str(a.board_index)] if a.board_index else [])
                       + ["--output", str(out)] + (["--manifest", a.manifest] if a.manifest else [])
                       + (["--record", a.record] if a.record else []))
    if a.board == PYNQ:
        info = build_pynq(cfg, out, command)
        _emit(info, a.json, f"PYNQ-Z2 bitstream and hardware handoff: {info['bitstream']} (+ .hwh)")
        return
    if a.board not in _gateware("soc.ecp5").BOARDS:
        boards = ", ".join([*_gateware("soc.ecp5").BOARDS, PYNQ])
        raise SynfabError(f"unknown board {a.board!r}; choose one of {boards}")
    # Before building: the build's own report files would make the checkout look dirty.
    revision = source_revision()
    rep = build_ecp5(a.board, cfg, out, a.sys_clk_mhz, a.baudrate, a.seed, command, quiet=a.json,
                     ethernet=a.ethernet, link=a.link or "", board_index=a.board_index)
    if a.manifest:
        manifest = Path(a.manifest)
        rel = os.path.relpath((out / rep["bitstream"]).resolve(), manifest.resolve().parent)
        update_manifest(manifest, {"path": str(rel), "sha256": rep["sha256"], "bytes": rep["bytes"],
                                   "board": rep["board"], "device": rep["device"], "fabric": rep["fabric"],
                                   "config_crc": rep["config_crc"], "fmax_mhz": rep["fmax_mhz"],
                                   "sys_clk_mhz": rep["sys_clk_mhz"], "uart_baudrate": rep["uart_baudrate"],
                                   "toolchain": rep["toolchain"],
                                   "source_revision": revision, "source_key": gateware_source_key(),
                                   **({"ethernet": True} if rep["ethernet"] else {}),
                                   **({"link": a.link, "links_key": board_links_key()} if a.link else {}),
                                   **({"board_index": rep["board_index"]} if "board_index" in rep else {}),
                                   "command": command})
    if a.record:
        from .analysis import placements
        nextpnr = Path(rep["build_dir"]) / f"{Path(rep['bitstream']).stem}_report.json"
        placements.record(Path(a.record), placements.entry(rep, a.seed, rep["ethernet"], revision,
                                                           gateware_source_key(), command, nextpnr, link=a.link or "",
                                                           board_index=a.board_index))
    util = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in rep["utilization"].items())
    timing = _gateware("soc.report").timing_summary(rep)
    _emit(rep, a.json, f"bitstream: {out / rep['bitstream']}\nfmax: {rep['fmax_mhz']} MHz (sys clock "
                       f"{rep['sys_clk_mhz']} MHz, timing {timing})\nutilization: {util}")


def cmd_flash(a):
    ecp5 = _gateware("soc.ecp5")
    cfg = _fabric(a.fabric)
    if a.bitstream:
        bit = Path(a.bitstream)
    else:
        out = default_output(a.board, cfg)
        bit = out / f"{ecp5.build_name(a.board, cfg)}.bit"
    ecp5.flash(bit, a.board, write_flash=a.write_flash)
    print(f"programmed {a.board} with {bit}")


# -- cost --------------------------------------------------------------------------------------------------
def cmd_cost(a):
    cost = _gateware("cost")
    cfg = _fabric(a.fabric)
    network = None
    if a.network:
        from .api import load_network
        from .frontend.ir import QNetwork
        network = load_network(a.network)
        if not isinstance(network, QNetwork):
            raise SynfabError(f"--network {a.network} is a float network; give a quantized network or demo")
    try:
        rep = cost.cost_report(cfg, fmax=a.fmax, blocks=a.blocks, network=network, quiet=a.json)
    except ValueError as e:
        raise SynfabError(str(e))
    _emit(rep, a.json, cost.format_report(rep))


# -- fit ---------------------------------------------------------------------------------------------------
def preset_status(rep: dict) -> str:
    """Whether the committed preset of the board is the fabric the fit chose."""
    from .config import BOARD_PRESETS, board_presets
    committed = board_presets().get(rep["preset"])
    where = f"synfab/{BOARD_PRESETS.relative_to(Path(__file__).resolve().parent).as_posix()}/{rep['preset']}.json"
    if committed is not None and committed.to_dict() == rep["fabric"]:
        return f"the committed {where} is this fabric"
    return (f"{'differs from the' if committed else 'no'} committed {where}; "
            f"run synfab fit --board {rep['board']} --write-preset")


def write_preset(rep: dict) -> Path:
    from .config import BOARD_PRESETS
    BOARD_PRESETS.mkdir(parents=True, exist_ok=True)
    path = BOARD_PRESETS / f"{rep['preset']}.json"
    path.write_text(json.dumps(rep["fabric"], indent=1) + "\n")
    return path


def cmd_fit(a):
    from .boards import BOARDS, board
    fit = _gateware("fit")
    names = list(BOARDS) if a.board == "all" else [board(a.board).name]
    reports = []
    for name in names:
        rep = fit.fit(name, quiet=a.json)
        if a.write_preset:
            rep["preset_file"] = str(write_preset(rep))
        rep["preset_status"] = preset_status(rep)
        reports.append(rep)
    _emit(reports if a.board == "all" else reports[0], a.json, "\n\n".join(fit.format_fit(r) for r in reports))


# -- LiteX sim server ------------------------------------------------------------------------------------
def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def cmd_litex_sim(a):
    sim = _gateware("soc.sim")
    cfg = _fabric(a.fabric)
    # A plain `kill` must also stop the simulator child (the with-block does that).
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with sim.LitexSim(cfg, tcp_port=a.tcp_port) as s:
        print(f"LiteX sim of the {cfg.name} fabric running; use --backend litex --port {s.port} (Ctrl-C stops)",
              flush=True)
        try:
            s.proc.wait()
        except KeyboardInterrupt:
            return
    raise SynfabError(f"the LiteX sim exited (code {s.proc.returncode})")


def register(sub) -> None:
    from .boards import BOARDS
    b = sub.add_parser("build", help="bitstream for a board (ECP5: open toolchain; pynq-z2: Vivado scripts)")
    b.add_argument("--board", required=True, help=", ".join(BOARDS))
    b.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny, a board's: synfab fit)")
    b.add_argument("-o", "--output", help="output directory (default bitstreams/BOARD-FABRIC)")
    b.add_argument("--manifest", help="record the bitstream (sha256, command) in this manifest JSON")
    b.add_argument("--record", help="record the place-and-route figures (Fmax, utilization, critical path; not "
                                    "the bitstream) in this JSON, e.g. bitstreams/placements.json")
    b.add_argument("--sys-clk-mhz", type=float, default=BUILD_DEFAULTS["sys_clk_mhz"], help="ECP5 system clock (default 50)")
    b.add_argument("--baudrate", type=int, default=BUILD_DEFAULTS["baudrate"], help="ECP5 UARTBone baud rate")
    b.add_argument("--seed", type=int, default=BUILD_DEFAULTS["seed"], help="nextpnr seed")
    b.add_argument("--lanes", type=int, help="synaptic lanes per core (1, 2, 4, 8) instead of the fabric's")
    b.add_argument("--ethernet", action="store_true",
                   help="colorlight-i5/i9: Etherbone + UDP streams on the gigabit PHY instead of UARTBone "
                        "(--port udp://192.168.1.50:1234)")
    b.add_argument("--link", choices=LINK_KINDS,
                   help="the linked SoC of a chain of boards: uart (ulx3s: its UART link ends on the GPIO header, "
                        "gpio0 from the board before, gpio1 to the board after) or eth (colorlight-i5/i9: every "
                        "board on one switch with the host, Etherbone and the links on one port; give "
                        "--board-index); run it with synfab partition --backend litex --link uart|eth")
    b.add_argument("--board-index", type=int, default=0,
                   help="--link eth: this board's place in the chain (0, 1, ...): its addresses, "
                        "192.168.1.(50 + index)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_build)

    f = sub.add_parser("flash", help="program an ECP5 board with openFPGALoader")
    f.add_argument("--board", required=True)
    f.add_argument("--fabric", help="fabric config of the bitstream (picks bitstreams/BOARD-FABRIC)")
    f.add_argument("--bitstream", help="bitstream file (default: the one `synfab build` wrote)")
    f.add_argument("--write-flash", action="store_true", help="write the SPI flash (persistent) instead of SRAM")
    f.set_defaults(func=cmd_flash)

    c = sub.add_parser("cost", help="per-block FPGA resources (yosys synth_ecp5), Fmax, PEG/ESU share")
    c.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny)")
    c.add_argument("--blocks", nargs="+", help="only these blocks")
    c.add_argument("--fmax", action="store_true",
                   help="also place and route the whole fabric with nextpnr for its Fmax (minutes to an hour)")
    c.add_argument("--network", help="quantized network (or demo): explicit per-synapse storage it would need")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cost)

    t = sub.add_parser("fit", help="the largest fabric that fits a board (resource model + one yosys synthesis)")
    t.add_argument("--board", required=True, help=f"{', '.join(BOARDS)} or all")
    t.add_argument("--write-preset", action="store_true",
                   help="write the fabric as the board's preset (host/synfab/data/boards/PRESET.json)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_fit)

    s = sub.add_parser("litex-sim", help="run the LiteX sim SoC (Verilator) for --backend litex")
    s.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny)")
    s.add_argument("--tcp-port", type=int, help="TCP port of the UARTBone bridge (default: a free one)")
    s.set_defaults(func=cmd_litex_sim)

