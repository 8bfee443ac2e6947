"""Bundle round trips, the exact words of tables_to_words, and rejection of damaged bundles."""
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synfab import PRESETS
from synfab.model import reference
from synfab.compiler.bundle import MAGIC, BundleError, decode, encode, load, save
from synfab.compiler import CompileError, compile_network, tables_to_words
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, LAYOUT_VERSIONS, Kind, RegisterMap
from synfab.model import Model, input_events
from synfab.randnet import configs_and_qnetworks, random_input, random_qnetwork


def compiled(seed=0, preset="small"):
    cfg = PRESETS[preset]
    qnet = random_qnetwork(seed, cfg)
    return qnet, compile_network(qnet, cfg)


def sections(data):
    """Parse a bundle independently: (version, [(name, payload)])."""
    magic, version, total, count = struct.unpack_from("<8sIII", data)
    off, out = 20, []
    for _ in range(count):
        (n,) = struct.unpack_from("<H", data, off)
        name = data[off + 2:off + 2 + n].decode()
        (size,) = struct.unpack_from("<I", data, off + 2 + n)
        out.append((name, data[off + 6 + n:off + 6 + n + size]))
        off += 6 + n + size
    return version, out


def build(version, secs):
    body = b"".join(struct.pack("<H", len(n)) + n.encode() + struct.pack("<I", len(p)) + p for n, p in secs)
    data = struct.pack("<8sIII", MAGIC, version, 20 + len(body) + 4, len(secs)) + body
    return data + struct.pack("<I", zlib.crc32(data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs_and_qnetworks())
def test_round_trip(cfg_net):
    cfg, qnet = cfg_net
    tables = compile_network(qnet, cfg)
    data = encode(tables)
    back = decode(data)
    assert back == tables
    assert encode(back) == data


def test_save_load_and_model_on_decoded_tables(tmp_path):
    qnet, tables = compiled(5, "default")
    path = tmp_path / "net.sfb"
    save(tables, path)
    back = load(path)
    assert back == tables
    rng = np.random.default_rng(0)
    x = random_input(qnet, rng)
    m = Model(back)
    assert m.run_frame(input_events(None, x)).synops > 0
    assert np.array_equal(m.output_state(), reference.run(qnet, x, back.cfg.acc_bits)[qnet.output])


def test_equality_sees_every_change():
    _, tables = compiled(2)
    other = decode(encode(tables))
    other.cores[0].weights[0] ^= 1
    assert other != tables
    other = decode(encode(tables))
    other.metadata["network"] = "renamed"
    assert other != tables


def test_words_of_every_window():
    """Weights four per word little-endian; acc/sent sign-extended 32-bit; window shapes."""
    w = np.array([[[[1, -1, 127], [-128, 2, 3], [4, 5, -6]]]], np.int8)
    layer = QLayer("c", (1, 3, 3), [QConnection("in", Kind.CONV, k=3, pad=1)], np.array([-3]), 1, 0, -128, 127, w)
    qnet = QNetwork("w", "in", (1, 3, 3), [layer], "c")
    tables = compile_network(qnet, PRESETS["tiny"])
    words = tables_to_words(tables)
    rm = RegisterMap(tables.cfg, tables.version)
    # CONV slice order ((c*K + ky)*K + kx)*cc + co with cc = 1: the kernel in raster order,
    # bytes 01 FF 7F 80 | 02 03 04 05 | FA, weight 4i in bits 7..0.
    assert words[(0, "weights")].reshape(-1).tolist() == [0x807FFF01, 0x05040302, 0x000000FA]
    assert words[(0, "acc")].reshape(-1).tolist() == [0xFFFFFFFD] * 9
    assert words[(0, "sent")].reshape(-1).tolist() == [0] * 9
    for (core, name), arr in words.items():
        win = rm.input_peg if core is None else rm.core_windows[name]
        assert arr.dtype == np.uint32 and arr.ndim == 2 and arr.shape[1] == win.words
        assert arr.shape[0] <= win.entries
    assert words[(0, "pop")].shape[0] == 1 and words[(0, "esu")].shape[0] == 1
    assert words[(None, "input_peg")].shape[0] == tables.regs["input_peg_count"] == 1


def test_compile_rejects_non_int8_weights():
    layer = QLayer("c", (1, 2, 2), [QConnection("in", Kind.CONV, k=1)], np.zeros(1, np.int64), 1, 0, 0, 255,
                   np.full((1, 1, 1, 1), 300))
    with pytest.raises(CompileError, match="layer c: weights must be int8"):
        compile_network(QNetwork("w", "in", (1, 2, 2), [layer], "c"), PRESETS["tiny"])


# ---------------------------------------------------------------------------------------
def test_truncated_bundles_are_rejected():
    _, tables = compiled(1)
    data = encode(tables)
    for cut in sorted({0, 5, 19, 23, 24, len(data) // 2, len(data) - 5, len(data) - 1}):
        with pytest.raises(BundleError, match="truncated"):
            decode(data[:cut])
    with pytest.raises(BundleError, match="unexpected bytes"):
        decode(data + b"\0")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_is_rejected(data):
    _, tables = compiled(3)
    raw = bytearray(encode(tables))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(BundleError):
        decode(bytes(raw))


def test_wrong_magic_and_version():
    _, tables = compiled(4)
    data = encode(tables)
    with pytest.raises(BundleError, match="not a synfab bundle"):
        decode(b"PK\x03\x04" + data[4:])
    version, secs = sections(data)
    assert version == LAYOUT_VERSION
    unknown = max(LAYOUT_VERSIONS) + 1
    with pytest.raises(BundleError, match=f"version {unknown} but this synfab reads versions 1, 2"):
        decode(build(unknown, secs))
    # Version-1 sections relabelled as version 2 do not hold version-2 entries.
    with pytest.raises(BundleError):
        decode(build(EXTENDED_LAYOUT_VERSION, secs))


def test_unknown_config_fields_and_sections():
    _, tables = compiled(6)
    version, secs = sections(encode(tables))
    assert decode(build(version, secs)) == tables     # the independent writer above is faithful
    cfg = json.loads(dict(secs)["config"])
    cfg["laser_power"] = 3
    bad = [(n, json.dumps(cfg).encode() if n == "config" else p) for n, p in secs]
    with pytest.raises(BundleError, match="unknown field.*laser_power"):
        decode(build(version, bad))
    with pytest.raises(BundleError, match="unknown section"):
        decode(build(version, secs + [("core99.peg", b"")]))
    with pytest.raises(BundleError, match="missing section 'core0.weights'"):
        decode(build(version, [s for s in secs if s[0] != "core0.weights"]))


def test_inconsistent_sections_are_rejected():
    _, tables = compiled(7)
    version, secs = sections(encode(tables))
    d = dict(secs)
    # One acc word too many: the state no longer matches the populations.
    bad = [(n, p + b"\0\0\0\0" if n == "core0.acc" else p) for n, p in secs]
    with pytest.raises(BundleError, match="core 0 has .* acc words"):
        decode(build(version, bad))
    # An accumulator value beyond acc_bits.
    big = np.frombuffer(d["core0.acc"], "<u4").copy()
    big[0] = 1 << 30
    bad = [(n, big.tobytes() if n == "core0.acc" else p) for n, p in secs]
    with pytest.raises(BundleError, match="do not fit"):
        decode(build(version, bad))
    with pytest.raises(BundleError, match="not valid JSON"):
        decode(build(version, [(n, b"{" if n == "metadata" else p) for n, p in secs]))


def test_missing_file(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load(tmp_path / "nope.sfb")


def test_todays_networks_compile_to_the_same_version_1_bundle_bytes():
    """Neuron models, time steps and rectangular geometry left sigma-delta CNN bundles untouched: the
    demo's bundle is byte for byte what it was before they existed (sha256 recorded at e07f94a), on
    the least-cost placement it had then (the default objective, balanced, now spreads its work)."""
    import hashlib
    from synfab.compiler import compile_network
    from synfab.compiler.mapper import map_network
    from synfab.config import FabricConfig
    from synfab.demo import demo_qnetwork
    qnet, cfg = demo_qnetwork(), FabricConfig()
    tables = compile_network(qnet, cfg, map_network(qnet, cfg, objective="cost"))
    assert tables.version == LAYOUT_VERSION and not tables.extended_features
    assert hashlib.sha256(encode(tables)).hexdigest() == \
        "e24da1b6348f893a865aae1e4ec74ce30aacc8f951722cae1ae8469599907416"


def test_version_1_tables_in_the_fabric_layouts_mean_what_version_2_compiles():
    """The fabric decodes version 2 (layouts.FABRIC_LAYOUT_VERSION); the host writes version-1
    tables into it with compiler.at_version.  Those entries are exactly what the compiler writes
    for the same network at version 2: a weight shift on one connection makes the network
    version 2 and changes nothing but that connection's descriptors' wshift."""
    from dataclasses import replace

    from synfab.compiler import at_version
    from synfab.layouts import FABRIC_LAYOUT_VERSION, esu_desc, peg_entry, pop_desc
    cfg = PRESETS["small"]
    qnet = random_qnetwork(4, cfg)
    v1 = compile_network(qnet, cfg)
    last = qnet.layers[-1]
    shifted = replace(qnet, layers=qnet.layers[:-1] + [replace(last, inputs=[replace(c, wshift=2)
                                                                             for c in last.inputs])])
    v2 = compile_network(shifted, cfg)
    assert (v1.version, v2.version, FABRIC_LAYOUT_VERSION) == (1, 2, 2)
    assert v2.extended_features == [f"weight shift (layer {last.name})"] and not v2.unsupported_features
    pe, ed, pd = peg_entry(cfg, 2), esu_desc(cfg, 2), pop_desc(cfg, 2)
    assert at_version(pe, v1.input_peg).keys() == v2.input_peg.keys()
    for a, b in zip(v1.cores, v2.cores):
        for lay, ta, tb in ((pe, a.peg, b.peg), (pd, a.pop, b.pop)):
            up = at_version(lay, ta)
            assert all(np.array_equal(up[k], tb[k]) for k in tb)
        up = at_version(ed, a.esu)
        assert all(np.array_equal(up[k], b.esu[k]) for k in b.esu if k != "wshift")
        assert set(b.esu["wshift"].tolist()) <= {0, 2}
    # Version-1 tables as the fabric's words: its window widths; only the words sigma-delta uses if asked.
    words = tables_to_words(v1, 2)
    assert words[(0, "pop")].shape[1] == pd.words32 and words[(None, "input_peg")].shape[1] == pe.words32
    assert set(tables_to_words(v1, 2, v1.state_words)) == {k for k in words if k[1] not in ("u", "v", "ref", "bias")}
    with pytest.raises(ValueError, match="version-2 tables cannot be written as version 1"):
        tables_to_words(v2, 1)
