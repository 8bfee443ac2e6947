"""Several boards joined by the link gateware, in one Verilator model (README "Several boards").

`LinkedChain` runs a Partition's slabs the way boards joined by cables would: board k's output
stream goes through its LinkSender (gateware/link/: frames with a sequence number and a CRC-8,
credit flow control, LiteX's RS232 PHY), a simulated wire (synfab.linkframe.Wire: a delay, the
one part that is not gateware) and board k+1's LinkReceiver into board k+1's input stream. The
host sends a frame's beats to board 0 only and takes the output of the last board; it loads each
board's tables through that board's register window (read back, all or nothing, as on one board).

Every frame: a link that dropped a frame or saw a stray byte (its `broken` flag, `errors`), or a
backward wire that carried something other than credits, raises LinkError naming the link, and
so does a frame that never arrives (a link that lost its frame's end); the counters balance
(board k's events_out + its end-of-frame beat == link k's beats sent == beats received == board
k+1's events_in + 1), else DeviceError. The frame's cycles are the chain's, measured.
"""
from __future__ import annotations

import numpy as np

from ..linkframe import Wire
from ..layouts import RegisterMap
from .device import DeviceError, RegisterDevice, frame_beats, frame_output_events, stream_columns
from .multi import Boards, ChainFrame, Hop, _balance, balanced_boards, checked_links
from .sim import MAX_FRAME_CYCLES

CHECK_CYCLES = 2_000_000      # clocks between looks at the links while a frame is under way


class BoardWindow(RegisterDevice):
    """One board of the chain: its registers at `base` in the chain's address space."""

    def __init__(self, sim, cfg, base: int, label: str):
        super().__init__(cfg)
        self.sim, self.base, self.name = sim, base, label

    def _write(self, addrs, values) -> None:
        self.sim.write_block(np.asarray(addrs, dtype=np.int64) + self.base, np.asarray(values, dtype=np.uint32))

    def _read(self, addrs) -> np.ndarray:
        return np.asarray(self.sim.read_block(np.asarray(addrs, dtype=np.int64) + self.base), dtype=np.int64)

    def _exchange(self, words, lasts):
        raise DeviceError(f"{self.name}: a board of a linked chain takes its frames from the board before it")

    def close(self) -> None:
        pass


class LinkedChain(Boards):
    """The boards of a Partition in one Verilator chain (see the module doc); the interface of
    runtime.multi.MultiDevice, so chain_frames and chain_summary run it."""
    name = "linked"
    backend = "sim"

    def __init__(self, partition, wire: Wire = Wire(), quiet: bool = True):
        from ..runtime.device import check_fabric_runs
        try:
            from synfab_gateware.sim.chain import board_bits, build_chain, chain_addr_bits
            from synfab_gateware.sim.fabric_sim import SimFabric
        except ImportError as e:
            raise DeviceError(f"linked boards need the gateware extras ({e.name} missing): "
                              f"pip install -e '.[gateware]'") from None
        self.partition, self.wire = partition, wire
        cfgs = [s.cfg for s in partition.slabs]
        for s in partition.slabs:
            check_fabric_runs(s.tables, f"linked board {s.index} ({s.board})")
        self.sim = SimFabric(cfgs[0], library=build_chain(cfgs, wire, quiet), quiet=quiet,
                             addr_bits=chain_addr_bits(cfgs))
        self._cfgs = cfgs
        bb = board_bits(cfgs)
        self.devices = [BoardWindow(self.sim, s.cfg, k << bb, f"linked board {k} ({s.board})")
                        for k, s in enumerate(partition.slabs)]
        try:
            for d, s in zip(self.devices, partition.slabs):
                d.load(s.tables)
        except BaseException:
            self.close()
            raise
        self.links = list(range(len(cfgs) - 1))
        self.threshold = 0
        self.frame = 0

    # -- the links' registers ---------------------------------------------------------------
    def _link_addr(self, link, name) -> int:
        from synfab_gateware.sim.chain import link_reg_addr
        return link_reg_addr(self._cfgs, link, name)

    def read_links(self) -> list[dict]:
        from synfab_gateware.sim.chain import CHAIN_LINK_REGS
        addrs = [self._link_addr(k, n) for k in self.links for n in CHAIN_LINK_REGS]
        vals = self.sim.read_block(addrs).reshape(len(self.links), len(CHAIN_LINK_REGS))
        return [{n: int(v) for n, v in zip(CHAIN_LINK_REGS, row)} for row in vals]

    def clear_links(self) -> None:
        from synfab_gateware.sim.chain import CHAIN_CTRL_CLEAR
        self.sim.write(self._link_addr(None, "ctrl"), CHAIN_CTRL_CLEAR)

    def inject_fault(self, link: int, cycles_from_now: int) -> None:
        """Invert link `link`'s forward wire for a byte's time (chain.FAULT_BITS bits),
        `cycles_from_now` clocks from now (a burst on the cable; the receiver must catch it)."""
        now = self.sim.read(self._link_addr(None, "cycles"))
        self.sim.write(self._link_addr(link, "fault_cycle"), (now + max(1, int(cycles_from_now))) & 0xFFFFFFFF)

    def _check_links(self, frame: int) -> list[dict]:
        return checked_links(self.read_links(), frame)

    def link_spec(self) -> dict:
        """What carries the links: the link gateware over the simulated wire."""
        from ..linkframe import ETH_DATA_HEADER_WORDS, ETH_MAX_BEATS, FRAME_BYTES, PACKED_FRAME_BYTES, eth_data_bytes
        wire = self.wire
        if wire.kind == "eth":
            return {"kind": "eth gateware", "latency_cycles": wire.latency, "bytes_per_clock": 1,
                    "max_beats_per_packet": ETH_MAX_BEATS,
                    "bytes_per_packet": f"{eth_data_bytes(1, 0)} + 8 a beat ({ETH_DATA_HEADER_WORDS} header words in)"}
        return {"kind": "uart gateware", "latency_cycles": wire.latency, "clocks_per_bit": wire.clocks_per_bit,
                "bytes_per_beat": {"packed event": PACKED_FRAME_BYTES, "whole beat": FRAME_BYTES}}

    def _clear_counters(self) -> None:
        """Every board's and link's counters restart: what is read after a run is that run's."""
        for d in self.devices:
            d.write_reg("ctrl", RegisterMap.CTRL_CLEAR_COUNTERS)
        self.clear_links()

    def _run_one_frame(self) -> int:
        """Clock until the last board's frame ends; a link that broke meanwhile (its frame's end
        may never come) raises LinkError within a CHECK_CYCLES slice, not after MAX_FRAME_CYCLES."""
        from synfab_gateware.sim.fabric_sim import SimError
        used = 0
        while True:
            slice_cycles = min(CHECK_CYCLES, MAX_FRAME_CYCLES - used)
            try:
                return used + self.sim.run_frames(1, slice_cycles)
            except SimError:
                used += slice_cycles
                self._check_links(self.frame)
                if used >= MAX_FRAME_CYCLES:
                    raise

    def run_overlapped(self, frames, check: bool = False) -> dict:
        """Every frame's input beats sent at once: board k works on frame t+1 while board k+1
        still runs frame t, as boards joined by cables would. Returns the output activation after
        each frame, the cycle at which each frame's end left the last board and the mean interval
        between them (the chain's measured throughput), and the counters summed over the frames
        (board events and link beats balance in total). With `check`, every frame's output is
        compared with the whole network's dense reference (one-line SynfabError)."""
        from .multi import input_events
        qnet = self.partition.qnet
        frames = np.asarray(frames)
        self._clear_counters()
        sent = [frame_beats(stream_columns(ev, self._cfgs[0].event_bits)) for ev in input_events(qnet, frames)]
        n_in = sum(len(w) - 1 for w, _ in sent)
        start = self.sim.cycles
        for words, lasts in sent:
            self.sim.push(words, lasts)
        done = []
        for _ in sent:
            self._run_one_frame()
            done.append(self.sim.cycles - start)
        words, lasts = self.sim.pull()
        ends = np.flatnonzero(lasts) + 1
        last = self.partition.slabs[-1].tables.metadata
        out = np.zeros(tuple(last["output_shape"]), dtype=np.int64)
        outputs, begin = [], 0
        for end in ends:
            ev = frame_output_events(self.devices[-1].name, words[begin:end], lasts[begin:end])
            mine = ev[ev["tag"] == int(last["output_tag"])]
            np.add.at(out, (mine["c"], mine["y"], mine["x"]), mine["d"])
            outputs.append(out.copy())
            begin = end
        links = self._check_links(self.frame)
        counters = [d.read_counters() for d in self.devices]
        _balance("board 0", "events_in", counters[0]["events_in"], n_in)
        for k, l in enumerate(links):
            _balance(f"link {k}", "beats sent", l["sent"], counters[k]["events_out"] + len(frames))
            _balance(f"link {k}", "beats received", l["received"], l["sent"])
            _balance(f"board {k + 1}", "events_in", counters[k + 1]["events_in"], l["received"] - len(frames))
        if check:
            self._check_outputs(frames, outputs)
        self.frame += len(frames)
        return {"outputs": outputs, "frame_end_cycles": done, "cycles": done[-1] if done else 0,
                "interval_cycles": float(np.diff(done).mean()) if len(done) > 1 else None,
                "links": links, "counters": counters}

    def _check_outputs(self, frames, outputs) -> None:
        from ..model.reference import simulate
        from .multi import check_output
        qnet = self.partition.qnet
        trace = simulate(qnet, frames.astype(np.int64), self._cfgs[0].acc_bits, self.threshold, record_state=False)
        for t, got in enumerate(outputs):
            check_output(qnet, trace, t, got, "the linked boards")

    # -- MultiDevice's interface ---------------------------------------------------------------
    def reset(self) -> None:
        super().reset()
        self.clear_links()

    def close(self) -> None:
        if getattr(self, "sim", None) is not None:
            self.sim.close()
            self.sim = None

    def run_frame(self, events: dict) -> ChainFrame:
        """One frame in at board 0, through every link, out of the last board."""
        self._clear_counters()
        words, lasts = frame_beats(stream_columns(events, self._cfgs[0].event_bits))
        self.sim.push(words, lasts)
        cycles = self._run_one_frame()
        out_words, out_lasts = self.sim.pull()
        events_out = frame_output_events(self.devices[-1].name, out_words, out_lasts)
        links = self._check_links(self.frame)

        def hop(link):
            busy = self.wire.busy_clocks(link["bytes"], link["packets"])
            # added: what the hop would add store and forward (the gateware passes beats on as they
            # come, so the chain's measured frame is shorter than boards + hops)
            return Hop(events=link["sent"] - 1, beats=link["sent"], bytes=link["bytes"], busy_cycles=busy,
                       added_cycles=2 * self.wire.latency + busy)

        outs, hops = balanced_boards(self.devices, self.partition.slabs, links, events_out, len(events["x"]), hop)
        self.frame += 1
        return ChainFrame(outs, hops, events_out, [], measured_cycles=cycles)
