"""Memory-footprint analysis: closed forms by hand, brute force on random networks, zoo sanity."""
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from synfab import SynfabError, layouts
from synfab.analysis import footprint, zoo
from synfab.compiler import mapper
from synfab.frontend import quant
from synfab.config import FabricConfig
from synfab.frontend.ir import Network, Node
from synfab.layouts import Kind

SCHEMES = ("explicit", "loihi", "dynapcnn", "pegesu")


def _net(shape, *layers, name="t"):
    nodes = [Node("in", "input", attrs={"shape": shape})]
    prev = "in"
    for i, (op, attrs) in enumerate(layers):
        nodes.append(Node(f"l{i}", op, [prev], attrs=attrs))
        prev = f"l{i}"
    return Network(nodes, name=name)


def _bytes(result, scheme):
    s = result["schemes"][scheme]
    return s["connectivity_bytes"], s["weight_bytes"], s["total_bytes"]


def _pegesu_table_bits(n_cores, weight_words, pegs_per_core, esus, pops, input_pegs, peg, esu, pop):
    """Table bits at the widths of the smallest fabric holding the placement (spine layouts)."""
    side = int(np.ceil(np.sqrt(n_cores)))
    cfg = FabricConfig(mesh_x=side, mesh_y=-(-n_cores // side), neurons_per_core=1024,
                       weight_words_per_core=weight_words, peg_entries_per_core=pegs_per_core,
                       esu_descriptors_per_core=esus, populations_per_core=pops, input_peg_entries=input_pegs)
    return (peg * layouts.peg_entry(cfg).width + esu * layouts.esu_desc(cfg).width
            + pop * layouts.pop_desc(cfg).width)


# ---------------------------------------------------------------------------------------
# Closed forms, computed by hand from the formulas in the module doc (Nc = 1024, b_i = 10,
# b_w = 8, E = 48, neuron state = 24 + 16 bits).
def test_single_conv_3x3_4_to_8_on_8x8_by_hand():
    net = _net((4, 8, 8), ("conv", {"out_channels": 8, "kernel": 3, "padding": 1}))
    r = footprint.analyze(net, neurons_per_core=1024)
    # Per axis, outputs reached summed over the 8 source positions: 8*3 - 2 border taps = 22.
    assert r["synapses"] == 22 * 22 * 4 * 8 == 15488
    assert r["weights"] == 8 * 4 * 9
    assert r["neurons"] == 512 and r["neuron_state_bytes"] == 512 * 40 / 8
    # One part on one core: 256 input neurons hit 1 core; 512 output neurons go to the host.
    routing = (256 + 512) * 48 / 8
    assert _bytes(r, "explicit") == (15488 * 10 / 8 + routing, 15488, 15488 * 10 / 8 + routing + 15488 + 2560)
    # Loihi: border masks per axis (1,1,0) (1,1,1) (0,1,1) -> sizes 2, 3, 2; 9 groups with
    # 2x2, 2x3, 3x2, 3x3 taps x 8 channels = 32, 48, 48, 72 synapses per input channel.
    # Largest index ((3-1)*8 + 3-1)*8 + 7 = 151 -> 8 index bits, 16 bits a synapse.
    # Lists: 32 -> 512+10 -> 576 bits; 48 -> 768+10 -> 832; 72 -> (1024+10 -> 1088) + (128+10 -> 192).
    per_channel_bits = 4 * 576 + 4 * 832 + 1 * 1280
    stored = 4 * (4 * 32 + 4 * 48 + 72)
    loihi_bits = 4 * per_channel_bits
    assert _bytes(r, "loihi") == ((loihi_bits - stored * 8) / 8 + routing, stored,
                                  loihi_bits / 8 + routing + 2560)
    # DYNAP-CNN: kernel 4 * 2^(4 + 3) = 512 words for 288 weights; neurons 8 * 2^(3+3) = 512 exactly.
    assert _bytes(r, "dynapcnn") == ((512 - 288) * 8 / 8, 288, 512 + 2560)
    # PEG/ESU: one input PEG entry, one HOST entry, one ESU descriptor, one population; 288 weight words.
    table_bits = _pegesu_table_bits(1, 288, 1, 1, 1, 1, peg=2, esu=1, pop=1)
    assert _bytes(r, "pegesu") == (table_bits / 8, 288, table_bits / 8 + 288 + 2560)


def test_dense_from_a_2x2x3_input_by_hand():
    net = _net((3, 2, 2), ("dense", {"out_features": 5}))
    r = footprint.analyze(net, neurons_per_core=1024)
    assert (r["synapses"], r["weights"], r["neurons"]) == (60, 60, 5)
    routing = (12 + 5) * 48 / 8
    state = 5 * 40 / 8
    assert _bytes(r, "explicit") == (60 * 10 / 8 + routing, 60, 60 * 18 / 8 + routing + state)
    # Loihi dense lists have no index (compression 3): 5*8 + 10 bits -> one 64-bit word per source neuron.
    assert _bytes(r, "loihi") == ((12 * 64 - 60 * 8) / 8 + routing, 60, 12 * 64 / 8 + routing + state)
    # DYNAP-CNN: a conv with a 2x2 kernel: 3 * 2^(2 + 3) = 96 kernel words; neurons 5 * 2^0.
    assert _bytes(r, "dynapcnn") == ((96 - 60) * 8 / 8, 60, 96 + state)
    table_bits = _pegesu_table_bits(1, 60, 1, 1, 1, 1, peg=2, esu=1, pop=1)
    assert _bytes(r, "pegesu") == (table_bits / 8, 60, table_bits / 8 + 60 + state)


def test_sum_pool_2x2_has_no_weights_but_loihi_stores_its_synapses():
    net = _net((3, 4, 4), ("sumpool", {"kernel": 2, "stride": 2}))
    r = footprint.analyze(net, neurons_per_core=1024)
    assert (r["synapses"], r["weights"], r["neurons"]) == (48, 0, 12)
    routing = (48 + 12) * 48 / 8
    state = 12 * 40 / 8
    assert _bytes(r, "explicit") == (48 * 10 / 8 + routing, 48, 48 * 18 / 8 + routing + state)
    # Masks per axis (1,0) and (0,1): 4 groups of one synapse per channel; index <= 2 -> 6 bits;
    # 1*(8+6) + 10 = 24 -> 64 bits; 3 channels x 4 groups.
    assert _bytes(r, "loihi") == ((12 * 64 - 12 * 8) / 8 + routing, 12, 12 * 64 / 8 + routing + state)
    # No kernel memory; neurons 3 * 2^(1+1) = 12 words exactly.
    assert _bytes(r, "dynapcnn") == (0, 0, state)
    table_bits = _pegesu_table_bits(1, 4, 1, 1, 1, 1, peg=2, esu=1, pop=1)
    assert _bytes(r, "pegesu") == (table_bits / 8, 0, table_bits / 8 + state)


def test_valid_convolutions_have_as_many_synapses_as_macs():
    net = _net((2, 7, 7), ("conv", {"out_channels": 3, "kernel": 3, "stride": 2}),
               ("conv", {"out_channels": 4, "kernel": 3}))
    r = footprint.analyze(net, neurons_per_core=64)
    assert r["synapses"] == net.count()["macs"] == 3 * 3 * 3 * 2 * 9 + 4 * 1 * 1 * 3 * 9


# ---------------------------------------------------------------------------------------
# Brute force on random small networks: synapses enumerated from DESIGN.md's connection
# geometry (destination-centric), routing from the placement, Loihi groups pixel by pixel.
def _axis_pairs(n_src, n_out, k, stride, pad, up):
    """(output, source, tap) triples along one axis: out[o] += w[t] * Z[o*stride + t - pad]."""
    out = []
    for o in range(n_out):
        for t in range(k):
            q = o * stride + t - pad
            if 0 <= q < n_src * up and q % up == 0:
                out.append((o, q // up, t))
    return out


def _synapse_list(qnet, layer, conn):
    """Arrays (source flat index, destination c, y, x) of every synapse of a connection."""
    cs, hs, ws = qnet.shape_of(conn.src)
    C, H, W = layer.shape
    src, dc, dy, dx = [], [], [], []
    if conn.kind == Kind.DENSE:
        s, c = np.meshgrid(np.arange(cs * hs * ws), np.arange(C), indexing="ij")
        return s.ravel(), c.ravel(), np.zeros(s.size, int), np.zeros(s.size, int)
    ys = _axis_pairs(hs, H, conn.kh, conn.sh, conn.ph, conn.up)
    xs = _axis_pairs(ws, W, conn.kw, conn.sw, conn.pw, conn.up)
    for ci in range(cs):
        outs = range(C) if conn.kind == Kind.CONV else [ci + conn.chan_off]
        for co in outs:
            for oy, py, _ in ys:
                for ox, px, _ in xs:
                    src.append((ci * hs + py) * ws + px)
                    dc.append(co), dy.append(oy), dx.append(ox)
    return np.array(src, int), np.array(dc, int), np.array(dy, int), np.array(dx, int)


def _loihi_list_bits(n, bits_per_synapse):
    """nengo-loihi SynapseConfig.bits_per_axon, literally."""
    bits = 0
    for i in range(0, n, 64):
        m = min(n - i, 64)
        bits += -64 * (-(m * bits_per_synapse + 4 + 6) // 64)
    return bits


def _loihi_part(qnet, conn, part):
    """(bits, stored synapses) of one connection into one part, source pixel by pixel."""
    cs, hs, ws = qnet.shape_of(conn.src)
    cc, tw = part.tile.c1 - part.tile.c0 + 1, part.tile.x1 - part.tile.x0 + 1
    if conn.kind == Kind.DENSE:
        return cs * hs * ws * _loihi_list_bits(cc, 8), cs * hs * ws * cc

    def mask(p, t0, t1, axis):
        k, stride, pad = conn.axis(axis)
        z = p * conn.up + pad
        return tuple(z - t >= 0 and (z - t) % stride == 0 and t0 <= (z - t) // stride <= t1 for t in range(k))

    keys = set()
    for py in range(hs):
        for px in range(ws):
            my, mx = mask(py, part.tile.y0, part.tile.y1, "y"), mask(px, part.tile.x0, part.tile.x1, "x")
            if any(my) and any(mx):
                keys.add((my, mx))
    if conn.kind == Kind.DW:
        rows = sum(part.tile.c0 <= c + conn.chan_off <= part.tile.c1 for c in range(cs))
        per_tap = 1
    else:
        rows, per_tap = cs, cc
    if not keys or not rows:
        return 0, 0
    max_index = max(((sum(my) - 1) * tw + sum(mx) - 1) * cc + cc - 1 for my, mx in keys)
    idx = next(b for b in (6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16) if 2 ** b > max_index)
    bits = sum(_loihi_list_bits(sum(my) * sum(mx) * per_tap, 8 + idx) for my, mx in keys)
    stored = sum(sum(my) * sum(mx) * per_tap for my, mx in keys)
    return rows * bits, rows * stored


@st.composite
def small_networks(draw):
    c, size = draw(st.integers(1, 3)), draw(st.integers(4, 10))
    nodes = [Node("in", "input", attrs={"shape": (c, size, size)})]
    shapes = {"in": (c, size, size)}
    prev = "in"
    for i in range(draw(st.integers(1, 4))):
        C, H, W = shapes[prev]
        kind = draw(st.sampled_from(["conv", "dw", "pool", "up", "res"]))
        name = f"l{i}"
        if kind in ("conv", "dw"):
            kh, kw = draw(st.integers(1, min(5, H))), draw(st.integers(1, min(5, W)))   # rectangular too
            sh, sw = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
            ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
            attrs = {"out_channels": C if kind == "dw" else draw(st.integers(1, 6)), "kernel": [kh, kw],
                     "stride": [sh, sw], "padding": [ph, pw], "groups": C if kind == "dw" else 1}
            nodes.append(Node(name, "conv", [prev], attrs=attrs))
        elif kind == "pool":
            k = draw(st.integers(1, min(3, H, W)))
            nodes.append(Node(name, "sumpool", [prev], attrs={"kernel": k, "stride": draw(st.sampled_from([1, 2]))}))
        elif kind == "up":
            if H * W * C * 4 > 600:
                continue
            nodes.append(Node(name, "upsample", [prev], attrs={"scale": 2}))
        else:  # residual: a 'same' conv branch added back
            nodes.append(Node(name + "b", "conv", [prev], attrs={"out_channels": C, "kernel": 3, "padding": 1}))
            nodes.append(Node(name, "add", [name + "b", prev]))
        net = Network(list(nodes), name="rand")
        shapes = {n.name: n.shape for n in net}
        prev = name
    if len(nodes) == 1 or draw(st.booleans()):  # at least one population after the input
        nodes.append(Node("fc", "dense", [prev], attrs={"out_features": draw(st.integers(1, 5))}))
    return Network(nodes, name="rand")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=small_networks(), nc=st.sampled_from([32, 64, 256]))
def test_counts_match_brute_force_on_random_networks(net, nc):
    qnet = quant.lower(net)
    try:
        r = footprint.analyze(qnet, neurons_per_core=nc)
    except mapper.MappingError:
        assume(False)
    placement = mapper.map_network(qnet, footprint.analysis_config(qnet, nc), for_analysis=True)
    core_of = {}
    for layer in qnet.layers:
        grid = np.full(layer.shape, -1)
        for p in placement.parts:
            if p.layer == layer.name:
                grid[p.tile.c0:p.tile.c1 + 1, p.tile.y0:p.tile.y1 + 1, p.tile.x0:p.tile.x1 + 1] = p.core
        assert (grid >= 0).all()
        core_of[layer.name] = grid
    rows = {row["name"]: row for row in r["layers"]}
    hits = {name: set() for name in rows}      # (source neuron, core)
    loihi_bits = loihi_stored = 0
    for layer in qnet.layers:
        n_syn = 0
        for conn in layer.inputs:
            s, c, y, x = _synapse_list(qnet, layer, conn)
            n_syn += len(s)
            hits[conn.src] |= set(zip(s.tolist(), core_of[layer.name][c, y, x].tolist()))
            for p in placement.parts:
                if p.layer == layer.name:
                    bits, stored = _loihi_part(qnet, conn, p)
                    loihi_bits, loihi_stored = loihi_bits + bits, loihi_stored + stored
        assert rows[layer.name]["synapses"] == n_syn
    out_neurons = int(np.prod(qnet.layer(qnet.output).shape))
    for name, row in rows.items():
        assert row["routing_entries"] == len(hits[name]) + (out_neurons if name == qnet.output else 0), name
    routing = sum(len(h) for h in hits.values()) + out_neurons
    assert r["schemes"]["loihi"]["weight_bytes"] == loihi_stored
    assert r["schemes"]["loihi"]["connectivity_bytes"] == (loihi_bits - 8 * loihi_stored + 48 * routing) / 8
    assert r["schemes"]["explicit"]["connectivity_bytes"] == (r["synapses"] * (nc - 1).bit_length()
                                                             + 48 * routing) / 8
    assert r["schemes"]["pegesu"]["weight_bytes"] == sum(p.weight_words for p in placement.parts)
    assert r["neurons"] == sum(int(np.prod(l.shape)) for l in qnet.layers)


# ---------------------------------------------------------------------------------------
# Relations between parameters and schemes
def test_pegesu_connectivity_does_not_grow_with_resolution_but_explicit_does():
    def result(size):
        net = _net((3, size, size), ("conv", {"out_channels": 8, "kernel": 3, "padding": 1}),
                   ("conv", {"out_channels": 8, "kernel": 3, "padding": 1}))
        return footprint.analyze(net, neurons_per_core=4096)

    small, large = result(8), result(16)
    assert large["synapses"] > 3.5 * small["synapses"]
    assert large["schemes"]["pegesu"]["connectivity_bytes"] == small["schemes"]["pegesu"]["connectivity_bytes"]
    assert large["schemes"]["pegesu"]["weight_bytes"] == small["schemes"]["pegesu"]["weight_bytes"]
    conn = {s: (small["schemes"][s]["connectivity_bytes"], large["schemes"][s]["connectivity_bytes"])
            for s in ("explicit", "loihi")}
    assert conn["explicit"][1] > 3.5 * conn["explicit"][0]   # per synapse and per neuron
    assert conn["loihi"][1] > 2 * conn["loihi"][0]           # per neuron (axon entries)


def test_weight_and_entry_widths_scale_only_their_own_terms():
    net = _net((2, 12, 12), ("conv", {"out_channels": 6, "kernel": 3, "padding": 1, "stride": 2}),
               ("conv", {"out_channels": 4, "kernel": 1}))
    base = footprint.analyze(net, neurons_per_core=64)
    wide = footprint.analyze(net, neurons_per_core=64, weight_bits=16, table_entry_bits=96)
    routing = sum(row["routing_entries"] for row in base["layers"])
    assert wide["schemes"]["explicit"]["weight_bytes"] == 2 * base["schemes"]["explicit"]["weight_bytes"]
    assert wide["schemes"]["explicit"]["connectivity_bytes"] == (
        base["schemes"]["explicit"]["connectivity_bytes"] + routing * 48 / 8)
    assert wide["schemes"]["pegesu"]["connectivity_bytes"] == base["schemes"]["pegesu"]["connectivity_bytes"]
    assert wide["schemes"]["pegesu"]["weight_bytes"] == 2 * base["schemes"]["pegesu"]["weight_bytes"]
    assert wide["schemes"]["dynapcnn"]["weight_bytes"] == 2 * base["schemes"]["dynapcnn"]["weight_bytes"]


def test_layers_add_up_to_the_totals_and_ratios_are_quotients():
    r = footprint.analyze(zoo.get("mobilenetv1"), neurons_per_core=1024)
    for key in ("neurons", "synapses", "weights", "neuron_state_bytes"):
        assert sum(row[key] for row in r["layers"]) == r[key]
    for s in SCHEMES:
        for key in ("connectivity_bytes", "weight_bytes", "total_bytes"):
            assert sum(row["schemes"][s][key] for row in r["layers"]) == pytest.approx(r["schemes"][s][key])
        v = r["schemes"][s]
        assert v["total_bytes"] == v["connectivity_bytes"] + v["weight_bytes"] + r["neuron_state_bytes"]
    p = r["schemes"]["pegesu"]
    assert r["ratios"]["total"]["explicit/pegesu"] == r["schemes"]["explicit"]["total_bytes"] / p["total_bytes"]
    assert r["ratios"]["total"]["best_prior/pegesu"] == min(
        r["schemes"][s]["total_bytes"] for s in SCHEMES[:3]) / p["total_bytes"]


@pytest.mark.parametrize("name", ["mobilenetv1", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_zoo_network_sanity(name):
    net = zoo.get(name)
    counts = net.count()
    start = time.process_time()      # CPU seconds: other load on the machine does not count
    r = footprint.analyze(net, neurons_per_core=1024)
    assert time.process_time() - start < 30
    assert r["weights"] == counts["weights"] and r["neurons"] == counts["neurons"]
    # Padding taps are MACs but not synapses; constant connections add a few synapses back.
    assert 0.9 * counts["macs"] < r["synapses"] < 1.01 * counts["macs"]
    s = {k: v["total_bytes"] for k, v in r["schemes"].items()}
    assert s["explicit"] > s["loihi"] > s["pegesu"]
    # PEG/ESU stores every weight at least once and replicates kernels only per spatial tile.
    assert counts["weights"] <= r["schemes"]["pegesu"]["weight_bytes"] < 3 * counts["weights"]
    assert r["schemes"]["explicit"]["weight_bytes"] == r["synapses"]


def test_format_table_and_plot(tmp_path):
    r = footprint.analyze(_net((2, 8, 8), ("conv", {"out_channels": 4, "kernel": 3, "padding": 1})))
    text = footprint.format_table(r)
    for s in SCHEMES:
        assert s in text
    assert f"{r['ratios']['total']['explicit/pegesu']:.2f}x" in text
    pytest.importorskip("matplotlib")
    footprint.plot(r, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_user_errors():
    with pytest.raises(SynfabError, match="ir.Network or ir.QNetwork"):
        footprint.analyze("resnet50")
    net = _net((1, 4, 4), ("conv", {"out_channels": 1, "kernel": 1}))
    with pytest.raises(SynfabError, match="neurons_per_core must be a positive integer"):
        footprint.analyze(net, neurons_per_core=0)
