"""lava-dl netx networks against Lava's own golden vectors (lava-dl 0.6.0 wheel, pinned by sha256).

pilotnet_sdnn: Lava's test asserts an absolute error of exactly 0 on output.npy over 9 steps.
pilotnet_lif: u, v and spikes of every layer at every step (recorded by Lava's hardware test
setup: a reset every 17 steps, layer k at steps t = k mod 17; a neuron that spiked has v recorded
as 128).  tinynet_sdnn: Lava's block tests (Delta input, SigmaDelta conv, Sigma dense).
Files that are not Lava's vectors are written here with h5py, field by field as slayer writes them.
"""
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py (setup.sh installs it)")

from synfab import arith
from synfab.frontend import netx, netx_vectors
from synfab.model import reference  # noqa: E402
from synfab.compiler import compile_network  # noqa: E402
from synfab.model import Model, frame_events  # noqa: E402
from synfab.frontend.netx import NetxError, lava_dense_weights, weight_shift  # noqa: E402

LIF_LAYERS = ["input", "conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "fc-0", "fc-1", "fc-2", "fc-3"]
SPIKED_V = 128          # what pilotnet_lif's files record as the voltage of a neuron that spiked


def whc(a):
    """(C, H, W) -> Lava's (W, H, C)."""
    return np.asarray(a).transpose(2, 1, 0)


def run(qnet, frames, keep=None):
    """Run frames on the golden model (compiled for a fabric that fits); yield (model, result)."""
    tables = compile_network(qnet, netx.fabric(qnet))
    model = Model(tables)
    prev = None
    for frame in frames:
        res = model.run_frame(frame_events(prev, frame, qnet.input_mode))
        prev = frame
        yield model, res


def events_of(res, k, shape):
    out = np.zeros(shape, np.int64)
    s = res.spikes[k]
    out[s["c"], s["y"], s["x"]] = s["d"]
    return out


# -- pilotnet_sdnn ------------------------------------------------------------------------------
def test_pilotnet_sdnn_output_equals_lava_at_every_step():
    d = netx_vectors.fetch("pilotnet_sdnn")
    qnet = netx.load(d / "network.net")
    x = whc(np.load(d / "input.npy")[..., 0]).astype(np.int64)      # the source repeats it every step
    want = np.load(d / "output.npy")[0]
    frames = np.repeat(x[None], len(want), axis=0)
    got = [int(model.activation(qnet.output).sum()) for model, _ in run(qnet, frames)]
    assert np.abs(np.array(got) - want).max() == 0
    assert got == want.astype(int).tolist() == [0, -3840, 4880, 361928, 461416, 342568, -315628, -315628, -31026]
    trace = reference.simulate(qnet, frames)
    assert [int(s["sent"].sum()) for s in trace.states[qnet.output]] == got


def test_pilotnet_sdnn_through_a_bundle_on_the_model_backend(tmp_path):
    from synfab import api
    from synfab.compiler import bundle
    d = netx_vectors.fetch("pilotnet_sdnn")
    tables = api.compile_file(d / "network.net")
    bundle.save(tables, tmp_path / "p.sfb")
    tables = bundle.load(tmp_path / "p.sfb")
    assert tables.version == 2 and tables.pipelined
    x = whc(np.load(d / "input.npy")[..., 0]).astype(np.int64)
    out = api.run_frames(tables, np.repeat(x[None], 9, axis=0), backend="model")
    assert [int(o.sum()) for o in out["result"].outputs] == np.load(d / "output.npy")[0].astype(int).tolist()


# -- pilotnet_lif -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pilotnet_lif():
    d = netx_vectors.fetch("pilotnet_lif")
    qnet = netx.load(d / "network.net", keep_current=True, reset_interval=17)
    image = whc(np.load(d / "image.npy")).astype(np.int64)     # Lava's test: the input layer's bias
    steps = np.load(d / "conv-0.npy").shape[-1]
    got = {}
    for t, (model, res) in enumerate(run(qnet, np.repeat(image[None], steps, axis=0))):
        for k, layer in enumerate(qnet.layers):
            spikes = events_of(res, k, layer.shape)
            v = model.layer_word(layer.name, "v")
            got.setdefault((k, "s"), []).append(spikes)
            got.setdefault((k, "u"), []).append(model.layer_word(layer.name, "u"))
            got.setdefault((k, "v"), []).append(np.where(spikes != 0, SPIKED_V, v))
    return d, qnet, {key: np.stack([whc(a) for a in arrays], axis=-1) for key, arrays in got.items()}


def lava_file(d, k, key):
    name = LIF_LAYERS[k] + {"u": "-u", "v": "-v", "s": ""}[key]
    if LIF_LAYERS[k] == "fc-3" and key == "s":
        name = "fc-3-s"
    path = d / f"{name}.npy"
    return np.load(path) if path.exists() else None


@pytest.mark.parametrize("k", range(9))
def test_pilotnet_lif_u_v_spikes_equal_lava_for_every_neuron_and_step(pilotnet_lif, k):
    d, qnet, got = pilotnet_lif
    checked = 0
    for key in ("u", "v", "s"):
        want = lava_file(d, k, key)
        if want is None:         # the input layer's u and v are not in the wheel
            continue
        mine = got[(k, key)].reshape(want.shape[:-1] + (-1,))
        assert mine.shape == want.shape
        assert np.array_equal(mine, want.astype(mine.dtype)), (LIF_LAYERS[k], key)
        checked += 1
    assert checked == (1 if k == 0 else 3)


def test_pilotnet_lif_fc3_file_disagrees_with_its_own_fc2_spikes(pilotnet_lif):
    """fc-3 (25 float steps) was recorded from another run: from step 8 its input current is not
    64 * w . fc-2 spikes of the step before (Lava's LIF with iDecay 4096: u = a_in << 6)."""
    d, qnet, got = pilotnet_lif
    w = qnet.layers[9].weight.reshape(-1).astype(np.int64) << qnet.layers[9].inputs[0].wshift
    fc2 = np.load(d / "fc-2.npy").astype(np.int64)
    lava_u = np.load(d / "fc-3-u.npy")[0]
    from_fc2 = np.r_[0, 64 * (w @ fc2)[:-1]]
    assert np.array_equal(got[(9, "u")].reshape(-1), from_fc2)          # the model follows fc-2
    assert np.array_equal(lava_u[:8], from_fc2[:8])                      # the file agrees up to step 7
    assert (lava_u[8], from_fc2[8]) == (0, -24 * 64)                     # then fc-2 spikes that fc-3 never saw
    for key in ("u", "v", "s"):                                          # ... and the model equals it up to there
        want = lava_file(d, 9, key)
        assert np.array_equal(got[(9, key)].reshape(-1)[:8], want[0, :8])


def test_pilotnet_lif_as_lif_neurons_has_the_same_spikes_and_voltages(pilotnet_lif):
    d, qnet_cuba, got = pilotnet_lif
    qnet = netx.load(d / "network.net", reset_interval=17)         # iDecay 4096: lif (no u word)
    assert {l.neuron.model for l in qnet.layers} == {"lif"}
    image = whc(np.load(d / "image.npy")).astype(np.int64)
    for t, (model, res) in enumerate(run(qnet, np.repeat(image[None], 6, axis=0))):
        for k, layer in enumerate(qnet.layers):
            assert np.array_equal(whc(events_of(res, k, layer.shape)), got[(k, "s")][..., t])


# -- tinynet_sdnn: Lava's block tests -------------------------------------------------------------
def write_net(path, layers):
    """A netx file: layers as dicts of fields (neuron: a dict), written as slayer writes them."""
    return netx.write_layers(path, layers)


def sdnn(vth):
    return {"type": "SDNN", "activation": "relu", "vThMant": vth}


def test_tinynet_sdnn_delta_input_block(tmp_path):
    d = netx_vectors.fetch("tinynet_sdnn")
    steps = 15
    data = np.load(d / "input_bias.npy")[..., None].repeat(steps, axis=3)
    data = (data * np.sin(2 * np.pi * np.arange(steps) / steps)).astype(int)     # as Lava's test builds it
    qnet = netx.load(write_net(tmp_path / "in.net", [{"type": "input", "shape": [3, 16, 16], "neuron": sdnn(20)}]))
    want = np.load(d / "input.npy")
    frames = [whc(data[..., t]) for t in range(steps)]
    for t, (_, res) in enumerate(run(qnet, frames)):
        assert np.array_equal(whc(events_of(res, 0, qnet.layers[0].shape)), want[..., t]), t


def lava_conv_to_file(kernel):
    """Lava's Conv kernel (out, X, Y, in), a true convolution, as the file's (out, in, kH, kW)."""
    return np.asarray(kernel).transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]


def test_tinynet_sdnn_sigma_delta_conv_block(tmp_path):
    d = netx_vectors.fetch("tinynet_sdnn")
    want = np.load(d / "layer1.npy")
    assert not want[..., 1:].any()       # Lava's test runs one step: only its bias response is recorded
    layers = [{"type": "input", "shape": [3, 16, 16]},
              {"type": "conv", "shape": [24, 6, 6], "weight": lava_conv_to_file(np.load(d / "layer1_kernel.npy")),
               "bias": np.load(d / "layer1_bias.npy"), "kernelSize": [5, 5], "stride": [2, 2], "padding": [0, 0],
               "dilation": [1, 1], "groups": 1, "neuron": sdnn(20)}]
    qnet = netx.load(write_net(tmp_path / "conv.net", layers))
    data = np.load(d / "input.npy")
    (_, res), = list(run(qnet, [whc(data[..., 0])]))
    assert np.array_equal(whc(events_of(res, 1, qnet.layers[1].shape)), want[..., 0])
    assert np.count_nonzero(want[..., 0]) == 144


def test_tinynet_sdnn_sigma_dense_block(tmp_path):
    d = netx_vectors.fetch("tinynet_sdnn")
    spikes = np.load(d / "layer1.npy").reshape(-1, 16)           # (864, steps), Lava's flat order
    layers = [{"type": "input", "shape": [864, 1, 1]},
              {"type": "dense", "shape": [100], "inFeatures": 864, "outFeatures": 100,
               "weight": np.load(d / "layer2_weight.npy"), "neuron": {"type": "SDNN", "sigma_output": True}}]
    qnet = netx.load(write_net(tmp_path / "dense.net", layers))
    assert qnet.input_mode == "spikes"     # netx's input_message_bits 0: the dense synapse reads spikes
    want = np.load(d / "layer2.npy")
    frames = [spikes[:, t].reshape(864, 1, 1).astype(np.int64) for t in range(16)]
    for t, (model, _) in enumerate(run(qnet, frames)):
        assert np.array_equal(model.activation(qnet.output).reshape(-1), want[:, t]), t


# -- Lava's weight arithmetic ---------------------------------------------------------------------
def test_lava_dense_weights_by_hand():
    w = np.arange(-256, 255, 2).reshape(1, -1)                   # lava-dl's even weights: unchanged
    assert np.array_equal(lava_dense_weights(w), w)
    # An all-negative layer: netx scales by 2**0; Lava's inhibitory clip makes -256 -255 and its
    # truncation to 7 bits (netx found every weight even) -254.
    assert lava_dense_weights(np.array([[-256, -2]])).tolist() == [[-254, -2]]
    # Excitatory 0..60: scaled by 4 (2**floor(log2(255 / 60))), clipped and truncated losslessly.
    assert lava_dense_weights(np.array([[0, 7, 60]])).tolist() == [[0, 7, 60]]
    with pytest.raises(NetxError, match="beyond Lava's 8-bit synapse"):
        lava_dense_weights(np.array([[0, 300]]))
    with pytest.raises(NetxError, match="netx clips such weights"):
        lava_dense_weights(np.array([[-3, 300]]))


def test_weight_shift_carries_wide_weights_exactly():
    q, s = weight_shift(np.array([-256, 254, 2]), "l")
    assert (q.tolist(), s) == ([-128, 127, 1], 1)
    assert weight_shift(np.array([-128, 127]), "l")[1] == 0
    with pytest.raises(NetxError, match="not int8 times a power of two"):
        weight_shift(np.array([255, 1]), "l")


def test_pilotnet_weights_come_through_unchanged():
    d = netx_vectors.fetch("pilotnet_sdnn")
    qnet = netx.load(d / "network.net")
    with h5py.File(d / "network.net") as f:
        w = f["layer/6/weight"][()].astype(np.int64)
    layer = qnet.layer("dense6")
    assert np.array_equal(layer.weight.astype(np.int64) << layer.inputs[0].wshift, w)


# -- pool, average, refusals ----------------------------------------------------------------------
def lif(vth=1, i_decay=4096, v_decay=0):
    return {"type": "LOIHI", "vThMant": vth, "iDecay": i_decay, "vDecay": v_decay, "refDelay": 1, "wgtExp": 0,
            "theta": vth << 6, "tauRho": 0.5, "scaleRho": 1.0}


def test_pool_and_average_by_hand(tmp_path):
    # input spikes (2, 2, 4) -> pool 2x2 kernel [[1, 2], [3, 4]] stride 2 into a voltage integrator
    # that never fires (vThMant 2**17 - 1) -> average of groups of 2 of the flattened (C, H, W).
    layers = [{"type": "input", "shape": [2, 2, 4]},
              {"type": "pool", "shape": [2, 1, 2], "weight": np.array([[[[1, 2], [3, 4]]]]), "kernelSize": [2, 2],
               "stride": [2, 2], "padding": [0, 0], "dilation": [1, 1], "neuron": lif(arith.LOIHI_VTH_MAX, 0, 0)},
              {"type": "flatten", "shape": [4, 1, 1]},
              {"type": "average", "shape": [2, 1, 1]}]
    qnet = netx.load(write_net(tmp_path / "pool.net", layers))
    assert [l.op for l in qnet.layers] == ["relay", "pool", "average"]
    x = np.zeros((2, 2, 4), np.int64)
    x[0, 0, 0] = x[0, 1, 1] = x[1, 0, 3] = 7        # spikes (any value counts 1)
    frames = [x, np.zeros_like(x), np.zeros_like(x)]
    steps = list(run(qnet, frames))
    model, _ = steps[-1]
    # pool u (iDecay 0: the current never decays) from step 1 on (the relay delays the input a step):
    # channel 0 block 0 taps (0, 0) and (1, 1): 1 + 4 = 5; channel 1 block 1 tap (0, 1): 2; times 2**6.
    assert model.layer_word("pool1", "u")[:, 0, :].tolist() == [[5 << 6, 0], [0, 2 << 6]]
    trace = reference.simulate(qnet, np.stack(frames))
    assert [s["u"][:, 0, :].tolist() for s in trace.states["pool1"]] == [
        [[0, 0], [0, 0]], [[5 << 6, 0], [0, 2 << 6]], [[5 << 6, 0], [0, 2 << 6]]]
    assert qnet.output_scale == 0.5


@pytest.mark.parametrize("layers, message", [
    ([{"type": "input", "shape": [1, 4, 4]}, {"type": "convT", "shape": [1, 4, 4]}],
     r"layer 1: type 'convT' is not supported; supported: input, conv, dense, flatten, pool, average"),
    ([{"type": "input", "shape": [4, 1, 1]}, {"type": "dense", "shape": [2], "weight": np.ones((2, 4)),
                                              "delay": np.zeros(2), "neuron": lif()}],
     r"layer 1 \(dense\): field 'delay' is not supported; supported dense layer fields: "),
    ([{"type": "input", "shape": [4, 1, 1]}, {"type": "dense", "shape": [2], "weight": np.ones((2, 4)),
                                              "neuron": {"type": "RF_PHASE", "vThMant": 1}}],
     r"layer 1 \(dense\): neuron type 'RF_PHASE' is not supported; supported: SDNN, LOIHI, CUBA"),
    ([{"type": "input", "shape": [4, 1, 1]}, {"type": "dense", "shape": [2], "weight": np.full((2, 4), 0.5),
                                              "neuron": lif()}],
     r"layer 1 \(dense\): field weight holds non-integer values"),
    ([{"type": "input", "shape": [1, 4, 4]}, {"type": "conv", "shape": [1, 2, 2], "weight": np.ones((1, 1, 2, 2)),
                                              "kernelSize": [2, 2], "stride": [1, 1], "padding": [0, 0],
                                              "dilation": [2, 2], "groups": 1, "neuron": lif()}],
     r"layer 1 \(conv\): field dilation = \[2, 2\]; supported: 1"),
    ([{"type": "input", "shape": [4, 1, 1]}, {"type": "dense", "shape": [2], "weight": np.ones((2, 4)),
                                              "neuron": {**lif(), "gradedSpike": True}}],
     r"asks for graded spikes; supported: binary spikes"),
    ([{"type": "input", "shape": [4, 1, 1]}, {"type": "dense", "shape": [2], "weight": np.ones((2, 4)),
                                              "neuron": {**sdnn(1), "activation": "sigmoid"}}],
     r"neuron field 'activation' = 'sigmoid'; supported: 'relu'"),
    ([{"type": "input", "shape": [2, 3, 4]}, {"type": "dense", "shape": [2], "weight": np.ones((2, 24)),
                                              "neuron": lif()}],
     r"without a flatten before it"),
])
def test_unsupported_layers_and_fields_are_refused_in_one_line(tmp_path, layers, message):
    with pytest.raises(NetxError, match=message) as e:
        netx.load(write_net(tmp_path / "bad.net", layers))
    assert "\n" not in str(e.value)


def test_cli_compile_report_run_a_netx_network(tmp_path):
    d = netx_vectors.fetch("pilotnet_sdnn")
    x = whc(np.load(d / "input.npy")[..., 0]).astype(np.int64)
    np.save(tmp_path / "x.npy", np.repeat(x[None], 9, axis=0))
    synfab = [sys.executable, "-m", "synfab.cli"]
    out = subprocess.run(synfab + ["compile", str(d / "network.net"), "-o", str(tmp_path / "p.sfb"), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(synfab + ["run", str(tmp_path / "p.sfb"), "--inputs", str(tmp_path / "x.npy"), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json
    res = json.loads(out.stdout)
    steps = res["layer_spikes_per_step"]
    assert len(steps) == 9 and set(steps[0]) == {l["name"] for l in res["layers"]}
    outputs = np.array(res["output_per_step"]).reshape(9, -1).sum(axis=1)
    assert outputs.tolist() == np.load(d / "output.npy")[0].astype(int).tolist()
    assert len(res["evaluations_per_step"]) == 9
    out = subprocess.run(synfab + ["run", str(tmp_path / "p.sfb"), "--inputs", str(tmp_path / "x.npy"),
                                   "--backend", "sim"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    # netx's default fabric carries sigma_delta only, whose sent (event_bits) cannot keep pilotnet's
    # unclamped activations: refused in one line naming them, before the device is touched.
    assert "does not carry unclamped activation (layers input0" in out.stderr and "--backend model" in out.stderr
    # On a fabric carrying every model the gateware runs them, but pilotnet's outputs (24-bit sigma
    # values) do not fit the output stream's 16-bit value: refused in one line as well.
    from synfab.runtime.device import DeviceError, check_fabric_runs
    qnet = netx.load(d / "network.net")
    cfg = netx.fabric(qnet).with_(neuron_models="all")
    with pytest.raises(DeviceError, match=r"^sim: output layer dense9's events reach .* --backend model$"):
        check_fabric_runs(compile_network(qnet, cfg), "sim")
    out = subprocess.run(synfab + ["report", str(d / "network.net"), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert {l.get("neuron_model") for l in rep["layers"] if l["op"] != "input"} >= {"sigma_delta"}


def test_a_dense_layer_without_neuron_is_netx_non_firing_integrator(tmp_path):
    layers = [{"type": "input", "shape": [3, 1, 1]},
              {"type": "dense", "shape": [2], "weight": np.array([[1, 2, 3], [-4, 0, 4]]), "inFeatures": 3,
               "outFeatures": 2}]
    qnet = netx.load(write_net(tmp_path / "d.net", layers))
    assert qnet.layers[1].neuron == arith.Neuron("cuba_lif", theta=1 << 17, du=0, dv=4096)
    x = np.array([1, 0, 1]).reshape(3, 1, 1)
    us = [model.layer_word("dense1", "u").reshape(-1).tolist() for model, _ in run(qnet, [x, x, x])]
    # the current integrates w . spikes << 6 from step 1 on (the relay's delay) and never decays
    assert us == [[0, 0], [4 << 6, 0], [8 << 6, 0]]
