"""JSON + npz network files: round trips and the errors users see."""
import json

import numpy as np
import pytest

from synfab.frontend import netfile, quant
from synfab.model import reference
from synfab.frontend.ir import Network, NetworkError, Node


def small_net(with_params=True):
    rng = np.random.default_rng(0)
    p = (lambda **kw: kw) if with_params else (lambda **kw: {})
    return Network([
        Node("x", "input", attrs={"shape": (2, 6, 6)}),
        Node("c", "conv", ["x"], {"out_channels": 3, "kernel": 3, "stride": 2, "padding": 1},
             p(weight=rng.normal(size=(3, 2, 3, 3)), bias=rng.normal(size=3))),
        Node("r", "relu", ["c"]),
        Node("u", "upsample", ["r"], {"scale": 2}),
        Node("cat", "concat", ["u", "x"]),
        Node("p", "avgpool", ["cat"], {"kernel": 2}),
        Node("f", "flatten", ["p"]),
        Node("d", "dense", ["f"], {"out_features": 4}, p(weight=rng.normal(size=(4, 45)), bias=rng.normal(size=4))),
    ], name="small")


def test_float_round_trip(tmp_path):
    net = small_net()
    netfile.save(net, tmp_path / "n.json")
    assert (tmp_path / "n.npz").is_file()
    back = netfile.load(tmp_path / "n.json")
    assert back.name == "small" and back.output == "d"
    for a, b in zip(net, back):
        assert (a.name, a.op, a.inputs, a.shape) == (b.name, b.op, b.inputs, b.shape)
        assert {k: tuple(v) if isinstance(v, list) else v for k, v in b.attrs.items()} == a.attrs
        assert a.params.keys() == b.params.keys()
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
    x = np.random.default_rng(1).uniform(size=(3, 2, 6, 6))
    np.testing.assert_array_equal(quant.float_forward(net, x), quant.float_forward(back, x))


def test_shape_only_round_trip(tmp_path):
    netfile.save(small_net(with_params=False), tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["params"] is None
    assert not (tmp_path / "s.npz").exists()
    back = netfile.load(tmp_path / "s.json")
    assert all(not n.params for n in back)
    assert back.count() == small_net(with_params=False).count()


def test_quantized_round_trip(tmp_path):
    net = small_net()
    x = np.random.default_rng(2).uniform(size=(8, 2, 6, 6))
    q = quant.quantize(net, x)
    netfile.save_q(q, tmp_path / "q.json")
    back = netfile.load_q(tmp_path / "q.json")
    assert json.loads((tmp_path / "q.json").read_text())["kind"] == "quantized"
    assert (back.name, back.input_name, back.input_shape, back.output, back.input_hi) == \
        (q.name, q.input_name, q.input_shape, q.output, q.input_hi)
    assert (back.input_scale, back.output_scale) == (q.input_scale, q.output_scale)
    for a, b in zip(q.layers, back.layers):
        assert (a.name, a.shape, a.mult, a.shift, a.lo, a.hi, a.op, a.inputs) == \
            (b.name, b.shape, b.mult, b.shift, b.lo, b.hi, b.op, b.inputs)
        np.testing.assert_array_equal(a.bias, b.bias)
        assert (a.weight is None) == (b.weight is None)
        if a.weight is not None:
            assert b.weight.dtype == np.int8
            np.testing.assert_array_equal(a.weight, b.weight)
    xi = quant.quantize_input(q, x)
    np.testing.assert_array_equal(reference.output(q, xi), reference.output(back, xi))


def _write(tmp_path, doc, arrays=None):
    path = tmp_path / "bad.json"
    if arrays is not None:
        np.savez(tmp_path / "bad.npz", **arrays)
        doc["params"] = "bad.npz"
    path.write_text(json.dumps(doc))
    return path


def _doc(nodes, kind="float"):
    return {"format": "synfab-network", "version": 1, "kind": kind, "name": "bad", "nodes": nodes}


X = {"name": "x", "op": "input", "attrs": {"shape": [1, 4, 4]}}
DENSE = {"name": "d", "op": "dense", "inputs": ["x"], "attrs": {"out_features": 2}}


def test_missing_file(tmp_path):
    with pytest.raises(NetworkError, match="not found"):
        netfile.load(tmp_path / "nothing.json")


def test_bad_json(tmp_path):
    (tmp_path / "b.json").write_text("{nope")
    with pytest.raises(NetworkError, match="not valid JSON"):
        netfile.load(tmp_path / "b.json")


def test_not_a_network_file(tmp_path):
    (tmp_path / "o.json").write_text('{"hello": 1}')
    with pytest.raises(NetworkError, match="not a synfab network file"):
        netfile.load(tmp_path / "o.json")


def test_unknown_op_names_layer_and_supported_ops(tmp_path):
    path = _write(tmp_path, _doc([X, {"name": "mp", "op": "maxpool", "inputs": ["x"], "attrs": {"kernel": 2}}]))
    with pytest.raises(NetworkError, match=r"layer 'mp' has unknown op 'maxpool'; supported ops: input, conv, dense"):
        netfile.load(path)


def test_missing_attribute(tmp_path):
    path = _write(tmp_path, _doc([X, {"name": "c", "op": "conv", "inputs": ["x"], "attrs": {"kernel": 3}}]))
    with pytest.raises(NetworkError, match="'c' .conv. lacks attribute.s. out_channels"):
        netfile.load(path)


def test_missing_param(tmp_path):
    path = _write(tmp_path, _doc([X, DENSE]), {"d/bias": np.zeros(2)})
    with pytest.raises(NetworkError, match="layer 'd' .dense. has no 'weight'"):
        netfile.load(path)


def test_misshaped_params(tmp_path):
    path = _write(tmp_path, _doc([X, DENSE]), {"d/weight": np.zeros((2, 15)), "d/bias": np.zeros(2)})
    with pytest.raises(NetworkError, match=r"layer 'd': weight shape \(2, 15\), expected \(2, 16\)"):
        netfile.load(path)
    path = _write(tmp_path, _doc([X, DENSE]), {"d/weight": np.zeros((2, 16)), "d/bias": np.zeros(3)})
    with pytest.raises(NetworkError, match=r"'d' bias has shape \(3,\), expected \(2,\)"):
        netfile.load(path)


def test_missing_npz(tmp_path):
    path = _write(tmp_path, _doc([X, DENSE]), {"d/weight": np.zeros((2, 16))})
    (tmp_path / "bad.npz").unlink()
    with pytest.raises(NetworkError, match="bad.npz .* not found"):
        netfile.load(path)


def test_kind_mismatch_points_to_the_right_loader(tmp_path):
    netfile.save_q(quant.lower(Network([Node("x", "input", attrs={"shape": (1, 2, 2)}),
                                        Node("s", "sumpool", ["x"], {"kernel": 2})])), tmp_path / "q.json")
    with pytest.raises(NetworkError, match="load_q"):
        netfile.load(tmp_path / "q.json")
    netfile.save(small_net(), tmp_path / "f.json")
    with pytest.raises(NetworkError, match="netfile.load\\b"):
        netfile.load_q(tmp_path / "f.json")


def test_quantized_missing_weight(tmp_path):
    q = quant.quantize(small_net(), np.random.default_rng(3).uniform(size=(4, 2, 6, 6)))
    netfile.save_q(q, tmp_path / "q.json")
    with np.load(tmp_path / "q.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "c/weight"}
    np.savez(tmp_path / "q.npz", **arrays)
    with pytest.raises(NetworkError, match=r"layer 'c': weight missing, expected int8 of shape \(3, 2, 3, 3\)"):
        netfile.load_q(tmp_path / "q.json")


def test_neuron_models_geometry_and_timing_round_trip(tmp_path):
    from synfab import PRESETS
    from synfab.randnet import random_neuron_qnetwork
    cfg = PRESETS["small"].with_(event_bits=24)
    for seed in range(8):
        q = random_neuron_qnetwork(seed, cfg)
        netfile.save_q(q, tmp_path / "n.json")
        back = netfile.load_q(tmp_path / "n.json")
        for a, b in zip(q.layers, back.layers):
            assert (a.neuron, a.lo, a.hi, a.inputs) == (b.neuron, b.lo, b.hi, b.inputs)
            assert np.array_equal(a.bias, b.bias)
        assert (back.pipelined, back.reset_interval, back.input_mode, back.input_lo) == \
               (q.pipelined, q.reset_interval, q.input_mode, q.input_lo)


def test_default_networks_write_no_new_keys(tmp_path):
    from synfab.demo import demo_qnetwork
    netfile.save_q(demo_qnetwork(), tmp_path / "d.json")
    text = (tmp_path / "d.json").read_text()
    for key in ("neuron", "pipelined", "reset_interval", "input_mode", "k_y", "wshift"):
        assert f'"{key}"' not in text


def test_bad_neuron_names_the_layer(tmp_path):
    from synfab.demo import demo_qnetwork
    netfile.save_q(demo_qnetwork(), tmp_path / "d.json")
    doc = json.loads((tmp_path / "d.json").read_text())
    doc["layers"][0]["neuron"] = {"model": "if"}
    (tmp_path / "d.json").write_text(json.dumps(doc))
    with pytest.raises(NetworkError, match=r"layer 'conv1'.*theta >= 1"):
        netfile.load_q(tmp_path / "d.json")
