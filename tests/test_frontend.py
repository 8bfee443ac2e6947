"""The front door (synfab.frontend.load_model, api.compile_file, `synfab compile MODEL`):
every format through one call, the PyTorch files compiled to the bytes of the Python API
path, and one-line errors for what it cannot read."""
import importlib.util

import numpy as np
import pytest

import torch
from torch import nn

from synfab import api, frontend
from synfab.compiler import bundle
from synfab.frontend import netfile, quant
from synfab.cli import main
from synfab.errors import SynfabError
from synfab.frontend import FORMATS, load_model
from synfab.frontend.ir import Network, NetworkError
from synfab.frontend.torch_import import from_torch

SHAPE = (1, 16, 16)


def cnn(seed: int = 0) -> nn.Module:
    """Conv + BatchNorm (folded), pooling, a functional ReLU and a flatten: what both PyTorch
    doors must name and fold alike."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 10))
    with torch.no_grad():    # running statistics that differ from the identity
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model saved both ways, calibration images, and the bundle of the Python API path."""
    d = tmp_path_factory.mktemp("front")
    model = cnn()
    torch.export.save(torch.export.export(model, (torch.rand(1, *SHAPE),)), str(d / "cnn.pt2"))
    torch.save(model, d / "cnn.pt")
    images = np.random.default_rng(0).integers(0, 256, (16, *SHAPE[1:]), dtype=np.uint8)
    np.savez(d / "calib.npz", images=images)
    calib = images[:, None].astype(np.float32) / 255.0
    qnet = quant.quantize(from_torch(model, SHAPE), calib)
    # compile_file balances the calibration images' work (api.calibration_sample): the Python API
    # path places for the same sample.
    bundle.save(api.compile_qnetwork(qnet, sample=api.calibration_sample(qnet, d / "calib.npz")), d / "python_api.sfb")
    return d


def test_every_format_is_registered_with_its_suffixes():
    suffixes = {s: f.name for f in FORMATS.values() for s in f.suffixes}
    assert suffixes == {".json": "network JSON", ".nir": "NIR", ".net": "lava-dl netx", ".onnx": "ONNX / QONNX",
                        ".pt2": "torch.export program", ".pt": "saved nn.Module", ".pth": "saved nn.Module"}
    assert FORMATS["NIR"].options == ("dt", "convention", "input_scale", "input_max") and FORMATS["saved nn.Module"].options == ("input_shape",)


def test_pt2_program_compiles_to_the_python_api_bundle(files, tmp_path):
    api.compile_file(files / "cnn.pt2", out=tmp_path / "p.sfb", calib=files / "calib.npz")
    assert (tmp_path / "p.sfb").read_bytes() == (files / "python_api.sfb").read_bytes()


def test_saved_module_compiles_to_the_python_api_bundle(files, tmp_path):
    api.compile_file(files / "cnn.pt", out=tmp_path / "m.sfb", calib=files / "calib.npz", input_shape=SHAPE)
    assert (tmp_path / "m.sfb").read_bytes() == (files / "python_api.sfb").read_bytes()


def test_pt2_program_computes_what_torch_computes(files):
    net = load_model(files / "cnn.pt2")
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        want = cnn()(x).numpy()
    np.testing.assert_allclose(quant.float_forward(net, x.numpy()).reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    assert net.name == "Sequential" and [n.name for n in net][:3] == ["input", "_0", "_2"]   # BN folded into _0


class Branches(nn.Module):
    """A residual add, a channel concatenation and functional calls inside a custom module."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.left = nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 2, 1)
        self.head = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x):
        y = self.stem(x)
        y = torch.relu(self.left(y) + y)
        y = torch.cat([y, self.right(y)], dim=1)
        y = torch.nn.functional.avg_pool2d(y, 2)
        return self.head(torch.flatten(y, 1))


def test_pt2_program_imports_as_torch_import_does():
    torch.manual_seed(2)
    model = Branches().eval()
    program = torch.export.export(model, (torch.rand(1, *SHAPE),))
    from synfab.frontend.torch_program import from_program
    got, want = from_program(program), from_torch(model, SHAPE)
    assert [(n.name, n.op, n.inputs, n.attrs) for n in got] == [(n.name, n.op, n.inputs, n.attrs) for n in want]
    for a, b in zip(got, want):
        assert a.params.keys() == b.params.keys()
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])
    assert got.name == want.name == "Branches"


@pytest.mark.parametrize("model", ["cnn.pt2", "cnn.pt"])
def test_cli_compiles_pytorch_files_to_the_python_api_bundle(files, tmp_path, capsys, model):
    out = tmp_path / "c.sfb"
    argv = ["compile", str(files / model), "-o", str(out), "--calib", str(files / "calib.npz")]
    assert main(argv + (["--input-shape", "1,16,16"] if model.endswith(".pt") else [])) == 0
    assert out.read_bytes() == (files / "python_api.sfb").read_bytes()
    assert "Sequential: 4 layers" in capsys.readouterr().out


def test_json_and_netx_still_load_through_the_front_door(tmp_path):
    net = from_torch(cnn(), SHAPE)
    netfile.save(net, tmp_path / "n.json")
    loaded = load_model(tmp_path / "n.json")
    assert isinstance(loaded, Network) and [n.name for n in loaded] == [n.name for n in net]
    assert api.load_network("demo").name == api.load_network("demo").name   # the shortcut stays
    plain = tmp_path / "no_suffix"
    plain.write_text((tmp_path / "n.json").read_text())
    assert [n.name for n in load_model(plain)] == [n.name for n in net]     # recognised by content


# ---------------------------------------------------------------------------------------
# One-line errors
def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_unknown_suffix_lists_the_formats(tmp_path):
    path = tmp_path / "model.xyz"
    path.write_bytes(b"\x00 not a model")
    with pytest.raises(SynfabError) as e:
        load_model(path)
    msg = one_line(e)
    for fmt in FORMATS.values():
        assert fmt.describe() in msg


def test_saved_module_without_input_shape_says_how(files):
    with pytest.raises(SynfabError, match=r"input_shape=\(C, H, W\) \(command line: --input-shape C,H,W\)") as e:
        load_model(files / "cnn.pt")
    one_line(e)


def test_option_a_format_does_not_take(files):
    with pytest.raises(SynfabError, match="option.s. dt do not apply to torch.export program files") as e:
        load_model(files / "cnn.pt2", dt=1e-3)
    one_line(e)


def test_unsupported_aten_op_names_node_and_what_works(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()).eval()
    torch.export.save(torch.export.export(model, (torch.rand(1, *SHAPE),)), str(tmp_path / "s.pt2"))
    with pytest.raises(NetworkError) as e:
        load_model(tmp_path / "s.pt2")
    msg = one_line(e)
    assert "node 'sigmoid' (aten.sigmoid) is not supported" in msg and "conv2d" in msg and "linear" in msg


def test_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(SynfabError, match=r"reading ONNX / QONNX files needs onnx: pip install 'synfab\[onnx\]'") as e:
        load_model(path)
    one_line(e)


def test_nir_file_without_its_importer_is_one_line(tmp_path, monkeypatch):
    """Without synfab.frontend.nir importable, a .nir file says what is missing."""
    import h5py
    path = tmp_path / "m.nir"
    with h5py.File(path, "w") as f:
        f.create_group("node")
    assert frontend.is_hdf5_file(path)
    monkeypatch.setitem(__import__("sys").modules, "synfab.frontend.nir", None)
    monkeypatch.delattr(frontend, "nir", raising=False)     # an earlier import left it on the package
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "nir" else real(name, *a))
    with pytest.raises(SynfabError, match="NIR import is not available") as e:
        load_model(path)
    one_line(e)


@pytest.mark.parametrize("args, words", [
    (["{d}/cnn.pt", "--calib", "{d}/calib.npz"], "--input-shape C,H,W"),
    (["{d}/cnn.pt", "--input-shape", "1,16"], "--input-shape '1,16': give channels, height, width"),
    (["{d}/cnn.pt2", "--option", "nonsense"], "--option 'nonsense': give KEY=VALUE"),
    (["{d}/cnn.pt2", "--option", "input_shape=[1,16,16]"], "do not apply to torch.export program files"),
    (["{d}/calib.npz"], "is not a synfab network JSON nor another model file synfab reads"),
])
def test_cli_errors_are_one_line_exit_1(files, tmp_path, capsys, args, words):
    argv = ["compile", *[a.format(d=files) for a in args], "-o", str(tmp_path / "x.sfb")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("synfab: error: ") and err.count("\n") == 1 and words in err
    assert "Traceback" not in err
