"""Lava's own golden vectors for netx networks, from the lava-dl 0.6.0 wheel on PyPI.

The wheel ships `tests/lava/lib/dl/netx/gts/<name>/` (network files, inputs and the outputs
Lava's fixed-point models produce).  `fetch(name)` downloads the wheel once (pinned by sha256,
cached beside the event samples, as `synfab.events.samples` does), extracts that folder and
checks every file against the sha256 the wheel's RECORD lists.  lava-dl is never installed.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

from ..errors import SynfabError
from ..events.samples import _archive, _cache_dir, _locked

ARCHIVE = "lava-dl-0.6.0"
ROOT = "tests/lava/lib/dl/netx/"
RECORD = "lava_dl-0.6.0.dist-info/RECORD"
VECTORS = ("pilotnet_sdnn", "pilotnet_lif", "tinynet_sdnn")


def _record(wheel: zipfile.ZipFile) -> dict[str, str]:
    """path -> hex sha256 from the wheel's RECORD (urlsafe base64 there)."""
    rows = csv.reader(io.TextIOWrapper(wheel.open(RECORD), "utf-8"))
    out = {}
    for path, digest, *_ in rows:
        if digest.startswith("sha256="):
            raw = base64.urlsafe_b64decode(digest[7:] + "=" * (-len(digest[7:]) % 4))
            out[path] = raw.hex()
    return out


def _complete(folder: Path, members: dict[str, str]) -> bool:
    return all((folder / Path(m).name).is_file() for m in members)


def fetch(name: str, cache_dir=None) -> Path:
    """The folder holding Lava's vectors `name` (one of VECTORS), downloading them if needed."""
    if name not in VECTORS:
        raise SynfabError(f"netx vectors: unknown set {name!r}; known: {', '.join(VECTORS)}")
    cache = _cache_dir(cache_dir)
    folder = cache / ARCHIVE / name
    prefix = f"{ROOT}gts/{name}/"
    with _locked(cache):
        wheel_path = _archive(ARCHIVE, cache)
        with zipfile.ZipFile(wheel_path) as wheel:
            record = _record(wheel)
            members = {m: record[m] for m in record if m.startswith(prefix) and not m.endswith("/")}
            if not members:
                raise SynfabError(f"netx vectors: {prefix} is not in {wheel_path.name}")
            if _complete(folder, members):
                return folder
            folder.mkdir(parents=True, exist_ok=True)
            for member, sha in members.items():
                data = wheel.read(member)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise SynfabError(f"netx vectors: {member} does not match the sha256 in the wheel's RECORD")
                tmp = folder / (Path(member).name + ".part")
                tmp.write_bytes(data)
                tmp.replace(folder / Path(member).name)
    return folder


def remove(cache_dir=None) -> None:
    """Drop the extracted vectors (the wheel stays cached)."""
    shutil.rmtree(_cache_dir(cache_dir) / ARCHIVE, ignore_errors=True)
