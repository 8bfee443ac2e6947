"""Mesh NoC under random traffic and random backpressure (Migen simulator)."""
import random

import pytest
from migen import run_simulation
from migen.sim import passive

from synfab.config import FabricConfig
from synfab.errors import SynfabError
from synfab_gateware.noc import Mesh, router_ports


def _send(ep, packets, rng, p_gap):
    for pkt in packets:
        while rng.random() < p_gap:
            yield ep.valid.eq(0)
            yield
        yield ep.valid.eq(1)
        for name, value in pkt.items():
            yield getattr(ep, name).eq(value)
        yield
        while not (yield ep.ready):
            yield
    yield ep.valid.eq(0)


def _receive(ep, sink, rng, p_gap):
    while True:
        ready = rng.random() >= p_gap
        yield ep.ready.eq(ready)
        yield
        if ready and (yield ep.valid):
            pkt = {}
            for name in ("dest", "host", "c", "d", "x"):
                pkt[name] = (yield getattr(ep, name))
            sink.append(pkt)


def _random_packets(cfg, n, src, rng):
    """Packets from port `src`; c = source id and d = sequence number identify each packet."""
    out = []
    for seq in range(n):
        host = int(rng.random() < 0.2)
        dest = rng.randrange(1 << cfg.core_bits)   # includes ids beyond n_cores when the mesh has spares
        out.append(dict(dest=dest, host=host, c=src, d=seq, x=rng.randrange(1 << cfg.coord_bits)))
    return out


def _expected_port(cfg, pkt):
    if pkt["host"]:
        return "host"
    return pkt["dest"] if pkt["dest"] < cfg.n_cores else "drop"


def _run_traffic(cfg, n_per_source, seed, p_gap_in, p_gap_out, max_cycles=20000):
    rng = random.Random(seed)
    dut = Mesh(cfg)
    sources = {i: dut.sinks[i] for i in range(cfg.n_cores)}
    sources[cfg.n_cores] = dut.host_sink          # source id n_cores = the host port
    traffic = {s: _random_packets(cfg, n_per_source, s, rng) for s in sources}
    got = {i: [] for i in range(cfg.n_cores)}
    got["host"] = []
    expected_delivered = sum(_expected_port(cfg, p) != "drop" for ps in traffic.values() for p in ps)
    trace = {"idle_at_end": None, "cycles": 0}

    def main():
        for _ in range(max_cycles):
            yield
            trace["cycles"] += 1
            if sum(len(v) for v in got.values()) == expected_delivered and (yield dut.idle):
                break
        for _ in range(5):   # nothing more may arrive
            yield
        trace["idle_at_end"] = (yield dut.idle)
        trace["in_flight"] = (yield dut.in_flight)

    gens = [main()]
    for s, ep in sources.items():
        gens.append(_send(ep, traffic[s], random.Random(seed * 31 + s), p_gap_in))
    for i in range(cfg.n_cores):
        gens.append(_receive(dut.sources[i], got[i], random.Random(seed * 57 + i), p_gap_out))
    gens.append(_receive(dut.host_source, got["host"], random.Random(seed * 91), p_gap_out))
    run_simulation(dut, [gens[0]] + [_passive(g) for g in gens[1:]])
    return traffic, got, trace


def _passive(gen):
    """Run `gen` without keeping the simulation alive (it ends with the main generator)."""
    @passive
    def wrapped():
        yield from gen
    return wrapped()


def _check(cfg, traffic, got, trace):
    assert trace["idle_at_end"] == 1 and trace["in_flight"] == 0
    for port, pkts in got.items():
        for p in pkts:
            assert _expected_port(cfg, p) == port, f"packet {p} arrived at {port}"
    # Exactly once: the multiset of (source, seq) per port equals what was sent there.
    for port in got:
        sent = sorted((p["c"], p["d"]) for ps in traffic.values() for p in ps if _expected_port(cfg, p) == port)
        assert sorted((p["c"], p["d"]) for p in got[port]) == sent
    # Order per (source, destination) pair: sequence numbers increase.
    for port, pkts in got.items():
        last = {}
        for p in pkts:
            assert p["d"] > last.get(p["c"], -1), f"reordered packets from source {p['c']} at {port}"
            last[p["c"]] = p["d"]


@pytest.mark.parametrize("mesh,depth,seed", [((2, 2), 2, 1), ((3, 2), 1, 2), ((1, 1), 4, 3), ((1, 3), 2, 4)])
def test_mesh_random_traffic_with_gaps(mesh, depth, seed):
    cfg = FabricConfig(mesh_x=mesh[0], mesh_y=mesh[1], event_fifo_depth=depth)
    traffic, got, trace = _run_traffic(cfg, n_per_source=25, seed=seed, p_gap_in=0.3, p_gap_out=0.5)
    _check(cfg, traffic, got, trace)


def test_mesh_full_rate_without_gaps():
    """Without backpressure, one source streaming to its neighbour moves one packet per clock."""
    cfg = FabricConfig(mesh_x=2, mesh_y=1, event_fifo_depth=4)
    dut = Mesh(cfg)
    n = 40
    got = []
    pkts = [dict(dest=1, host=0, c=0, d=i, x=0) for i in range(n)]
    cycles = {}

    def main():
        yield from _send(dut.sinks[0], pkts, random.Random(0), 0.0)
        for t in range(100):
            if len(got) == n:
                break
            yield
        cycles["n"] = len(got)

    def count():
        t = 0
        while True:
            yield dut.sources[1].ready.eq(1)
            yield
            t += 1
            if (yield dut.sources[1].valid):
                got.append(t)
    run_simulation(dut, [main(), _passive(count())])
    assert cycles["n"] == n
    assert got[-1] - got[0] == n - 1   # back to back


def test_router_ports():
    cfg = FabricConfig(mesh_x=3, mesh_y=2)
    assert router_ports(cfg, 0, 0) == ["local", "east", "south", "host"]
    assert router_ports(cfg, 1, 1) == ["local", "north", "east", "west"]
    assert router_ports(cfg, 2, 1) == ["local", "north", "west"]


def test_zero_depth_rejected():
    with pytest.raises(SynfabError, match="event_fifo_depth"):
        Mesh(FabricConfig(event_fifo_depth=0))


def test_round_robin_shares_a_congested_output():
    """Core 0 and the host port both stream to core 1: the shared east link alternates between them."""
    cfg = FabricConfig(mesh_x=2, mesh_y=1, event_fifo_depth=2)
    dut = Mesh(cfg)
    n = 12
    got = []

    def main():
        for _ in range(200):
            if len(got) == 2 * n:
                break
            yield

    run_simulation(dut, [
        main(),
        _passive(_send(dut.sinks[0], [dict(dest=1, host=0, c=0, d=i, x=0) for i in range(n)],
                       random.Random(1), 0.0)),
        _passive(_send(dut.host_sink, [dict(dest=1, host=0, c=2, d=i, x=0) for i in range(n)],
                       random.Random(2), 0.0)),
        _passive(_receive(dut.sources[1], got, random.Random(3), 0.0)),
    ])
    sources = [p["c"] for p in got]
    assert len(sources) == 2 * n
    # Both inputs are backlogged the whole time: no source is served twice in a row.
    assert all(a != b for a, b in zip(sources, sources[1:]))
