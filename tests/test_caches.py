"""`synfab cache` and synfab.caches: listing and pruning fake cache trees built in tmp_path.

Every test points $HOME, $XDG_CACHE_HOME, $SYNFAB_SIM_CACHE, $SYNFAB_BUILD_DIR and $SYNFAB_SAMPLES
into tmp_path (autouse fixture), so nothing here can reach the real ~/.cache/synfab.
"""
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synfab import caches
from synfab.cli import main

DAY = 86400
KEY_A, KEY_B, KEY_C, KEY_D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


@pytest.fixture(autouse=True)
def fake_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SYNFAB_SIM_CACHE", str(tmp_path / "simcache"))
    monkeypatch.delenv("SYNFAB_BUILD_DIR", raising=False)
    monkeypatch.delenv("SYNFAB_SAMPLES", raising=False)
    for cache in caches.known_caches():     # the guard the module docstring promises
        assert tmp_path in cache.folder.parents, cache
    return tmp_path


def folder(name: str) -> Path:
    return {c.name: c.folder for c in caches.known_caches()}[name]


def set_times(path: Path, idle_seconds: float, atime_idle: float | None = None) -> None:
    now = time.time()
    atime = now - (idle_seconds if atime_idle is None else atime_idle)
    os.utime(path, (atime, now - idle_seconds))


def make_entry(parent: Path, name: str, size: int, idle_days: float, lock: bool = True,
               atime_idle_days: float | None = None) -> Path:
    """A folder `name` holding one file of `size` bytes (and `name`.lock beside it), all last used
    `idle_days` ago (the file's atime `atime_idle_days` ago when given)."""
    entry = parent / name
    entry.mkdir(parents=True)
    data = entry / "data.bin"
    data.write_bytes(b"x" * size)
    idle = idle_days * DAY
    set_times(data, idle, None if atime_idle_days is None else atime_idle_days * DAY)
    set_times(entry, idle)
    if lock:
        lock_file = parent / f"{name}.lock"
        lock_file.touch()
        set_times(lock_file, idle)
    return entry


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def prune_json(capsys, *argv):
    rc, out, err = run_cli(capsys, "cache", "prune", *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


def names(parent: Path) -> set[str]:
    return {p.name for p in parent.iterdir()} if parent.exists() else set()


def test_folders_follow_the_environment_as_the_code_that_fills_them(tmp_path, monkeypatch):
    from synfab.events import samples
    from synfab_gateware.sim import build as sim_build
    from synfab_gateware.soc import sim as soc_sim
    assert folder("sim") == sim_build.cache_root() == tmp_path / "simcache"
    assert folder("litex-sim") == soc_sim.cache_root() == tmp_path / "xdg" / "synfab" / "litex-sim"
    assert folder("build") == tmp_path / "xdg" / "synfab" / "build"
    assert folder("cost") == tmp_path / "xdg" / "synfab" / "cost"
    assert folder("samples") == samples._cache_dir(None) == tmp_path / "home" / ".cache" / "synfab" / "samples"
    monkeypatch.delenv("SYNFAB_SIM_CACHE")
    assert folder("sim") == sim_build.cache_root() == tmp_path / "xdg" / "synfab" / "sim"
    # build_root() refuses folders under /tmp (YoWASP cannot see them), where tmp_path is: its rule
    # (and cost's `build_root().parent / "cost"`) is checked by hand here.
    monkeypatch.setenv("SYNFAB_BUILD_DIR", str(tmp_path / "elsewhere" / "b"))
    assert folder("build") == tmp_path / "elsewhere" / "b"
    assert folder("cost") == tmp_path / "elsewhere" / "cost"
    monkeypatch.setenv("SYNFAB_SAMPLES", str(tmp_path / "s"))
    assert folder("samples") == samples._cache_dir(None) == tmp_path / "s"


def test_listing_counts_entries_sizes_and_last_use(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 1000, idle_days=3)
    make_entry(sim, KEY_B, 250, idle_days=5, atime_idle_days=1)        # read a day ago: atime counts
    (sim / f"{KEY_C}.lock").touch()                                    # a build starting: lock only
    (sim / "by-source").mkdir()
    (sim / "by-source" / "x").write_text(KEY_A)                        # an index, not an entry
    make_entry(folder("build") / "ecp5", "synfab_ulx3s_tiny", 4000, idle_days=2)
    make_entry(folder("build") / "cost" / "tiny", "peg", 300, idle_days=2)
    rc, out, err = run_cli(capsys, "cache", "--json")
    assert rc == 0, err
    report = {c["name"]: c for c in json.loads(out)["caches"]}
    assert report["sim"]["entries"] == 3 and report["sim"]["bytes"] == 1250
    idle = {e["name"]: e["idle_days"] for e in report["sim"]["entry_list"]}
    assert idle[KEY_A] == pytest.approx(3, abs=0.01) and idle[KEY_B] == pytest.approx(1, abs=0.01)
    assert [e["name"] for e in report["sim"]["entry_list"]][:2] == [KEY_A, KEY_B]   # least recently used first
    assert {e["name"] for e in report["build"]["entry_list"]} == {"ecp5/synfab_ulx3s_tiny", "cost/tiny/peg"}
    assert report["build"]["bytes"] == 4300
    assert report["litex-sim"]["exists"] is False and report["litex-sim"]["entries"] == 0
    assert report["samples"]["pruned_by_default"] is False
    assert json.loads(out)["bytes"] == 5550
    rc, text, _ = run_cli(capsys, "cache")
    assert rc == 0 and str(sim) in text and "1.25 kB" in text and "3 entries" in text


def test_older_than_removes_exactly_the_old_entries_with_their_locks(capsys):
    sim, litex = folder("sim"), folder("litex-sim")
    make_entry(sim, KEY_A, 100, idle_days=10)
    make_entry(sim, KEY_B, 200, idle_days=1)
    make_entry(litex, KEY_C, 400, idle_days=5)
    (litex / f"{KEY_C}.failed").mkdir()         # the same key's failed build goes with it
    set_times(litex / f"{KEY_C}.failed", 5 * DAY)
    report = prune_json(capsys, "--older-than", "3")
    assert {(r["cache"], r["name"]) for r in report["removed"]} == {("sim", KEY_A), ("litex-sim", KEY_C)}
    assert report["bytes_freed"] == 500 and report["bytes_left"] == 200 and report["limits_met"]
    assert names(sim) == {KEY_B, f"{KEY_B}.lock"}
    assert names(litex) == set()


def test_max_bytes_removes_least_recently_used_first(capsys):
    sim, litex = folder("sim"), folder("litex-sim")
    make_entry(sim, KEY_A, 3000, idle_days=4)
    make_entry(litex, KEY_B, 5000, idle_days=3)
    make_entry(sim, KEY_C, 2000, idle_days=9, atime_idle_days=2)      # written long ago, read 2 days ago
    make_entry(litex, KEY_D, 1000, idle_days=1)
    # 11000 bytes; at most 4000 (--max-gb 4e-6): A (4 days) then B (3 days) go; C, read 2 days ago, stays.
    report = prune_json(capsys, "--max-gb", "4e-6")
    assert [r["name"] for r in report["removed"]] == [KEY_A, KEY_B]
    assert report["bytes_freed"] == 8000 and report["bytes_left"] == 3000
    assert names(sim) == {KEY_C, f"{KEY_C}.lock"} and names(litex) == {KEY_D, f"{KEY_D}.lock"}


def test_both_limits_and_one_cache(capsys):
    sim, litex = folder("sim"), folder("litex-sim")
    make_entry(sim, KEY_A, 100, idle_days=8)
    make_entry(sim, KEY_B, 100, idle_days=2)
    make_entry(sim, KEY_C, 100, idle_days=1)
    make_entry(litex, KEY_D, 10**6, idle_days=30)                       # another cache: not named, stays
    report = prune_json(capsys, "--cache", "sim", "--older-than", "7", "--max-gb", "1e-7")
    assert [r["name"] for r in report["removed"]] == [KEY_A, KEY_B]     # A by age, B by size (200 > 100)
    assert report["caches"] == ["sim"] and report["bytes_freed"] == 200
    assert names(sim) == {KEY_C, f"{KEY_C}.lock"} and KEY_D in names(litex)


def test_a_held_lock_protects_its_entry(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 100, idle_days=10)
    make_entry(sim, KEY_B, 100, idle_days=10)
    # "a": its mtime stays old, so the lock alone must protect it (a builder opens it with "w",
    # which also makes the entry recently used: the hour guard would keep it as well).
    with open(sim / f"{KEY_A}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = prune_json(capsys, "--older-than", "1")
        assert [r["name"] for r in report["removed"]] == [KEY_B]
        assert [(r["name"], r["reason"]) for r in report["kept"]] == [(KEY_A, "its lock is held by another process")]
        assert not report["limits_met"]
        assert names(sim) == {KEY_A, f"{KEY_A}.lock"}
    report = prune_json(capsys, "--older-than", "1")     # released: now it goes
    assert [r["name"] for r in report["removed"]] == [KEY_A] and names(sim) == set()


def test_staging_folders_without_a_lock_wait_for_every_lock_of_their_folder(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 100, idle_days=5)
    make_entry(sim, f"{KEY_B[:12]}.x1y2.build", 700, idle_days=5, lock=False)    # an interrupted build's
    with open(sim / f"{KEY_A}.lock", "a") as lock:     # "a": the mtime stays old (see above)
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = prune_json(capsys, "--older-than", "1")
        assert report["removed"] == [] and {r["name"] for r in report["kept"]} == {KEY_A, KEY_B[:12]}
    report = prune_json(capsys, "--older-than", "1")
    assert {r["name"] for r in report["removed"]} == {KEY_A, KEY_B[:12]} and report["bytes_freed"] == 800
    assert names(sim) == set()


def test_nothing_used_in_the_last_hour_is_removed(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 100, idle_days=30 / 1440)                        # built 30 minutes ago
    make_entry(sim, KEY_B, 100, idle_days=10, atime_idle_days=20 / 1440)    # read 20 minutes ago
    make_entry(sim, KEY_C, 100, idle_days=2 / 24)                           # two hours ago: may go
    report = prune_json(capsys, "--max-gb", "0", "--older-than", "0")
    assert [r["name"] for r in report["removed"]] == [KEY_C]
    assert {r["name"]: r["reason"] for r in report["kept"]} == {KEY_A: "used in the last hour",
                                                                KEY_B: "used in the last hour"}
    assert report["bytes_left"] == 200 and not report["limits_met"]
    assert names(sim) == {KEY_A, f"{KEY_A}.lock", KEY_B, f"{KEY_B}.lock"}


def test_an_entry_open_in_a_running_process_stays(capsys):
    litex = folder("litex-sim")
    entry = make_entry(litex, KEY_A, 100, idle_days=3)
    make_entry(litex, KEY_B, 100, idle_days=3)
    with open(entry / "data.bin", "rb"):            # a running sim has its files open; atime is old
        set_times(entry / "data.bin", 3 * DAY)
        report = prune_json(capsys, "--older-than", "1")
    assert [r["name"] for r in report["removed"]] == [KEY_B]
    assert [(r["name"], r["reason"]) for r in report["kept"]] == [(KEY_A, "open by a running process")]
    assert KEY_A in names(litex)


def test_samples_only_when_named(capsys):
    samples = folder("samples")
    samples.mkdir(parents=True)
    (samples / ".lock").touch()
    for name, size in (("evt2.raw", 50), ("faery-0.7.1.tar.gz", 70)):
        (samples / name).write_bytes(b"s" * size)
        set_times(samples / name, 40 * DAY)
    make_entry(folder("sim"), KEY_A, 10, idle_days=40)
    report = prune_json(capsys, "--older-than", "1")
    assert [r["cache"] for r in report["removed"]] == ["sim"]
    assert names(samples) == {".lock", "evt2.raw", "faery-0.7.1.tar.gz"}
    with open(samples / ".lock", "w") as lock:      # a download in progress holds the cache's lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = prune_json(capsys, "--cache", "samples", "--older-than", "1")
        assert report["removed"] == [] and len(report["kept"]) == 2
    report = prune_json(capsys, "--cache", "samples", "--older-than", "1")
    assert {r["name"] for r in report["removed"]} == {"evt2.raw", "faery-0.7.1.tar.gz"}
    assert report["bytes_freed"] == 120 and names(samples) == {".lock"}    # the cache's lock stays


def test_dry_run_reports_the_same_and_removes_nothing(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 100, idle_days=6)
    make_entry(sim, KEY_B, 100, idle_days=2)
    before = names(sim)
    dry = prune_json(capsys, "--older-than", "4", "--dry-run")
    assert dry["dry_run"] and [r["name"] for r in dry["removed"]] == [KEY_A] and dry["bytes_freed"] == 100
    assert names(sim) == before
    real = prune_json(capsys, "--older-than", "4")
    assert [r["name"] for r in real["removed"]] == [KEY_A] and real["bytes_freed"] == 100
    assert names(sim) == {KEY_B, f"{KEY_B}.lock"}


def test_text_output_names_what_went_and_the_bytes_freed(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 1500, idle_days=6)
    make_entry(sim, KEY_B, 100, idle_days=2)
    rc, out, err = run_cli(capsys, "cache", "prune", "--older-than", "4", "--dry-run")
    assert rc == 0 and err == ""
    assert f"would remove sim/{KEY_A[:12]}  1.50 kB" in out and KEY_B[:12] not in out
    assert "would free 1.50 kB (1500 bytes) in 1 entry;" in out
    rc, out, _ = run_cli(capsys, "cache", "prune", "--older-than", "4")
    assert f"removed sim/{KEY_A[:12]}" in out and out.splitlines()[-1].startswith("freed 1.50 kB (1500 bytes)")


def test_index_files_of_removed_sim_entries_go_too(capsys):
    sim = folder("sim")
    make_entry(sim, KEY_A, 100, idle_days=6)
    make_entry(sim, KEY_B, 100, idle_days=2)
    index = sim / "by-source"
    index.mkdir()
    (index / "one").write_text(KEY_A + "\n")
    (index / "two").write_text(KEY_B + "\n")
    prune_json(capsys, "--older-than", "4")
    assert names(index) == {"two"}


def test_build_entries_go_with_their_locks(capsys):
    build = folder("build")
    make_entry(build / "ecp5", "synfab_ulx3s_tiny", 100, idle_days=9)
    make_entry(build / "ecp5", "synfab_ulx3s_default", 100, idle_days=1)
    make_entry(build / "cost" / "tiny", "peg", 30, idle_days=9)
    report = prune_json(capsys, "--cache", "build", "--older-than", "5")
    assert {r["name"] for r in report["removed"]} == {"ecp5/synfab_ulx3s_tiny", "cost/tiny/peg"}
    assert report["bytes_freed"] == 130
    assert names(build / "ecp5") == {"synfab_ulx3s_default", "synfab_ulx3s_default.lock"}
    assert names(build / "cost" / "tiny") == set()


@pytest.mark.parametrize("argv, needle", [
    (["--older-than", "-1"], "--older-than -1"),
    (["--older-than", "soon"], "--older-than 'soon'"),
    (["--max-gb", "-2"], "--max-gb -2"),
    (["--max-gb", "inf"], "--max-gb inf"),
    (["--cache", "nope", "--older-than", "1"], "no cache named 'nope'"),
    ([], "give --older-than DAYS or --max-gb GB"),
    (["--dry-run", "--json"], "give --older-than DAYS or --max-gb GB"),
])
def test_bad_input_is_one_line_and_removes_nothing(capsys, argv, needle):
    make_entry(folder("sim"), KEY_A, 100, idle_days=10)
    rc, out, err = run_cli(capsys, "cache", "prune", *argv)
    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synfab: error:") and needle in lines[0]
    assert KEY_A in names(folder("sim"))


def test_bad_input_in_a_real_process_has_no_traceback():
    p = subprocess.run([sys.executable, "-m", "synfab.cli", "cache", "prune", "--older-than", "-3"],
                       capture_output=True, text=True, env=os.environ.copy())
    assert p.returncode == 1 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1
    assert "--older-than -3" in p.stderr


def test_json_given_before_prune_is_kept(capsys):
    make_entry(folder("sim"), KEY_A, 100, idle_days=10)
    rc, out, _ = run_cli(capsys, "cache", "--json", "prune", "--older-than", "1", "--dry-run")
    assert rc == 0 and json.loads(out)["bytes_freed"] == 100


def test_an_entry_left_aside_by_an_interrupted_prune_is_pruned_later(capsys):
    sim = folder("sim")
    make_entry(sim, f"{KEY_A}.pruning-12345", 600, idle_days=3, lock=False)   # renamed, lock already gone
    listed = json.loads(run_cli(capsys, "cache", "--json")[1])["caches"][0]
    assert [(e["name"], e["bytes"]) for e in listed["entry_list"]] == [(KEY_A, 600)]
    report = prune_json(capsys, "--older-than", "1")
    assert report["bytes_freed"] == 600 and names(sim) == set()


# -- committed synthesis results (seed, record) ------------------------------------------------------
SOURCES, OTHER_SOURCES = "5" * 64, "6" * 64
CELLS_A = {"LUT4": 120, "TRELLIS_FF": 80, "DP16KD": 2, "lut4_equiv": 150, "seconds": 3.5}
CELLS_B = {"LUT4": 7, "TRELLIS_FF": 9, "DP16KD": 0, "lut4_equiv": 7, "seconds": 0.4}


def cost_result(key: str, cells: dict, sources: str) -> None:
    """A result as the synthesis leaves it in the cost cache, with its source state beside it."""
    cost = folder("cost")
    cost.mkdir(parents=True, exist_ok=True)
    (cost / f"{key}.json").write_text(json.dumps(cells))
    (cost / f"{key}{caches.SOURCE_SUFFIX}").write_text(sources)


def records_file(tmp_path: Path, source_key: str, records: dict) -> Path:
    path = tmp_path / "synthesis.json"
    path.write_text(json.dumps({"source_key": source_key, "records": records}))
    return path


def test_record_writes_only_the_results_of_the_given_sources(tmp_path, capsys):
    cost_result(KEY_A, CELLS_A, SOURCES)
    cost_result(KEY_B, CELLS_B, OTHER_SOURCES)
    (folder("cost") / f"{KEY_C}.json").write_text(json.dumps(CELLS_B))    # from before companions: unknown state
    out = tmp_path / "records.json"
    report = caches.record(out, source_key=SOURCES)
    data = json.loads(out.read_text())
    assert data["source_key"] == SOURCES and data["records"] == {KEY_A: CELLS_A}
    assert (report["recorded"], report["from_cache"], report["kept"]) == (1, 1, 0)


def test_record_keeps_what_the_file_holds_of_the_same_sources_and_drops_other_sources(tmp_path):
    out = records_file(tmp_path, SOURCES, {KEY_D: CELLS_B})
    cost_result(KEY_A, CELLS_A, SOURCES)
    caches.record(out, source_key=SOURCES)
    assert json.loads(out.read_text())["records"] == {KEY_A: CELLS_A, KEY_D: CELLS_B}
    cost_result(KEY_B, CELLS_B, OTHER_SOURCES)
    caches.record(out, source_key=OTHER_SOURCES)
    data = json.loads(out.read_text())
    assert data["source_key"] == OTHER_SOURCES and data["records"] == {KEY_B: CELLS_B}


def test_seed_copies_records_into_an_empty_cost_cache_and_never_overwrites(tmp_path, capsys):
    path = records_file(tmp_path, SOURCES, {KEY_A: CELLS_A, KEY_B: CELLS_B})
    (folder("cost")).mkdir(parents=True)
    (folder("cost") / f"{KEY_B}.json").write_text(json.dumps({"LUT4": 1}))    # a result made here: stays
    rc, out, err = run_cli(capsys, "cache", "seed", "--records", str(path), "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert (report["added"], report["already_cached"]) == (1, 1)
    assert json.loads((folder("cost") / f"{KEY_A}.json").read_text()) == CELLS_A
    assert (folder("cost") / f"{KEY_A}{caches.SOURCE_SUFFIX}").read_text() == SOURCES
    assert json.loads((folder("cost") / f"{KEY_B}.json").read_text()) == {"LUT4": 1}
    # Seeded results carry their source state: recording again gives the same file.
    again = tmp_path / "again.json"
    caches.record(again, source_key=SOURCES)
    assert json.loads(again.read_text())["records"] == {KEY_A: CELLS_A}


def test_a_recorded_and_seeded_result_is_what_the_synthesis_lookup_returns(tmp_path, monkeypatch):
    """The round trip on the cost cache's own code (cost.synth_block): a synthesis (yosys stood in
    for) leaves its result, `record` writes it out, the cache is emptied, `seed` puts it back, and
    synth_block returns it without running yosys."""
    pytest.importorskip("litex")
    import shutil
    from synfab.config import PRESETS
    from synfab_gateware import cost
    from synfab_gateware.soc import toolchain as tc
    # build_root() refuses tmp_path (under /tmp, which YoWASP cannot see): its folder by its rule.
    monkeypatch.setattr(tc, "build_root", lambda: folder("build"))
    # The toolchain's name goes into the key; asking YoWASP for it costs seconds to minutes.
    monkeypatch.setattr(tc, "toolchain", lambda: ({}, "stand-in toolchain"))
    cells = {k: v for k, v in CELLS_A.items() if k != "seconds"}       # synth_block adds the time taken
    monkeypatch.setattr(cost, "_synthesize", lambda *a: dict(cells))
    made = cost.synth_block("router", PRESETS["tiny"])
    assert made.items() >= cells.items()
    out = tmp_path / "records.json"
    assert caches.record(out)["recorded"] == 1          # at the current sources (the real gateware key)
    shutil.rmtree(folder("cost"))
    assert caches.seed(out)["added"] == 1
    monkeypatch.setattr(cost, "_synthesize", lambda *a: pytest.fail("yosys ran for a seeded result"))
    assert cost.synth_block("router", PRESETS["tiny"]) == made
    assert cost.synth_block("core", PRESETS["tiny"], cached_only=True) is None    # another key: not seeded


def test_a_synthesis_result_names_its_source_state(tmp_path, monkeypatch):
    """cost.write_atomically, which every synthesis result goes through, leaves the result and the
    companion `record` reads, and no temporary file."""
    pytest.importorskip("litex")
    from synfab.hwcli import gateware_source_key
    from synfab_gateware import cost
    folder("cost").mkdir(parents=True)
    cost.write_atomically(folder("cost") / f"{KEY_A}.json", json.dumps(CELLS_A))
    assert json.loads((folder("cost") / f"{KEY_A}.json").read_text()) == CELLS_A
    assert (folder("cost") / f"{KEY_A}.source").read_text() == gateware_source_key()
    assert sorted(p.name for p in folder("cost").iterdir()) == [f"{KEY_A}.json", f"{KEY_A}.source"]
    assert caches.record(tmp_path / "records.json")["recorded"] == 1


@pytest.mark.parametrize("content, needle", [
    (None, "no synthesis records at"),
    ("{not json", "is not JSON"),
    (json.dumps({"records": {}}), "is not a synthesis record file"),
    (json.dumps({"source_key": "5" * 64, "records": {"short": {"LUT4": 1}}}), "is not a synthesis record file"),
    (json.dumps({"source_key": "5" * 64, "records": {"a" * 64: {"LUT4": "many"}}}), "is not a synthesis record file"),
    (json.dumps({"source_key": "5" * 64, "records": {"a" * 64: {"cells": {"LUT6": [1]}}}}), "is not a synthesis record file"),
])
def test_a_bad_records_file_is_one_line_and_seeds_nothing(tmp_path, capsys, content, needle):
    path = tmp_path / "synthesis.json"
    if content is not None:
        path.write_text(content)
    rc, out, err = run_cli(capsys, "cache", "seed", "--records", str(path))
    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synfab: error:") and needle in lines[0]
    assert not folder("cost").exists() or names(folder("cost")) == set()


def test_record_with_nothing_of_the_current_sources_is_an_error(tmp_path, capsys):
    cost_result(KEY_A, CELLS_A, OTHER_SOURCES)
    out = tmp_path / "records.json"
    with pytest.raises(caches.SynfabError, match="holds no synthesis of the current gateware sources"):
        caches.record(out, source_key=SOURCES)
    assert not out.exists()


def test_the_committed_records_are_of_the_current_gateware_sources():
    """bitstreams/synthesis.json spares a fresh machine's test run its syntheses (555 s of yosys; the
    CI budget): after a change to the gateware, run the test suite and `synfab cache record`."""
    pytest.importorskip("litex")
    data = caches.load_records(caches.records_path())
    assert data["source_key"] == caches.current_source_key(), \
        "bitstreams/synthesis.json is of other gateware sources: run the test suite, then `synfab cache record`"
    assert len(data["records"]) >= 30
