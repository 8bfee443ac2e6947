"""What `--check` compares: everything the golden model knows about a frame, for any backend.

Per frame, in this order (the first difference is the one reported): the output events (as a
multiset: the order across cores is free), the spikes of every layer, every counter the model
keeps (per core: synaptic ops, packets in and out, spikes, drops; global: frames, events in and
out, dropped input events), and the acc and sent state of every neuron in use.  The counter
names come from the model's own output, so a counter the model learns to keep is compared
without touching this file; counters only hardware has (cycles, busy and stall cycles) are not
the model's to judge.  `link_balance` and `mesh_balance` check the fabric's counters against what
the host sent and received and against the mesh's packet conservation (the soaks and the litex
backend's verify mode use them).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import SynfabError
from .device import FrameOutput

# Field order of an output event in messages.
EVENT_FIELDS = ("tag", "x", "y", "c", "d")
# Neuron state compared after every frame, in this order (then the other words a device
# reports: u, v, ref, bias of the neuron models that keep them).
STATE_FIELDS = ("sent", "acc")


class MismatchError(SynfabError):
    """The device and the golden model disagree."""


def _event_text(event: tuple) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in zip(EVENT_FIELDS, event)) + ")"


def compare_events(got: FrameOutput, want: FrameOutput) -> str | None:
    """The first output event one side has more often than the other."""
    def multiset(events):
        return Counter(zip(*(events[k].tolist() for k in EVENT_FIELDS)))
    mine, model = multiset(got.events), multiset(want.events)
    if mine == model:
        return None
    extra, missing = sorted((mine - model).elements()), sorted((model - mine).elements())
    detail = (f"the device sent {_event_text(extra[0])} that the model did not" if extra else
              f"the device did not send the model's {_event_text(missing[0])}")
    return f"output events differ ({len(got.events)} vs model {len(want.events)}): {detail}"


def compare_layer_spikes(tables, got: FrameOutput, want: FrameOutput) -> str | None:
    mine, model = np.asarray(got.layer_spikes), np.asarray(want.layer_spikes)
    if mine.shape != model.shape:
        return f"the device reports spikes of {mine.size} layers, the model of {model.size}"
    bad = np.flatnonzero(mine != model)
    if bad.size == 0:
        return None
    k = int(bad[0])
    return f"layer {tables.metadata['layers'][k]['name']}: {int(mine[k])} spikes vs model {int(model[k])}"


def _compare_counter_set(where: str, mine: dict, model: dict) -> str | None:
    for name, value in model.items():
        if name not in mine:
            return f"{where}counter {name}: the device does not report it"
        if int(mine[name]) != int(value):
            return f"{where}counter {name}: {int(mine[name])} vs model {int(value)}"
    return None


def compare_counters(got: FrameOutput, want: FrameOutput) -> str | None:
    """Every counter the model keeps: per core first, then the global ones."""
    mine_cores, model_cores = got.counters.get("cores", []), want.counters.get("cores", [])
    if len(mine_cores) != len(model_cores):
        return f"the device reports counters of {len(mine_cores)} cores, the model of {len(model_cores)}"
    for core, (mine, model) in enumerate(zip(mine_cores, model_cores)):
        problem = _compare_counter_set(f"core {core} ", mine, model)
        if problem:
            return problem
    model_global = {k: v for k, v in want.counters.items() if k != "cores"}
    return _compare_counter_set("", got.counters, model_global)


def compare_frame(tables, got: FrameOutput, want: FrameOutput) -> str | None:
    """The first difference of a frame's outputs, spikes and counters, or None."""
    return (compare_events(got, want) or compare_layer_spikes(tables, got, want)
            or compare_counters(got, want))


def outside_input(tables, cols: dict) -> int:
    """How many of the input events `cols` lie outside the tables' input (the fabric drops and
    counts them: input_dropped)."""
    in_w, in_h, in_c = (int(tables.regs[k]) for k in ("in_w", "in_h", "in_c"))
    return int(((cols["x"] >= in_w) | (cols["y"] >= in_h) | (cols["c"] >= in_c)).sum())


def link_balance(tables, cols: dict, out) -> str | None:
    """What the fabric's own counters say about the frame against what the host sent and received:
    one frame, every input beat counted, the out-of-range ones dropped, every output beat received.
    None when all agree, else the first disagreement."""
    c = out.counters
    n = len(cols["x"])
    outside = outside_input(tables, cols)
    for name, got, want in (("frames", c["frames"], 1), ("events_in", c["events_in"], n),
                            ("input_dropped", c["input_dropped"], outside),
                            ("events_out", c["events_out"], len(out.events))):
        if int(got) != want:
            return f"{name} {int(got)}, expected {want}"
    return None


def mesh_balance(got: FrameOutput, want: FrameOutput) -> str | None:
    """No packet lost or made up in the mesh and none dropped by a core: every packet that entered
    (the input port's, which the model counts, and every core's PEG's) arrived at a core or left
    as an output event (DESIGN.md: sum(packets_in) = input packets + sum(packets_out) - events_out).
    None when it holds, else what does not."""
    cores = got.counters["cores"]
    dropped = sum(int(c["dropped"]) for c in cores)
    if dropped:
        return f"cores dropped {dropped} packets"
    if want.input_packets is None:
        return None
    arrived = sum(int(c["packets_in"]) for c in cores)
    sent = want.input_packets + sum(int(c["packets_out"]) for c in cores) - int(got.counters["events_out"])
    if arrived != sent:
        return f"{arrived} packets arrived at cores, {sent} were sent to them"
    return None


def locate(tables, core: int, addr: int) -> str:
    """'layer NAME (x, y, c)' of a neuron address on a core, from its population descriptors."""
    ct = tables.cores[core]
    pop = ct.pop
    for p in range(ct.pop_count):
        base, tw, th, cc = (int(pop[k][p]) for k in ("nbase", "tw", "th", "cc"))
        if base <= addr < base + tw * th * cc:
            n = addr - base
            ci, pix = n % cc, n // cc
            x, y = int(pop["x0"][p]) + pix % tw, int(pop["y0"][p]) + pix // tw
            name = tables.metadata["layers"][int(pop["layer"][p])]["name"]
            return f"layer {name} (x={x}, y={y}, c={int(pop['c0'][p]) + ci})"
    return "an unused neuron"


def compare_states(tables, got: list[dict], want: list[dict]) -> str | None:
    """The first neuron (core, address, layer position) whose sent or acc (or another word the
    device reports) differs, or None."""
    if len(got) != len(want):
        return f"the device reports the state of {len(got)} cores, the model of {len(want)}"
    for core, (g, w) in enumerate(zip(got, want)):
        for k in STATE_FIELDS + tuple(k for k in g if k not in STATE_FIELDS and k in w):
            mine, model = np.asarray(g.get(k, ())), np.asarray(w[k])
            if len(mine) != len(model):
                return f"core {core}: the device reports {k} of {len(mine)} neurons, the model of {len(model)}"
            bad = np.flatnonzero(mine != model)
            if bad.size:
                a = int(bad[0])
                return (f"core {core}, neuron {a} = {locate(tables, core, a)}: {k} {int(mine[a])} "
                        f"!= model {int(model[a])}")
    return None


def check_frame(tables, t: int, device, got: FrameOutput, golden, want: FrameOutput) -> None:
    """Raise MismatchError naming frame t and the first difference between device and golden model
    (outputs, spikes, counters, then neuron states read from both after the frame)."""
    problem = compare_frame(tables, got, want)
    where = compare_states(tables, device.read_state(), golden.read_state())
    if problem:
        raise MismatchError(f"frame {t}: {problem}" + (f"; first differing state: {where}" if where else ""))
    if where:
        raise MismatchError(f"frame {t}: neuron states differ: {where}")
