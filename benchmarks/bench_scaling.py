"""How a core's logic scales with its memories (issue 8): yosys synth_ecp5 cells per block; prints JSON.

    python benchmarks/bench_scaling.py [--fabric default] [--blocks core esu neuron_unit evaluation_unit peg]

Neurons per core sweep 1024 / 4096 / 16384 at the fabric's weight words, weight words sweep 4096 /
65536 at its neurons.  Per block and size: LUT4, CCU2C, TRELLIS_DPR16X4, TRELLIS_FF, DP16KD,
MULT18X18D and lut4_equiv (LUT4 + 2*CCU2C + 4*DPR16X4); `change` is (largest - smallest) /
smallest of lut4_equiv and TRELLIS_FF over each sweep: with all state in block RAM only address
widths grow, so a core's change stays small (tests/test_scaling.py bounds it at 15%).  Cached by
content (~/.cache/synfab/cost): a first run takes 5-10 minutes on 2 cores, a rerun seconds.
"""
from __future__ import annotations

import argparse
import json
import time

from synfab.config import FabricConfig
from synfab_gateware import cost


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fabric", default="default", help="base fabric: preset or config JSON")
    ap.add_argument("--blocks", nargs="+", default=list(cost.SCALING_BLOCKS), choices=cost.SCALING_BLOCKS)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    out = cost.scaling_report(FabricConfig.load(args.fabric), blocks=args.blocks, quiet=False)
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
