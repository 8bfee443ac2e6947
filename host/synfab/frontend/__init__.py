"""One front door for every model format: `load_model(path, **options)`.

A format is one entry of a registry: its name, the file suffixes it owns, an optional test of
a file's content (for files without a known suffix), the options its importer takes, and the
third-party packages it needs with the pip extra that installs them.  The importer is looked
up only when a file of its format is loaded, so a missing optional package costs nothing
until then and is reported in one line naming the extra to install.

Built in: synfab network JSON (`synfab.netfile`), NIR (`synfab.frontend.nir`), lava-dl netx
(`synfab.netx`), ONNX / QONNX (`synfab.frontend.onnx`), a `torch.export` program (.pt2) and
a saved `nn.Module` (`synfab.frontend.torch_program`).  What each returns: a float
`ir.Network` (compile it with calibration inputs) or a quantized `ir.QNetwork`.
"""
from __future__ import annotations

import importlib.util
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import SynfabError
from .netx import is_netx_file


@dataclass(frozen=True)
class ModelFormat:
    name: str                                 # as users call it, in messages
    suffixes: tuple[str, ...]                 # lower case, with the dot
    load: Callable                            # (path: Path, **options) -> Network | QNetwork
    options: tuple[str, ...] = ()             # keyword options the importer takes
    requires: tuple[str, ...] = ()            # top-level modules of third-party packages it needs
    extra: str | None = None                  # pip extra of synfab that installs them
    sniff: Callable[[Path], bool] | None = None   # recognises a file by content

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.suffixes)})"


FORMATS: dict[str, ModelFormat] = {}


def register(name: str, suffixes, options=(), requires=(), extra=None, sniff=None):
    """Decorator: make `load(path, **options)` the importer of format `name`."""
    def add(load):
        FORMATS[name] = ModelFormat(name, tuple(suffixes), load, tuple(options), tuple(requires), extra, sniff)
        return load
    return add


def first_line(e: Exception) -> str:
    """A third-party exception as one line: its type and its message's first line."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def formats_line() -> str:
    return "; ".join(f.describe() for f in FORMATS.values())


def format_of(path) -> ModelFormat:
    """The format of a file: by its suffix, else by its content."""
    p = Path(path)
    suffix = p.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    for fmt in FORMATS.values():
        if fmt.sniff is not None and fmt.sniff(p):
            return fmt
    # "not a synfab network JSON": what users of the JSON-only door were told, kept for them.
    raise SynfabError(f"{p} is not a synfab network JSON nor another model file synfab reads; "
                      f"formats: {formats_line()}")


def _check_requirements(fmt: ModelFormat) -> None:
    missing = [m for m in fmt.requires if importlib.util.find_spec(m) is None]
    if missing:
        how = f"pip install 'synfab[{fmt.extra}]'" if fmt.extra else f"pip install {' '.join(missing)}"
        raise SynfabError(f"reading {fmt.name} files needs {', '.join(missing)}: {how}")


def _check_options(fmt: ModelFormat, options: dict) -> None:
    unknown = sorted(k for k in options if k not in fmt.options)
    if unknown:
        takes = ", ".join(fmt.options) if fmt.options else "no options"
        raise SynfabError(f"option(s) {', '.join(unknown)} do not apply to {fmt.name} files; they take: {takes}")


def load_model(path, **options):
    """The network in a model file of any registered format: a float `ir.Network` or a
    quantized `ir.QNetwork`.  Options (e.g. input_shape=(C, H, W) for a saved nn.Module) go to
    the format's importer; options left at None are dropped, so callers can pass every
    option they have."""
    p = Path(path)
    if not p.exists():
        raise SynfabError(f"network file {p} not found")
    if p.is_dir():
        raise SynfabError(f"network file {p} is a directory; give a model file ({formats_line()})")
    fmt = format_of(p)
    options = {k: v for k, v in options.items() if v is not None}
    _check_options(fmt, options)
    _check_requirements(fmt)
    return fmt.load(p, **options)


# ---------------------------------------------------------------------------------------
# Content tests
def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def is_json_file(path: Path) -> bool:
    return _head(path, 64).lstrip()[:1] == b"{"


def is_hdf5_file(path: Path) -> bool:
    """NIR and lava-dl netx files are both HDF5 (netx's test is HDF5's signature)."""
    return is_netx_file(path)


def is_torch_program(path: Path) -> bool:
    """A torch.export archive (torch.export.save): it records its archive format."""
    return any(n.endswith("/archive_format") for n in _zip_names(path))


def is_torch_pickle(path: Path) -> bool:
    """A torch.save archive: a pickle beside its tensor storages."""
    return any(n.endswith("/data.pkl") for n in _zip_names(path))


# ---------------------------------------------------------------------------------------
# The formats whose importers live elsewhere in synfab; the ONNX and PyTorch ones register
# themselves when their modules are imported below.
@register("network JSON", (".json",), sniff=is_json_file)
def _load_network_json(path: Path):
    from . import netfile
    try:
        kind = json.loads(path.read_text()).get("kind", "float")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise SynfabError(f"network file {path} is not a synfab network JSON ({e})") from None
    return netfile.load_q(path) if kind == "quantized" else netfile.load(path)


def _nir_module():
    try:
        from . import nir
    except ImportError as e:
        raise SynfabError(f"NIR import is not available in this synfab ({e}); "
                          f"install synfab with the NIR importer (synfab.frontend.nir)") from None
    return nir


def _is_nir_file(path: Path) -> bool:
    if not is_hdf5_file(path):
        return False
    try:
        return bool(_nir_module().is_nir_file(path))
    except SynfabError:
        return False


@register("NIR", (".nir",), options=("dt", "convention", "input_scale", "input_max"), requires=("nir",), extra="nir",
          sniff=_is_nir_file)
def _load_nir(path: Path, dt=None, convention="nir", input_scale=1.0, input_max=1):
    """--dt, and --option convention=nir|sinabs|snntorch, input_scale=X, input_max=N (frontend.nir.load)."""
    return _nir_module().load(path, dt=dt, convention=convention, input_scale=input_scale, input_max=input_max)


@register("lava-dl netx", (".net",), requires=("h5py",), extra="netx", sniff=is_hdf5_file)
def _load_netx(path: Path):
    from . import netx
    return netx.load(path)


from . import onnx as _onnx, torch_program as _torch_program  # noqa: E402,F401  (they register themselves)
