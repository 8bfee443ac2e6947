"""Events per simulated second through the Ethernet SoC's UDP stream port, end to end.

The LiteX sim of the Ethernet SoC (synfab_gateware.soc.sim, ethernet=True: LiteEth on its PHY
model, the frames on host UDP sockets) runs a compiled network whose fabric work per event is
small (a 1x1 convolution, two synapses per input event), so the link is what limits: frames are
streamed back to back over UDP (LitexDevice.run_frames_pipelined, credits keep the bridge's input
FIFO from overflowing), and every frame's output events are checked bit for bit against the golden
model, and the run's counters against the model's totals.

Simulated time is the fabric's own cycle counter (read over Etherbone before the first packet and
after the last result) at the SoC's sys clock (50 MHz, the boards' clock).  The PHY model moves one
byte per clock with no preamble, FCS or inter-frame gap; the line-rate figures add those.

    python benchmarks/bench_ethernet.py [--frames N] [--events-per-frame E] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from synfab import api
from synfab.config import PRESETS
from synfab.frontend.ir import Kind, QConnection, QLayer, QNetwork
from synfab.analysis.bench import ethernet_line_rate
from synfab.boards import ETHERNET_BOARDS
from synfab.runtime.model import ModelDevice
from synfab.runtime.stream import input_deltas

CFG = PRESETS["small"]
SHAPE = (2, 16, 16)


def network(seed: int = 1) -> QNetwork:
    """2x16x16 input -> 1x1 conv to 2 channels (int8 weights), relu-clamped: 2 synapses per event."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(-20, 21, size=(2, SHAPE[0], 1, 1)).astype(np.int8)
    layer = QLayer("conv0", (2, SHAPE[1], SHAPE[2]), [QConnection("input", Kind.CONV, k=1)],
                   np.zeros(2, np.int64), 1, 2, -128, 127, weight)
    return QNetwork("eth_bench", "input", SHAPE, [layer], "conv0")


def frames(n: int, events: int, seed: int = 2) -> list[np.ndarray]:
    """n input frames, each changing `events` distinct input values from the one before."""
    rng = np.random.default_rng(seed)
    cur = np.zeros(SHAPE, np.int64)
    out = []
    for _ in range(n):
        nxt = cur.copy().reshape(-1)
        idx = rng.choice(nxt.size, size=events, replace=False)
        nxt[idx] = (nxt[idx] + rng.integers(1, 200, size=events)) % 256
        cur = nxt.reshape(SHAPE)
        out.append(cur)
    return out


def run(n_frames: int = 200, events: int = 256, quiet: bool = False) -> dict:
    from synfab_gateware.soc.sim import LitexSim
    from synfab.runtime.litex import LitexDevice

    qnet = network()
    tables = api.compile_qnetwork(qnet, CFG)
    inputs = frames(n_frames, events)
    golden = ModelDevice(CFG)
    golden.load(tables)
    prev = np.zeros(SHAPE, np.int64)
    ev_list, want = [], []
    for cur in inputs:
        ev = input_deltas(prev, cur)
        prev = cur
        ev_list.append(ev)
        want.append(golden.run_frame(ev))
    n_events = int(sum(len(e["x"]) for e in ev_list))
    with LitexSim(CFG, ethernet=True, quiet=quiet) as sim, LitexDevice(CFG, port=sim.port) as dev:
        dev.load(tables)
        dev.write_reg("ctrl", 1)                 # clear the counters: the run's totals follow
        t0 = time.monotonic()
        outs, cost = dev.run_frames_pipelined(ev_list)
        wall = time.monotonic() - t0
        counters = dev.read_counters()
        port_counters = dev.udp.counters()
        clk = sim.clk_freq
        # The fabric's own time per frame (the bridge holds a frame until it is whole: first beat
        # released to the output end of frame), a frame at a time, checked too.
        own, own_events, own_ok = [], 0, True
        extra = frames(n_frames + 5, events)[n_frames:]
        for cur in extra:
            ev = input_deltas(prev, cur)
            prev = cur
            got, w = dev.run_frame(ev), golden.run_frame(ev)
            own_ok &= bool(np.array_equal(got.sorted_events(), w.sorted_events()))
            own.append(got.cycles)
            own_events += len(ev["x"])
    mismatched = [t for t, (got, w) in enumerate(zip(outs, want))
                  if not np.array_equal(np.sort(got, order=["tag", "c", "y", "x", "d"]), w.sorted_events())]
    totals = {k: int(sum(w.counters[k] for w in want)) for k in ("events_in", "events_out", "frames")}
    out_events = int(sum(len(o) for o in outs))
    sim_s = cost["cycles"] / clk
    line = ethernet_line_rate(n_events / n_frames, out_events / n_frames, ETHERNET_BOARDS["colorlight-i5"])
    rate = n_events / sim_s
    per_event_bytes_sim = cost["to_device"] / n_events
    return {
        "network": "2x16x16 -> 1x1 conv x2 (2 synapses per event)", "fabric": CFG.name,
        "frames": n_frames, "events": n_events, "output_events": out_events,
        "checked_frames": n_frames, "mismatched_frames": mismatched,
        "counters_match_model": all(counters[k] == v for k, v in totals.items()),
        "counters": {k: counters[k] for k in totals}, "model_counters": totals,
        "udp_port": {k: v for k, v in port_counters.items() if k != "id"},
        "sys_clk_mhz": clk / 1e6, "sim_cycles": cost["cycles"],
        "cycles_per_event": round(cost["cycles"] / n_events, 3),
        "events_per_s_simulated": round(rate, 1),
        "udp_payload_bytes_per_event_in": round(per_event_bytes_sim, 3),
        "udp_payload_bytes_per_event_out": round(cost["from_device"] / max(1, out_events), 3),
        "packets_to_device": cost["packets_to_device"], "packets_from_device": cost["packets_from_device"],
        "sim_wall_s": round(wall, 2), "sim_wall_events_per_s": round(n_events / wall, 1),
        "sim_wall_cycles_per_s": round(cost["cycles"] / wall, 1),
        "sim_wire": "the PHY model: one byte per sys clock, 24 idle clocks between frames into the SoC "
                    "(preamble, FCS and gap of a real wire); 50 MHz x 8 bits = 400 Mbit/s",
        "fabric_own_cycles_per_frame": own, "fabric_own_frames_exact": own_ok,
        "fabric_own_cycles_per_event": round(sum(own) / own_events, 3) if None not in own else None,
        "board_at_line_rate": {"boards": sorted(ETHERNET_BOARDS), **line,
                               # the fabric keeps up with the wire if it needs at most this many clocks per event
                               "sys_clocks_per_event_at_50mhz": round(clk / line["input_events_per_s"], 2)},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--events-per-frame", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.frames, args.events_per_frame, quiet=args.json)
    print(json.dumps(res, indent=None if args.json else 2))
    return 0 if not res["mismatched_frames"] and res["counters_match_model"] else 1


if __name__ == "__main__":
    sys.exit(main())
