"""What time steps cost on the gateware: cycles of an empty frame against the number of live
neurons (if, lif, cuba_lif with a bias: their state changes every step without input), on the
Verilated fabric of the `small` preset carrying every neuron model. Prints one JSON object.

Per model and live count: the cycles of each empty frame (after the first, which also evaluates
the neurons the load marked), the spikes, and whether the fabric's outputs equal the golden
model's; then the cycles per live neuron (a least-squares slope over the live counts) and the
cost of an empty frame with no live neuron. DESIGN.md ("Neuron models in the gateware"): a live
neuron costs two neuron-unit slots (its read, its write-back), a population its dirty words.

    python benchmarks/bench_live_neurons.py [--neurons 1024] [--frames 4] [--live 0 16 64 256 1024]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from synfab.analysis.live import LIVE_NEURONS, frame_costs, live_network
from synfab.config import PRESETS

FABRIC = PRESETS["small"].with_(neuron_models="all", name="small-all")


def measure(neurons: int, frames: int, lives, models=tuple(LIVE_NEURONS)) -> dict:
    from synfab.runtime.sim import SimDevice
    out = {"fabric": FABRIC.name, "neurons": neurons, "frames": frames, "models": {}}
    with SimDevice(FABRIC) as dev:
        for model in models:
            rows = []
            for live in lives:
                r = frame_costs(dev, live_network(model, neurons, live), FABRIC, frames)
                steady = r["cycles"][1:]
                rows.append({"live": live, "cycles_per_frame": float(np.mean(steady)), "cycles": r["cycles"],
                             "spikes": r["spikes"], "evaluated": r["evaluated"], "match": r["match"]})
            x = np.array([row["live"] for row in rows], float)
            y = np.array([row["cycles_per_frame"] for row in rows])
            slope, icept = np.polyfit(x, y, 1) if len(rows) > 1 else (float("nan"), y[0])
            out["models"][model] = {"rows": rows, "cycles_per_live_neuron": round(float(slope), 3),
                                    "empty_frame_cycles": round(float(icept), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--live", type=int, nargs="+", default=[0, 16, 64, 256, 1024])
    args = ap.parse_args()
    print(json.dumps(measure(args.neurons, args.frames, args.live), indent=1))


if __name__ == "__main__":
    main()
