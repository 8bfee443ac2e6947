"""One device over N boards: the slabs of a Partition (compiler/partition.py) joined by event links.

Board k runs its slab; its output stream (the cut layer's events, one frame at a time) goes over
link k and becomes board k+1's input events.  The link is a model (`LinkModel`): a frame's beats --
its events and a trailer beat closing the frame, 64 bits each at the stream word's encoding
(layouts.STREAM_EVENT) -- take `latency` cycles plus one cycle per `events_per_cycle` beats, store
and forward (the next board starts when the trailer has arrived).  So a frame's latency is the sum
of its boards' cycles and its links' added cycles.  The trailer carries the frame number and the
sender's event count: a receiver that counts otherwise (events lost, `LinkModel.drop` simulates it)
raises LinkError, never passes on a short frame.  Every frame the counters balance: events out of
board k (its own events_out counter) == events over link k == events into board k+1 (its events_in).

What this is not (README "Several boards"): the links are host-side, stream to stream; the issue's
router port per link with (board, x, y) core ids and LiteEth/LiteICLink gateware are still to come.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SynfabError
from ..model.golden import changes, frame_events, step_input
from .device import BEAT_BYTES, DeviceError, FrameOutput, events_array


class LinkError(DeviceError):
    """A board-to-board link lost or added events (or frames): the frame's result is not trusted."""


@dataclass(frozen=True)
class LinkModel:
    latency: int = 64                   # cycles from a frame's first beat sent to its arrival
    events_per_cycle: float = 1.0       # beats the link moves per fabric clock
    drop: float = 0.0                   # fault: the fraction of events the link loses (seeded)
    seed: int = 0

    def __post_init__(self):
        if self.latency < 0 or not self.events_per_cycle > 0 or not 0 <= self.drop <= 1:
            raise SynfabError(f"link model: latency >= 0, events_per_cycle > 0 and drop in 0..1, got latency "
                              f"{self.latency}, events_per_cycle {self.events_per_cycle}, drop {self.drop}")


@dataclass
class Hop:
    """One frame over one link."""
    events: int
    beats: int
    bytes: int
    busy_cycles: int                    # cycles the link moves beats
    added_cycles: int                   # latency + busy: what the hop adds to the frame


class Link:
    def __init__(self, index: int, model: LinkModel):
        self.index, self.model = index, model
        self._rng = np.random.default_rng(model.seed + index)

    def carry(self, frame: int, events: dict, sent: int) -> tuple[dict, Hop]:
        """The events board `index + 1` receives of the `sent` board `index` sent in `frame`."""
        n = len(events["x"])
        keep = np.ones(n, dtype=bool)
        if self.model.drop:
            keep = self._rng.random(n) >= self.model.drop
        received = int(keep.sum())
        if received != sent:    # the trailer's count against the beats that arrived
            raise LinkError(f"link {self.index} (board {self.index} -> {self.index + 1}): frame {frame}: "
                            f"{received} of {sent} events arrived; the frame is not passed on")
        beats = n + 1
        busy = int(np.ceil(beats / self.model.events_per_cycle))
        hop = Hop(n, beats, beats * BEAT_BYTES, busy, self.model.latency + busy)
        return {k: np.asarray(v)[keep] for k, v in events.items()}, hop


@dataclass
class ChainFrame:
    boards: list[FrameOutput]           # per board, its frame
    hops: list[Hop]                     # per link
    events: np.ndarray                  # the last board's output events (OUT_DTYPE)
    carried: list[dict] = field(default_factory=list)   # per link: the events board k+1 received
    measured_cycles: int | None = None  # the whole chain's cycles, where one clock runs it (linked.py)

    @property
    def layer_spikes(self) -> np.ndarray:
        """Spikes per layer of the whole network (the boards' layers in order)."""
        return np.concatenate([np.asarray(b.layer_spikes, dtype=np.int64) for b in self.boards])

    @property
    def cycles(self) -> int | None:
        """The chain's measured cycles, else board cycles plus link cycles; None where a board has
        no clock (model backend)."""
        if self.measured_cycles is not None:
            return self.measured_cycles
        if any(b.cycles is None for b in self.boards):
            return None
        return sum(b.cycles for b in self.boards) + sum(h.added_cycles for h in self.hops)


class Boards:
    """What a device over the boards of a Partition offers (`devices`: one Device per board):
    reset, one threshold on every board, a context; subclasses run frames (run_frame)."""
    devices: list

    def reset(self) -> None:
        for d in self.devices:
            d.reset()
        self.frame = 0

    def set_threshold(self, threshold: int) -> None:
        """The same sigma-delta threshold on every board: each layer fires as in the whole network."""
        for d in self.devices:
            d.set_threshold(threshold)
        self.threshold = int(threshold)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MultiDevice(Boards):
    """The boards of a Partition, each a Device of `backend`, loaded with its slab's tables.

    `device_args`: one dict for every board's device, or a list of one dict per board (boards of
    the litex backend: each its own `port`, a LiteX board or LiteX sim SoC per slab)."""
    name = "multi"

    def __init__(self, partition, backend: str = "model", link: LinkModel = LinkModel(), device_args=None):
        from ..api import open_device
        from .device import check_fabric_runs
        self.partition, self.backend = partition, backend
        per_board = board_device_args(device_args, len(partition.slabs))
        if backend != "model":
            for s in partition.slabs:
                check_fabric_runs(s.tables, f"{backend} board {s.index} ({s.board})")
        self.devices = []
        try:
            for s, args in zip(partition.slabs, per_board):
                self.devices.append(open_device(backend, s.cfg, **args))
                self.devices[-1].load(s.tables)
        except BaseException:
            self.close()
            raise
        self.links = [Link(k, link) for k in range(len(self.devices) - 1)]
        self.threshold = 0
        self.frame = 0

    def close(self) -> None:
        for d in self.devices:
            d.close()

    def run_frame(self, events: dict) -> ChainFrame:
        """One frame through every board and link; DeviceError/LinkError where counters do not balance."""
        outs, hops, carried = [], [], []
        for k, (dev, slab) in enumerate(zip(self.devices, self.partition.slabs)):
            fo = dev.run_frame(events)
            _balance(f"board {k} ({slab.board})", "events_in", fo.counters.get("events_in"), len(events["x"]))
            _balance(f"board {k} ({slab.board})", "events_out", fo.counters.get("events_out"), len(fo.events))
            outs.append(fo)
            if k == len(self.links):
                break
            tag = int(slab.tables.metadata["output_tag"])
            mine = fo.events[fo.events["tag"] == tag]
            _balance(f"board {k} ({slab.board})", "output events of its cut layer", len(mine), len(fo.events))
            events, hop = self.links[k].carry(self.frame, events_array(mine["x"], mine["y"], mine["c"], mine["d"]),
                                              int(fo.counters["events_out"]))
            hops.append(hop)
            carried.append(events)
        self.frame += 1
        return ChainFrame(outs, hops, outs[-1].events, carried)


LINK_FAULTS = ("errors", "broken", "credit_errors")


def checked_links(links: list[dict], frame: int) -> list[dict]:
    """The link gateware's counters per link (sent, received, errors, broken, credit_errors), or
    LinkError naming the first link that dropped a frame or saw a bad credit."""
    for k, l in enumerate(links):
        if any(l[n] for n in LINK_FAULTS):
            raise LinkError(f"link {k} (board {k} -> {k + 1}): frame {frame}: {l['errors']} frame(s) dropped"
                            f"{' (broken: later frames dropped too)' if l['broken'] else ''}, "
                            f"{l['credit_errors']} bad credit byte(s); {l['received']} of {l['sent']} beats "
                            f"arrived; the frame is not passed on (clear the links with reset)")
    return links


def balanced_boards(devices, slabs, links: list[dict], events_out, n_in: int, hop) -> tuple[list, list]:
    """After a frame over boards joined by link gateware: per board its FrameOutput (the last
    board's with `events_out`) and per link `hop(link counters)`, once the counters balance (board
    k's events_out + its end-of-frame beat == link k's beats sent == beats received == board k+1's
    events_in + 1; board 0 took `n_in`), else DeviceError."""
    outs, hops = [], []
    for k, (dev, slab) in enumerate(zip(devices, slabs)):
        counters = dev.read_counters()
        who = f"board {k} ({slab.board})"
        _balance(who, "events_in", counters["events_in"], n_in)
        last = k == len(devices) - 1
        outs.append(FrameOutput(events=events_out if last else None, layer_spikes=dev.read_layer_spikes(),
                                counters=counters, cycles=None))
        if last:
            _balance(who, "events_out", counters["events_out"], len(events_out))
            break
        link = links[k]
        _balance(f"link {k}", "beats sent", link["sent"], counters["events_out"] + 1)
        _balance(f"link {k}", "beats received", link["received"], link["sent"])
        hops.append(hop(link))
        n_in = link["sent"] - 1
    return outs, hops


def board_device_args(device_args, n_boards: int) -> list[dict]:
    """One dict of device arguments per board from one shared dict or a list (one per board)."""
    if isinstance(device_args, (list, tuple)):
        if len(device_args) != n_boards:
            raise DeviceError(f"{len(device_args)} sets of device arguments for {n_boards} boards: give one per "
                              f"board (litex: one --ports entry per board, in board order)")
        return [dict(a or {}) for a in device_args]
    return [dict(device_args or {}) for _ in range(n_boards)]


def _balance(who: str, what: str, counted, expected: int) -> None:
    if counted is not None and int(counted) != expected:
        raise DeviceError(f"{who}: {what} counts {int(counted)} but {expected} travelled; the chain lost or "
                          f"added events")


# ---------------------------------------------------------------------------------------
# Streaming frames through the chain
@dataclass
class ChainResult:
    outputs: list = field(default_factory=list)            # output activation (C, H, W) after each frame
    layer_spikes_per_step: list = field(default_factory=list)
    board_cycles: list = field(default_factory=list)       # per frame: per board cycles (None: no clock)
    hops: list = field(default_factory=list)               # per frame: per link Hop
    board_events_in: list = field(default_factory=list)    # per frame: per board events in
    synaptic_ops: list = field(default_factory=list)       # per frame: per board
    frame_cycles: list = field(default_factory=list)       # per frame: the chain's cycles (None: no clock)
    checked: bool = False


def chain_frames(multi: MultiDevice, frames, check: bool = False) -> ChainResult:
    """Run frames (T, C, H, W) of the whole network's input through the chain.  With `check` the
    dense reference of the WHOLE network runs the same frames (model/reference.simulate, at the
    same threshold) and the first frame whose link events, spikes per layer or outputs differ
    raises a one-line SynfabError."""
    qnet = multi.partition.qnet
    frames = np.asarray(frames)
    if frames.ndim != 4 or tuple(frames.shape[1:]) != tuple(qnet.input_shape):
        raise SynfabError(f"frames of shape {frames.shape}; the network input is {tuple(qnet.input_shape)} per frame")
    trace = None
    if check:
        from ..model.reference import simulate
        trace = simulate(qnet, frames.astype(np.int64), multi.partition.slabs[0].cfg.acc_bits, multi.threshold,
                         record_state=False)
    last = multi.partition.slabs[-1].tables.metadata
    out = np.zeros(tuple(last["output_shape"]), dtype=np.int64)
    res = ChainResult(checked=check)
    for t, ev in enumerate(input_events(qnet, frames)):
        cf = multi.run_frame(ev)
        mine = cf.events[cf.events["tag"] == int(last["output_tag"])]
        np.add.at(out, (mine["c"], mine["y"], mine["x"]), mine["d"])
        if trace is not None:
            _check_frame(multi, trace, t, cf, out)
        res.outputs.append(out.copy())
        res.layer_spikes_per_step.append(cf.layer_spikes.tolist())
        res.board_cycles.append([b.cycles for b in cf.boards])
        res.frame_cycles.append(cf.cycles)
        res.hops.append(cf.hops)
        res.board_events_in.append([int(b.counters["events_in"]) for b in cf.boards])
        res.synaptic_ops.append([sum(c["synops"] for c in b.counters.get("cores", [])) for b in cf.boards])
    return res


def input_events(qnet, frames):
    """Per frame (T, C, H, W), the events the network's input port takes (what one device gets)."""
    prev = None
    for frame in frames:
        yield (events_array(*changes(step_input(prev, frame))) if qnet.input_mode == "levels"
               else _as_dict(frame_events(None, frame, qnet.input_mode)))
        prev = frame


def _as_dict(events) -> dict:
    return events_array(events["x"], events["y"], events["c"], events["d"])


def _check_frame(multi: MultiDevice, trace, t: int, cf: ChainFrame, out: np.ndarray) -> None:
    """The chain's frame t against the whole network's dense reference."""
    qnet = multi.partition.qnet
    want = [int(np.count_nonzero(trace.events[l.name][t])) for l in qnet.layers]
    got = cf.layer_spikes.tolist()
    for name, w, g in zip([l.name for l in qnet.layers], want, got):
        if w != g:
            raise SynfabError(f"check: frame {t}: layer {name} sent {g} events on the boards, {w} in the whole "
                              f"network's reference")
    for k, ev in enumerate(cf.carried):
        cut = multi.partition.slabs[k].cut
        dense = np.zeros_like(trace.events[cut][t])
        np.add.at(dense, (ev["c"], ev["y"], ev["x"]), ev["d"])
        if not np.array_equal(dense, trace.events[cut][t]):
            c, y, x = (int(v[0]) for v in np.nonzero(dense != trace.events[cut][t]))
            raise SynfabError(f"check: frame {t}: link {k} carried {int(dense[c, y, x])} for {cut}[{c},{y},{x}], the "
                              f"whole network's reference sends {int(trace.events[cut][t][c, y, x])}")
    check_output(qnet, trace, t, out, "the boards")


def check_output(qnet, trace, t: int, out: np.ndarray, where: str) -> None:
    """The output activation after frame t (the sum of its events so far) against the whole
    network's dense reference `trace`; a one-line SynfabError naming the first differing value."""
    ref = sum(trace.events[qnet.output][:t + 1])
    if not np.array_equal(ref, out):
        c, y, x = (int(v[0]) for v in np.nonzero(ref != out))
        raise SynfabError(f"check: frame {t}: output {qnet.output}[{c},{y},{x}] is {int(out[c, y, x])} on {where}, "
                          f"{int(ref[c, y, x])} in the whole network's reference")


def chain_summary(multi: MultiDevice, res: ChainResult, predicted: dict | None = None) -> dict:
    """Per board, per link and per frame figures of a chain run (JSON-ready).  `predicted`:
    partition.predicted_cycles (boards and one fabric, predicted alike: the slowdown)."""
    part, n = multi.partition, max(1, len(res.outputs))
    measured = all(c is not None for per in res.board_cycles for c in per) and res.board_cycles
    board_cycles = np.array(res.board_cycles, dtype=float) if measured else None
    link_added = np.array([[h.added_cycles for h in hops] for hops in res.hops], dtype=float).reshape(n, -1)
    boards = []
    for k, s in enumerate(part.slabs):
        b = {"board": s.board, "layers": s.layers, "cores": s.cfg.n_cores,
             "events_in_per_frame": _mean([e[k] for e in res.board_events_in]),
             "synaptic_ops_per_frame": _mean([o[k] for o in res.synaptic_ops]),
             "cycles_per_frame": _mean(board_cycles[:, k]) if measured else None}
        if predicted:
            b["predicted_cycles_per_frame"] = predicted["boards"][k]
        boards.append(b)
    # One clock over the whole chain (linked boards in one model): its cycles per frame, measured.
    chain_clock = not measured and bool(res.frame_cycles) and all(c is not None for c in res.frame_cycles)
    if measured:
        frame = board_cycles.sum(axis=1) + link_added.sum(axis=1)
    else:
        frame = np.array(res.frame_cycles, dtype=float) if chain_clock else None
    pred_frame = (sum(predicted["boards"]) + float(link_added.sum(axis=1).mean())) if predicted else None
    span = float(frame.sum()) if frame is not None else (pred_frame * n if pred_frame else None)
    links = []
    for k, link in enumerate(multi.links):
        hops = [h[k] for h in res.hops]
        busy = sum(h.busy_cycles for h in hops)
        links.append({"link": f"{k}->{k + 1}", "cut_layer": part.slabs[k].cut, **_link_spec(multi, link),
                      "events": sum(h.events for h in hops), "events_per_frame": _mean([h.events for h in hops]),
                      "predicted_events_per_frame": round(part.crossing[k], 1),
                      "bytes": sum(h.bytes for h in hops), "bytes_per_frame": _mean([h.bytes for h in hops]),
                      "added_cycles_per_frame": _mean([h.added_cycles for h in hops]),
                      # the share of the chain's frame time this link spends moving beats
                      "utilisation": round(busy / span, 4) if span else None})
    out = {"backend": multi.backend, "frames": len(res.outputs), "boards": boards, "links": links,
           "cycles_from": "measured" if frame is not None else "predicted",
           "frame_cycles": _mean(frame) if frame is not None else None,
           "predicted_frame_cycles": round(pred_frame, 1) if pred_frame is not None else None,
           "checked_against_whole_network": res.checked}
    if measured and n > 1:
        out["overlapped_cycles_per_frame"] = round(overlapped_cycles(board_cycles, res.hops) / n, 1)
    if predicted:
        # Frames overlapped (board k on frame t+1 while board k+1 runs frame t): a frame leaves
        # every so many cycles as the slowest board or link needs.
        busy = [float(np.mean([h[k].busy_cycles for h in res.hops])) for k in range(len(multi.links))]
        out["predicted_interval_cycles"] = round(max(predicted["boards"] + busy), 1)
        one = predicted["one_fabric"]
        out["one_fabric"] = one
        out["work_from"] = predicted["work_from"]
        out["slowdown_predicted"] = (round(pred_frame / one["frame_cycles"], 3) if one.get("frame_cycles") else None)
    return out


def _link_spec(multi, link) -> dict:
    """What carries a link: the host-side LinkModel, or the link gateware (the device says)."""
    if isinstance(link, Link):
        return {"kind": "model", "latency_cycles": link.model.latency, "events_per_cycle": link.model.events_per_cycle}
    return multi.link_spec()


def overlapped_cycles(board_cycles: np.ndarray, hops: list) -> float:
    """When the last board would end the last frame if each board took the next frame as soon as
    it finished one and that frame had arrived (the runtime runs one frame down the chain at a
    time; each board's frame costs the same cycles either way: it starts from a whole frame and
    its state).  A link moves one frame's beats at a time after its board finished the frame: the
    frame arrives latency + busy cycles later.  From the boards' measured cycles per frame; over
    the frames' count, comparable with the frames one at a time (the pipeline's fill included)."""
    n_frames, n_boards = board_cycles.shape
    board_free = np.zeros(n_boards)
    link_free = np.zeros(n_boards - 1)
    for t in range(n_frames):
        arrival = 0.0
        for k in range(n_boards):
            board_free[k] = max(board_free[k], arrival) + board_cycles[t, k]
            if k < n_boards - 1:
                hop = hops[t][k]
                start = max(board_free[k], link_free[k])
                link_free[k] = start + hop.busy_cycles
                arrival = start + hop.added_cycles
    return float(board_free[-1])


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=float)
    return round(float(values.mean()), 1) if values.size else None
