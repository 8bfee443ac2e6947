"""Fmax over placement seeds (issue 8, item 3): one fabric's ECP5 SoC placed and routed once per seed;
prints JSON.

    python benchmarks/bench_timing.py [--board ulx3s] [--fabric default] [--sys-clk-mhz 100]
                                      [--seeds 1 2 3] [--jobs 2] [--work DIR]

Each seed is a `synfab build` of its own (yosys, nextpnr-ecp5 with soc.ecp5.PLACER_OPTIONS, ecppack),
run as a subprocess with SYNFAB_BUILD_DIR = WORK/seed-N: builds of one fabric share a build folder name,
so seeds placed side by side need folders of their own. A seed whose sources and options were built
before is read from its folder (the build cache), not placed again. Per seed: Fmax, whether the asked
clock is met, the critical path from nextpnr's own report and the cells used, as `synfab build --record`
records them (analysis.placements); over the seeds: min, mean, max and the spread (max / min - 1). The
default 2x2 at 100 MHz takes 15-25 minutes a seed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from synfab.analysis import placements
from synfab_gateware.soc.toolchain import build_root

CELLS = ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")


def place(board: str, fabric: str, sys_clk_mhz: float, seed: int, work: Path) -> dict:
    """One seed's `synfab build --record`: the placement entry it records (analysis.placements: Fmax,
    timing met, nextpnr's critical path, utilization), reduced to its timing and cells."""
    folder = work / f"seed-{seed}"
    record = folder / "placement.json"
    cmd = [sys.executable, "-m", "synfab.cli", "build", "--board", board, "--fabric", fabric,
           "--sys-clk-mhz", f"{sys_clk_mhz:g}", "--seed", str(seed), "--output", str(folder / "out"),
           "--record", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SYNFAB_BUILD_DIR": str(folder)})
    if proc.returncode != 0:
        return {"seed": seed, "error": (proc.stderr.strip().splitlines() or ["no message"])[-1]}
    entry, = placements.load(record)
    return {"seed": seed, "fmax_mhz": entry["fmax_mhz"], "timing_met": entry["timing_met"],
            "critical_path": entry["critical_path"],
            "cells": {c: entry["utilization"][c]["used"] for c in CELLS if c in entry["utilization"]},
            "build_seconds": entry["build_seconds"]}


def summary(runs: list[dict]) -> dict:
    fmax = [r["fmax_mhz"] for r in runs if "fmax_mhz" in r]
    if not fmax:
        return {}
    return {"min_mhz": min(fmax), "mean_mhz": round(statistics.mean(fmax), 2), "max_mhz": max(fmax),
            "spread": round(max(fmax) / min(fmax) - 1, 4), "seeds_placed": len(fmax)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--fabric", default="default")
    ap.add_argument("--sys-clk-mhz", type=float, default=100.0, help="the clock asked (issue 8's goal: 100)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=2, help="seeds placed side by side (nextpnr runs on one core)")
    ap.add_argument("--work", type=Path, default=None,
                    help="build folders, one per seed (default: the build cache's timing/, which `synfab cache "
                         "clean` empties; not under /tmp: the YoWASP tools cannot see it)")
    a = ap.parse_args()
    work = (a.work or build_root() / "timing").resolve() / f"{a.board}-{a.fabric}-{a.sys_clk_mhz:g}"
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        runs = list(pool.map(lambda s: place(a.board, a.fabric, a.sys_clk_mhz, s, work), a.seeds))
    print(json.dumps({"board": a.board, "fabric": a.fabric, "sys_clk_mhz": a.sys_clk_mhz,
                      "seeds": runs, "summary": summary(runs)}, indent=1))


if __name__ == "__main__":
    main()
