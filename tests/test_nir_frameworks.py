"""NIR networks of sinabs and snnTorch, run by the framework itself and by synfab's golden model
(synfab.reference.simulate) on the same inputs over the same time steps.

Expected values come from the frameworks: spike counts of sinabs' IAF and snnTorch's Leaky and
Synaptic modules, and their accuracy on the shipped MNIST test digits.  Where the weights are
integers times a power of two (what synfab's int8 weights hold exactly) the arithmetic agrees
exactly and so must every output neuron's spike count.  The MNIST CNN is the shipped demo network
(trained on MNIST by tools/train_demo.py: conv3x3 s2 (8) -> conv3x3 s2 (16) -> dense 10), its ReLUs
replaced by each framework's neurons, fed the image as a constant current every step.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nir = pytest.importorskip("nir", reason="nir (setup.sh installs it)")
torch = pytest.importorskip("torch", reason="torch (setup.sh installs it)")
sinabs = pytest.importorskip("sinabs", reason="sinabs (setup.sh installs it)")
snn = pytest.importorskip("snntorch", reason="snntorch (setup.sh installs it)")

from sinabs.nir import from_nir as sinabs_from_nir  # noqa: E402
from sinabs.nir import to_nir as sinabs_to_nir  # noqa: E402
from snntorch import utils as snn_utils  # noqa: E402
from snntorch.export_nir import export_to_nir  # noqa: E402
from snntorch.import_nir import import_from_nir  # noqa: E402

from synfab import demo
from synfab.model import reference  # noqa: E402
from synfab.frontend import nir as snir  # noqa: E402
from synfab.frontend import nir_export  # noqa: E402

IMAGE = (1, 28, 28)
MNIST_STEPS = 16
PIXEL_SCALE = 1 / 255              # demo's float input: pixels / 255
ACCURACY_TOLERANCE = 0.005         # the 0.5 points


def bernoulli_spikes(seed: int, steps: int, shape=IMAGE, p=0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, *shape)) < p).astype(np.int64)


def synfab_counts(qnet, frames) -> np.ndarray:
    """Events of the output population summed over the steps (a multi-spike event counts its spikes)."""
    trace = reference.simulate(qnet, np.asarray(frames, dtype=np.int64), record_state=False)
    return np.sum(trace.events[qnet.output], axis=0).reshape(-1)


def on_grid(shape, rng, grid: float, top: int) -> torch.Tensor:
    """Weights k * grid, k in -top..top: exact in float and in synfab's int8."""
    return torch.tensor(rng.integers(-top, top + 1, shape) * grid, dtype=torch.float32)


def set_weights(model, rng, grid: float, top: int) -> None:
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.weight.data = on_grid(m.weight.shape, rng, grid, top)


def demo_layers(fc_bias: bool):
    """The demo MNIST CNN's conv1, conv2 and fc with their trained weights and biases (fc's bias
    only if asked: synfab adds a bias to the voltage, so no bias may precede a CubaLIF)."""
    params = {n.name: n.params for n in demo.load_network("demo")}
    layers = [torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.Linear(784, 10, bias=fc_bias)]
    for layer, name in zip(layers, ("conv1", "conv2", "fc")):
        layer.weight.data = torch.tensor(params[name]["weight"], dtype=torch.float32)
        if layer.bias is not None:
            layer.bias.data = torch.tensor(params[name]["bias"], dtype=torch.float32)
    return layers


def accuracy(counts: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(counts, axis=1) == labels))


def synfab_accuracy(qnet, images, labels, scale: float) -> float:
    currents = np.rint(images / 255.0 / scale).astype(np.int64)
    counts = [synfab_counts(qnet, np.repeat(x[None], MNIST_STEPS, axis=0)) for x in currents]
    return accuracy(np.array(counts), labels)


# -- sinabs ------------------------------------------------------------------------------------
def sinabs_cnn(rng, c1: int, c2: int, grid: float):
    ann = torch.nn.Sequential(torch.nn.Conv2d(1, c1, 3, stride=2, padding=1, bias=False), torch.nn.ReLU(),
                              sinabs.layers.SumPool2d(2), torch.nn.Conv2d(c1, c2, 3, bias=False), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(c2 * 5 * 5, 10, bias=False), torch.nn.ReLU())
    set_weights(ann, rng, grid, 4)
    return ann


def sinabs_snn(ann, batch: int):
    """sinabs' ANN-to-SNN conversion: IAF neurons, MultiSpike, reset by subtraction, min_v_mem -1."""
    return sinabs.from_model(ann, input_shape=IMAGE, batch_size=batch).spiking_model


def sinabs_counts(model, frames: np.ndarray, batch: int) -> np.ndarray:
    """(batch, outputs) spike counts; frames (batch, T, C, H, W), IAFSqueeze's (batch * T, ...) layout."""
    x = torch.tensor(frames.reshape(-1, *frames.shape[2:]), dtype=torch.float32)
    sinabs.reset_states(model)
    with torch.no_grad():
        out = model(x)
    return out.reshape(batch, frames.shape[1], -1).sum(1).numpy()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), c1=st.integers(1, 4), c2=st.integers(1, 6), grid_exp=st.integers(-3, 0))
def test_sinabs_iaf_cnn_spike_counts_equal_synfab(seed, c1, c2, grid_exp):
    rng = np.random.default_rng(seed)
    ann = sinabs_cnn(rng, c1, c2, 2.0 ** grid_exp)
    frames = bernoulli_spikes(seed, 12)
    want = sinabs_counts(sinabs_snn(ann, 1), frames[None], 1)[0]
    graph = sinabs_to_nir(sinabs_snn(ann, 1), torch.zeros(1, *IMAGE))
    qnet = snir.load(graph, convention="sinabs")
    assert [l.neuron.model for l in qnet.layers] == ["if", "sigma_delta", "if", "if"]
    assert np.array_equal(synfab_counts(qnet, frames), want)


def test_sinabs_reads_what_synfab_exports(tmp_path):
    ann = sinabs_cnn(np.random.default_rng(1), 4, 6, 0.25)
    frames = bernoulli_spikes(2, 12)
    qnet = snir.load(sinabs_to_nir(sinabs_snn(ann, 1), torch.zeros(1, *IMAGE)), convention="sinabs")
    path = tmp_path / "net.nir"
    nir_export.export(qnet, path, dt=snir.SINABS_DT)
    model = sinabs_from_nir(nir.read(path), batch_size=1)
    with torch.no_grad():
        out, _ = model(torch.tensor(frames, dtype=torch.float32))
    want = out.sum(0).numpy()
    assert want.sum() > 0 and np.array_equal(synfab_counts(qnet, frames), want)


@pytest.mark.slow
def test_sinabs_mnist_accuracy_within_half_a_point():
    images, labels = demo.load_demo_digits()
    conv1, conv2, fc = demo_layers(fc_bias=True)
    ann = torch.nn.Sequential(conv1, torch.nn.ReLU(), conv2, torch.nn.ReLU(), torch.nn.Flatten(), fc, torch.nn.ReLU())
    currents = np.repeat((images / 255.0)[:, None], MNIST_STEPS, axis=1)
    want = accuracy(sinabs_counts(sinabs_snn(ann, len(images)), currents, len(images)), labels)
    qnet = snir.load(sinabs_to_nir(sinabs_snn(ann, 1), torch.zeros(1, *IMAGE)), convention="sinabs",
                     input_scale=PIXEL_SCALE)
    got = synfab_accuracy(qnet, images, labels, PIXEL_SCALE)
    assert want > 0.95                          # measured: sinabs 0.982, synfab 0.982 on the 500 digits
    assert abs(got - want) <= ACCURACY_TOLERANCE


# -- snnTorch ----------------------------------------------------------------------------------
def leaky(beta: float):
    return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero")


def synaptic(alpha: float, beta: float, output: bool = False):
    return snn.Synaptic(alpha=alpha, beta=beta, init_hidden=True, reset_mechanism="zero", output=output)


def snntorch_counts(model, frames: np.ndarray) -> np.ndarray:
    """(batch, outputs) spike counts of a model ending in Synaptic(output=True); frames (T, batch, C, H, W)."""
    snn_utils.reset(model)
    total = 0
    with torch.no_grad():
        for x in torch.tensor(frames, dtype=torch.float32):
            spikes, _, _ = model(x)
            total = total + spikes
    return total.numpy()


def snntorch_cnn(rng, c1: int, grid: float, alpha: float, beta: float, output: bool):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, c1, 3, stride=2, padding=1, bias=False), leaky(beta),
                                torch.nn.AvgPool2d(2), torch.nn.Conv2d(c1, 6, 3, bias=False), leaky(beta),
                                torch.nn.Flatten(), torch.nn.Linear(6 * 5 * 5, 10, bias=False),
                                synaptic(alpha, beta, output))
    set_weights(model, rng, grid, 7)
    return model


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), c1=st.integers(1, 4))
def test_snntorch_leaky_synaptic_cnn_spike_counts_equal_synfab(seed, c1):
    # Decays of 1/2 and 4-bit weights: Loihi's 6 + 4 fractional bits hold every state exactly for 10 steps.
    steps, grid = 10, 0.125
    frames = bernoulli_spikes(seed, steps)
    want = snntorch_counts(snntorch_cnn(np.random.default_rng(seed), c1, grid, 0.5, 0.5, True), frames[:, None])[0]
    model = snntorch_cnn(np.random.default_rng(seed), c1, grid, 0.5, 0.5, False)
    qnet = snir.load(export_to_nir(model, torch.zeros(1, *IMAGE)), convention="snntorch")
    assert [l.neuron.model for l in qnet.layers] == ["lif", "sigma_delta", "lif", "cuba_lif"]
    assert np.array_equal(synfab_counts(qnet, frames), want)


def test_snntorch_reads_what_synfab_exports(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), leaky(0.5),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 5, bias=False), leaky(0.5))
    set_weights(model, np.random.default_rng(3), 0.125, 7)
    qnet = snir.load(export_to_nir(model, torch.zeros(1, *IMAGE)), convention="snntorch")
    path = tmp_path / "net.nir"
    nir_export.export(qnet, path)              # dt 1e-4: what snnTorch's importer assumes
    imported = import_from_nir(nir.read(path))
    frames = bernoulli_spikes(4, 10)
    state, total = None, 0
    with torch.no_grad():
        for x in torch.tensor(frames[:, None], dtype=torch.float32):
            out, state = imported(x) if state is None else imported(x, state)
            total = total + out.reshape(-1)
    want = total.numpy()
    assert want.sum() > 0 and np.array_equal(synfab_counts(qnet, frames), want)


def snntorch_mnist_model(layers, output: bool):
    conv1, conv2, fc = layers
    return torch.nn.Sequential(conv1, leaky(SNN_BETA), conv2, leaky(SNN_BETA), torch.nn.Flatten(), fc,
                               synaptic(SNN_ALPHA, SNN_BETA, output))


SNN_BETA, SNN_ALPHA = 1 - 1 / 16, 0.5     # decays 256 and 2048 of Loihi's 4096: no rounding of the decay itself


@pytest.mark.slow
def test_snntorch_mnist_accuracy_within_half_a_point():
    images, labels = demo.load_demo_digits()
    # 5-bit currents: a power-of-two step, and 127 * 32 per weight fits Loihi's 24-bit current
    # (synfab.frontend.nir refuses what would wrap: with 8-bit pixels the first layer's would).
    scale, top = 2.0 ** -5, 32
    currents = np.repeat(np.rint(images / 255.0 / scale)[None] * scale, MNIST_STEPS, axis=0)
    want = accuracy(snntorch_counts(snntorch_mnist_model(demo_layers(fc_bias=False), True), currents), labels)
    graph = export_to_nir(snntorch_mnist_model(demo_layers(fc_bias=False), False), torch.zeros(1, *IMAGE))
    qnet = snir.load(graph, convention="snntorch", input_scale=scale, input_max=top)
    got = synfab_accuracy(qnet, images, labels, scale)
    assert want > 0.85                          # measured: snnTorch 0.890, synfab 0.890
    assert abs(got - want) <= ACCURACY_TOLERANCE
