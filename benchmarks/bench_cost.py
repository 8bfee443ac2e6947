"""Implementation cost of the fabric on ECP5 (yosys synth_ecp5 per block, nextpnr Fmax); prints JSON.

    python benchmarks/bench_cost.py [--fabric tiny small] [--no-fmax]

Per fabric config: resources of every block, the PEG+ESU share of a core (logic and table memory,
against the paper's +2%), the whole fabric's Fmax, and what the demo network would need with
explicit per-synapse storage; the same storage comparison for the zoo networks (ResNet50,
MobileNet, Darknet53: shapes only) in ECP5 block RAMs and LFE5U-85F devices.  Results are cached by content (~/.cache/synfab/cost): a rerun
after no gateware change takes seconds; a first run of `small` with Fmax takes several minutes.
"""
from __future__ import annotations

import argparse
import json
import time

from synfab.analysis import zoo
from synfab.config import FabricConfig
from synfab_gateware import cost


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fabric", nargs="+", default=["small"], help="presets or config JSON files")
    ap.add_argument("--no-fmax", action="store_true", help="skip nextpnr place and route")
    args = ap.parse_args(argv)
    from synfab.demo import demo_qnetwork
    network = demo_qnetwork()
    out = {"fabrics": {}}
    for name in args.fabric:
        cfg = FabricConfig.load(name)
        start = time.perf_counter()
        rep = cost.cost_report(cfg, fmax=not args.no_fmax, network=network)
        rep["seconds"] = round(time.perf_counter() - start, 1)
        out["fabrics"][cfg.name] = rep
    out["zoo_explicit_storage"] = {name: cost.explicit_storage(zoo.get(name)) for name in zoo.NAMES}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
