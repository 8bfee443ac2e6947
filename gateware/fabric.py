"""The fabric: mesh of neuron cores, input port, frame sequencer, global registers, host bus.

Input beats (layouts.STREAM_EVENT on `.sink`): an event beat in range (x < in_w, y < in_h,
c < in_c) goes through the input PEG (entries 0 .. input_peg_count-1) into the mesh at core 0's
router; an event beat out of range is dropped and counted (`input_dropped`); a beat with eof=1
ends the frame (TLAST is carried along but the eof bit is what counts).

Frame end (the sequencer): stop taking input, wait until the fabric is drained, then for each
layer L < n_layers pulse `eval_start` with `eval_layer` = L to every core (registered: a clock
later) and wait until drained again, then send one beat with eof=1 and TLAST on `.source` and
count the frame. Drained is exact: the input PEG is idle, the mesh counts no packet between its
ports, and every core is idle.
Output beats are the HOST packets leaving the mesh at core 0, as (x, y, c, d, tag=syn).

Registers (RegisterMap of layouts.FABRIC_LAYOUT_VERSION, the table layouts the fabric decodes:
`version` reads it, `features` the version-2 features it executes, layouts.gateware_features(cfg)):
writes saturate each register to its largest meaningful value (reads show what the hardware uses). ctrl bit 0 clears every counter, the cores' too, and layer_spikes.
status bit 0 (busy) is set while a frame is being finished or anything is in flight.
Global counters: cycles (clock cycles since the last clear), frames, events_in (event beats
received, in range or not), events_out (output event beats sent), input_dropped. Counters wrap
at 32 bits. Reads and writes of unmapped addresses answer a wishbone error.
"""
from __future__ import annotations

from migen import READ_FIRST, Case, Cat, Constant, If, Memory, Mux, Signal
from litex.gen import Reduce
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone
from migen.genlib.fsm import FSM, NextState, NextValue

from synfab.config import FabricConfig
from synfab.layouts import (FABRIC_LAYOUT_VERSION, GLOBAL_COUNTERS, gateware_features, gateware_state_words,
                            ID_MAGIC, STREAM_BITS, STREAM_EVENT, RegisterMap, feature_mask, state_word_bits)

from .common import WishboneSlice, as_signed, decode_targets, pack, unpack
from .core.core import NeuronCore
from .core.peg import PEG
from .noc import Mesh
from .noc.mesh import popcount

BEAT = [("data", STREAM_BITS)]
RESET_INTERVAL_MAX = (1 << 16) - 1
WORD = 4   # bytes per bus word


class Fabric(LiteXModule):
    def __init__(self, cfg: FabricConfig, core_factory=NeuronCore):
        """`core_factory(cfg, core_id)` builds each core."""
        self.cfg = cfg
        self.regmap = regmap = RegisterMap(cfg, FABRIC_LAYOUT_VERSION)
        self.bus = wishbone.Interface(data_width=32, adr_width=regmap.addr_bits - 2, addressing="word")
        self.sink = stream.Endpoint(BEAT)
        self.source = stream.Endpoint(BEAT)
        self.busy = Signal()

        # # #

        self.mesh = mesh = Mesh(cfg)
        self.cores = cores = [core_factory(cfg, i) for i in range(cfg.n_cores)]
        for i, core in enumerate(cores):
            self.add_module(f"core{i}", core)
            self.comb += [core.source.connect(mesh.sinks[i]), mesh.sources[i].connect(core.sink)]
        self.input_peg = peg = PEG(cfg, cfg.input_peg_entries, regmap.input_peg.stride)
        self.comb += peg.source.connect(mesh.host_sink)
        # Both stream ports are registered both ways (valid/data and ready, LiteX Buffer): whatever
        # drives them (a FIFO in block RAM, a DMA) shares no combinational path with the fabric.
        # On the input the ready stage comes first, so the fabric's logic starts from the valid
        # stage's registers.
        self.in_ready, self.in_reg = stream.PipeReady(BEAT), stream.PipeValid(BEAT)
        self.out_reg = stream.Buffer(BEAT, pipe_valid=True, pipe_ready=True)
        inp, out = self.in_reg.source, self.out_reg.sink
        self.comb += [self.sink.connect(self.in_ready.sink), self.in_ready.source.connect(self.in_reg.sink),
                      self.out_reg.source.connect(self.source)]

        # -- registers -------------------------------------------------------------------------
        limits = {
            "threshold": (1 << cfg.event_bits) - 1,
            "in_w": 1 << cfg.coord_bits, "in_h": 1 << cfg.coord_bits, "in_c": 1 << cfg.chan_bits,
            "input_peg_count": cfg.input_peg_entries,
            "n_layers": RegisterMap.MAX_LAYERS,
            "pipelined": 1, "reset_interval": RESET_INTERVAL_MAX, "step": RESET_INTERVAL_MAX,
        }
        regs = {name: Signal(max=limit + 1, name=f"reg_{name}") for name, limit in limits.items()}
        self.regs = regs
        clear = Signal(name="clear")      # one-cycle pulse: clear every counter
        counters = {name: Signal(32, name=f"cnt_{name}") for name in GLOBAL_COUNTERS}
        self.counters = counters

        # -- input port --------------------------------------------------------------------------
        beat = unpack(STREAM_EVENT, inp.data)
        accepting = Signal(name="accepting")  # the sequencer takes input only between frames' ends
        in_range = Signal(name="in_range")
        self.comb += in_range.eq((beat["x"] < regs["in_w"]) & (beat["y"] < regs["in_h"])
                                 & (beat["c"] < regs["in_c"]))
        is_eof = beat["eof"]
        d_in = as_signed(self, beat["d"])
        self.comb += [
            peg.sink.valid.eq(inp.valid & accepting & ~is_eof & in_range),
            peg.sink.x.eq(beat["x"]), peg.sink.y.eq(beat["y"]), peg.sink.c.eq(beat["c"]),
            peg.sink.d.eq(d_in),
            peg.sink.base.eq(0), peg.sink.count.eq(regs["input_peg_count"]),
            inp.ready.eq(accepting & (is_eof | ~in_range | peg.sink.ready)),
        ]
        took = Signal(name="took")
        self.comb += took.eq(inp.valid & inp.ready)
        eof_taken = Signal(name="eof_taken")
        self.comb += eof_taken.eq(took & is_eof)

        # -- drained, busy -------------------------------------------------------------------------
        # Registered: once the sequencer waits for the fabric to drain, no new work enters, so the
        # idle signals only go up; reading them one clock late is exact.
        drained = Signal(name="drained")
        self.sync += drained.eq(peg.idle & mesh.idle & Reduce("AND", [c.idle for c in cores]))

        # -- sequencer -------------------------------------------------------------------------
        layer = Signal(max=RegisterMap.MAX_LAYERS + 1, name="layer")
        # Time steps: layers in reverse order when pipelined; layer i's Loihi state is cleared before
        # its step at steps t with t % R == i % R (R = reset_interval): `step` keeps t % R, `phase`
        # the evaluated layer's i % R (counted along with the layer; a pipelined frame starts it at
        # (n_layers - 1) % R, found by subtraction while the fabric drains).
        pipelined, interval, step = regs["pipelined"], regs["reset_interval"], regs["step"]
        phase = Signal(max=RESET_INTERVAL_MAX + 1, name="layer_phase")
        first_phase = Signal(max=RegisterMap.MAX_LAYERS + 1, name="first_phase")
        reset_layer = Signal(name="reset_layer")
        self.sync += reset_layer.eq((interval != 0) & (phase == step))
        eval_start = Signal(name="eval_start")
        evaluating = Signal(name="evaluating")  # spikes now belong to layer_spikes[layer]
        write_back = Signal(name="write_back")  # layer `layer` is done: add its spikes to layer_spikes
        eof_out = Signal(name="eof_out")     # the output carries the end-of-frame beat
        self.fsm = fsm = FSM(reset_state="RUN")
        fsm.act("RUN",
            accepting.eq(1),
            If(eof_taken, NextState("DRAIN")),
        )
        fsm.act("DRAIN",
            NextValue(layer, Mux(pipelined, regs["n_layers"] - 1, 0)),
            NextValue(first_phase, regs["n_layers"] - 1),
            If(drained,
                If(regs["n_layers"] == 0, NextState("EOF")).Else(NextState("PHASE")),
            ),
        )
        fsm.act("PHASE",   # (n_layers - 1) % R for a pipelined frame (at most 63 subtractions)
            If(pipelined & (interval != 0) & (first_phase >= interval),
                NextValue(first_phase, first_phase - interval),
            ).Else(
                NextValue(phase, Mux(pipelined, first_phase, 0)),
                NextState("SETTLE"),
            ),
        )
        fsm.act("SETTLE", NextState("EVAL"))    # reset_layer (registered) follows phase
        fsm.act("EVAL",
            eval_start.eq(1), evaluating.eq(1),
            NextState("STARTED"),
        )
        # `drained` is registered: it shows the cores' idle of the clock before. The cores get
        # eval_start a clock late (registered, below), and their idle falls in that clock, so it
        # shows in `drained` from the second clock after eval_start: WAIT looks no earlier.
        fsm.act("STARTED",
            evaluating.eq(1),
            NextState("WAIT"),
        )
        fsm.act("WAIT",
            evaluating.eq(1),
            If(drained, NextState("FETCH_COUNT")),
        )
        # layer_spikes[layer] += this layer's spikes: read (block RAM), then add and write.
        fsm.act("FETCH_COUNT", NextState("SAVE_COUNT"))
        last_layer = Signal(name="last_layer")
        self.comb += last_layer.eq(Mux(pipelined, layer == 0, layer + 1 >= regs["n_layers"]))
        fsm.act("SAVE_COUNT",
            write_back.eq(1),
            NextValue(layer, Mux(pipelined, layer - 1, layer + 1)),
            If(pipelined,
                NextValue(phase, Mux(phase == 0, interval - 1, phase - 1)),
            ).Else(
                NextValue(phase, Mux(phase + 1 >= interval, 0, phase + 1)),
            ),
            If(last_layer, NextState("EOF")).Else(NextState("SETTLE")),
        )
        fsm.act("EOF",
            eof_out.eq(1),
            If(out.ready,
                # The next time step.
                NextValue(step, Mux(step + 1 >= interval, 0, step + 1)),
                NextState("RUN"),
            ),
        )
        self.comb += self.busy.eq(~fsm.ongoing("RUN") | ~drained)
        # The start reaches the cores from a register, with its layer and reset: the FSM's state
        # decode and a route across the device in one clock was the 2x2's worst path (seed 1).
        core_start = Signal(name="core_eval_start")
        core_layer = Signal.like(layer, name="core_eval_layer")
        core_reset = Signal(name="core_eval_reset")
        self.sync += core_start.eq(eval_start), core_layer.eq(layer), core_reset.eq(reset_layer)
        for core in cores:
            self.comb += [core.eval_start.eq(core_start), core.eval_layer.eq(core_layer), core.eval_reset.eq(core_reset),
                          core.threshold.eq(regs["threshold"]), core.clear_counters.eq(clear)]

        # -- output port -------------------------------------------------------------------------
        host = mesh.host_source
        d_out = as_signed(self, host.d)
        fields = {f.name: f.width for f in STREAM_EVENT.fields}
        event_word = pack(STREAM_EVENT, **{n: _fit(self, v, fields[n]) for n, v in
                                           dict(x=host.x, y=host.y, c=host.c, d=d_out, tag=host.syn).items()})
        eof_word = pack(STREAM_EVENT, eof=Constant(1, 1))
        self.comb += [
            If(eof_out,
                out.valid.eq(1), out.last.eq(1), out.data.eq(eof_word),
            ).Else(
                out.valid.eq(host.valid), out.data.eq(event_word),
                host.ready.eq(out.ready),
            ),
        ]

        # -- counters ----------------------------------------------------------------------------
        # The input beat's counts are registered first (the range check is deep); they reach their
        # counters one clock after the beat.
        beat_in, beat_dropped = Signal(), Signal()
        self.sync += beat_in.eq(took & ~is_eof), beat_dropped.eq(took & ~is_eof & ~in_range)
        increments = {
            "cycles": 1,
            "frames": eof_out & out.ready,
            "events_in": beat_in,
            "events_out": host.valid & host.ready,
            "input_dropped": beat_dropped,
        }
        for name, cnt in counters.items():
            self.sync += If(clear, cnt.eq(0)).Else(cnt.eq(cnt + increments[name]))

        # -- layer_spikes: a memory plus a 'written since clear' bit per layer (clear in one cycle) -
        n_lay = RegisterMap.MAX_LAYERS
        self.specials.layer_mem = layer_mem = Memory(32, n_lay, name="layer_spikes")
        rmw = layer_mem.get_port(write_capable=True, mode=READ_FIRST)
        bus_rd = layer_mem.get_port(mode=READ_FIRST)
        self.specials += rmw, bus_rd
        written = Signal(n_lay, name="layer_written")
        running = Signal(32, name="layer_running")   # spikes of the layer being evaluated
        spikes_now = Signal(max=len(cores) + 1, name="spikes_now")   # registered: a wide adder tree
        stored = Signal(32, name="layer_stored")
        layer_written = Signal(name="layer_was_written")
        self.comb += [
            rmw.adr.eq(layer),
            rmw.dat_w.eq(stored + running),
            rmw.we.eq(write_back),
        ]
        self.sync += [
            spikes_now.eq(popcount([c.spike for c in cores])),
            If(eval_start, running.eq(0)).Elif(evaluating | fsm.ongoing("FETCH_COUNT"),
                                               running.eq(running + spikes_now)),
            layer_written.eq((written >> layer)[0]),
            stored.eq(Mux(layer_written, rmw.dat_r, 0)),
            If(clear, written.eq(0), running.eq(0)).Elif(write_back, written.eq(written | (1 << layer))),
        ]

        # -- host bus: LiteX's decoder; each core behind a registered stage (timing); an access
        # that hits nothing (holes in a core's window included) answers an error ----------------
        regs_bus = wishbone.Interface(data_width=32, adr_width=regmap.addr_bits - 2, addressing="word")
        targets = [(lambda adr: self._in_words(adr, 0, regmap.input_peg.base), regs_bus),
                   (lambda adr: self._in_words(adr, regmap.input_peg.base, regmap.input_peg.size),
                    self._offset(peg.table.bus, regmap.input_peg.base))]
        for i, core in enumerate(cores):
            cut = WishboneSlice(len(self.bus.adr))
            self.add_module(f"core{i}_slice", cut)
            self.comb += self._offset_connect(cut.source, core.bus, regmap.core_base(i))
            targets.append((lambda adr, i=i: self._core_hit(adr, regmap, regmap.core_base(i)), cut.sink))
        decode_targets(self, self.bus, targets)

        # Global registers, counters and layer_spikes on regs_bus.
        adr = regs_bus.adr
        access = Signal(name="regs_access")
        reading = Signal(name="regs_reading")    # a read being answered (block RAM, then a register)
        self.comb += access.eq(regs_bus.cyc & regs_bus.stb & ~regs_bus.ack & ~regs_bus.err & ~reading)
        read_values = {
            regmap.regs["id"]: ID_MAGIC, regmap.regs["version"]: FABRIC_LAYOUT_VERSION,
            regmap.regs["features"]: feature_mask(gateware_features(cfg)),
            regmap.regs["config_crc"]: cfg.crc(), regmap.regs["ctrl"]: 0,
            regmap.regs["status"]: Cat(self.busy),
        }
        read_values.update({regmap.regs[n]: r for n, r in regs.items()})
        read_values.update({regmap.global_counters[n]: c for n, c in counters.items()})
        ls = regmap.layer_spikes
        in_layer_spikes = self._in_words(adr, ls.base, ls.size)
        known_hit = Signal(name="regs_hit")
        self.comb += known_hit.eq(in_layer_spikes | Reduce("OR", [adr == a // WORD for a in read_values]))
        self.comb += bus_rd.adr.eq(adr - ls.base // WORD)
        layer_idx = Signal(max=n_lay)
        self.comb += layer_idx.eq(adr - ls.base // WORD)
        reg_data = Signal(32, name="reg_data")
        from_layers, layer_counted = Signal(name="read_layer_spikes"), Signal(name="read_layer_counted")
        self.sync += [
            reading.eq(access & ~regs_bus.we & known_hit),
            regs_bus.ack.eq((access & regs_bus.we & known_hit) | reading),
            regs_bus.err.eq(access & ~known_hit),
            Case(adr, {**{a // WORD: reg_data.eq(v) for a, v in read_values.items()},
                       "default": reg_data.eq(0)}),
            from_layers.eq(in_layer_spikes), layer_counted.eq((written >> layer_idx)[0]),
            # The answer leaves registered: layer_spikes is a block RAM.
            If(reading, regs_bus.dat_r.eq(Mux(from_layers, Mux(layer_counted, bus_rd.dat_r, 0), reg_data))),
        ]
        writes = [If(adr == regmap.regs["ctrl"] // WORD,
                     clear.eq((regs_bus.dat_w & RegisterMap.CTRL_CLEAR_COUNTERS) != 0))]
        for name, reg in regs.items():
            writes.append(If(adr == regmap.regs[name] // WORD,
                             If(regs_bus.dat_w > limits[name], reg.eq(limits[name])).Else(reg.eq(regs_bus.dat_w))))
        self.sync += clear.eq(0), If(access & regs_bus.we, *writes)

    # -- bus decoding helpers --------------------------------------------------------------------
    @staticmethod
    def _in_words(adr, base: int, size: int):
        """adr (word address) falls in the byte range [base, base + size)."""
        lo, hi = base // WORD, (base + size) // WORD
        return (adr >= lo) & (adr < hi) if lo else adr < hi

    def _core_hit(self, adr, regmap: RegisterMap, core_base: int):
        """The words a core implements (gaps in its window answer an error)."""
        ranges = [(regmap.core_regs[n], WORD) for n in regmap.core_regs]
        ranges += [(regmap.core_counters[n], WORD) for n in regmap.core_counters]
        missing = set(state_word_bits(self.cfg, regmap.version)) - set(gateware_state_words(self.cfg))
        ranges += [(w.base, w.entries * w.stride * WORD) for name, w in regmap.core_windows.items()
                   if name not in missing]
        return Reduce("OR", [self._in_words(adr, core_base + b, s) for b, s in ranges])

    def _offset(self, bus, base: int):
        """A wishbone port for the decoder whose address is `bus`'s plus base (bytes)."""
        port = wishbone.Interface(data_width=32, adr_width=len(self.bus.adr), addressing="word")
        self.comb += self._offset_connect(port, bus, base)
        return port

    @staticmethod
    def _offset_connect(master, slave, base: int) -> list:
        """Connect master to slave, slave addresses relative to base (bytes)."""
        return [
            slave.adr.eq(master.adr - base // WORD), slave.dat_w.eq(master.dat_w), slave.sel.eq(master.sel),
            slave.we.eq(master.we), slave.cyc.eq(master.cyc), slave.stb.eq(master.stb),
            master.ack.eq(slave.ack), master.err.eq(slave.err), master.dat_r.eq(slave.dat_r),
        ]


def _fit(module, value, width):
    """`value` extended (by its signedness) or truncated to `width` bits."""
    s = Signal(width)
    module.comb += s.eq(value)
    return s
