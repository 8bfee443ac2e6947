"""NIR import and export (synfab.frontend.nir, nir_export) against NIR's own definitions.

Every neuron node is checked against forward Euler written here straight from the equations in
nir's docstrings (tau dv/dt = v_leak - v + r I, ...), on parameters where Euler's float arithmetic
and synfab's integers agree exactly (power-of-two weights and decays): equal spikes at every step.
"""
import math
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nir = pytest.importorskip("nir", reason="nir (setup.sh installs it)")

from synfab import arith, demo
from synfab.frontend import quant
from synfab.model import reference  # noqa: E402
from synfab.frontend import nir as snir  # noqa: E402
from synfab.frontend import nir_export  # noqa: E402
from synfab.frontend.ir import Network, Node  # noqa: E402

DT = 1e-3
N_IN, N_OUT, STEPS = 4, 3, 8


def graph(in_shape, *layers, edges=None):
    """Input -> layers... -> Output, nodes named n0, n1, ..."""
    nodes = {"in": nir.Input(input_type=np.array(in_shape))}
    names = ["in"] + [f"n{i}" for i in range(len(layers))] + ["out"]
    nodes.update({f"n{i}": layer for i, layer in enumerate(layers)})
    nodes["out"] = nir.Output(output_type=np.array([1]))
    return nir.NIRGraph(nodes=nodes, edges=edges or list(zip(names, names[1:])))


def spikes_in(seed, steps=STEPS, shape=(N_IN, 1, 1), p=0.5):
    return (np.random.default_rng(seed).random((steps, *shape)) < p).astype(np.int64)


def synfab_events(g, frames, **kw):
    q = snir.load(g, **kw)
    trace = reference.simulate(q, frames)
    return q, trace


# -- forward Euler from NIR's equations ------------------------------------------------------------
def euler(node, currents, dt=DT):
    """Spikes (T, n) and v (T, n) of one NIR neuron node driven by input currents (T, n)."""
    kind = type(node).__name__
    v = np.zeros(currents.shape[1])
    i_syn = np.zeros_like(v)
    z_all, v_all = [], []
    for x in currents:
        if kind == "IF":
            v = v + dt * node.r * x
        elif kind in ("LIF", "LI"):
            v = v + dt / node.tau * (node.v_leak - v + node.r * x)
        elif kind == "CubaLIF":
            i_syn = i_syn + dt / node.tau_syn * (-i_syn + node.w_in * x)
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i_syn)
        z = v > node.v_threshold if hasattr(node, "v_threshold") else np.zeros_like(v, bool)
        v = np.where(z, 0.0, v)
        z_all.append(z.astype(np.int64))
        v_all.append(v)
    return np.array(z_all), np.array(v_all)


pow2_weights = st.lists(st.integers(-3, 3), min_size=N_IN * N_OUT, max_size=N_IN * N_OUT).map(
    lambda w: np.array(w, dtype=np.float64).reshape(N_OUT, N_IN))


def full(v):
    return np.full(N_OUT, float(v))


@settings(max_examples=25, deadline=None)
@given(w=pow2_weights, kind=st.sampled_from(["IF", "LIF", "CubaLIF"]), thr=st.integers(1, 4),
       halvings=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_each_neuron_node_spikes_as_nir_defines_it(w, kind, thr, halvings, seed):
    tau = DT * 2 ** halvings                  # dt / tau a power of two: Euler's decay is exact in 12 bits
    node = {
        "IF": lambda: nir.IF(r=full(1 / DT), v_threshold=full(thr)),
        "LIF": lambda: nir.LIF(tau=full(tau), r=full(tau / DT), v_leak=full(0), v_threshold=full(thr)),
        "CubaLIF": lambda: nir.CubaLIF(tau_syn=full(DT * 2), tau_mem=full(tau), r=full(tau / DT), v_leak=full(0),
                                       v_threshold=full(thr), w_in=full(2)),
    }[kind]()
    frames = spikes_in(seed)
    want, _ = euler(node, frames[:, :, 0, 0] @ w.T)
    q, trace = synfab_events(graph([N_IN], nir.Linear(weight=w), node), frames, dt=DT)
    got = np.array(trace.events[q.output])[:, :, 0, 0]
    assert np.array_equal(got, want)


def test_forward_euler_decays_and_gains_in_the_neuron_fields():
    lif = nir.LIF(tau=full(4 * DT), r=full(8), v_leak=full(0), v_threshold=full(3))
    q = snir.load(graph([N_IN], nir.Linear(weight=np.eye(N_OUT, N_IN)), lif), dt=DT)
    n = q.layers[0].neuron
    # decay dt / tau = 1/4 of 4096; gain dt * r / tau = 2 scales the threshold to 1.5 weight units of 1/64
    assert (n.model, n.dv, n.theta) == ("lif", 1024, 96)


def test_leaky_readouts_never_fire_and_hold_euler_voltage():
    w = np.array([[1.0, -1, 2, 0], [0.5, 0.5, 0, 1], [-2, 1, 1, 1]])
    li = nir.LI(tau=full(2 * DT), r=full(2), v_leak=full(0.25))
    frames = spikes_in(3)
    _, want_v = euler(li, frames[:, :, 0, 0] @ w.T)
    q, trace = synfab_events(graph([N_IN], nir.Linear(weight=w), li), frames, dt=DT)
    assert not np.any(trace.events[q.output])
    unit = snir.weight_scale(w) / (1 << arith.LOIHI_ACT_SHIFT)
    got_v = np.array([s["v"][:, 0, 0] for s in trace.states[q.output]]) * unit
    assert np.allclose(got_v, want_v, atol=4 * unit)        # Loihi's decay rounds toward zero


def test_integrator_sums_and_threshold_is_stateless():
    w = np.eye(N_OUT, N_IN) * 2
    frames = spikes_in(5)
    q, trace = synfab_events(graph([N_IN], nir.Linear(weight=w), nir.I(r=full(1 / DT))), frames, dt=DT)
    unit = snir.weight_scale(w) / (1 << arith.LOIHI_ACT_SHIFT)
    v = np.array([s["v"][:, 0, 0] for s in trace.states[q.output]]) * unit
    assert not np.any(trace.events[q.output])
    assert np.array_equal(v, np.cumsum(frames[:, :N_OUT, 0, 0] * 2.0, axis=0))
    q, trace = synfab_events(graph([N_IN], nir.Linear(weight=w), nir.Threshold(threshold=full(1))), frames, dt=DT)
    assert np.array_equal(np.array(trace.events[q.output])[:, :, 0, 0], frames[:, :N_OUT, 0, 0])


def test_sinabs_convention_fires_at_threshold_many_times_and_subtracts():
    w = np.array([[2.0, 1, 0, 0], [1, 1, 1, 1], [-1, 0, 0, 0]])
    node = nir.IF(r=full(1), v_threshold=full(1))
    frames = spikes_in(1, p=0.8)
    q, trace = synfab_events(graph([N_IN], nir.Linear(weight=w), node), frames, convention="sinabs")
    v = np.zeros(N_OUT)
    for t, x in enumerate(frames[:, :, 0, 0]):
        v = v + w @ x
        n = np.where(v >= 1, np.floor(v), 0)             # sinabs' MultiSpike of threshold 1
        v = np.maximum(v - n, -1)                        # MembraneSubtract, min_v_mem = -threshold
        assert np.array_equal(trace.events[q.output][t][:, 0, 0], n)


def test_snntorch_convention_holds_cuba_voltage_one_step():
    node = nir.CubaLIF(tau_syn=full(2e-4), tau_mem=full(2e-4), r=full(2), v_leak=full(0), v_threshold=full(1),
                       w_in=full(2))
    q = snir.load(graph([N_IN], nir.Linear(weight=np.eye(N_OUT, N_IN)), node), convention="snntorch")
    assert (q.layers[0].neuron.refractory, q.layers[0].neuron.du, q.layers[0].neuron.dv) == (1, 2048, 2048)


# -- graph structure ---------------------------------------------------------------------------
def conv_graph(input_shape=None):
    w = np.arange(2 * 1 * 3 * 3, dtype=np.float64).reshape(2, 1, 3, 3) % 5 - 2
    return graph([1, 8, 8], nir.Conv2d(input_shape=input_shape, weight=w, stride=1, padding=1, dilation=1, groups=1,
                                       bias=np.zeros(2)),
                 nir.IF(r=np.ones((2, 8, 8)), v_threshold=np.full((2, 8, 8), 2.0)),
                 nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
                 nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
                 nir.Affine(weight=np.ones((3, 32)), bias=np.zeros(3)),
                 nir.IF(r=np.ones(3), v_threshold=np.full(3, 4.0)))


def test_conv_input_shape_is_inferred_and_pool_becomes_a_constant_relay():
    q = snir.load(conv_graph(), dt=1)
    assert [(l.name, l.shape, l.neuron.model) for l in q.layers] == [
        ("n1", (2, 8, 8), "if"), ("n2", (2, 4, 4), "sigma_delta"), ("n5", (3, 1, 1), "if")]
    assert q.layers[1].inputs[0].wconst == 1 and q.layers[1].lo is None
    assert q.layers[0].inputs[0].k == 3 and q.layers[2].inputs[0].src == "n2"
    with pytest.raises(snir.NirError, match=r"^node n0 \(Conv2d\): input_shape \[7, 7\] but its input is 8x8"):
        snir.load(conv_graph(np.array([7, 7])), dt=1)


def test_sum_pool_relay_passes_each_steps_sum():
    frames = spikes_in(7, steps=6, shape=(1, 8, 8))
    q, trace = synfab_events(conv_graph(), frames, dt=1)
    ifs = np.array(trace.events["n1"])
    pooled = ifs.reshape(6, 2, 4, 2, 4, 2).sum(axis=(3, 5))
    assert np.array_equal(np.array(trace.events["n2"]), pooled)


def test_edge_order_and_nesting_do_not_change_the_network():
    flat = snir.load(conv_graph(), dt=1)
    g = conv_graph()
    g.edges = list(reversed(g.edges))
    shuffled = snir.load(g, dt=1)
    inner = nir.NIRGraph(nodes={"i": nir.Input(np.array([3])), "if": nir.IF(r=np.ones(3), v_threshold=np.full(3, 4.0)),
                                "o": nir.Output(np.array([3]))}, edges=[("i", "if"), ("if", "o")])
    g = conv_graph()
    g.nodes["n5"] = inner
    nested = snir.load(g, dt=1)
    for q in (shuffled, nested):
        assert [l.shape for l in q.layers] == [l.shape for l in flat.layers]
        assert all(np.array_equal(a.weight, b.weight) and a.neuron == b.neuron for a, b in zip(q.layers, flat.layers))
    assert nested.output == "n5.if"


def test_scale_folds_into_the_weights():
    w = np.array([[1.0, 2, 0, 1], [0, 1, 1, 1], [1, 0, 0, 3]])
    frames = spikes_in(11)
    node = nir.IF(r=full(1), v_threshold=full(3))
    _, plain = synfab_events(graph([N_IN], nir.Linear(weight=w * 2), node), frames, dt=1)
    q, scaled = synfab_events(graph([N_IN], nir.Scale(scale=np.full(N_IN, 2.0)), nir.Linear(weight=w), node),
                              frames, dt=1)
    assert np.array_equal(np.array(plain.events["n1"]), np.array(scaled.events["n2"]))


def test_weight_scale_is_a_power_of_two_when_exact():
    assert snir.weight_scale(np.array([0.25, -0.5, 1.0])) == 2.0 ** -6
    assert snir.weight_scale(np.array([0.3, -1.27])) == pytest.approx(0.01)
    assert snir.weight_scale(np.zeros(3)) == 1.0


# -- refusals: one line naming node, type and what works ----------------------------------------------
def lif_chain(**kw):
    p = dict(tau=full(2 * DT), r=full(2), v_leak=full(0), v_threshold=full(1))
    p.update(kw)
    return graph([N_IN], nir.Linear(weight=np.eye(N_OUT, N_IN)), nir.LIF(**p))


@pytest.mark.parametrize("make, kw, pattern", [
    (lambda: lif_chain(tau=np.array([1e-3, 2e-3, 2e-3])), {}, r"node n1 \(LIF\): tau differs between neurons"),
    (lambda: lif_chain(tau=np.full(5, 2e-3), r=np.full(5, 2.0), v_leak=np.zeros(5), v_threshold=np.ones(5)),
     {}, r"node n1 \(LIF\): tau has 5 values for its 3 neurons"),
    (lambda: lif_chain(tau=full(DT / 2)), {}, r"node n1 \(LIF\): dt / tau = 2 is outside 0..1"),
    (lambda: lif_chain(), dict(convention="sinabs"), r"node n1 \(LIF\): resets by subtraction; supported: reset to 0"),
    (lambda: graph([N_IN], nir.Affine(weight=np.eye(N_OUT, N_IN), bias=full(1)),
                   nir.CubaLIF(tau_syn=full(2 * DT), tau_mem=full(2 * DT), r=full(2), v_leak=full(0),
                               v_threshold=full(1))), {}, r"node n1 \(CubaLIF\): its synapses have a bias"),
    (lambda: graph([N_IN], nir.Delay(delay=np.ones(N_IN))), {}, r"node n0 \(Delay\): not supported; supported: a graph "
                                                                 r"without synaptic delays"),
    (lambda: graph([N_IN], nir.Linear(weight=np.eye(N_OUT, N_IN)), nir.IF(r=full(1), v_threshold=full(1)),
                   edges=[("in", "n0"), ("n0", "n1"), ("n1", "n0"), ("n1", "out")]), {}, r"node n0 \(Linear\): is on a "
                                                                                         r"cycle"),
    (lambda: graph([1, 4, 4], nir.Flatten(input_type={"input": np.array([1, 4, 4])}, start_dim=1, end_dim=-1)), {},
     r"node n0 \(Flatten\): start_dim 1, end_dim -1"),
    (lambda: graph([2, 4, 4], nir.Conv2d(input_shape=None, weight=np.ones((2, 1, 3, 3)), stride=1, padding=0,
                                         dilation=2, groups=2, bias=np.zeros(2))), {},
     r"node n0 \(Conv2d\): dilation \[2, 2\]"),
    (lambda: graph([N_IN], nir.Linear(weight=np.eye(N_OUT, N_IN)), nir.Threshold(threshold=full(10000))), {},
     r"node n1 \(Threshold\): threshold 10000 is"),
    (lambda: lif_chain(), dict(convention="norse"), r"unknown NIR convention 'norse'"),
    (lambda: lif_chain(), dict(input_max=1 << 20), r"node n1 \(LIF\): its synaptic input can reach 67108864 weight "
                                                   r"steps in one step \(input values up to 1048576\), beyond the "
                                                   r"131072 of Loihi's 24-bit current"),
])
def test_refusals_are_one_line(make, kw, pattern):
    with pytest.raises(snir.NirError, match=pattern) as e:
        snir.load(make(), **{"dt": DT, **kw})
    assert "\n" not in str(e.value)


def test_is_nir_file_and_missing_file(tmp_path):
    path = tmp_path / "net.nir"
    nir.write(path, lif_chain())
    assert snir.is_nir_file(path) and not snir.is_nir_file(tmp_path / "none.nir")
    (tmp_path / "x.json").write_text("{}")
    assert not snir.is_nir_file(tmp_path / "x.json")
    assert snir.load(path, dt=DT).layers[0].neuron.model == "lif"
    with pytest.raises(snir.NirError, match="NIR file .*none.nir not found"):
        snir.load(tmp_path / "none.nir")


# -- export ----------------------------------------------------------------------------------------------
def test_float_network_round_trips_through_a_nir_file(tmp_path):
    net = demo.load_network("demo")
    nir_export.export(net, tmp_path / "demo.nir")
    back = snir.load(tmp_path / "demo.nir")
    assert isinstance(back, Network)
    assert [(n.name, n.op, n.shape) for n in back] == [(n.name, n.op, n.shape) for n in net]
    images, _ = demo.load_demo_digits(8)
    assert np.array_equal(quant.float_forward(back, images / 255.0), quant.float_forward(net, images / 255.0))


def test_float_residual_add_round_trips():
    rng = np.random.default_rng(0)
    conv = lambda name, src: Node(name, "conv", [src], dict(out_channels=2, kernel=3, padding=1),   # noqa: E731
                                  dict(weight=rng.normal(size=(2, 2, 3, 3)), bias=rng.normal(size=2)))
    net = Network([Node("input", "input", attrs=dict(shape=[2, 6, 6])), conv("a", "input"), Node("r", "relu", ["a"]),
                   conv("b", "r"), Node("sum", "add", ["r", "b"]), Node("pool", "avgpool", ["sum"], dict(kernel=2)),
                   Node("flat", "flatten", ["pool"]),
                   Node("fc", "dense", ["flat"], dict(out_features=3), dict(weight=rng.normal(size=(3, 18)),
                                                                            bias=np.zeros(3)))])
    back = snir.load(nir_export.graph(net))
    assert [(n.name, n.op, n.inputs) for n in back] == [(n.name, n.op, n.inputs) for n in net]
    x = rng.random((4, 2, 6, 6))
    assert np.allclose(quant.float_forward(back, x), quant.float_forward(net, x))


def test_float_layers_without_nir_nodes_are_refused():
    nodes = [Node("input", "input", attrs=dict(shape=[1, 4, 4])), Node("up", "upsample", ["input"], dict(scale=2))]
    with pytest.raises(snir.NirError, match=r"^layer 'up' \(upsample\): has no NIR node"):
        nir_export.graph(Network(nodes))


neuron_nodes = st.sampled_from(["IF", "LIF", "CubaLIF", "LI"])


@settings(max_examples=15, deadline=None)
@given(w1=st.lists(st.integers(-4, 4), min_size=2 * 9, max_size=2 * 9), w2=pow2_weights.map(lambda w: w[:, :2]),
       kinds=st.tuples(neuron_nodes, neuron_nodes), seed=st.integers(0, 2**16), thr=st.integers(1, 3))
def test_imported_networks_round_trip_through_export(tmp_path_factory, w1, w2, kinds, seed, thr):
    def neuron(kind, shape):
        f = lambda v: np.full(shape, float(v))          # noqa: E731
        return {"IF": lambda: nir.IF(r=f(1 / DT), v_threshold=f(thr)),
                "LIF": lambda: nir.LIF(tau=f(2 * DT), r=f(2), v_leak=f(0), v_threshold=f(thr)),
                "CubaLIF": lambda: nir.CubaLIF(tau_syn=f(4 * DT), tau_mem=f(2 * DT), r=f(2), v_leak=f(0),
                                               v_threshold=f(thr), w_in=f(4)),
                "LI": lambda: nir.LI(tau=f(2 * DT), r=f(2), v_leak=f(0))}[kind]()
    conv = nir.Conv2d(input_shape=None, weight=np.array(w1, dtype=np.float64).reshape(2, 1, 3, 3), stride=1, padding=1,
                      dilation=1, groups=1, bias=np.zeros(2))
    g = graph([1, 4, 4], conv, neuron(kinds[0], (2, 4, 4)),
              nir.SumPool2d(kernel_size=np.array([4, 4]), stride=np.array([4, 4]), padding=np.array([0, 0])),
              nir.Flatten(input_type={"input": np.array([2, 1, 1])}, start_dim=0, end_dim=-1),
              nir.Linear(weight=w2), neuron(kinds[1], (N_OUT,)))
    frames = spikes_in(seed, shape=(1, 4, 4))
    q = snir.load(g, dt=DT)
    path = tmp_path_factory.mktemp("nir") / "q.nir"
    nir_export.export(q, path, dt=DT)
    back = snir.load(path, dt=DT)
    a, b = reference.simulate(q, frames), reference.simulate(back, frames)
    assert [l.name for l in back.layers] == [l.name for l in q.layers]
    for layer in q.layers:
        assert np.array_equal(np.array(a.events[layer.name]), np.array(b.events[layer.name]))


def test_export_cli_writes_a_readable_nir_file(tmp_path):
    out = tmp_path / "demo.nir"
    r = subprocess.run([sys.executable, "-m", "synfab.cli", "export", "demo", "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    g = nir.read(out)
    assert {type(n).__name__ for n in g.nodes.values()} >= {"Input", "Conv2d", "IF", "Affine", "Output"}
    bad = subprocess.run([sys.executable, "-m", "synfab.cli", "export", str(tmp_path / "none.json"), "-o", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_compile_takes_a_nir_file_and_its_options_through_the_front_door(tmp_path):
    net = tmp_path / "if.nir"
    w = np.array([[1.0, -2.0, 1.0, 3.0], [2.0, 1.0, -1.0, 1.0], [0.0, 1.0, 2.0, -3.0]])
    nir.write(net, graph([N_IN, 1, 1], nir.Flatten(input_type={"input": np.array([N_IN, 1, 1])}, start_dim=0, end_dim=-1),
                         nir.Linear(weight=w), nir.IF(r=np.ones(N_OUT), v_threshold=np.full(N_OUT, 2.0))))
    out = tmp_path / "demo.sfb"
    r = subprocess.run([sys.executable, "-m", "synfab.cli", "compile", str(net), "-o", str(out), "--dt", "1",
                        "--option", "convention=sinabs", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and json.loads(r.stdout)["bundle"] == str(out)
    bad = subprocess.run([sys.executable, "-m", "synfab.cli", "compile", str(net), "-o", str(out),
                          "--option", "convention=lava"], capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "convention" in bad.stderr
