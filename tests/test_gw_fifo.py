"""ZeroHeadSyncFIFO against LiteX's stream.SyncFIFO: the same handshakes and level every cycle,
the same head whenever it is valid, and an all-zero head while empty (Migen simulator)."""
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from litex.gen import LiteXModule
from litex.soc.interconnect import stream
from migen import Signal, run_simulation

from synfab_gateware.common import ZeroHeadSyncFIFO, sync_fifo

LAYOUT = [("a", 3), ("b", 20), ("c", 1)]


class Pair(LiteXModule):
    """Both FIFOs fed the same sink signals and given the same source ready."""

    def __init__(self, depth):
        self.ours = ZeroHeadSyncFIFO(LAYOUT, depth)
        self.litex = stream.SyncFIFO(LAYOUT, depth)
        self.valid, self.ready, self.last = Signal(), Signal(), Signal()
        self.a, self.b, self.c = (Signal(w) for _, w in LAYOUT)
        for fifo in (self.ours, self.litex):
            self.comb += [fifo.sink.valid.eq(self.valid), fifo.sink.last.eq(self.last),
                          fifo.sink.a.eq(self.a), fifo.sink.b.eq(self.b), fifo.sink.c.eq(self.c),
                          fifo.source.ready.eq(self.ready)]


def _compare(depth, steps):
    dut = Pair(depth)
    seen = {"valid_cycles": 0, "empty_cycles": 0}

    def bench():
        for valid, ready, last, a, b, c in steps:
            yield dut.valid.eq(valid)
            yield dut.ready.eq(ready)
            yield dut.last.eq(last)
            yield dut.a.eq(a)
            yield dut.b.eq(b)
            yield dut.c.eq(c)
            yield
            ours, theirs = dut.ours, dut.litex
            assert (yield ours.sink.ready) == (yield theirs.sink.ready)
            assert (yield ours.source.valid) == (yield theirs.source.valid)
            assert (yield ours.level) == (yield theirs.level)
            head, litex_head = [], []
            for name in ("a", "b", "c", "last", "first"):
                head.append((yield getattr(ours.source, name)))
                litex_head.append((yield getattr(theirs.source, name)))
            if (yield ours.source.valid):
                seen["valid_cycles"] += 1
                assert head == litex_head
            else:
                seen["empty_cycles"] += 1
                assert head == [0, 0, 0, 0, 0]

    run_simulation(dut, bench())
    return seen


@settings(max_examples=25, deadline=None)
@given(depth=st.sampled_from([2, 3, 5, 16]), seed=st.integers(0, 2**32 - 1),
       p_valid=st.floats(0.1, 0.95), p_ready=st.floats(0.1, 0.95))
def test_same_as_litex_sync_fifo_every_cycle(depth, seed, p_valid, p_ready):
    rng = random.Random(seed)
    steps = [(int(rng.random() < p_valid), int(rng.random() < p_ready), rng.randrange(2),
              rng.randrange(8), rng.randrange(1 << 20), rng.randrange(2)) for _ in range(300)]
    _compare(depth, steps)


def test_fills_up_and_drains_completely():
    depth = 5
    fill = [(1, 0, 0, i, 1000 + i, i & 1) for i in range(depth + 3)]      # more than fits: full
    drain = [(0, 1, 0, 0, 0, 0)] * (depth + 3)                              # empty again
    seen = _compare(depth, fill + drain)
    assert seen["valid_cycles"] > depth and seen["empty_cycles"] > 1


def test_depth_one_is_litex_fifo():
    assert isinstance(sync_fifo(LAYOUT, 1), stream.SyncFIFO)
    assert isinstance(sync_fifo(LAYOUT, 2), ZeroHeadSyncFIFO)
