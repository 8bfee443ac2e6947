"""Binary bundle: a compiled network in one file, checked completely before anything is used.

Layout (little-endian):
    header   magic b"SYNFBNDL" | u32 LAYOUT_VERSION | u32 total length in bytes | u32 section count
    section  u16 name length | name (utf-8) | u32 payload length | payload      (repeated)
    trailer  u32 CRC32 of everything before it
Sections: "config" (FabricConfig JSON), "metadata" (JSON), "regs" (JSON: global table registers
and per core esu_count, pop_count, weights_used), then the packed 32-bit words of every
RegisterMap window exactly as `compiler.tables_to_words` gives them: "input_peg" and
"core<i>.<pop|esu|peg|weights|acc|sent>".

The header's version is the tables' layout version: 1 for networks the fabric runs (written
exactly as before version 2 existed), 2 for extended tables (layouts.EXTENDED_LAYOUT_VERSION:
the version-2 layouts of pop/esu/peg and the per-core words u, v, ref and bias).  Both read.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from .. import arith
from .tables import GLOBAL_TABLE_REGS, CoreTables, Tables, tables_to_words, unpack, words_to_weights
from ..config import ConfigError, FabricConfig
from ..errors import SynfabError
from ..layouts import LAYOUT_VERSION, LAYOUT_VERSIONS, RegisterMap, esu_desc, peg_entry, pop_desc, state_word_bits, UNSIGNED_STATE_WORDS

MAGIC = b"SYNFBNDL"
_HEADER = struct.Struct("<8sIII")
_CRC = struct.Struct("<I")
TABLE_WINDOWS = ("pop", "esu", "peg", "weights")


def core_windows(version: int) -> tuple[str, ...]:
    return TABLE_WINDOWS + tuple(state_word_bits_any(version))


def state_word_bits_any(version: int) -> dict:
    """Per-neuron words of a layout version (their names do not depend on the fabric)."""
    return state_word_bits(FabricConfig(), version)


CORE_WINDOWS = core_windows(LAYOUT_VERSION)
METADATA_KEYS = ("network", "input_name", "input_shape", "input_scale", "input_hi", "layers", "output",
                 "output_shape", "output_tag", "output_scale")


class BundleError(SynfabError):
    """A bundle file that cannot be used (truncated, corrupted, foreign or from another version)."""


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def encode(tables: Tables) -> bytes:
    sections = [("config", tables.cfg.to_json().encode()), ("metadata", _json(tables.metadata)),
                ("regs", _json({"global": {k: int(tables.regs[k]) for k in GLOBAL_TABLE_REGS},
                                "cores": [dict(esu_count=int(ct.esu_count), pop_count=int(ct.pop_count),
                                               weights_used=int(ct.weights_used)) for ct in tables.cores]}))]
    for (core, wname), words in tables_to_words(tables).items():
        name = wname if core is None else f"core{core}.{wname}"
        sections.append((name, np.ascontiguousarray(words, dtype="<u4").tobytes()))
    body = b"".join(struct.pack("<H", len(n.encode())) + n.encode() + struct.pack("<I", len(p)) + p
                    for n, p in sections)
    total = _HEADER.size + len(body) + _CRC.size
    data = _HEADER.pack(MAGIC, tables.version, total, len(sections)) + body
    return data + _CRC.pack(zlib.crc32(data) & 0xFFFFFFFF)


def _sections(data: bytes, what: str) -> tuple[dict[str, bytes], int]:
    if len(data) < _HEADER.size + _CRC.size:
        raise BundleError(f"{what}: truncated ({len(data)} bytes, a bundle has at least "
                          f"{_HEADER.size + _CRC.size}); recompile it (synfab compile)")
    magic, version, total, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BundleError(f"{what}: not a synfab bundle (starts with {magic!r}, expected {MAGIC!r}); "
                          f"create one with synfab compile")
    if version not in LAYOUT_VERSIONS:
        raise BundleError(f"{what}: bundle has table layout version {version} but this synfab reads versions "
                          f"{', '.join(map(str, LAYOUT_VERSIONS))}; recompile the network with this synfab")
    if len(data) < total:
        raise BundleError(f"{what}: truncated ({len(data)} of {total} bytes); copy or recompile it")
    if len(data) > total:
        raise BundleError(f"{what}: {len(data) - total} unexpected bytes after the end of the bundle")
    (crc,) = _CRC.unpack_from(data, total - _CRC.size)
    if zlib.crc32(data[:total - _CRC.size]) & 0xFFFFFFFF != crc:
        raise BundleError(f"{what}: corrupted (CRC32 mismatch); copy or recompile it")
    out, off, end = {}, _HEADER.size, total - _CRC.size
    for _ in range(count):
        if off + 2 > end:
            raise BundleError(f"{what}: section table runs past the end of the bundle")
        (n,) = struct.unpack_from("<H", data, off)
        name = data[off + 2:off + 2 + n].decode("utf-8", "replace")
        off += 2 + n
        if off + 4 > end:
            raise BundleError(f"{what}: section {name!r} runs past the end of the bundle")
        (size,) = struct.unpack_from("<I", data, off)
        off += 4
        if off + size > end:
            raise BundleError(f"{what}: section {name!r} ({size} bytes) runs past the end of the bundle")
        if name in out:
            raise BundleError(f"{what}: section {name!r} appears twice")
        out[name] = data[off:off + size]
        off += size
    if off != end:
        raise BundleError(f"{what}: {end - off} bytes after the last section")
    return out, version


def _load_json(sec: dict, name: str, what: str):
    if name not in sec:
        raise BundleError(f"{what}: missing section {name!r}")
    try:
        return json.loads(sec[name])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{what}: section {name!r} is not valid JSON ({e})") from None


def _words(sec: dict, name: str, window, layout_words: int, what: str) -> np.ndarray:
    if name not in sec:
        raise BundleError(f"{what}: missing section {name!r}")
    raw = sec[name]
    if len(raw) % (4 * layout_words):
        raise BundleError(f"{what}: section {name!r} has {len(raw)} bytes, not whole {layout_words}-word entries")
    words = np.frombuffer(raw, dtype="<u4").astype(np.uint32).reshape(-1, layout_words)
    if len(words) > window.entries:
        raise BundleError(f"{what}: section {name!r} has {len(words)} entries but the fabric's window holds "
                          f"{window.entries}")
    return words


def _signed(words: np.ndarray, bits: int, size: int, name: str, what: str, unsigned: bool = False) -> np.ndarray:
    v = words.reshape(-1).view(np.int32).astype(np.int64)
    fits = np.all((v >= 0) & (v < (1 << bits))) if unsigned else np.array_equal(arith.wrap(v, bits), v)
    if not fits:
        raise BundleError(f"{what}: section {name!r} holds values that do not fit {bits} "
                          f"{'unsigned' if unsigned else 'signed'} bits")
    out = np.zeros(size, dtype=np.int64)
    out[:len(v)] = v
    return out


def decode(data: bytes, what: str = "bundle") -> Tables:
    """Tables from bundle bytes; BundleError (naming what is wrong) before anything is returned."""
    sec, version = _sections(bytes(data), what)
    cfg_dict = _load_json(sec, "config", what)
    if not isinstance(cfg_dict, dict):
        raise BundleError(f"{what}: fabric config is not a JSON object")
    try:
        cfg = FabricConfig.from_dict(cfg_dict)
    except (ConfigError, TypeError) as e:
        raise BundleError(f"{what}: {e}; this bundle was written for another synfab version") from None
    metadata = _load_json(sec, "metadata", what)
    regs_all = _load_json(sec, "regs", what)
    if not isinstance(metadata, dict) or any(k not in metadata for k in METADATA_KEYS):
        raise BundleError(f"{what}: metadata lacks {[k for k in METADATA_KEYS if k not in (metadata or {})]}")
    try:
        regs = {k: int(regs_all["global"][k]) for k in GLOBAL_TABLE_REGS}
        core_regs = [{k: int(c[k]) for k in ("esu_count", "pop_count", "weights_used")} for c in regs_all["cores"]]
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"{what}: section 'regs' lacks table registers {list(GLOBAL_TABLE_REGS)} or per-core "
                          f"esu_count/pop_count/weights_used") from None
    if len(core_regs) != cfg.n_cores:
        raise BundleError(f"{what}: registers for {len(core_regs)} cores but the fabric has {cfg.n_cores}")
    expected = {"config", "metadata", "regs", "input_peg"} | {f"core{c}.{w}" for c in range(cfg.n_cores)
                                                             for w in core_windows(version)}
    extra = sorted(set(sec) - expected)
    if extra:
        raise BundleError(f"{what}: unknown section(s) {extra[:4]}; written by another synfab version?")
    rm = RegisterMap(cfg, version)
    pe, ed, pd = peg_entry(cfg, version), esu_desc(cfg, version), pop_desc(cfg, version)
    input_peg = unpack(pe, _words(sec, "input_peg", rm.input_peg, pe.words32, what))
    if len(input_peg["kind"]) != regs["input_peg_count"]:
        raise BundleError(f"{what}: input_peg_count {regs['input_peg_count']} but {len(input_peg['kind'])} entries")
    cores = []
    for c, cr in enumerate(core_regs):
        win = lambda w: rm.core_windows[w]  # noqa: E731
        pop = unpack(pd, _words(sec, f"core{c}.pop", win("pop"), pd.words32, what))
        esu = unpack(ed, _words(sec, f"core{c}.esu", win("esu"), ed.words32, what))
        peg = unpack(pe, _words(sec, f"core{c}.peg", win("peg"), pe.words32, what))
        if len(pop["layer"]) != cr["pop_count"] or len(esu["kind"]) != cr["esu_count"]:
            raise BundleError(f"{what}: core {c} pop_count/esu_count disagree with its tables")
        wwords = _words(sec, f"core{c}.weights", win("weights"), 1, what)
        if len(wwords) != -(-cr["weights_used"] // 4):
            raise BundleError(f"{what}: core {c} weights_used {cr['weights_used']} disagrees with its "
                              f"{len(wwords)} weight words")
        ct = CoreTables(pop=pop, esu=esu, peg=peg, esu_count=cr["esu_count"], pop_count=cr["pop_count"],
                        weights=words_to_weights(wwords, cfg.weight_words_per_core),
                        acc_init=np.zeros(0), sent_init=np.zeros(0), weights_used=cr["weights_used"])
        n = ct.neurons_used
        state = {}
        for w, bits in state_word_bits(cfg, version).items():
            words = _words(sec, f"core{c}.{w}", win(w), 1, what)
            if len(words) != n:
                raise BundleError(f"{what}: core {c} has {len(words)} {w} words but its populations use {n} neurons")
            state[w] = _signed(words, bits, cfg.neurons_per_core, f"core{c}.{w}", what, w in UNSIGNED_STATE_WORDS)
        ct.acc_init, ct.sent_init = state.pop("acc"), state.pop("sent")
        ct.words_init = state
        cores.append(ct)
    return Tables(cfg, regs, input_peg, cores, metadata, version)


def save(tables: Tables, path) -> None:
    Path(path).write_bytes(encode(tables))


def load(path) -> Tables:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {path} not found; create it with synfab compile") from None
    except IsADirectoryError:
        raise BundleError(f"bundle {path} is a directory, not a bundle file") from None
    return decode(data, what=f"bundle {path}")
