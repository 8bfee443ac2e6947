"""Throughput of the golden model on a conv network: prints one JSON object.

A 3x32x32 input through three 3x3 convolutions (32, 32, 64 channels) and a dense layer on a
8x4 mesh of default cores.  Frame 0 changes every input value (dense activity); later frames
change a fraction of them (incremental, sigma-delta).  sops_per_s = synaptic operations
((neuron, weight) pairs) per wall-clock second of Model.run_frame.

    python benchmarks/bench_model.py [--frames N] [--change F] [--threshold T]
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from synfab import FabricConfig
from synfab.model import reference
from synfab.compiler import compile_network
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import Kind
from synfab.compiler.mapper import map_network
from synfab.model import Model, input_events
from synfab.randnet import random_input


def bench_network(rng: np.random.Generator) -> QNetwork:
    layers, src, c, hw = [], "in", 3, 32
    for name, co, stride in (("conv1", 32, 1), ("conv2", 32, 1), ("conv3", 64, 2)):
        wt = rng.integers(-8, 9, size=(co, c, 3, 3)).astype(np.int8)
        hw = (hw + 2 - 3) // stride + 1
        layers.append(QLayer(name, (co, hw, hw), [QConnection(src, Kind.CONV, k=3, stride=stride, pad=1)],
                             np.zeros(co, np.int64), 1, 0, 0, 255, wt, "conv"))
        src, c = name, co
    wt = rng.integers(-8, 9, size=(10, c * hw * hw)).astype(np.int8)
    layers.append(QLayer("fc", (10, 1, 1), [QConnection(src, Kind.DENSE)], np.zeros(10, np.int64), 1, 0, -128, 127,
                         wt, "dense"))
    qnet = QNetwork("bench", "in", (3, 32, 32), layers, "fc")
    # Shifts from a sample frame: the 99th percentile of |acc| maps to the top of the range.
    x = rng.integers(0, 256, size=(3, 32, 32))
    for layer in layers:
        acc = reference.run_acc(qnet, x)[layer.name]
        layer.shift = max(0, math.ceil(math.log2(max(1.0, np.percentile(np.abs(acc), 99) / layer.hi))))
    return qnet


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--change", type=float, default=0.2, help="fraction of input values changing per frame")
    ap.add_argument("--threshold", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    cfg = FabricConfig(mesh_x=8, mesh_y=4, name="bench")
    qnet = bench_network(rng)
    t0 = time.perf_counter()
    placement = map_network(qnet, cfg)
    tables = compile_network(qnet, cfg, placement)
    compile_s = time.perf_counter() - t0
    model = Model(tables, threshold=a.threshold)
    prev, rows = None, []
    for f in range(a.frames):
        x = random_input(qnet, rng, prev, change=1.0 if f == 0 else a.change)
        ev = input_events(prev, x)
        prev = x
        t, c = time.perf_counter(), time.process_time()
        res = model.run_frame(ev)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        rows.append(dict(frame=f, events_in=len(ev), synops=res.synops, spikes=int(res.layer_spikes.sum()),
                         packets=int(res.counters["packets_out"].sum()), seconds=round(dt, 4),
                         cpu_seconds=round(dc, 4), sops_per_s=round(res.synops / dt)))
    synops = sum(r["synops"] for r in rows)
    seconds, cpu = sum(r["seconds"] for r in rows), sum(r["cpu_seconds"] for r in rows)
    # Wall-clock rate, and the rate per CPU second (less sensitive to other jobs on a shared machine).
    out = dict(network="3x32x32 conv32-conv32-conv64/s2-fc10", fabric="8x4 default cores",
               parts=len(placement.parts), compile_s=round(compile_s, 3), threshold=a.threshold,
               frames=rows, synops=synops, seconds=round(seconds, 4), sops_per_s=round(synops / seconds),
               sops_per_cpu_s=round(synops / cpu), first_frame_sops_per_s=rows[0]["sops_per_s"])
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
