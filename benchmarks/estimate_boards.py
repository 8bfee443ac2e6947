"""On paper: how many boards of a preset a zoo network needs, and the frames/s they would give;
prints one JSON object (issue 13's ResNet50 estimate; README "Several boards").

    python benchmarks/estimate_boards.py [--network resnet50] [--board ulx3s]

Every figure comes from the counters the rest of synfab uses, on one analysis fabric made of the
board preset's cores (same neurons, weight words and tables per core), as many as it takes:

- cores: the mapper's `memory` placement (the fewest stored weight words, mapper.map_network with
  for_analysis); boards = cores / the preset's cores, in placement order (a layer's parts on
  neighbouring cores, so on as few boards as they fill);
- work: compiler/work.py's static estimate (every neuron's activation changes once a frame: an upper
  bound for a real input stream) and its frame prediction, phase by phase (a phase is one layer's
  evaluation and the synaptic work it causes; the cores of that layer work in parallel);
- clock: the preset's measured Fmax (bitstreams/manifest.json), as `synfab bench` uses;
- links: the events each layer sends to a layer held on other boards, at the line rate of the
  Ethernet SoC's UDP stream packets (bench.ethernet_line_rate, 1 Gbit/s) on one link per board.

Two frame rates: one frame in flight (the phases one after another: what the fabric does today) and
frames pipelined over the boards (each board busy with its own layers' phase of a different frame:
bounded by the slowest phase), which the runtime does not do yet.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import numpy as np

from synfab.analysis import bench, zoo
from synfab.boards import BOARDS, ETHERNET_BOARDS
from synfab.compiler import work
from synfab.compiler.mapper import map_network
from synfab.config import PRESETS
from synfab.frontend.quant import lower

ETHERNET_BIT_RATE = max(ETHERNET_BOARDS.values())


def _analysis_fabric(qnet, cfg):
    """The preset's core, in a square mesh large enough for the network's neurons (x 1.25 for
    the parts' packing)."""
    cores = math.ceil(1.25 * sum(int(np.prod(l.shape)) for l in qnet.layers) / cfg.neurons_per_core)
    side = math.isqrt(cores) + 1
    return cfg.with_(mesh_x=side, mesh_y=side, name=f"{cfg.name}-analysis")


def _events_to_other_boards(qnet, placement, board_of, events) -> float:
    """Events a frame sends from a layer to a consumer layer with parts on boards the source has
    none on: each such event leaves its board at least once."""
    boards = defaultdict(set)
    for p in placement.parts:
        boards[p.layer].add(board_of[p.core])
    out = 0.0
    for layer in qnet.layers:
        for conn in layer.inputs:
            if conn.src != qnet.input_name and boards[layer.name] - boards[conn.src]:
                out += float(np.sum(events[conn.src]))
    return out


def estimate(network: str = "resnet50", board: str = "ulx3s") -> dict:
    spec = BOARDS[board]
    preset = PRESETS[spec.preset]
    qnet = lower(zoo.get(network))
    placement = map_network(qnet, _analysis_fabric(qnet, preset), for_analysis=True, objective="memory")
    used = sorted({p.core for p in placement.parts})
    board_of = {core: i // preset.n_cores for i, core in enumerate(used)}
    n_boards = max(board_of.values()) + 1
    static = work.estimate(qnet)
    frame = work.predict(qnet, placement, static)
    slowest = max(frame["phase_cycles"].items(), key=lambda kv: kv[1])
    clock = bench.board_clock(preset)
    hz = clock["fmax_mhz"] * 1e6
    crossing = _events_to_other_boards(qnet, placement, board_of, work.events_per_frame(qnet))
    link = bench.ethernet_line_rate(crossing / n_boards, 0, ETHERNET_BIT_RATE)
    return {
        "network": network, "board": board, "preset": preset.name, "lanes": preset.lanes,
        "cores_per_board": preset.n_cores, "cores": len(used), "boards": n_boards,
        "neurons": int(sum(int(np.prod(l.shape)) for l in qnet.layers)),
        "stored_weight_words": int(sum(p.weight_words for p in placement.parts)),
        "synaptic_ops_per_frame": frame["synaptic_ops"], "work_from": frame["work_from"],
        "fmax_mhz": clock["fmax_mhz"], "fmax_measured": clock["fmax_measured"],
        "one_frame_in_flight": {"cycles": frame["frame_cycles"], "frames_per_s": round(hz / frame["frame_cycles"], 3)},
        "frames_pipelined_over_boards": {"slowest_phase": slowest[0], "cycles": slowest[1],
                                         "frames_per_s": round(hz / slowest[1], 2)},
        "links": {"events_to_other_boards_per_frame": round(crossing),
                  "per_board_link_frames_per_s": link["frames_per_s"],
                  "link_seconds_per_frame": round(1 / link["frames_per_s"], 6),
                  "what": "one 1 Gbit/s Ethernet link per board, the crossing events spread evenly over them"},
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="resnet50", choices=zoo.NAMES)
    ap.add_argument("--board", default="ulx3s", choices=[b for b in BOARDS if BOARDS[b].family == "ecp5"])
    args = ap.parse_args(argv)
    out = estimate(args.network, args.board)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
