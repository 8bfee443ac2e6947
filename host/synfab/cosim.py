"""Co-simulation of random cases (randnet.CosimCase) on a simulated fabric against the golden model.

`run_case(device, case)` maps the case's network with its strategy, loads it on a SimDevice (a
hardware reset first, then the tables over AXI-Lite with read-back), sets the threshold and the
random stalls of both streams, and streams its frames: the input changes in random order plus what
the fabric must cope with (events outside the input, zero-valued events, changes split into two
events).  Every frame is compared with `runtime.check` (outputs, spikes per layer, every counter
the model keeps, neuron states) and with what only hardware counts (cycles).  The first difference
raises `MismatchError`.  Used by tests/test_cosim_fabrics.py and benchmarks/bench_cosim_campaign.py.
"""
from __future__ import annotations

import numpy as np

from .compiler import compile_network
from .config import FabricConfig
from .compiler.mapper import map_network
from .model import EVENT_DTYPE, frame_events as mode_events
from .randnet import CosimCase, random_input
from .runtime.check import MismatchError, check_frame
from .runtime.model import ModelDevice

# Extra events per frame besides the input changes (each count drawn from 0 .. this - 1).
MAX_EXTRA_EVENTS = 4
# How far outside the input the out-of-range events reach (within the stream fields' widths).
OUTSIDE_XY, OUTSIDE_C = 1 << 12, 1 << 16
OUTSIDE_D = 100
SPLIT_FRACTION = 0.2


def compile_case(case: CosimCase, cfg: FabricConfig):
    """The case's tables; MappingError when its strategy cannot place the network on cfg."""
    return compile_network(case.qnet, cfg, map_network(case.qnet, cfg, case.strategy))


def frame_events(rng: np.random.Generator, tables, prev, cur) -> np.ndarray:
    """The input changes prev -> cur in random order (or the frame's values as they are, as the
    tables' input mode says), plus what the fabric must cope with: events outside the input
    (dropped and counted), zero-valued events, and changes split into two events at the same
    position."""
    ev = mode_events(prev, cur, tables.input_mode)
    in_w, in_h, in_c = (int(tables.regs[k]) for k in ("in_w", "in_h", "in_c"))
    extra = np.zeros(rng.integers(0, MAX_EXTRA_EVENTS), dtype=EVENT_DTYPE)
    extra["x"] = rng.integers(0, in_w, len(extra))
    extra["y"] = rng.integers(0, in_h, len(extra))
    extra["c"] = rng.integers(0, in_c, len(extra))
    outside = np.zeros(rng.integers(0, MAX_EXTRA_EVENTS), dtype=EVENT_DTYPE)
    axis = rng.integers(0, 3, len(outside))
    outside["x"] = np.where(axis == 0, rng.integers(in_w, OUTSIDE_XY, len(outside)), 0)
    outside["y"] = np.where(axis == 1, rng.integers(in_h, OUTSIDE_XY, len(outside)), 0)
    outside["c"] = np.where(axis == 2, rng.integers(in_c, OUTSIDE_C, len(outside)), 0)
    outside["d"] = rng.integers(-OUTSIDE_D, OUTSIDE_D, len(outside))
    split = rng.random(len(ev)) < SPLIT_FRACTION
    first, second = ev[split].copy(), ev[split].copy()
    first["d"] //= 2
    second["d"] -= first["d"]
    ev = np.concatenate([ev[~split], first, second])
    allev = np.concatenate([ev, extra, outside])
    return allev[rng.permutation(len(allev))]


def check_hardware_counters(t: int, got, lanes: int = 1) -> None:
    """What only the hardware counts: per core, busy and stall cycles within the frame's cycles
    and at most one synaptic operation per lane per busy cycle (the ESU's rate)."""
    total = got.counters["cycles"]
    problems = []
    if got.cycles is not None and got.cycles > total:
        problems.append(f"the frame took {got.cycles} cycles but the cycle counter says {total}")
    for core, c in enumerate(got.counters["cores"]):
        if not (c["busy_cycles"] <= total and c["stall_cycles"] <= total):
            problems.append(f"core {core}: busy {c['busy_cycles']} / stall {c['stall_cycles']} cycles exceed the "
                            f"frame's {total}")
        if c["synops"] > c["busy_cycles"] * lanes:
            problems.append(f"core {core}: {c['synops']} synaptic ops in {c['busy_cycles']} busy cycles")
    if problems:
        raise MismatchError(f"frame {t}: " + "; ".join(problems))


def run_case(device, case: CosimCase, tables=None) -> dict:
    """Run the case on a SimDevice of the case's fabric; raise MismatchError at the first
    difference from the golden model; return what ran (frames, events, synaptic ops, cycles)."""
    cfg = device.cfg
    tables = tables or compile_case(case, cfg)
    device.sim.reset()
    device.sim.set_gaps(case.p_in, case.p_out, case.gap_seed)
    device.load(tables)
    device.set_threshold(case.threshold)
    golden = ModelDevice(cfg)
    golden.load(tables)
    golden.set_threshold(case.threshold)
    rng = np.random.default_rng(case.input_seed)
    ran = {"frames": 0, "events": 0, "output_events": 0, "synaptic_ops": 0, "cycles": 0}
    prev = None
    for t in range(case.frames):
        cur = random_input(case.qnet, rng, prev, case.change)
        events = frame_events(rng, tables, prev, cur)
        prev = cur
        got = device.run_frame(events)
        check_frame(tables, t, device, got, golden, golden.run_frame(events))
        check_hardware_counters(t, got, cfg.lanes)
        ran["frames"] += 1
        ran["events"] += len(events)
        ran["output_events"] += len(got.events)
        ran["synaptic_ops"] += sum(c["synops"] for c in got.counters["cores"])
        ran["cycles"] += got.cycles
    return ran


# -- campaigns -----------------------------------------------------------------------------------
def fabric_rng(seed: int, config_index: int) -> np.random.Generator:
    """The generator of a campaign's config_index-th fabric: independent of every other draw."""
    return np.random.default_rng([seed, config_index])


def case_rng(seed: int, config_index: int, example: int) -> np.random.Generator:
    """The generator of one example on that fabric (network, strategy, threshold, stalls, seeds)."""
    return np.random.default_rng([seed, config_index, example])


def campaign_fabric(seed: int, config_index: int) -> FabricConfig:
    from .randnet import random_fabric_config
    return random_fabric_config(fabric_rng(seed, config_index))


def run_fabric(seed: int, config_index: int, examples: int, stop_on_mismatch: bool = False) -> dict:
    """`examples` random cases on the campaign's config_index-th fabric (built once)."""
    import time

    from .compiler.mapper import MappingError
    from .randnet import random_cosim_case
    from .runtime.sim import SimDevice
    cfg = campaign_fabric(seed, config_index)
    start = time.monotonic()
    device = SimDevice(cfg)
    row = {"config_index": config_index, "config": cfg.to_dict(), "open_seconds": round(time.monotonic() - start, 1),
           "examples": 0, "unmappable": 0, "frames": 0, "events": 0, "output_events": 0, "synaptic_ops": 0,
           "cycles": 0, "mismatches": []}
    try:
        for example in range(examples):
            case = random_cosim_case(case_rng(seed, config_index, example), cfg)
            try:
                tables = compile_case(case, cfg)
            except MappingError:
                row["unmappable"] += 1        # a forced strategy that cannot place this network
                continue
            row["examples"] += 1
            try:
                ran = run_case(device, case, tables)
            except MismatchError as e:
                row["mismatches"].append({"example": example, "case": case.describe(), "error": str(e),
                                          "reproduce": f"seed={seed} config_index={config_index} example={example}"})
                if stop_on_mismatch:
                    break
                continue
            for k, v in ran.items():
                row[k] += v
    finally:
        device.close()
    return row


def campaign(configs: int, examples: int, seed: int, stop_on_mismatch: bool = False) -> dict:
    """Random fabrics x random cases, every frame checked; a JSON-able summary."""
    rows = []
    for i in range(configs):
        rows.append(run_fabric(seed, i, examples, stop_on_mismatch))
        if stop_on_mismatch and rows[-1]["mismatches"]:
            break
    totals = {k: sum(r[k] for r in rows) for k in ("examples", "unmappable", "frames", "events", "synaptic_ops",
                                                      "cycles")}
    return {"seed": seed, "configs_tried": len(rows), "networks": totals.pop("examples"), **totals,
            "mismatches": sum(len(r["mismatches"]) for r in rows), "fabrics": rows}
