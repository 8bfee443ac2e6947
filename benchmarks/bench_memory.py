"""Memory footprint of the zoo networks under the four schemes; prints one JSON object.

    python benchmarks/bench_memory.py [--neurons-per-core 1024]

Per network: counts, the four schemes (connectivity / weight / total bytes), the ratios to
PEG/ESU and the analysis time.  Per-layer rows are left out (see `synfab report`).
"""
from __future__ import annotations

import argparse
import json
import time

from synfab.analysis import footprint, zoo


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons-per-core", type=int, default=1024)
    args = ap.parse_args(argv)
    out = {"neurons_per_core": args.neurons_per_core, "networks": {}}
    for name in zoo.NAMES:
        start = time.perf_counter()
        result = footprint.analyze(zoo.get(name), neurons_per_core=args.neurons_per_core)
        summary = {k: v for k, v in result.items() if k != "layers"}
        summary["seconds"] = round(time.perf_counter() - start, 2)
        out["networks"][name] = summary
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
