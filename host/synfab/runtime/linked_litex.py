"""LiteX boards joined by their own links: a Partition on boards running the linked SoC
(synfab_gateware.soc.links; `synfab build --link uart|eth`), board k's `next` link end joined to
board k+1's `prev` end (README "Several boards"): by a cable (the UART link, ULX3S) or over the
switch every board and the host share (the Ethernet link, Colorlight; board k built with
`--board-index k`).

The host reaches every board over its own port (UARTBone, or Etherbone at udp://) to load its
slab's tables (read back, as on one board) and read its counters, sends a frame's input beats to
board 0 only and takes the output from the last board, both through the boards' stream bridge
registers (on Ethernet boards their UDP stream ports stay off); the boards pass the cut layers'
events on themselves. Every frame:
a link that dropped a frame or saw a stray byte (`prev_broken`, `prev_errors`) or a backward wire
that carried something other than credits raises LinkError naming the link, and so does a frame
that never arrives (a link that lost its frame's end); the counters balance (board k's events_out
+ its end-of-frame beat == link k's beats sent == beats received == board k+1's events_in + 1),
else DeviceError.

The boards may be LiteX sims (soc.sim.linked_sims: their link bytes or packets over host UDP
sockets and a SimCable for each link) or boards on a bench.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import SynfabError
from ..layouts import (LINK_CTRL_CLEAR, LINK_CTRL_TO_NEXT, LINK_MAGIC, LINK_REGS, UDP_CTRL_RESET, RegisterMap,
                       link_reg, udp_stream_reg)
from ..linkframe import Wire
from .device import DeviceError, frame_beats, frame_output_events, stream_columns
from .multi import Boards, ChainFrame, Hop, LinkError, balanced_boards, board_device_args, checked_links

# A cable is quiet when its ends' counters stay the same this long (a UART link moves a byte in
# a few microseconds; a LiteX sim's in well under 0.1 s).
QUIET_POLLS = 3
QUIET_INTERVAL = 0.1


class LinkedLitexBoards(Boards):
    """The boards of a Partition on LiteX boards running the linked SoC (see the module doc); the
    interface of runtime.multi.MultiDevice, so chain_frames and chain_summary run it.
    `device_args`: one dict per board (its `port`), as MultiDevice's; `wire`: the links' kind
    (uart: its clocks_per_bit; eth: every port udp://), for a link's busy cycles per frame from
    the bytes it sent."""
    name = "linked-litex"
    backend = "litex"

    def __init__(self, partition, device_args, timeout: float = 60.0, wire: Wire | None = None):
        from .device import check_fabric_runs
        from .litex import LinkError as LitexLinkError, LitexDevice, is_ethernet_port
        self.partition, self.timeout, self.wire = partition, timeout, wire or Wire()
        per_board = board_device_args(device_args, len(partition.slabs))
        reached = "Ethernet: give udp:// ports" if self.wire.kind == "eth" else "UARTBone: give tcp:// or serial ports"
        for k, args in enumerate(per_board):
            if is_ethernet_port(args.get("port", "")) != (self.wire.kind == "eth"):
                raise SynfabError(f"linked LiteX board {k} ({args.get('port')}): {self.wire.kind} links' boards are "
                                  f"reached over {reached}")
        for s in partition.slabs:
            check_fabric_runs(s.tables, f"linked LiteX board {s.index} ({s.board})")
        self.devices = []
        try:
            for s, args in zip(partition.slabs, per_board):
                dev = LitexDevice(s.cfg, **args)
                self.devices.append(dev)
                try:
                    ident = int(dev.link.read(link_reg("id"), 1)[0])
                except LitexLinkError:
                    ident = None                    # nothing on the bus there: no answer
                if ident != LINK_MAGIC:
                    why = "no answer at the link registers" if ident is None else f"link id reads {ident:#010x}"
                    raise DeviceError(f"linked LiteX board {s.index} ({args.get('port')}): no board links ({why}); "
                                      f"load a linked bitstream (synfab build --link {self.wire.kind})")
                if dev.udp is not None:
                    # Frames go through the bridge registers: the UDP stream port keeps no output.
                    dev.link.write(udp_stream_reg("ctrl"), [UDP_CTRL_RESET])
                dev.load(s.tables)
            self.clear_links()
        except BaseException:
            self.close()
            raise
        self.links = list(range(len(self.devices) - 1))
        self.threshold = 0
        self.frame = 0

    def link_spec(self) -> dict:
        if self.wire.kind == "eth":
            return {"kind": "eth gateware (linked LiteX boards)"}
        return {"kind": "uart gateware (linked LiteX boards)", "clocks_per_bit": self.wire.clocks_per_bit}

    # -- the link ends' registers -----------------------------------------------------------
    def read_link_ends(self) -> list[dict]:
        """Per board, its link registers (layouts.LINK_REGS)."""
        return [{n: int(v) for n, v in zip(LINK_REGS, d.link.read(link_reg(LINK_REGS[0]), len(LINK_REGS)))}
                for d in self.devices]

    def read_links(self) -> list[dict]:
        """Per link k, what its two ends count: board k's next end, board k+1's prev end."""
        ends = self.read_link_ends()
        return [{"sent": ends[k]["next_sent"], "bytes": ends[k]["next_bytes"], "packets": ends[k]["next_packets"],
                 "credit_errors": ends[k]["next_credit_errors"], "received": ends[k + 1]["prev_received"],
                 "errors": ends[k + 1]["prev_errors"], "broken": ends[k + 1]["prev_broken"]}
                for k in self.links]

    def clear_links(self) -> None:
        """Every link end cleared first, outputs on the cables after: a board sending before the
        next board's end is cleared would start a frame the cleared end does not expect. Each
        write is read back before the next board's (a bus write over UARTBone is posted: without
        the read, board 0 could send while board 1's clear still waits in its parser)."""
        for dev in self.devices:
            self._write_ctrl(dev, LINK_CTRL_CLEAR)
        for dev in self.devices[:-1]:
            self._write_ctrl(dev, LINK_CTRL_TO_NEXT)

    @staticmethod
    def _write_ctrl(dev, value: int) -> None:
        dev.link.write(link_reg("ctrl"), [value])
        back = int(dev.link.read(link_reg("ctrl"), 1)[0])
        if back != value & LINK_CTRL_TO_NEXT:
            raise DeviceError(f"linked LiteX boards: link ctrl reads {back:#x} after writing {value:#x}")

    def _check_links(self, frame: int) -> list[dict]:
        return checked_links(self.read_links(), frame)

    # -- frames ---------------------------------------------------------------------------------
    def _send_and_take(self, words, lasts) -> tuple[np.ndarray, np.ndarray]:
        """Input beats into board 0's bridge as it has room, output beats out of the last board's
        until the end-of-frame beat; a stall raises LinkError when a link broke, else DeviceError."""
        first, last = self.devices[0], self.devices[-1]
        out_words, out_lasts = [], []
        sent, deadline = 0, time.monotonic() + self.timeout
        while True:
            progress = False
            if sent < len(words):
                pushed = first.push_room(words[sent:], lasts[sent:], first._bridge_regs())
                sent += pushed
                progress = pushed > 0
            ended = last.take_output(last._bridge_regs(), out_words, out_lasts)
            if ended is not None:
                progress = True
                if ended:
                    break
            if progress:
                deadline = time.monotonic() + self.timeout
                continue
            self._check_links(self.frame)
            if time.monotonic() > deadline:
                raise DeviceError(f"linked LiteX boards: frame {self.frame} did not leave the last board within "
                                  f"{self.timeout:.0f} s (sent {sent} of {len(words)} beats to board 0); a board "
                                  f"may be stuck or a cable loose")
            time.sleep(0.01)
        return np.concatenate(out_words), np.concatenate(out_lasts)

    def reset(self) -> None:
        """After a LinkError too: every board's output back to the host, what a broken frame left in
        the bridges flushed and dropped (runtime.litex.LitexDevice.drain_streams), the cables quiet
        (what a broken frame still had on a wire arrives before the links are cleared: after the
        clear it would be taken for the next frame's and break the link again), the neuron state
        and counters written again, the links cleared and the outputs back on the cables."""
        for dev in self.devices:
            self._write_ctrl(dev, LINK_CTRL_CLEAR)
        for dev in self.devices:
            dev.drain_streams()
        self._wait_quiet()
        super().reset()
        self.clear_links()

    def _wait_quiet(self) -> None:
        """Until the link ends' counters stay the same over QUIET_POLLS polls QUIET_INTERVAL s apart."""
        last, same = None, 0
        deadline = time.monotonic() + self.timeout
        while same < QUIET_POLLS:
            now = self.read_link_ends()
            same = same + 1 if now == last else 0
            last = now
            if time.monotonic() > deadline:
                raise LinkError(f"linked LiteX boards: the links did not go quiet within {self.timeout:.0f} s "
                                f"(a board still sending?)")
            time.sleep(QUIET_INTERVAL)

    def close(self) -> None:
        for d in self.devices:
            d.close()

    def run_frame(self, events: dict) -> ChainFrame:
        """One frame in at board 0, over every cable, out of the last board."""
        for d in self.devices:
            d.write_reg("ctrl", RegisterMap.CTRL_CLEAR_COUNTERS)
        self.clear_links()
        words, lasts = frame_beats(stream_columns(events, self.partition.slabs[0].cfg.event_bits))
        out_words, out_lasts = self._send_and_take(words, lasts)
        events_out = frame_output_events(self.devices[-1].name, out_words, out_lasts)
        links = self._check_links(self.frame)

        def hop(link):
            busy = self.wire.busy_clocks(link["bytes"], link["packets"])
            return Hop(events=link["sent"] - 1, beats=link["sent"], bytes=link["bytes"], busy_cycles=busy,
                       added_cycles=busy)

        outs, hops = balanced_boards(self.devices, self.partition.slabs, links, events_out, len(events["x"]), hop)
        self.frame += 1
        return ChainFrame(outs, hops, events_out, [])

