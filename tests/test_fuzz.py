"""Fuzzing every reader and loader: a short seeded campaign per target (benchmarks/bench_fuzz.py runs
long ones), the fuzzer's own detection of planted bugs, and one test per bug the fuzzer found: each
reproducer now raises a one-line SynfabError."""
import io
import json
import os
import re
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from synfab import fuzz, fuzz_targets
from synfab.errors import SynfabError

TARGETS = fuzz_targets.targets()
CI_INPUTS = 30          # per target: the seeds, then mutated copies


def raises_one_line(fn, *args, match: str = "", error=SynfabError):
    with pytest.raises(error, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value).strip() and str(info.value).strip(), str(info.value)
    return str(info.value)


# -- the campaign ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_campaign_finds_nothing(name, tmp_path):
    report = fuzz.campaign(TARGETS[name], CI_INPUTS, seed=12, timeout=30, findings_dir=tmp_path)
    assert [(f.outcome, f.mutation, f.error, f.where) for f in report.findings] == []
    assert report.inputs == CI_INPUTS
    # Both outcomes happen, so the campaign could tell a loader that refuses everything (or nothing).
    assert report.counts["accepted"] >= len(TARGETS[name].seeds())
    assert report.counts["clean"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_longer_campaign_finds_nothing(name, tmp_path):
    report = fuzz.campaign(TARGETS[name], 100, seed=13, timeout=30, findings_dir=tmp_path)
    assert [(f.outcome, f.mutation, f.error, f.where) for f in report.findings] == []


def test_every_seed_loads():
    for name, target in TARGETS.items():
        seeds = target.seeds()
        assert seeds, name
        report = fuzz.campaign(target, len(seeds), seed=0)
        assert report.counts["accepted"] == len(seeds), (name, report.findings)


# -- the fuzzer detects planted bugs -------------------------------------------------------------
def _index_error_loader(path):
    data = path.read_bytes()
    if data[:2] != b"ok":
        raise SynfabError("not ok")
    return data[2:][5]            # IndexError for short files: a planted bug


def _multiline_loader(path):
    if path.read_bytes() != b"ok":
        raise SynfabError("bad file\nsecond line")


def _hanging_loader(path):
    if path.read_bytes() != b"ok":
        time.sleep(60)


def _dying_loader(path):
    if path.read_bytes() != b"ok":
        os.kill(os.getpid(), signal.SIGSEGV)


def toy(load, seed=b"ok" + bytes(10)):
    return fuzz.Target("toy", lambda: [{"t.bin": seed}], load)


def test_planted_index_error_is_a_finding_with_a_reproducer(tmp_path):
    report = fuzz.campaign(toy(_index_error_loader), 60, seed=1, findings_dir=tmp_path)
    assert report.counts["accepted"] >= 1 and report.counts["clean"] >= 1
    index_errors = [f for f in report.findings if f.outcome == "exception" and f.error.startswith("IndexError")]
    assert index_errors
    assert "_index_error_loader" in index_errors[0].where
    saved = json.loads((tmp_path / "toy" / "001" / "finding.json").read_text())
    assert saved["outcome"] == "exception"
    reproducer = (tmp_path / "toy" / "001" / "t.bin").read_bytes()
    assert reproducer[:2] == b"ok" and len(reproducer) <= 7


def test_multiline_errors_and_hangs_are_findings():
    report = fuzz.campaign(toy(_multiline_loader, b"ok"), 5, seed=1)
    assert report.counts["multiline"] >= 1
    start = time.monotonic()
    report = fuzz.campaign(toy(_hanging_loader, b"ok"), 3, seed=1, timeout=0.5)
    assert report.counts["timeout"] == 2 and report.counts["accepted"] == 1
    assert time.monotonic() - start < 20        # the hung worker was killed, not waited for


def test_a_worker_that_dies_on_an_input_is_a_crash_finding():
    """A crash is confirmed on a fresh worker before it counts; one that dies every time counts."""
    report = fuzz.campaign(toy(_dying_loader, b"ok"), 3, seed=1)
    assert report.counts["accepted"] == 1 and report.counts["crash"] == 2
    assert all(f.outcome == "crash" and "exit code -11" in f.error for f in report.findings)


def test_a_worker_that_dies_once_is_not_a_finding(tmp_path):
    """A worker lost once (a signal under load) and fine on the same input again: no finding."""
    marker = tmp_path / "died_once"

    def dies_once(path):
        if path.read_bytes() != b"ok" and not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGSEGV)

    report = fuzz.campaign(toy(dies_once, b"ok"), 3, seed=1)
    assert marker.exists(), "the planted crash happened"
    assert report.counts["crash"] == 0 and report.findings == []


def test_mutations_are_seeded():
    runs = [[fuzz.mutate(random.Random(5), TARGETS["fabric-config"],
                         TARGETS["fabric-config"].seeds()[0]) for _ in range(20)] for _ in range(2)]
    assert runs[0] == runs[1]


# -- the bugs the fuzzer found, each now one line ------------------------------------------------
def test_fabric_config_undecodable_or_deeply_nested(tmp_path):
    from synfab.config import ConfigError, FabricConfig
    (tmp_path / "a.json").write_bytes(b'{"cores_x": 2\xff}')
    raises_one_line(FabricConfig.load, tmp_path / "a.json", match="not valid JSON", error=ConfigError)
    (tmp_path / "b.json").write_text("[" * 100000 + "]" * 100000)
    raises_one_line(FabricConfig.load, tmp_path / "b.json", match="not valid JSON", error=ConfigError)


def _netfile(tmp_path, edit, quantized=False):
    from synfab.frontend import netfile
    path = tmp_path / ("q.json" if quantized else "n.json")
    (netfile.save_q(fuzz_targets.tiny_qnetwork(), path) if quantized else
     netfile.save(fuzz_targets.tiny_network(), path))
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(nodes=1.5), "field 'nodes' must be a JSON array"),
    (lambda d: d["nodes"].__setitem__(1, 7), "node 1: expected a JSON object"),
    (lambda d: d["nodes"][1].update(name=["conv"]), "field 'name' must be a JSON string"),
    (lambda d: d["nodes"][1].update(attrs=[]), "field 'attrs' must be a JSON object"),
    (lambda d: d["nodes"][0]["attrs"].update(shape=[1, "", 6]), "wrong type or range"),
    (lambda d: d.update(output={"a": 1}), "field 'output' must name a layer"),
    (lambda d: d.update(params=3), "must name the .npz file"),
])
def test_float_network_file_with_wrong_types(tmp_path, edit, match):
    from synfab.frontend import netfile
    raises_one_line(netfile.load, _netfile(tmp_path, edit), match=match)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(layers={"x": 1}), "field 'layers' must be a JSON array"),
    (lambda d: d["layers"][0].update(shape=[2, [6], 6]), "field 'shape' must be"),
    (lambda d: d["layers"][0]["inputs"][0].update(src=["input"]), "field 'src' must be a JSON string"),
    (lambda d: d["layers"][0]["inputs"][0].update(chan_off=[1, 2]), "wrong type or range"),
    (lambda d: d.update(input_scale="a"), "wrong type or range"),
    (lambda d: d.update(input_shape=5), "field 'input_shape' must be a JSON array"),
])
def test_quantized_network_file_with_wrong_types(tmp_path, edit, match):
    from synfab.frontend import netfile
    raises_one_line(netfile.load_q, _netfile(tmp_path, edit, quantized=True), match=match)


def test_network_file_deep_nesting_and_empty_npz(tmp_path):
    from synfab.frontend import netfile
    path = _netfile(tmp_path, lambda d: None)
    (tmp_path / "n.npz").write_bytes(b"")
    raises_one_line(netfile.load, path, match="not a valid .npz")
    path.write_text('{"format": ' + "[" * 100000 + "]" * 100000 + "}")
    raises_one_line(netfile.load, path, match="not valid JSON")


def test_npy_with_a_header_cut_mid_token(tmp_path):
    from synfab import events
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, events.EVENT_DTYPE))
    data = bytearray(buf.getvalue())
    data[10:12] = b"{("           # an opening bracket never closed: numpy's tokenizer raises TokenError
    (tmp_path / "e.npy").write_bytes(bytes(data))
    raises_one_line(events.read, tmp_path / "e.npy", match="cannot load as numpy data")


def test_aedat4_decoder_errors_are_one_line_and_silent(tmp_path):
    """faery's messages span lines, and a Rust panic prints its backtrace on stderr before Python
    sees it: the reader folds both into one line."""
    from synfab import events
    seed = TARGETS["aedat4"].seeds()[0]["e.aedat4"]
    (tmp_path / "cut.aedat4").write_bytes(seed[:18])
    raises_one_line(events.read, tmp_path / "cut.aedat4", match="cannot decode AEDAT4")
    rng = np.random.default_rng(0)
    for k in range(40):                 # damaged copies, some of which make the decoder panic
        data = bytearray(seed)
        for i in rng.integers(14, len(data), 4):
            data[i] ^= 1 << int(rng.integers(8))
        (tmp_path / f"m{k}.aedat4").write_bytes(bytes(data))
    code = ("import sys, pathlib; from synfab import events; from synfab.errors import SynfabError\n"
            "for p in sorted(pathlib.Path(sys.argv[1]).glob('m*.aedat4')):\n"
            "    try: events.read(p)\n"
            "    except SynfabError: pass\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]


def _netx_file(tmp_path, edit=None, raw=None):
    import h5py
    data = fuzz_targets._netx_seed()["n.net"]
    if edit is not None:
        buf = io.BytesIO(data)
        with h5py.File(buf, "r+") as f:
            edit(f)
        data = buf.getvalue()
    path = tmp_path / "n.net"
    path.write_bytes(raw(data) if raw else data)
    return path


def _replace(name, value):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=value)
    return edit


@pytest.mark.parametrize("edit, match", [
    (_replace("layer/1/type", np.ones((2, 3, 4, 5))), r"type \[\[\[.*is not supported"),
    (_replace("layer/1/neuron/type", np.ones((2, 3))), "neuron type .* is not supported"),
    (_replace("layer/1/neuron/activation", np.ones(3)), "neuron field 'activation'"),
    (_replace("layer/1/neuron/vThMant", np.ones((2, 3, 4, 5))), "field 'vThMant' = .*supported: one integer"),
    (_replace("layer/1/stride", b"xyz"), "field 'stride' = xyz; supported: numbers"),
    (_replace("layer/1/groups", b"conv"), "field 'groups' = conv; supported: numbers"),
    (_replace("layer/1/weight", np.array([0])), r"field weight has shape \[1\]"),
    (lambda f: f.__delitem__("layer/1/weight"), "field 'weight' is missing"),
    (lambda f: f.__delitem__("layer/3/weight"), "field 'weight' is missing"),
    (_replace("layer/3/outFeatures", 0), "not a whole number of rows"),
    (_replace("layer/0/shape", b""), "field 'shape' = ; supported: numbers"),
    (_replace("layer/0/shape", np.int64(2 ** 62)), "field shape = .*supported: one to three positive sizes"),
    (_replace("layer/1/bias", np.arange(7)), "field bias has 7 values for 3 channels"),
    (lambda f: (f.__delitem__("layer/2"), f.create_dataset("layer/2", data=1)), "layer 2 is a dataset"),
    (lambda f: (f.__delitem__("layer"), f.create_dataset("layer", data=1)), "no 'layer' group"),
])
def test_netx_fields_of_the_wrong_kind(tmp_path, edit, match):
    from synfab.frontend import netx
    raises_one_line(netx.load, _netx_file(tmp_path, edit), match=match, error=netx.NetxError)


def test_netx_damaged_hdf5_structures(tmp_path):
    """Bit flips inside HDF5's object headers make h5py raise KeyError or RuntimeError mid-read."""
    from synfab.frontend import netx
    seed = fuzz_targets._netx_seed()["n.net"]
    damaged = 0
    for at in range(96, len(seed), 397):
        path = _netx_file(tmp_path, raw=lambda d: d[:at] + bytes([d[at] ^ 0xFF]) + d[at + 1:])
        try:
            netx.load(path)
        except netx.NetxError as e:
            assert "\n" not in str(e)
            damaged += "HDF5 file is damaged" in str(e)
    assert damaged >= 1


def _nir_graph():
    from synfab.frontend import nir_export
    return nir_export.graph(fuzz_targets.tiny_qnetwork())


def _nir_node(graph, kind):
    return next(n for n in graph.nodes.values() if type(n).__name__ == kind)


@pytest.mark.parametrize("kind, attr, value, match", [
    ("Conv2d", "stride", np.array([b"xy"]), "Conv2d.*wrong type or size"),
    ("Conv2d", "padding", "", "padding"),
    ("IF", "metadata", [1, 2, 3, 4], None),
    ("Input", "input_type", {"input": np.array([b""])}, "Input.*wrong type or size"),
])
def test_nir_parameters_of_the_wrong_type(kind, attr, value, match):
    from synfab.frontend import nir as snir
    g = _nir_graph()
    node = _nir_node(g, kind)
    setattr(node, attr, value)
    try:
        snir.load(g)
    except snir.NirError as e:
        assert "\n" not in str(e) and (match is None or re.search(match, str(e))), str(e)


def test_float_nir_file_with_a_string_weight(tmp_path):
    from synfab.frontend import nir as snir
    from synfab.frontend import nir_export
    g = nir_export.graph(fuzz_targets.tiny_network())
    _nir_node(g, "Conv2d").weight = np.array([b"conv"])
    raises_one_line(snir.load, g, match="Conv2d.*wrong type or size", error=snir.NirError)


def _onnx_model():
    import onnx
    return onnx.load_from_string(fuzz_targets._onnx_seed()["m.onnx"])


def test_onnx_initializer_of_unknown_type_or_wrong_size(tmp_path):
    import onnx
    from synfab.frontend import onnx as sonnx
    model = _onnx_model()
    model.graph.initializer[0].data_type = 33            # not an ONNX element type
    raises_one_line(sonnx.from_model, model, match="initializer 'w1': unreadable tensor",
                    error=sonnx.OnnxImportError)
    model = _onnx_model()
    model.graph.initializer[2].dims[:] = [3, 8]           # the data holds 3 x 72 values
    raises_one_line(sonnx.from_model, model, match="initializer 'w2': unreadable tensor",
                    error=sonnx.OnnxImportError)
    model = _onnx_model()
    b2 = model.graph.initializer[3]
    b2.CopyFrom(onnx.numpy_helper.from_array(np.zeros(72, np.float32), "b2"))   # 72 biases for 3 outputs
    raises_one_line(sonnx.from_model, model, match="node .*Gemm.*does not fit the op",
                    error=sonnx.OnnxImportError)


# -- found by the longer campaigns (benchmarks/bench_fuzz.py) ----------------------------------------
FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"


def _aedat4_seed() -> bytes:
    return TARGETS["aedat4"].seeds()[0]["e.aedat4"]


def _u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + value.to_bytes(4, "little") + data[at + 4:]


def test_aedat4_sizes_past_the_end_are_refused_before_faery(tmp_path):
    """faery allocates each size it reads first: under a memory limit a damaged size aborted the
    process (SIGABRT), without one it asks for up to 4 GiB."""
    from synfab import events
    seed = _aedat4_seed()
    header = int.from_bytes(seed[14:18], "little")        # magic (14 bytes), u32 header size
    (tmp_path / "h.aedat4").write_bytes(_u32(seed, 14, 0xFFFFFF00))
    raises_one_line(events.read, tmp_path / "h.aedat4", match="header claims 4294967040 bytes")
    (tmp_path / "p.aedat4").write_bytes(_u32(seed, 18 + header + 4, 0x7FFFFFF0))   # first packet's size
    raises_one_line(events.read, tmp_path / "p.aedat4", match="packet of 2147483632 bytes runs past the end")


def test_aedat4_description_that_is_not_utf8_is_refused_before_faery(tmp_path):
    """faery aborts the process (a panic while panicking) on such a description."""
    from synfab import events
    seed = bytearray(_aedat4_seed())
    seed[seed.index(b"<dv version") + 3] = 0xF2
    (tmp_path / "d.aedat4").write_bytes(bytes(seed))
    raises_one_line(events.read, tmp_path / "d.aedat4", match="description is not UTF-8")


def _damaged_zip_member(data: bytes, offset: int, value: bytes) -> bytes:
    """The first central-directory entry with bytes at `offset` replaced (8: flags, 10: method)."""
    at = data.index(b"PK\x01\x02") + offset
    return data[:at] + value + data[at + len(value):]


@pytest.mark.parametrize("offset, value, match", [
    (8, b"\x01\x00", "encrypted"),                      # the encrypted flag: zipfile raises RuntimeError
    (10, b"\x63\x00", "compression method"),            # method 99: zipfile raises NotImplementedError
])
def test_npz_with_damaged_zip_fields(tmp_path, offset, value, match):
    from synfab import events
    from synfab.frontend import netfile
    seed = TARGETS["npz-events"].seeds()[0]["e.npz"]
    (tmp_path / "e.npz").write_bytes(_damaged_zip_member(seed, offset, value))
    raises_one_line(events.read, tmp_path / "e.npz", match=match)
    path = _netfile(tmp_path, lambda d: None)
    (tmp_path / "n.npz").write_bytes(_damaged_zip_member((tmp_path / "n.npz").read_bytes(), offset, value))
    raises_one_line(netfile.load, path, match=match)


def test_network_file_values_with_line_breaks_stay_on_one_line(tmp_path):
    from synfab.frontend import netfile
    raises_one_line(netfile.load, _netfile(tmp_path, lambda d: d.update(version="\u00e9\n")), match="version")
    raises_one_line(netfile.load, _netfile(tmp_path, lambda d: d.update(params="a\nb.npz")), match="not found")


def test_netx_stride_zero(tmp_path):
    from synfab.frontend import netx
    raises_one_line(netx.load, _netx_file(tmp_path, _replace("layer/1/stride", np.array([0, 0]))),
                    match="layer 1 \\(conv\\).*ZeroDivisionError", error=netx.NetxError)


def test_nir_output_without_an_input():
    from synfab.frontend import nir as snir
    from synfab.frontend import nir_export
    g = nir_export.graph(fuzz_targets.tiny_network())
    out = _nir_node(g, "Output")
    name = next(k for k, v in g.nodes.items() if v is out)
    g.edges[:] = [e for e in g.edges if e[1] != name]
    raises_one_line(snir.load, g, match=f"node {name} \\(Output\\): has 0 inputs", error=snir.NirError)


def test_hdf5_file_whose_group_listing_never_ends(monkeypatch):
    """A damaged link list that HDF5 iterates without end (in C, where no signal reaches): the readers
    list the groups in a forked child first and give up after WALK_SECONDS."""
    from synfab.frontend import h5check
    from synfab.frontend import nir as snir
    monkeypatch.setattr(h5check, "WALK_SECONDS", 1.0)
    start = time.monotonic()
    raises_one_line(snir.load, FIXTURES / "endless_group_listing.nir", match="groups does not end",
                    error=snir.NirError)
    assert time.monotonic() - start < 10
    seed = TARGETS["nir"].seeds()[0]["n.nir"]
    assert "does not end" in h5check.problem(FIXTURES / "endless_group_listing.nir", 1.0)
    with tempfile.NamedTemporaryFile(suffix=".nir") as f:
        f.write(seed)
        f.flush()
        assert h5check.problem(f.name, 10.0) is None


def test_hdf5_file_that_crashes_the_hdf5_library(tmp_path):
    """One flipped byte in a string dataset's header: reading it is a segmentation fault inside HDF5.
    The trial read in a forked child dies instead of the reader."""
    from synfab.frontend import netx
    path = FIXTURES / "hdf5_crash.net"      # the netx seed with byte 9227 (in layer/0/neuron/activation) flipped
    raises_one_line(netx.load, path, match="HDF5 library crashes reading it \\(SIGSEGV\\)", error=netx.NetxError)


def test_onnx_nodes_without_outputs_or_with_odd_names(tmp_path):
    from synfab.frontend import onnx as sonnx
    model = _onnx_model()
    del model.graph.node[1].output[:]
    raises_one_line(sonnx.from_model, model, error=sonnx.OnnxImportError)
    model = _onnx_model()
    model.graph.node[1].op_type = "\nelu"
    raises_one_line(sonnx.from_model, model, match="op type '\\\\nelu' is not supported", error=sonnx.OnnxImportError)
    data = fuzz_targets._onnx_seed()["m.onnx"]
    (tmp_path / "m.onnx").write_bytes(data.replace(b"Flatten", b"\xc6latten"))      # not UTF-8
    raises_one_line(sonnx.load, tmp_path / "m.onnx", match="node name is not UTF-8", error=sonnx.OnnxImportError)


def test_npy_events_with_array_valued_fields(tmp_path):
    from synfab import events
    dtype = np.dtype([("x", "<u2", (8,)), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    np.save(tmp_path / "e.npy", np.zeros(0, dtype))
    raises_one_line(events.read, tmp_path / "e.npy", match=r"fields \['x'\] must each hold one number")
