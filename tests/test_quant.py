"""Lowering (structure), quantization (numbers) and the demo network."""
import tracemalloc

import numpy as np
import pytest

from synfab import demo
from synfab.frontend import quant
from synfab.model import reference
from synfab.config import FabricConfig
from synfab.frontend.ir import Network, NetworkError, Node
from synfab.layouts import Kind


def conv(name, src, cin, cout, k=3, s=1, p=1, groups=1, rng=None, gain=1.0):
    params = {}
    if rng is not None:
        params = {"weight": rng.normal(size=(cout, cin // groups, k, k)) * gain / np.sqrt(cin * k * k / groups),
                  "bias": rng.normal(size=cout) * 0.1 * gain}
    return Node(name, "conv", [src], {"out_channels": cout, "kernel": k, "stride": s, "padding": p,
                                      "groups": groups}, params)


def dense(name, src, n_in, n_out, rng=None):
    params = {} if rng is None else {"weight": rng.normal(size=(n_out, n_in)) / np.sqrt(n_in),
                                     "bias": rng.normal(size=n_out) * 0.1}
    return Node(name, "dense", [src], {"out_features": n_out}, params)


def inp(shape, name="x"):
    return Node(name, "input", attrs={"shape": shape})


def mixed_net(rng=None):
    """Every op: conv, relu, strided conv, upsample, add, concat, depthwise, avgpool, flatten, dense."""
    return Network([
        inp((3, 8, 8)),
        conv("c1", "x", 3, 4, rng=rng), Node("r1", "relu", ["c1"]),
        conv("c2", "r1", 4, 4, s=2, rng=rng),
        Node("up", "upsample", ["c2"], {"scale": 2}),
        Node("a", "add", ["up", "r1"]), Node("r2", "relu", ["a"]),
        Node("cat", "concat", ["r2", "x"]),
        conv("dw", "cat", 7, 7, groups=7, rng=rng),
        Node("p", "avgpool", ["dw"], {"kernel": 2}),
        Node("f", "flatten", ["p"]),
        dense("d", "f", 7 * 16, 5, rng=rng),
    ])


def conns(layer):
    return [(c.src, c.kind, c.k, c.stride, c.pad, c.up, c.chan_off, c.wconst) for c in layer.inputs]


# ---------------------------------------------------------------------------------------
# lower
def test_lower_structure_follows_design():
    q = quant.lower(mixed_net())
    got = [(l.name, l.shape, l.lo, l.hi, conns(l)) for l in q.layers]
    assert got == [
        ("c1", (4, 8, 8), 0, 255, [("x", Kind.CONV, 3, 1, 1, 1, 0, None)]),
        ("c2", (4, 4, 4), -128, 127, [("c1", Kind.CONV, 3, 2, 1, 1, 0, None)]),
        ("up", (4, 8, 8), -128, 127, [("c2", Kind.DW, 2, 1, 1, 2, 0, 1)]),
        ("a", (4, 8, 8), 0, 255, [("up", Kind.DW, 1, 1, 0, 1, 0, 1), ("c1", Kind.DW, 1, 1, 0, 1, 0, 1)]),
        ("dw", (7, 8, 8), -128, 127, [("a", Kind.DW, 3, 1, 1, 1, 0, None), ("x", Kind.DW, 3, 1, 1, 1, 4, None)]),
        ("p", (7, 4, 4), -128, 127, [("dw", Kind.DW, 2, 2, 0, 1, 0, 1)]),
        ("d", (5, 1, 1), -128, 127, [("p", Kind.DENSE, 1, 1, 0, 1, 0, None)]),
    ]
    assert (q.input_name, q.input_shape, q.output, q.input_hi) == ("x", (3, 8, 8), "d", 255)
    assert all(l.weight is None and l.mult == 1 and l.shift == 0 and not l.bias.any() for l in q.layers)


def test_lower_shape_only_network_is_fast():
    # ~140M weights of shape only: lowering must not allocate them.
    nodes = [inp((512, 14, 14))]
    for i in range(60):
        nodes += [conv(f"c{i}", nodes[-1].name, 512, 512), Node(f"r{i}", "relu", [f"c{i}"])]
    net = Network(nodes)
    tracemalloc.start()          # numpy reports its allocations to tracemalloc
    try:
        q = quant.lower(net)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"lowering allocated {peak >> 20} MiB"
    assert len(q.layers) == 60 and all(l.weight is None for l in q.layers)


def test_global_pool_gets_stride_one():
    q = quant.lower(Network([inp((4, 7, 7)), Node("g", "avgpool", ["x"], {"kernel": 7})]))
    assert conns(q.layers[0]) == [("x", Kind.DW, 7, 1, 0, 1, 0, 1)]


def test_flatten_of_concat_gives_dense_channel_offsets():
    net = Network([inp((2, 3, 3)), conv("a", "x", 2, 3), conv("b", "x", 2, 5), Node("cat", "concat", ["a", "b"]),
                   Node("r", "relu", ["cat"]), Node("f", "flatten", ["r"]), dense("d", "f", 8 * 9, 4)])
    q = quant.lower(net)
    assert [(l.name, l.lo) for l in q.layers] == [("a", 0), ("b", 0), ("d", -128)]
    assert conns(q.layer("d")) == [("a", Kind.DENSE, 1, 1, 0, 1, 0, None), ("b", Kind.DENSE, 1, 1, 0, 1, 3, None)]


@pytest.mark.parametrize("nodes, message", [
    ([inp((1, 9, 9)), conv("c", "x", 1, 2, s=3)], "stride 3"),
    ([inp((1, 4, 4)), Node("u", "upsample", ["x"], {"scale": 3})], "upsampling scale 3"),
    ([inp((1, 4, 4)), conv("c", "x", 1, 2), Node("r", "relu", ["c"]), Node("a", "add", ["c", "r"])],
     "before and after a ReLU"),
    ([inp((1, 4, 4)), conv("c", "x", 1, 2), conv("e", "x", 1, 2), Node("cat", "concat", ["c", "e"])],
     "must be one layer's output"),
    ([inp((1, 4, 4)), Node("f", "flatten", ["x"]), conv("c", "f", 16, 2, k=1, p=0)], "only a dense layer"),
    ([inp((1, 4, 4)), Node("r", "relu", ["x"])], "no layers"),
])
def test_lower_errors(nodes, message):
    with pytest.raises(NetworkError, match=message):
        quant.lower(Network(nodes))


# The constant-weight populations, run structure-only (mult=1, shift=0) through the reference,
# compute exactly the integer op they stand for.
def test_lowered_upsample_sumpool_add_are_exact():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(2, 4, 4))
    up = quant.lower(Network([inp((2, 4, 4)), Node("u", "upsample", ["x"], {"scale": 2})]))
    np.testing.assert_array_equal(reference.run(up, x)["u"], np.clip(x.repeat(2, 1).repeat(2, 2), -128, 127))
    pool = quant.lower(Network([inp((2, 4, 4)), Node("s", "sumpool", ["x"], {"kernel": 2}), Node("r", "relu", ["s"])]))
    sums = x.reshape(2, 2, 2, 2, 2).sum(axis=(2, 4))
    np.testing.assert_array_equal(reference.run(pool, x)["s"], np.clip(sums, 0, 255))
    add = quant.lower(Network([inp((2, 4, 4)), Node("u", "upsample", ["x"], {"scale": 1}),
                               Node("a", "add", ["x", "u"]), Node("r", "relu", ["a"])]))
    np.testing.assert_array_equal(reference.run(add, x)["a"], np.clip(x + np.clip(x, -128, 127), 0, 255))


# ---------------------------------------------------------------------------------------
# quantize
def _dequantized_vs_float(net, qnet, x):
    """(float, dequantized) activation of every population; ReLU applied where it is fused."""
    acts = quant.float_activations(net, x)
    ints = reference.run(qnet, quant.quantize_input(qnet, x))
    out = {}
    for layer in qnet.layers:
        f = acts[layer.name]
        f = np.maximum(f, 0) if layer.lo == 0 else f
        out[layer.name] = (f, ints[layer.name])
    return out


def test_quantized_network_tracks_float_layer_by_layer():
    rng = np.random.default_rng(0)
    net = mixed_net(rng)
    x = rng.uniform(0, 1, size=(64, 3, 8, 8))
    q = quant.quantize(net, x[:32], input_scale=1 / 255)
    for layer in q.layers:
        assert 1 <= layer.mult < 1 << 16 and 0 <= layer.shift <= 31
        assert layer.bias.dtype == np.int64
        if layer.weight is not None:
            assert layer.weight.dtype == np.int8 and np.abs(layer.weight.astype(int)).max() == 127
    # held-out inputs: every population follows its float counterpart
    for name, (f, qi) in _dequantized_vs_float(net, q, x[32:]).items():
        assert np.corrcoef(f.ravel(), qi.ravel())[0, 1] > 0.99, name
    f_out = quant.float_forward(net, x[32:]).reshape(32, -1)
    q_out = reference.output(q, quant.quantize_input(q, x[32:])).reshape(32, -1)
    assert np.mean(f_out.argmax(1) == q_out.argmax(1)) >= 0.9


def test_mult_bits_limit_is_respected():
    rng = np.random.default_rng(2)
    net = mixed_net(rng)
    q = quant.quantize(net, rng.uniform(0, 1, size=(16, 3, 8, 8)), cfg=FabricConfig(mult_bits=10))
    assert all(1 <= l.mult < 1 << 10 for l in q.layers)


def test_add_of_differently_scaled_inputs_uses_integer_weights():
    rng = np.random.default_rng(3)
    net = Network([inp((2, 6, 6)), conv("small", "x", 2, 3, rng=rng), conv("big", "x", 2, 3, rng=rng, gain=20.0),
                   Node("a", "add", ["small", "big"])])
    x = rng.uniform(0, 1, size=(40, 2, 6, 6))
    q = quant.quantize(net, x[:20])
    w_small, w_big = (c.wconst for c in q.layer("a").inputs)
    # The constant weights carry the ratio of the inputs' scales (about 20), within 5 %.
    scale_ratio = _calibrated_scale(net, x[:20], "big") / _calibrated_scale(net, x[:20], "small")
    assert w_big / w_small == pytest.approx(scale_ratio, rel=0.05)
    f, qi = _dequantized_vs_float(net, q, x[20:])["a"]
    assert np.corrcoef(f.ravel(), qi.ravel())[0, 1] > 0.99


def _calibrated_scale(net, x, name):
    # The documented rule: 99.9th percentile of |activation| maps to 127 (no ReLU).
    return np.percentile(np.abs(quant.float_activations(net, x)[name]), 99.9) / 127


def test_concat_of_differently_scaled_inputs_into_conv():
    rng = np.random.default_rng(4)
    net = Network([inp((2, 6, 6)), conv("a", "x", 2, 3, rng=rng), Node("ra", "relu", ["a"]),
                   conv("b", "x", 2, 3, rng=rng, gain=30.0), Node("rb", "relu", ["b"]),
                   Node("cat", "concat", ["ra", "rb"]), conv("c", "cat", 6, 4, rng=rng)])
    x = rng.uniform(0, 1, size=(40, 2, 6, 6))
    q = quant.quantize(net, x[:20])
    f, qi = _dequantized_vs_float(net, q, x[20:])["c"]
    assert np.corrcoef(f.ravel(), qi.ravel())[0, 1] > 0.99
    # Per-input-channel scaling: int8 weight * A / (scale of its source) is the float weight,
    # to half a weight step, with A = the accumulator scale = output scale * mult / 2**shift.
    acts = quant.float_activations(net, x[:20])
    src_scale = [np.percentile(np.maximum(acts[s], 0), 99.9) / 255 for s in ("a", "b")]
    per_chan = np.repeat(src_scale, 3)[None, :, None, None]
    layer = q.layer("c")
    acc_scale = q.output_scale * layer.mult / 2 ** layer.shift
    step = acc_scale / per_chan
    err = np.abs(layer.weight * step - net.nodes["c"].params["weight"])
    assert np.all(err <= 0.5 * step * 1.001)


def test_avgpool_divides_by_window_size():
    net = Network([inp((1, 4, 4)), Node("p", "avgpool", ["x"], {"kernel": 2}), Node("r", "relu", ["p"])])
    pixels = np.random.default_rng(5).integers(0, 256, size=(8, 1, 4, 4))
    q = quant.quantize(net, pixels / 255.0, input_scale=1 / 255)
    got = reference.output(q, pixels) * q.output_scale
    mean = pixels.reshape(8, 1, 2, 2, 2, 2).mean(axis=(3, 5)) / 255.0
    mean = np.minimum(mean, 255 * q.output_scale)
    assert np.abs(got - mean).max() <= 0.51 * q.output_scale + 1e-9


def test_quantize_input_rounds_and_clamps():
    q = quant.lower(Network([inp((1, 1, 4)), Node("p", "sumpool", ["x"], {"kernel": 1})]))
    q.input_scale = 0.5
    assert quant.quantize_input(q, np.array([[[-3.0, 0.8, 10.1, 500.0]]])).tolist() == [[[0, 2, 20, 255]]]


def test_quantize_errors():
    rng = np.random.default_rng(6)
    with pytest.raises(NetworkError, match="negative"):
        quant.quantize(mixed_net(rng), rng.normal(size=(4, 3, 8, 8)))
    with pytest.raises(NetworkError, match="no weights"):
        quant.quantize(mixed_net(), rng.uniform(size=(4, 3, 8, 8)))
    with pytest.raises(NetworkError, match="do not match the network input"):
        quant.quantize(mixed_net(rng), rng.uniform(size=(4, 3, 8, 9)))


def test_accumulator_headroom_is_checked():
    w = np.full((2, 256), 1.0)
    net = Network([inp((1, 16, 16)), Node("f", "flatten", ["x"]),
                   Node("d", "dense", ["f"], {"out_features": 2}, {"weight": w, "bias": np.zeros(2)})])
    ones = np.ones((2, 1, 16, 16))
    # 256 inputs x 255 x 127 ~ 8.3M: beyond 16 bits, within 24.
    with pytest.raises(NetworkError, match="16-bit accumulator"):
        quant.quantize(net, ones, cfg=FabricConfig(acc_bits=16))
    q = quant.quantize(net, ones, cfg=FabricConfig(acc_bits=24))
    assert reference.run_acc(q, np.full((1, 16, 16), 255))["d"].ravel().tolist() == [256 * 255 * 127] * 2


def test_float_forward_single_and_batch_agree():
    rng = np.random.default_rng(7)
    net = mixed_net(rng)
    x = rng.uniform(size=(3, 3, 8, 8))
    np.testing.assert_allclose(quant.float_forward(net, x)[1], quant.float_forward(net, x[1])[0], rtol=1e-12)


# ---------------------------------------------------------------------------------------
# demo network
def test_demo_network_fits_and_quantizes_well():
    net = demo.load_demo_network()
    # 8*9 + 16*8*9 + 10*784 weights; 8*14*14 + 16*7*7 + 10 neurons
    assert net.count()["weights"] == 72 + 1152 + 7840 + 0
    assert net.count()["neurons"] == 1568 + 784 + 10
    q = demo.demo_qnetwork()
    images, labels = demo.load_demo_digits(500)
    assert images.dtype == np.uint8 and images.shape == (500, 1, 28, 28) and labels.shape == (500,)
    assert q.input_scale == pytest.approx(1 / 255)
    np.testing.assert_array_equal(quant.quantize_input(q, images / 255.0), images)
    res = quant.evaluate(net, q, images / 255.0, labels)
    assert res["float_accuracy"] >= 0.95
    assert res["quant_accuracy"] >= res["float_accuracy"] - 0.02
    assert res["agreement"] >= 0.97
    again = demo.demo_qnetwork()
    for a, b in zip(q.layers, again.layers):
        assert (a.mult, a.shift) == (b.mult, b.shift)
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)


def test_demo_digits_bad_count():
    with pytest.raises(NetworkError, match="demo digits"):
        demo.load_demo_digits(10_000)
