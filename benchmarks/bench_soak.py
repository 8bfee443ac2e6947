"""Soak: long event streams through the simulated fabric, every frame checked; prints one JSON object.

    python benchmarks/bench_soak.py [--events 1000000] [--seed 1] [--stalls "0.3,0.5;0,0;0.5,0.9;0.1,0.97;0.8,0.2"]
                                    [--events-per-frame 2000] [--link-events 20000] [--fault-rate 2e-5]
                                    [--fault-kinds drop,dup,flip] [--fault-directions to_device,from_device]

`verilator` (synfab.analysis.soak.fabric_soak): `--events` input events through the Verilator model
of the default 2x2 fabric -- every event of the sample recordings (DVXplorer, DAVIS346, Prophesee
EVT2 and EVT3, pinned by sha256 and cached: events.samples), random streams and random networks --
with random stalls on both AXI streams (`--stalls`: p_in,p_out per segment, in turn) and a network
whose first layer spans two cores that both feed a third.  Every frame is checked against the golden
model (outputs, spikes, counters, neuron states) and its counters must balance; prints events by
source, frames, mismatches, the counter totals, synaptic ops, cycles, stall cycles, wall time.

`litex` (fabric `small`, link_soak): `--link-events` events through the LiteX sim SoC over its
UARTBone link with seeded faults on the link's bytes (`--fault-rate` per byte and direction,
shared by the kinds), the litex backend verifying every operation and runtime.guard retrying; prints
the faults injected by class, and each fault's fate: detected by the link's own checks, detected only
by the golden model's check, or without effect (the attempt passed every check); attempts failed,
retried, and frames reported as errors.  0 skips it.

Exit status 1 when a frame mismatched, a counter did not balance, or a frame was reported failed.
"""
from __future__ import annotations

import argparse
import json
import sys

from synfab.analysis import soak


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="input events through the Verilator fabric (0: skip)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random streams, networks, stalls and faults")
    ap.add_argument("--stalls", default=";".join(f"{a},{b}" for a, b in soak.DEFAULT_STALLS),
                    help="P_IN,P_OUT stall probabilities per segment, in turn, ';'-separated")
    ap.add_argument("--events-per-frame", type=int, default=2000, help="about this many events per frame")
    ap.add_argument("--recordings", default=",".join(soak.RECORDINGS), help="sample recordings to replay")
    ap.add_argument("--link-events", type=int, default=20_000, help="input events through the LiteX sim SoC (0: skip)")
    ap.add_argument("--link-events-per-frame", type=int, default=400)
    ap.add_argument("--fault-rate", type=float, default=soak.LINK_FAULT_RATE, help="link faults per byte and direction")
    ap.add_argument("--fault-kinds", default="drop,dup,flip")
    ap.add_argument("--fault-directions", default="to_device,from_device")
    args = ap.parse_args(argv)
    recordings = tuple(r for r in args.recordings.split(",") if r)
    out = {}
    if args.events:
        out["verilator"] = soak.fabric_soak(args.events, args.seed, soak.parse_stalls(args.stalls),
                                            recordings=recordings, events_per_frame=args.events_per_frame)
    if args.link_events:
        out["litex"] = soak.link_soak(args.link_events, args.seed, args.fault_rate, args.fault_kinds.split(","),
                                      args.fault_directions.split(","), recordings=recordings,
                                      events_per_frame=args.link_events_per_frame)
    print(json.dumps(out, indent=1))
    return out


def failed(out: dict) -> bool:
    return any(r["mismatches"] or not r["counters_balanced"] or r.get("reported") for r in out.values())


if __name__ == "__main__":
    sys.exit(1 if failed(main()) else 0)
