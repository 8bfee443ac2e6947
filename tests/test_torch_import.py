"""PyTorch import: the imported float graph computes what torch computes."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from synfab.frontend import quant  # noqa: E402
from synfab.frontend.ir import UNSUPPORTED_HINT, NetworkError  # noqa: E402
from synfab.frontend.torch_import import from_torch  # noqa: E402


def same_as_torch(module, shape, n=4, seed=0):
    torch.manual_seed(seed)
    module.eval()
    x = torch.rand(n, *shape)
    with torch.no_grad():
        want = module(x).numpy()
    net = from_torch(module, shape)
    got = quant.float_forward(net, x.numpy().astype(np.float64))
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    return net


def test_sequential():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.5),
                      nn.Conv2d(4, 6, 3, padding="same", bias=False), nn.ReLU(), nn.AvgPool2d(2),
                      nn.Identity(), nn.Flatten(), nn.Linear(6 * 7 * 7, 10))
    net = same_as_torch(m, (1, 28, 28))
    assert [n.op for n in net] == ["input", "conv", "relu", "conv", "relu", "avgpool", "flatten", "dense"]
    assert net.input.name == "input"


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = self.conv2(y) + x
        y = torch.relu(y)
        return torch.add(self.dw(y), y).relu()


def test_residual_block():
    net = same_as_torch(Residual(), (4, 6, 6))
    assert sum(n.op == "add" for n in net) == 2
    assert next(n for n in net if n.name == "dw").attrs["groups"] == 4


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(10, 4, 3, padding=1)

    def forward(self, x):
        z = torch.cat([self.a(x), self.up(self.b(x)), x], dim=1)
        z = F.relu(self.head(z))
        z = F.interpolate(F.avg_pool2d(z, 2), scale_factor=2)
        return torch.flatten(z, 1)


def test_concat_block():
    net = same_as_torch(Concat(), (3, 8, 8))
    cat = next(n for n in net if n.op == "concat")
    assert cat.shape == (10, 8, 8) and len(cat.inputs) == 3


def test_batchnorm_folded_into_conv():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU())
    with torch.no_grad():
        bn = m[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    net = same_as_torch(m, (2, 5, 5))
    assert [n.op for n in net] == ["input", "conv", "relu"]


def test_upsample_by_size():
    m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Upsample(size=(8, 8)))
    net = same_as_torch(m, (1, 2, 2))
    assert next(n for n in net if n.op == "upsample").attrs["scale"] == 4


def test_imported_network_quantizes():
    torch.manual_seed(2)
    m = Residual().eval()
    net = from_torch(m, (4, 6, 6))
    q = quant.quantize(net, np.random.default_rng(0).uniform(size=(8, 4, 6, 6)))
    assert [l.op for l in q.layers] == ["conv", "conv", "add", "conv", "add"]


@pytest.mark.parametrize("module, layer, what", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)), "_1", "MaxPool2d"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), "_1", "Sigmoid"),
])
def test_unsupported_layer_message(module, layer, what):
    with pytest.raises(NetworkError) as e:
        from_torch(module, (1, 8, 8))
    assert str(e.value) == f"layer {layer!r} ({what}) is not supported; {UNSUPPORTED_HINT}"


class Sub(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


@pytest.mark.parametrize("module, message", [
    (Sub(), r"layer 'sigmoid' \(sigmoid\) is not supported"),
    (nn.Sequential(nn.ReLU(), nn.BatchNorm2d(1)), "must directly follow a Conv2d"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(6, 2)), "flatten before it"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), "dilation"),
    (nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear")), "mode 'bilinear'"),
    (nn.Sequential(nn.Upsample(scale_factor=(2, 1))), "rectangular scale_factor"),
])
def test_import_errors(module, message):
    with pytest.raises(NetworkError, match=message):
        from_torch(module, (1, 8, 8))


def test_synfab_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import synfab, synfab.quant, synfab.netfile, synfab.reference, synfab.demo, synfab.torch_import\n"
            "try:\n    synfab.torch_import.from_torch(None, (1, 2, 2))\n"
            "except synfab.SynfabError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("importing a PyTorch module needs torch")


def test_rectangular_conv_and_pool_import_quantize_and_run_exactly():
    from synfab import PRESETS
    from synfab.model import reference
    from synfab.compiler import compile_network
    from synfab.model import Model, input_events
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(2, 3, (1, 3), stride=(2, 1), padding=(0, 1)), nn.ReLU(), nn.AvgPool2d((2, 1)),
                      nn.Flatten(), nn.Linear(3 * 2 * 6, 4))
    net = same_as_torch(m, (2, 8, 6))
    conv = next(n for n in net if n.op == "conv")
    assert (conv.attrs["kernel"], conv.attrs["stride"], conv.attrs["padding"]) == ([1, 3], [2, 1], [0, 1])
    q = quant.quantize(net, np.random.default_rng(0).uniform(size=(16, 2, 8, 6)))
    c = q.layers[0].inputs[0]
    assert (c.kh, c.kw, c.sh, c.sw, c.ph, c.pw) == (1, 3, 2, 1, 0, 1)
    cfg = PRESETS["small"].with_(event_bits=24)
    model = Model(compile_network(q, cfg))
    x = quant.quantize_input(q, np.random.default_rng(1).uniform(size=(2, 8, 6)))
    model.run_frame(input_events(None, x))
    assert np.array_equal(model.output_state(), reference.output(q, x, cfg.acc_bits))
