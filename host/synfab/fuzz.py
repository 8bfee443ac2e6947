"""A seeded fuzzer for every reader and loader of user files.

Each target is a name, a seed corpus (valid files built in code: {file name: bytes}, the first
file is the one given to the loader) and a load function.  A campaign runs the unmutated seeds,
then mutated copies: random bytes, truncation, bit flips, byte insertion and deletion, duplicated
chunks, overwrites with boundary values; for JSON also structural mutations (wrong types, missing
and extra keys, huge numbers, NaN, deep nesting); for HDF5 also rewritten datasets and attributes.

Loads run in a forked worker process, so a hang in C code (numpy, h5py, protobuf) is still caught:
the parent waits a bounded time per input, then kills and restarts the worker.  Outcomes:
'accepted', 'clean' (a one-line SynfabError), and the findings 'exception' (any other type),
'multiline' (a SynfabError over several lines), 'timeout' and 'crash' (the worker died).
"""
from __future__ import annotations

import io
import json
import multiprocessing
import random
import resource
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SynfabError

FINDINGS = ("exception", "multiline", "timeout", "crash")
OUTCOMES = ("accepted", "clean") + FINDINGS
WORKER_MEMORY = 2 << 30     # a mutated size field must fail as an error, not swap the machine


@dataclass
class Target:
    name: str
    seeds: Callable[[], list[dict[str, bytes]]]
    load: Callable[[Path], object]
    kind: str = "bytes"          # 'bytes', 'json' or 'hdf5': which structural mutations apply


@dataclass
class Finding:
    target: str
    outcome: str
    mutation: str
    error: str                   # type and first line of the message
    where: str                   # innermost traceback frames
    files: dict[str, bytes] = field(repr=False, default_factory=dict)


@dataclass
class Report:
    target: str
    inputs: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"inputs": self.inputs, **self.counts, "seconds": round(self.seconds, 2)}


# ---------------------------------------------------------------------------------------------
# Byte mutations: each takes (rng, data) and returns new bytes.
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\xff\xff\xff\x7f",
               b"\xff" * 8, b"%", b"\n", b"{", b"]"]


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def random_bytes(rng, data):
    return rng.randbytes(rng.choice([0, 1, 7, 64, 1000, len(data)]))


def truncate(rng, data):
    return data[:_pos(rng, data)]


def bit_flips(rng, data):
    if not data:
        return data
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def insert_bytes(rng, data):
    i = _pos(rng, data)
    return data[:i] + rng.randbytes(rng.choice([1, 2, 4, 8, 100])) + data[i:]


def delete_bytes(rng, data):
    i = _pos(rng, data)
    return data[:i] + data[i + rng.choice([1, 2, 4, 8, 100]):]


def duplicate_chunk(rng, data):
    i, j = sorted((_pos(rng, data), _pos(rng, data)))
    k = _pos(rng, data)
    return data[:k] + data[i:j][:4096] + data[k:]


def overwrite(rng, data):
    v = rng.choice(INTERESTING)
    i = _pos(rng, data)
    return data[:i] + v + data[i + len(v):]


BYTE_MUTATIONS = [random_bytes, truncate, bit_flips, insert_bytes, delete_bytes, duplicate_chunk, overwrite]


# ---------------------------------------------------------------------------------------------
# JSON structural mutations.
DEEP = "\x00deep\x00"          # replaced after dumps: json.dumps itself would recurse too deeply


def _nodes(doc, path=()):
    """Every (path, value) in a JSON document."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, path + (i,))


def _weird_value(rng: random.Random):
    return rng.choice([None, True, -1, 0, 2 ** 64, -2 ** 63, 10 ** 400, 1e308, float("nan"), float("inf"), 0.5,
                       "", "x" * 1000, "\u00e9\n", [], {}, [1, 2], {"a": 1}, DEEP])


def json_mutation(rng: random.Random, data: bytes) -> bytes:
    doc = json.loads(data)
    nodes = list(_nodes(doc))
    path, value = rng.choice(nodes)
    op = rng.choice(["replace", "delete", "add", "wrap"])
    if op == "add" and isinstance(value, (dict, list)):
        if isinstance(value, dict):
            value[rng.choice(["extra", "name", "op", "shape", "kind", "version"])] = _weird_value(rng)
        else:
            value.insert(rng.randrange(len(value) + 1), _weird_value(rng) if not value or rng.random() < .5
                         else rng.choice(value))
    elif op == "delete" and path:
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
    elif path:
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        parent[path[-1]] = [value] if op == "wrap" else _weird_value(rng)
    else:
        doc = _weird_value(rng)
    text = json.dumps(doc)
    return text.replace(json.dumps(DEEP), "[" * 100000 + "]" * 100000).encode()


# ---------------------------------------------------------------------------------------------
# HDF5 mutations: rewrite one dataset or attribute of a copy of the file.
def _h5_items(f):
    found = []
    f.visititems(lambda name, obj: found.append(name))
    return found


def hdf5_mutation(rng: random.Random, data: bytes) -> bytes:
    import h5py
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        names = _h5_items(f)
        name = rng.choice(names)
        obj = f[name]
        attrs = list(obj.attrs)
        if attrs and rng.random() < .3:
            key = rng.choice(attrs)
            del obj.attrs[key]
            if rng.random() < .7:
                obj.attrs[key] = _h5_value(rng)
        else:
            parent, base = obj.parent, name.rsplit("/", 1)[-1]
            del f[name]
            if rng.random() < .8:
                parent.create_dataset(base, data=_h5_value(rng))
    return buf.getvalue()


def _h5_value(rng: random.Random):
    return rng.choice([np.zeros(0), np.float64(np.nan), np.int64(2 ** 62), np.int64(-1), np.array([0]),
                       np.ones((2, 3, 4, 5)), np.array([b"conv"]), b"", b"xyz", np.array([1e300, -1e300]),
                       np.arange(7, dtype=np.int8), np.float32(0.5)])


# ---------------------------------------------------------------------------------------------
def mutate(rng: random.Random, target: Target, files: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
    """One mutated copy of a seed: (description, files)."""
    files = dict(files)
    name = next(iter(files)) if len(files) == 1 or rng.random() < .75 else rng.choice(list(files))
    structural = {"json": json_mutation, "hdf5": hdf5_mutation}.get(target.kind) if name == next(iter(files)) \
        else None
    rounds = 1 if rng.random() < .7 else rng.randint(2, 4)
    applied = []
    for _ in range(rounds):
        fn = structural if structural and rng.random() < .5 else rng.choice(BYTE_MUTATIONS)
        try:
            files[name] = fn(rng, files[name])
        except (ValueError, OSError, KeyError, RuntimeError, TypeError, IndexError, RecursionError):
            continue        # a structural mutation of bytes that no longer parse (as JSON or HDF5): skip it
        applied.append(fn.__name__)
    return f"{name}: {'+'.join(applied) or 'none'}", files


# ---------------------------------------------------------------------------------------------
# The worker: loads inputs in a forked child process and reports each outcome.
def classify(load: Callable, path: Path) -> tuple[str, str, str]:
    """(outcome, error, where) of one load."""
    try:
        load(path)
    except SynfabError as e:
        text = str(e)
        if "\n" in text.strip() or not text.strip():
            return "multiline", f"{type(e).__name__}: {text[:2000]!r}", _where(e)
        return "clean", f"{type(e).__name__}: {text[:300]}", ""
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - the point of fuzzing: anything else is a finding
        first = str(e).splitlines()[0][:300] if str(e) else ""
        return "exception", f"{type(e).__name__}: {first}", _where(e)
    return "accepted", "", ""


def _where(e: BaseException) -> str:
    """The innermost frame and the innermost frame inside synfab (where a fix goes)."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/synfab/" in f.filename and not f.filename.endswith(("fuzz.py", "fuzz_targets.py"))]
    picked = frames[-1:] + ours[-1:] if ours and ours[-1] is not frames[-1] else frames[-1:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in picked)


def _worker(conn, targets: dict[str, Target]) -> None:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    except (ValueError, OSError):
        pass
    with tempfile.TemporaryDirectory(prefix="synfab-fuzz-") as tmp:
        for k, (target, files) in enumerate(iter(conn.recv, None)):
            d = Path(tmp) / str(k)
            d.mkdir()
            for name, data in files.items():
                (d / name).write_bytes(data)
            conn.send(classify(targets[target].load, d / next(iter(files))))


class Worker:
    """A forked process loading one input at a time, restarted after a hang or a crash."""

    def __init__(self, targets: dict[str, Target]):
        self.targets = targets
        self.proc = None

    def start(self):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.targets), daemon=True)
        self.proc.start()
        child.close()

    def run(self, target: str, files: dict[str, bytes], timeout: float) -> tuple[str, str, str]:
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send((target, files))
        if not self.conn.poll(timeout):
            self.stop()
            return "timeout", f"no result within {timeout:g} s", ""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.stop()
            return "crash", f"worker died (exit code {code})", ""

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
        self.stop()


def campaign(target: Target, inputs: int, seed: int = 0, timeout: float = 30.0, worker: Worker | None = None,
             findings_dir: Path | None = None) -> Report:
    """Run the unmutated seeds, then mutated copies, up to `inputs` loads in all."""
    rng = random.Random(f"{seed}:{target.name}")
    seeds = target.seeds()
    report = Report(target.name)
    start = time.monotonic()
    own = worker is None
    worker = worker or Worker({target.name: target})
    try:
        for i in range(inputs):
            if i < len(seeds):
                mutation, files = "seed", seeds[i]
            else:
                mutation, files = mutate(rng, target, rng.choice(seeds))
            outcome, error, where = worker.run(target.name, files, timeout)
            if outcome == "crash":      # confirmed only if a fresh worker dies on it again
                outcome, error, where = worker.run(target.name, files, timeout)
            report.inputs += 1
            report.counts[outcome] += 1
            if outcome in FINDINGS:
                finding = Finding(target.name, outcome, mutation, error, where, files)
                report.findings.append(finding)
                if findings_dir is not None:
                    save_finding(Path(findings_dir), finding, len(report.findings))
    finally:
        if own:
            worker.__exit__()
    report.seconds = time.monotonic() - start
    return report


def save_finding(root: Path, finding: Finding, k: int) -> Path:
    """The reproducer files and a summary under root/target/NNN/."""
    d = root / finding.target / f"{k:03d}"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in finding.files.items():
        (d / name).write_bytes(data)
    (d / "finding.json").write_text(json.dumps({"outcome": finding.outcome, "mutation": finding.mutation,
                                                "error": finding.error, "where": finding.where,
                                                "files": list(finding.files)}, indent=1))
    return d


def replay(target: Target, finding_dir: Path, timeout: float = 30.0) -> tuple[str, str, str]:
    """The outcome now of a saved finding's reproducer (files in the order the seed lists them)."""
    finding_dir = Path(finding_dir)
    order = json.loads((finding_dir / "finding.json").read_text())["files"]     # the loaded file first
    with Worker({target.name: target}) as worker:
        return worker.run(target.name, {n: (finding_dir / n).read_bytes() for n in order}, timeout)


def run_all(targets: dict[str, Target], inputs: int, seed: int = 0, timeout: float = 30.0,
            findings_dir: Path | None = None) -> dict[str, Report]:
    """A campaign per target, sharing one worker."""
    with Worker(targets) as worker:
        return {name: campaign(t, inputs, seed, timeout, worker, findings_dir) for name, t in targets.items()}
