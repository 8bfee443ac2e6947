"""Throughput of the gateware in simulated clock cycles (Verilator): prints one JSON object.

    python benchmarks/bench_fabric.py [--fabric CONFIG]

The same figures as `synfab bench [--fabric CONFIG] --json` (see synfab.bench for what each one
measures): `micro` (micro-benchmarks of the fabric config: conv_sops_per_clock_per_core of one busy
core in an input phase, input_events_per_clock of a one-synapse relay, frame latencies),
`whole_frame` (real workloads on the fabric, or on their own fabrics without --fabric, every core
and every cycle: synaptic ops per clock of the fabric and per core, cycles and evaluation cycles per
frame, idle fraction per core), `simulation_speed`, and for a board's fabric `at_fmax` (frames/s,
latency, synaptic ops/s at Fmax; the host-link budget measured on the LiteX sim SoC).
"""
from __future__ import annotations

import argparse
import json

from synfab import FabricConfig
from synfab.analysis.bench import fabric_bench


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny, ulx3s-85f, ...)")
    args = ap.parse_args(argv)
    out = fabric_bench(FabricConfig.load(args.fabric) if args.fabric else None)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
