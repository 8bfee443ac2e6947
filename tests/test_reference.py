"""Dense integer reference against a pure-Python loop oracle written from DESIGN.md."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from synfab.model import reference
from synfab.frontend.ir import NetworkError, QConnection, QLayer, QNetwork
from synfab.layouts import Kind


# ---------------------------------------------------------------------------------------
# Oracle: plain Python integers, one synapse at a time, straight from the definition.
def _z(src, c, p, q, up):
    """Zero-inserted source: Z[p] = src[p // up] where p % up == 0, else (and outside) 0."""
    _, h, w = src.shape
    if p < 0 or q < 0 or p % up or q % up:
        return 0
    p, q = p // up, q // up
    return int(src[c, p, q]) if p < h and q < w else 0


def _oracle_layer(layer, acts, acc_bits):
    co_n, ho, wo = layer.shape
    acc = [[[int(layer.bias[c]) for _ in range(wo)] for _ in range(ho)] for c in range(co_n)]
    for conn in layer.inputs:
        src = acts[conn.src]
        c_src, h, w = src.shape

        def weight(*idx):
            w = conn.wconst if conn.wconst is not None else int(layer.weight[idx])
            return w * 2 ** conn.wshift

        for oy in range(ho):
            for ox in range(wo):
                if conn.kind == Kind.DENSE:
                    for co in range(co_n):
                        for c in range(c_src):
                            for y in range(h):
                                for x in range(w):
                                    i = (c + conn.chan_off) * h * w + y * w + x
                                    acc[co][oy][ox] += weight(co, i) * int(src[c, y, x])
                    continue
                for ky in range(conn.kh):
                    for kx in range(conn.kw):
                        p = oy * conn.sh + ky - conn.ph
                        q = ox * conn.sw + kx - conn.pw
                        for c in range(c_src):
                            v = _z(src, c, p, q, conn.up)
                            if conn.kind == Kind.CONV:
                                for co in range(co_n):
                                    acc[co][oy][ox] += weight(co, c + conn.chan_off, ky, kx) * v
                            else:
                                acc[c + conn.chan_off][oy][ox] += weight(c + conn.chan_off, 0, ky, kx) * v
    half, full = 1 << (acc_bits - 1), 1 << acc_bits
    wrapped = [[[((v + half) % full) - half for v in row] for row in ch] for ch in acc]
    rnd = (1 << (layer.shift - 1)) if layer.shift else 0
    act = [[[min(layer.hi, max(layer.lo, (v * layer.mult + rnd) >> layer.shift)) for v in row]
             for row in ch] for ch in wrapped]
    return np.array(wrapped, dtype=np.int64), np.array(act, dtype=np.int64)


def _oracle(qnet, x, acc_bits):
    acts, accs = {qnet.input_name: np.asarray(x)}, {}
    for layer in qnet.layers:
        accs[layer.name], acts[layer.name] = _oracle_layer(layer, acts, acc_bits)
    return acts, accs


# ---------------------------------------------------------------------------------------
# Random small quantized networks
@st.composite
def qnetworks(draw):
    ints = st.integers
    c_in = draw(ints(1, 3))
    shapes = {"in": (c_in, draw(ints(1, 5)), draw(ints(1, 5)))}
    layers = []
    for li in range(draw(ints(1, 3))):
        name = f"l{li}"
        kind = draw(st.sampled_from([Kind.CONV, Kind.DW, Kind.DENSE]))
        const = draw(st.booleans())
        sources = draw(st.lists(st.sampled_from(sorted(shapes)), min_size=1, max_size=2))
        if kind == Kind.DENSE:
            # All sources of a DENSE layer share H, W (channel concatenation).
            hw = shapes[sources[0]][1:]
            sources = [s for s in sources if shapes[s][1:] == hw]
            out = (draw(ints(1, 4)), 1, 1)
        else:
            out = (None, draw(ints(1, 5)), draw(ints(1, 5)))
        kh, kw = draw(ints(1, 3)), draw(ints(1, 3))       # rectangular kernels, strides, padding
        strides = st.sampled_from([1, 2, 4])
        geo = dict(k=kw, stride=draw(strides), pad=draw(ints(0, 2)), up=draw(st.sampled_from([1, 2])),
                   k_y=kh, stride_y=draw(strides), pad_y=draw(ints(0, 2)))
        wshift = draw(st.sampled_from([0, 0, 1, 3]))
        conns, off = [], 0
        for s in sources:
            conns.append(QConnection(s, kind, chan_off=off, wconst=draw(ints(-128, 127)) if const else None,
                                     wshift=wshift, **(geo if kind != Kind.DENSE else {})))
            off += shapes[s][0]
        total = off
        if kind == Kind.DW:
            co = total
        elif kind == Kind.CONV:
            co = draw(ints(1, 3))
        else:
            co = out[0]
        shape = (co, out[1], out[2])
        wshape = {Kind.CONV: (co, total, kh, kw), Kind.DW: (co, 1, kh, kw),
                  Kind.DENSE: (co, total * shapes[sources[0]][1] * shapes[sources[0]][2])}[kind]
        rng = np.random.default_rng(draw(ints(0, 2**32 - 1)))
        weight = None if const else rng.integers(-128, 128, size=wshape).astype(np.int8)
        bias = rng.integers(-(1 << 20), 1 << 20, size=co)
        lo = draw(ints(-300, 0))
        layers.append(QLayer(name, shape, conns, bias, mult=draw(ints(1, (1 << 16) - 1)), shift=draw(ints(0, 31)),
                             lo=lo, hi=lo + draw(ints(0, 600)), weight=weight))
        shapes[name] = shape
    qnet = QNetwork("rand", "in", shapes["in"], layers, layers[-1].name)
    x = np.random.default_rng(draw(ints(0, 2**32 - 1))).integers(0, 256, size=shapes["in"])
    return qnet, x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qnetworks(), st.sampled_from([16, 20, 24, 32]))
def test_reference_matches_loop_oracle(case, acc_bits):
    qnet, x = case
    acts, accs = _oracle(qnet, x, acc_bits)
    got = reference.run(qnet, x, acc_bits=acc_bits)
    got_acc = reference.run_acc(qnet, x, acc_bits=acc_bits)
    assert set(got) == {"in"} | {l.name for l in qnet.layers}
    for name, want in acts.items():
        assert got[name].dtype == np.int64
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    for name, want in accs.items():
        np.testing.assert_array_equal(got_acc[name], want, err_msg=name)


def _single(conn, shape, weight=None, bias=None, mult=1, shift=0, lo=-(1 << 20), hi=1 << 20, in_shape=(1, 1, 3)):
    layer = QLayer("y", shape, [conn], np.zeros(shape[0], np.int64) if bias is None else np.array(bias),
                   mult=mult, shift=shift, lo=lo, hi=hi, weight=weight)
    return QNetwork("t", "x", in_shape, [layer], "y")


def test_conv_by_hand():
    # One row [1, 2, 3], 3x3 kernel whose middle row is [1, 10, 100] (rows 0 and 2 only see
    # padding): out[o] = sum_k w[k] * x[o + k - 1].
    w = np.zeros((1, 1, 3, 3), dtype=np.int8)
    w[0, 0, 1] = [1, 10, 100]
    net = _single(QConnection("x", Kind.CONV, k=3, pad=1), (1, 1, 3), weight=w)
    x = np.array([[[1, 2, 3]]])
    assert reference.run(net, x)["y"].tolist() == [[[210, 321, 32]]]


def test_stride_and_zero_insertion_by_hand():
    # up=2 turns [5, 7] into Z = [5, 0, 7]; k=1, stride 2 reads Z[0], Z[2], Z[4] (outside: 0).
    net = _single(QConnection("x", Kind.DW, k=1, stride=2, up=2, wconst=3), (1, 1, 3), in_shape=(1, 1, 2))
    assert reference.run(net, np.array([[[5, 7]]]))["y"].tolist() == [[[15, 21, 0]]]


def test_nearest_upsample_geometry_repeats_pixels():
    x = np.arange(1, 13).reshape(3, 2, 2)
    net = _single(QConnection("x", Kind.DW, k=4, pad=3, up=4, wconst=1), (3, 8, 8), in_shape=(3, 2, 2))
    np.testing.assert_array_equal(reference.run(net, x)["y"], x.repeat(4, axis=1).repeat(4, axis=2))


def test_dense_uses_pytorch_flatten_order_with_channel_offset():
    # Weight columns 4..7 belong to the source (chan_off 1 of a 2-channel concat, H*W = 4).
    w = np.zeros((2, 8), dtype=np.int8)
    w[0, 4:] = [1, 2, 3, 4]
    w[1, 4] = -1
    net = _single(QConnection("x", Kind.DENSE, chan_off=1), (2, 1, 1), weight=w, bias=[100, 0], in_shape=(1, 2, 2))
    x = np.array([[[10, 20], [30, 40]]])
    assert reference.run(net, x)["y"].ravel().tolist() == [100 + 10 + 40 + 90 + 160, -10]


def test_wrap_and_requantize_rounding():
    # acc = bias + x wraps at 16 bits; requantize with shift 1 rounds half up (arithmetic shift).
    net = _single(QConnection("x", Kind.DW, k=1, wconst=1), (1, 1, 3), bias=[32767], shift=1, mult=1)
    x = np.array([[[0, 1, 2]]])
    acc = reference.run_acc(net, x, acc_bits=16)["y"].ravel().tolist()
    assert acc == [32767, -32768, -32767]
    assert reference.run(net, x, acc_bits=16)["y"].ravel().tolist() == [16384, -16384, -16383]
    net.layers[0].lo, net.layers[0].hi = 0, 255
    assert reference.run(net, x, acc_bits=16)["y"].ravel().tolist() == [255, 0, 0]


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(4, 2, 3, 3)).astype(np.int8)
    net = _single(QConnection("x", Kind.CONV, k=3, stride=2, pad=1), (4, 3, 3), weight=w, in_shape=(2, 5, 5),
                  lo=-128, hi=127, mult=3, shift=4)
    xs = rng.integers(0, 256, size=(6, 2, 5, 5))
    batch = reference.run(net, xs)["y"]
    for i in range(len(xs)):
        np.testing.assert_array_equal(batch[i], reference.run(net, xs[i])["y"])


def test_errors():
    net = _single(QConnection("x", Kind.CONV, k=1), (1, 1, 3))
    with pytest.raises(NetworkError, match="no weights"):
        reference.run(net, np.zeros((1, 1, 3), dtype=np.int64))
    with pytest.raises(NetworkError, match="does not match the network input"):
        reference.run(net, np.zeros((1, 2, 3), dtype=np.int64))
    with pytest.raises(NetworkError, match="integer array"):
        reference.run(net, np.zeros((1, 1, 3)))
    bad_src = _single(QConnection("nowhere", Kind.DW, k=1, wconst=1), (1, 1, 3))
    with pytest.raises(NetworkError, match="nowhere"):
        reference.run(bad_src, np.zeros((1, 1, 3), dtype=np.int64))


def test_rectangular_conv_by_hand():
    # in 1x2x3 = [[1, 2, 3], [4, 5, 6]], kernel 1x2 [[10, 1]], stride (h 1, w 2), padding (h 0, w 1):
    # padded rows [0 1 2 3 0], [0 4 5 6 0]; windows at columns 0 and 2: (0, 1) and (2, 3)
    conn = QConnection("x", Kind.CONV, k=2, stride=2, pad=1, k_y=1, stride_y=1, pad_y=0)
    assert (conn.kh, conn.kw, conn.sh, conn.sw, conn.ph, conn.pw) == (1, 2, 1, 2, 0, 1)
    net = _single(conn, (1, 2, 2), weight=np.array([[[[10, 1]]]], np.int8), in_shape=(1, 2, 3))
    x = np.array([[[1, 2, 3], [4, 5, 6]]])
    assert reference.run(net, x)["y"].tolist() == [[[0 * 10 + 1, 2 * 10 + 3], [0 * 10 + 4, 5 * 10 + 6]]]


def test_weight_shift_multiplies_every_weight():
    conn = QConnection("x", Kind.DW, k=1, wconst=3, wshift=4)       # weight 3 * 16 = 48
    net = _single(conn, (1, 1, 3))
    assert reference.run(net, np.array([[[1, -2, 5]]]))["y"].tolist() == [[[48, -96, 240]]]


def test_square_y_fields_are_stored_as_none():
    c = QConnection("x", Kind.CONV, k=3, stride=2, pad=1, k_y=3, stride_y=2, pad_y=1)
    assert c.square and c == QConnection("x", Kind.CONV, k=3, stride=2, pad=1)
