"""The Device interface end to end: model and Verilator backends agree with the dense reference."""
import numpy as np
import pytest

from synfab import api
from synfab.model import reference
from synfab.config import PRESETS
from synfab.demo import demo_qnetwork, load_demo_digits
from synfab.frontend.quant import quantize_input
from synfab.runtime.stream import MismatchError, input_deltas


def demo_frames(n):
    qnet = demo_qnetwork()
    imgs, labels = load_demo_digits(n)
    return qnet, np.stack([quantize_input(qnet, im.astype(np.float32) / 255.0) for im in imgs]), labels


def test_input_deltas_reconstruct_frames():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, (2, 2, 5, 5))
    ev = input_deltas(a, b)
    rebuilt = a.astype(np.int64).copy()
    np.add.at(rebuilt, (ev["c"], ev["y"], ev["x"]), ev["d"])
    assert np.array_equal(rebuilt, b) and np.all(ev["d"] != 0)


def test_model_backend_outputs_equal_dense_reference():
    qnet, x, _ = demo_frames(6)
    tables = api.compile_qnetwork(qnet)
    out = api.run_frames(tables, x, backend="model")
    res = out["result"]
    for t, xi in enumerate(x):
        assert np.array_equal(res.outputs[t], reference.run(qnet, xi)[qnet.output])


def test_model_backend_reset_replays_identically():
    qnet, x, _ = demo_frames(3)
    tables = api.compile_qnetwork(qnet)
    dev = api.open_device("model", tables.cfg)
    dev.load(tables)
    first = api.run_frames(tables, x, device=dev)["result"]
    dev.reset()
    second = api.run_frames(tables, x, device=dev)["result"]
    assert all(np.array_equal(a, b) for a, b in zip(first.outputs, second.outputs))


@pytest.mark.slow
def test_sim_demo_checked_against_model_and_reference():
    out = api.demo(backend="sim", frames=4, check=True)
    assert out["match"] is True and out["checked_against_model"] is True
    assert out["cycles"] > 0 and out["synaptic_ops"] > 0
    model = api.demo(backend="model", frames=4)
    for k in ("events", "synaptic_ops", "predictions", "output_events"):
        assert out[k] == model[k]


@pytest.mark.slow
def test_sim_threshold_runs_bit_exact_with_model():
    qnet, x, _ = demo_frames(3)
    tables = api.compile_qnetwork(qnet)
    out = api.run_frames(tables, x, backend="sim", threshold=6, check=True)
    assert out["summary"]["frames"] == 3


def test_check_reports_the_first_mismatch():
    """A device whose tables differ from the model's (one bias changed) is caught and located."""
    qnet, x, _ = demo_frames(2)
    tables = api.compile_qnetwork(qnet)
    from synfab.runtime.model import ModelDevice
    dev = ModelDevice(tables.cfg)
    dev.load(tables)
    dev.model._acc[0][5] += 1000   # corrupt one neuron's accumulator on the device only
    dev.tables = tables
    with pytest.raises(MismatchError, match=r"frame 0: .*core 0, neuron 5 = layer conv1"):
        from synfab.runtime.stream import stream
        stream(dev, x, check=True)


def test_bundle_for_another_fabric_is_refused_and_device_stays_usable():
    qnet, x, _ = demo_frames(1)
    other = api.compile_qnetwork(qnet, PRESETS["default"].with_(neurons_per_core=3000, name="other"))
    dev = api.open_device("model", PRESETS["default"])
    with pytest.raises(Exception, match="recompile with --fabric"):
        dev.load(other)
    good = api.compile_qnetwork(qnet)
    dev.load(good)
    res = api.run_frames(good, x, device=dev)["result"]
    # Usable means right, not only running: the outputs are the dense reference's, with synaptic work done.
    assert res.frames == 1 and res.synaptic_ops > 0
    assert np.array_equal(res.outputs[0], reference.run(qnet, x[0])[qnet.output])
