"""Synaptic lanes per core (issue 11, item 1): throughput and cost per lane count; prints JSON.

    python benchmarks/bench_lanes.py [--fabric tiny] [--lanes 1 2 4] [--cost-fabric ulx3s-85f] [--no-cost]

Throughput: the micro-benchmarks of synfab.analysis.bench (`micro_bench(cfg, lanes=P)`, Verilator)
on `--fabric` with P lanes: conv and dense synaptic ops per clock of one busy core in the input
phase (target >= 0.9 P: the layers have at least P output channels on their core), depthwise
pairs per clock (column lanes) and the evaluation unit's neurons per clock (P lanes: a lane group
per clock).
Cost: yosys synth_ecp5 of one NeuronCore of `--cost-fabric` with P lanes (gateware.cost.synth_block,
cached by content; no place and route, so no Fmax here), and per lane the change from one lane:
(cost(P) - cost(1)) / (P - 1) in LUT4 equivalents, flip-flops, DP16KD block RAMs, MULT18X18D DSPs.
"""
from __future__ import annotations

import argparse
import json
import time

from synfab.analysis import bench
from synfab.config import FabricConfig

COST_CELLS = ("lut4_equiv", "LUT4", "CCU2C", "TRELLIS_DPR16X4", "TRELLIS_FF", "DP16KD", "MULT18X18D")


def throughput(cfg: FabricConfig, p: int) -> dict:
    start = time.perf_counter()
    micro, _ = bench.micro_bench(cfg, lanes=p)
    return {"lanes": p,
            "conv_sops_per_clock_per_core": micro["conv_sops_per_clock_per_core"],
            "dense_sops_per_clock_per_core": micro["dense_sops_per_clock_per_core"],
            "dw_sops_per_clock_per_core": micro["dw_sops_per_clock_per_core"],
            "eval_neurons_per_clock_per_core": micro["eval_neurons_per_clock_per_core"],
            "conv_share_of_lanes": round(micro["conv_sops_per_clock_per_core"] / p, 4),
            "dense_share_of_lanes": round(micro["dense_sops_per_clock_per_core"] / p, 4),
            "conv": {k: micro["conv"][k] for k in ("network", "synops", "busy_cycles", "frame_cycles")},
            "dense": {k: micro["dense"][k] for k in ("network", "synops", "busy_cycles")},
            "seconds": round(time.perf_counter() - start, 1)}


def core_cost(cfg: FabricConfig, p: int) -> dict:
    from synfab_gateware import cost
    c = cost.synth_block("core", cfg.with_(lanes=p, name=f"{cfg.name}-l{p}"), quiet=False)
    return {k: c[k] for k in COST_CELLS}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fabric", default="tiny", help="preset or config JSON of the throughput runs")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--cost-fabric", default="ulx3s-85f", help="preset or config JSON of the core synthesized")
    ap.add_argument("--no-cost", action="store_true", help="skip the yosys synthesis")
    ap.add_argument("--no-throughput", action="store_true", help="skip the Verilator runs")
    args = ap.parse_args(argv)
    out: dict = {"fabric": args.fabric}
    if not args.no_throughput:
        cfg = FabricConfig.load(args.fabric)
        out["throughput"] = [throughput(cfg, p) for p in args.lanes]
    if not args.no_cost:
        cfg = FabricConfig.load(args.cost_fabric)
        costs = {p: core_cost(cfg, p) for p in sorted(set(args.lanes) | {1})}
        out["cost_fabric"] = args.cost_fabric
        out["core_cost"] = {str(p): c for p, c in costs.items()}
        out["cost_per_lane"] = {str(p): {k: round((costs[p][k] - costs[1][k]) / (p - 1), 1) for k in COST_CELLS}
                                for p in costs if p > 1}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
