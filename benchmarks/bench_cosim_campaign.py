"""Co-simulation campaign over random fabrics: prints one JSON object.

    python benchmarks/bench_cosim_campaign.py [--configs 4] [--examples 10] [--seed 1] [--stop-on-mismatch]

Draws `--configs` fabric configurations (every field within its legal range, synfab.randnet
FABRIC_CHOICES; each is built with Verilator once, ~25-40 s cold, cached by content hash) and
runs `--examples` random cases on each (network spanning several cores and tiles, mapping
strategy, threshold, stalls on both streams, input seeds), every frame checked against the golden
model (synfab.cosim).  Prints: configs tried, networks, frames, events, synaptic ops, simulated
cycles, mismatches (each with its case and how to reproduce it), and per fabric the same.
Exit status 1 when any frame mismatched.  CI runs the first configs of seed 1 in
tests/test_cosim_fabrics.py; other seeds explore further.
"""
from __future__ import annotations

import argparse
import json
import sys

from synfab.cosim import campaign


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=4, help="random fabric configurations to build and run")
    ap.add_argument("--examples", type=int, default=10, help="random cases per configuration")
    ap.add_argument("--seed", type=int, default=1, help="campaign seed (fabrics and cases derive from it)")
    ap.add_argument("--stop-on-mismatch", action="store_true", help="stop at the first mismatching case")
    args = ap.parse_args(argv)
    out = campaign(args.configs, args.examples, args.seed, args.stop_on_mismatch)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(1 if main()["mismatches"] else 0)
