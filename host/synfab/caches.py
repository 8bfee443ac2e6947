"""The toolkit's caches under ~/.cache/synfab: what each holds, how large it is, and pruning them.

    synfab cache [--json]
    synfab cache prune [--older-than DAYS] [--max-gb GB] [--cache NAME ...] [--dry-run] [--json]
    synfab cache seed [--records FILE] [--json]
    synfab cache record [--records FILE] [--json]

Every source state of the gateware adds entries (a Verilator library, a LiteX sim build, a synthesis
result) and nothing in the toolkit removes one, so the caches only grow. `prune` removes the least
recently used entries until no entry left is older than `older_than_days` and all of them together
take at most `max_bytes`.

Where each cache lives is worked out here the same way as by the code that fills it (repeated, not
imported: the host CLI registers its commands with numpy alone, and the gateware modules that know
these folders import Migen and LiteX, tests/test_cli.py; tests/test_caches.py checks they agree):

    sim        synfab_gateware.sim.build.cache_root: $SYNFAB_SIM_CACHE, else $XDG_CACHE_HOME/synfab/sim
    litex-sim  synfab_gateware.soc.sim.cache_root: $XDG_CACHE_HOME/synfab/litex-sim
    build      synfab_gateware.soc.toolchain.build_root: $SYNFAB_BUILD_DIR, else $XDG_CACHE_HOME/synfab/build
    cost       synfab_gateware.cost._cache_dir: `cost` beside the build folder
    samples    synfab.events.samples: $SYNFAB_SAMPLES, else ~/.cache/synfab/samples (not $XDG_CACHE_HOME)

($XDG_CACHE_HOME defaults to ~/.cache.) An entry is what one build leaves: in the content-keyed caches
(sim, litex-sim, cost) every name starting with the same key (`<key>`, `<key>.lock`, `<key>.log`,
`<key>.failed`, a `<key12>.*.build` or `gen.*` staging folder an interrupted build left); in `build`
each board or block folder with its sibling `<name>.lock`; in `samples` each downloaded file.

Last use of an entry: the newest mtime or atime of the files in it (and of its lock file, which a build
opens for writing); folders count by their mtime only, as listing a folder reads it and would refresh
its atime. Sizes are apparent sizes (st_size), in bytes; GB are 10^9 bytes.

atime has day resolution at best: on a relatime mount (Linux's default) reading a file updates its
atime only when the recorded one is older than the file's mtime or more than a day old, so an entry
read again within a day of its last recorded read looks as old as that read (noatime: never updated).
The one-hour guard is therefore exact for builds (they write files) and holds for reads only at that
resolution; entries open by a running process are protected besides (see `_paths_in_use`).

Committed synthesis results (`seed`, `record`): a fresh machine has none of the syntheses the test
suite and `synfab fit` ask for (33 at the current sources; yosys took 555 s over them in a cold test
run here, two tests at a time).
bitstreams/synthesis.json holds the results of one gateware source state, each under its cost-cache
key (which covers the gateware sources, the block or SoC, the fabric config and the toolchain);
`seed` (run by setup.sh) copies them into the cost cache, so a result is used only where the very
same synthesis would run, and any other is synthesized as before. `record` writes the results the
cost cache holds for the current sources (each result's `<key>.source` names its source state) into
the file: run it after a change to the gateware and a run of the test suite, as the committed
bitstreams are rebuilt (tests/test_caches.py fails while the file is of other sources).

Safety: prune never removes an entry while its lock is held (tried non-blocking with flock, the
builders' lock), nor one used in the last hour, nor one a running process has open, and touches
`samples` (downloaded data, not builds) only when it is named.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .analysis.placements import bitstreams_dir
from .errors import SynfabError

try:
    import fcntl
except ImportError:     # not POSIX: listing works, pruning refuses (it cannot see the builders' locks)
    fcntl = None

RECENT_USE_SECONDS = 3600       # an entry used this recently is never removed (a build or run may be on it)
DAY_SECONDS = 86400
GB = 10**9
LOCK_SUFFIX = ".lock"
ASIDE_SUFFIX = ".pruning"       # an entry renamed for removal (see _move_aside)


@dataclass(frozen=True)
class Cache:
    name: str
    folder: Path
    holds: str
    parents: tuple[str, ...] = ("",)    # globs under folder of the folders whose children are the entries
    keyed: bool = False                 # entries named by a content key, companions named <key>.<suffix>
    index: str | None = None            # a subfolder of index files naming keys (not an entry)
    explicit_only: bool = False         # pruned only when named: downloaded data, not builds


@dataclass
class Entry:
    cache: str
    name: str                   # shown and reported: the key, or the path under the cache folder
    paths: list[Path]           # what removing the entry deletes, its lock aside
    lock: Path | None           # its own lock file, removed with it
    guard_locks: list[Path]     # held by whoever may be writing into it: its own, else the folder's
    bytes: int
    last_use: float


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _build_folder() -> Path:
    return Path(os.environ.get("SYNFAB_BUILD_DIR") or _xdg_cache() / "synfab" / "build").resolve()


def _sim_folder() -> Path:
    return Path(os.environ.get("SYNFAB_SIM_CACHE") or _xdg_cache() / "synfab" / "sim")


def _samples_folder() -> Path:
    # samples.py reads $SYNFAB_SAMPLES with a default, so an empty value would mean the working
    # directory there; here it means unset, so a prune can never reach the working directory.
    return Path(os.environ.get("SYNFAB_SAMPLES") or "~/.cache/synfab/samples").expanduser()


def known_caches() -> list[Cache]:
    """Every cache, folders as the environment sets them now."""
    return [
        Cache("sim", _sim_folder(), "Verilator libraries of fabrics, one per Verilog (synfab_gateware.sim.build)",
              keyed=True, index="by-source"),
        Cache("litex-sim", _xdg_cache() / "synfab" / "litex-sim",
              "LiteX sim SoC builds (Verilator), one per source state (synfab_gateware.soc.sim)", keyed=True),
        Cache("build", _build_folder(), "ECP5 bitstream builds, SoC and block synthesis folders (yosys, nextpnr)",
              parents=("ecp5", "soc-synth", "cost/*")),
        Cache("cost", _build_folder().parent / "cost", "yosys resource counts, one JSON per block and source state",
              keyed=True),
        Cache("samples", _samples_folder(), "downloaded event-camera recordings (synfab.events.samples)",
              explicit_only=True),
    ]


def cache_names() -> list[str]:
    return [c.name for c in known_caches()]


# --- entries -----------------------------------------------------------------------------------------

def entries(cache: Cache) -> list[Entry]:
    """The entries of one cache (none when its folder does not exist)."""
    found = []
    for parent in _entry_parents(cache):
        found += _entries_in(cache, parent)
    return found


def _entry_parents(cache: Cache) -> list[Path]:
    parents = []
    for pattern in cache.parents:
        parents += [cache.folder] if not pattern else sorted(cache.folder.glob(pattern))
    return [p for p in parents if p.is_dir() and not p.is_symlink()]


def _entries_in(cache: Cache, parent: Path) -> list[Entry]:
    children = sorted(p for p in parent.iterdir() if p.name != cache.index)
    folder_locks = [p for p in children if p.name.endswith(LOCK_SUFFIX)]
    lock_set = set(folder_locks)
    found = []
    for key, members in _group_by_entry(children, cache.keyed).items():
        own_lock = parent / f"{key}{LOCK_SUFFIX}"
        lock = own_lock if own_lock in lock_set else None
        paths = [p for p in members if p != lock]
        # A folder without a lock of its own (a staging folder named by a random suffix, a sample)
        # may be written by whoever holds any lock of its folder: all of them guard it.
        guards = [lock] if lock else folder_locks
        size, last_use = _size_and_last_use(paths + ([lock] if lock else []))
        name = str((parent / key).relative_to(cache.folder))
        found.append(Entry(cache.name, name, paths, lock, guards, size, last_use))
    return found


def _group_by_entry(children: list[Path], keyed: bool) -> dict[str, list[Path]]:
    """Entry name -> its paths. Keyed: everything named <key> or <key>.<anything>, lock included;
    else each child that is no lock file (its lock, <name>.lock, is found beside it)."""
    groups: dict[str, list[Path]] = {}
    for path in children:
        if keyed:
            groups.setdefault(path.name.partition(".")[0], []).append(path)
        elif not path.name.endswith(LOCK_SUFFIX):
            groups[path.name] = [path]
    return groups


def _size_and_last_use(paths: list[Path]) -> tuple[int, float]:
    size, last_use = 0, 0.0
    for path in paths:
        for st in _stats_under(path):
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
            last_use = max(last_use, _use_time(st))
    return size, last_use


def _use_time(st: os.stat_result) -> float:
    # A folder's atime changes whenever it is listed (this module lists them): only its mtime tells.
    if stat.S_ISDIR(st.st_mode):
        return st.st_mtime
    return max(st.st_mtime, st.st_atime)


def _stats_under(path: Path):
    """lstat of path and of everything below it (symbolic links are not followed)."""
    try:
        st = path.lstat()
    except FileNotFoundError:       # gone while we looked: a build renaming its staging folder
        return
    yield st
    if not stat.S_ISDIR(st.st_mode):
        return
    try:
        with os.scandir(path) as it:
            children = [Path(e.path) for e in it]
    except (FileNotFoundError, PermissionError):
        return
    for child in children:
        yield from _stats_under(child)


# --- listing -----------------------------------------------------------------------------------------

def _when(t: float) -> str | None:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds") if t else None


def entry_record(entry: Entry, now: float) -> dict:
    return {"cache": entry.cache, "name": entry.name, "bytes": entry.bytes, "last_use": _when(entry.last_use),
            "idle_days": round((now - entry.last_use) / DAY_SECONDS, 3)}


def cache_record(cache: Cache, now: float) -> dict:
    found = sorted(entries(cache), key=lambda e: e.last_use)
    uses = [e.last_use for e in found]
    return {"name": cache.name, "folder": str(cache.folder), "holds": cache.holds, "exists": cache.folder.is_dir(),
            "pruned_by_default": not cache.explicit_only, "entries": len(found),
            "bytes": sum(e.bytes for e in found), "oldest_use": _when(min(uses)) if uses else None,
            "newest_use": _when(max(uses)) if uses else None,
            "entry_list": [entry_record(e, now) for e in found]}


def show() -> dict:
    """Every cache: folder, what it holds, its entries (least recently used first) and sizes."""
    now = time.time()
    records = [cache_record(c, now) for c in known_caches()]
    return {"caches": records, "bytes": sum(r["bytes"] for r in records)}


# --- pruning -----------------------------------------------------------------------------------------

def _check_limits(older_than_days, max_bytes) -> None:
    if older_than_days is None and max_bytes is None:
        raise SynfabError("cache prune: give --older-than DAYS or --max-gb GB (or both): it removes nothing unasked")
    if older_than_days is not None and not (math.isfinite(older_than_days) and older_than_days >= 0):
        raise SynfabError(f"cache prune: --older-than {older_than_days}: give a number of days >= 0")
    if max_bytes is not None and not (math.isfinite(max_bytes) and max_bytes >= 0):
        raise SynfabError(f"cache prune: --max-gb {max_bytes / GB:g}: give a size >= 0 in GB")


def _chosen_caches(names) -> list[Cache]:
    """The caches named (any, samples included), or every cache but the explicit-only ones."""
    caches = known_caches()
    if not names:
        return [c for c in caches if not c.explicit_only]
    by_name = {c.name: c for c in caches}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SynfabError(f"cache prune: no cache named {', '.join(map(repr, unknown))}; caches: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def _wanted(entry: Entry, bytes_left: int, now: float, older_than_days, max_bytes) -> bool:
    too_old = older_than_days is not None and entry.last_use < now - older_than_days * DAY_SECONDS
    too_large = max_bytes is not None and bytes_left > max_bytes
    return too_old or too_large


def _paths_in_use() -> set[str]:
    """Every folder holding, and every path of, a file that a process we can see has open, mapped
    (a loaded Verilator library, a running Vsim) or as its working directory (Linux /proc; elsewhere
    none). atime misses a second read within a day; this sees whoever uses an entry right now."""
    used: set[str] = set()
    for path in _open_paths():
        while path not in used and path != "/":
            used.add(path)
            path = os.path.dirname(path)
    return used


def _open_paths():
    for proc in Path("/proc").glob("[0-9]*"):
        links = [proc / "cwd", proc / "exe"]
        with contextlib.suppress(OSError):      # the process ended, or is another user's
            links += list((proc / "fd").iterdir())
        for link in links:
            with contextlib.suppress(OSError):
                target = os.readlink(link).removesuffix(" (deleted)")
                if target.startswith("/"):
                    yield target
        with contextlib.suppress(OSError):
            for line in (proc / "maps").read_text().splitlines():
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    yield fields[5].removesuffix(" (deleted)")


def _protection(entry: Entry, now: float, in_use: set[str]) -> str | None:
    """Why the entry must stay whatever the limits say (its lock is tried when removing), or None."""
    if entry.last_use > now - RECENT_USE_SECONDS:
        return "used in the last hour"
    if any(os.path.realpath(p) in in_use for p in entry.paths):
        return "open by a running process"
    return None


@contextlib.contextmanager
def _holding(locks: list[Path]):
    """Yields True with every lock in `locks` held, else False, without waiting: flock on the lock
    files, the lock the builders take (a separate open file, so even a holder in this process counts)."""
    if fcntl is None:
        raise SynfabError("cache prune needs POSIX file locks (fcntl) to leave entries being built alone")
    with contextlib.ExitStack() as stack:
        for path in locks:
            try:
                fd = os.open(path, os.O_RDONLY)     # read-only: opening for writing would touch its mtime
            except FileNotFoundError:
                continue
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        yield True


def _move_aside(path: Path) -> Path:
    """Rename for removal, in the same folder. A reader checks one file of an entry (the library,
    obj_dir/Vsim) and then uses the rest: a rename makes the entry vanish whole, where deleting file
    by file could leave that one file beside missing others. A keyed aside name still groups with
    its key, so an aside left by an interrupted prune is listed and pruned later."""
    aside = path.with_name(f"{path.name}{ASIDE_SUFFIX}-{os.getpid()}")
    path.rename(aside)
    return aside


def _ignore_vanished(func, path, exc):
    err = exc[1] if isinstance(exc, tuple) else exc
    if not isinstance(err, FileNotFoundError):
        raise err


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        handler = {"onexc" if sys.version_info >= (3, 12) else "onerror": _ignore_vanished}
        shutil.rmtree(path, **handler)
    else:
        path.unlink(missing_ok=True)


def _remove(entry: Entry, dry_run: bool) -> str | None:
    """Remove the entry and its lock unless a lock guarding it is held; why not, or None."""
    with _holding(entry.guard_locks) as held:
        if not held:
            return "its lock is held by another process"
        if dry_run:
            return None
        aside = [_move_aside(p) for p in entry.paths if p.exists() or p.is_symlink()]
        # Unlinked while held: whoever opened it before waits on a file with no name and then finds
        # the entry gone (and builds it); holding it only for two renames keeps that window small.
        if entry.lock:
            entry.lock.unlink(missing_ok=True)
    for path in aside:          # the slow part, outside the lock: builders of this key need not wait
        _delete(path)
    return None


def _drop_index_files(cache: Cache, removed_keys: set[str]) -> None:
    """Index files (sim's by-source) naming a removed key. A stale one would only cost a rebuild
    (its reader checks the library exists), but nothing else removes them either."""
    index = cache.folder / cache.index if cache.index else None
    if not index or not removed_keys or not index.is_dir():
        return
    for path in index.iterdir():
        with contextlib.suppress(OSError):
            if path.read_text().strip() in removed_keys:
                path.unlink()


def prune(older_than_days: float | None = None, max_bytes: int | None = None, caches=None,
          dry_run: bool = False) -> dict:
    """Remove least-recently-used entries of `caches` (names; default all but samples) until none left
    is older than `older_than_days` and those left total at most `max_bytes` (over the caches together).
    Never removed: an entry whose lock another process holds, one used in the last hour, one a
    running process has open. With dry_run the same choice, nothing removed. Returns what was removed
    (or would be), the bytes freed, what had to stay and why."""
    _check_limits(older_than_days, max_bytes)
    chosen = _chosen_caches(caches)
    now = time.time()
    candidates = sorted((e for c in chosen for e in entries(c)), key=lambda e: (e.last_use, e.cache, e.name))
    in_use = _paths_in_use()
    bytes_left = sum(e.bytes for e in candidates)
    removed, kept = [], []
    for entry in candidates:
        if not _wanted(entry, bytes_left, now, older_than_days, max_bytes):
            break       # oldest first, and bytes_left only falls: no later entry is wanted either
        reason = _protection(entry, now, in_use) or _remove(entry, dry_run)
        if reason:
            kept.append({**entry_record(entry, now), "reason": reason})
        else:
            removed.append(entry)
            bytes_left -= entry.bytes
    if not dry_run:
        for cache in chosen:
            _drop_index_files(cache, {e.name for e in removed if e.cache == cache.name})
    return {"dry_run": dry_run, "caches": [c.name for c in chosen], "older_than_days": older_than_days,
            "max_bytes": max_bytes, "removed": [entry_record(e, now) for e in removed],
            "bytes_freed": sum(e.bytes for e in removed), "kept": kept, "bytes_left": bytes_left,
            "limits_met": not kept}


# --- committed synthesis results -------------------------------------------------------------------

SYNTHESIS_RECORDS = "synthesis.json"
# A cost-cache result's companion naming the gateware source key it was made at (written by
# synfab_gateware.cost.write_atomically; repeated for the reason above, compared by a test).
SOURCE_SUFFIX = ".source"
KEY_HEX = 64


def records_path() -> Path:
    return bitstreams_dir() / SYNTHESIS_RECORDS


def _cost_folder() -> Path:
    return next(c.folder for c in known_caches() if c.name == "cost")


def _is_key(text) -> bool:
    return isinstance(text, str) and len(text) == KEY_HEX and all(ch in "0123456789abcdef" for ch in text)


def _is_counts(value) -> bool:
    """Cell counts: a non-empty {name: number}, xc7's results nesting one level ({"cells": {...}})."""
    def number(n):
        return isinstance(n, (int, float)) and not isinstance(n, bool)
    return isinstance(value, dict) and bool(value) and all(
        number(v) or (isinstance(v, dict) and all(number(n) for n in v.values())) for v in value.values())


def load_records(path: Path) -> dict:
    """The records file, checked: {"source_key": key, "records": {cache key: cell counts}}."""
    path = Path(path)
    if not path.is_file():
        raise SynfabError(f"cache: no synthesis records at {path}: give --records FILE, or run `synfab cache record`")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SynfabError(f"cache: {path} is not JSON ({e}): restore it from git or run `synfab cache record`") from None
    records = data.get("records") if isinstance(data, dict) else None
    ok = (isinstance(records, dict) and _is_key(data.get("source_key"))
          and all(_is_key(k) and _is_counts(v) for k, v in records.items()))
    if not ok:
        raise SynfabError(f"cache: {path} is not a synthesis record file (a source_key and records of "
                          "key -> cell counts): restore it from git or run `synfab cache record`")
    return data


def write_text_atomically(path: Path, text: str) -> None:
    """Whole or not at all, for readers outside any lock: the cost cache's rule, used by every
    writer of it (synfab_gateware.cost.write_atomically, `seed`)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def seed(path: Path | None = None) -> dict:
    """Copy the committed results into the cost cache; a key already cached is left as it is."""
    path = Path(path) if path is not None else records_path()
    data = load_records(path)
    folder = _cost_folder()
    folder.mkdir(parents=True, exist_ok=True)
    added = 0
    for key, result in sorted(data["records"].items()):
        target = folder / f"{key}.json"
        if target.exists():
            continue
        write_text_atomically(target, json.dumps(result))
        write_text_atomically(target.with_suffix(SOURCE_SUFFIX), data["source_key"])
        added += 1
    return {"records": str(path), "folder": str(folder), "source_key": data["source_key"],
            "added": added, "already_cached": len(data["records"]) - added}


def current_source_key() -> str:
    from .hwcli import gateware_source_key     # imports the gateware (Migen, LiteX): only when recording
    return gateware_source_key()


def record(path: Path | None = None, source_key: str | None = None) -> dict:
    """Write the cost cache's results of `source_key` (default: the current gateware sources) into
    the records file, with those it holds already when it is of the same sources."""
    path = Path(path) if path is not None else records_path()
    source_key = source_key or current_source_key()
    folder = _cost_folder()
    found = {}
    for companion in sorted(folder.glob(f"*{SOURCE_SUFFIX}")) if folder.is_dir() else []:
        result = companion.with_suffix(".json")
        if _is_key(companion.stem) and companion.read_text().strip() == source_key and result.is_file():
            found[companion.stem] = json.loads(result.read_text())
    if not found:
        raise SynfabError(f"cache record: the cost cache ({folder}) holds no synthesis of the current gateware "
                          "sources: run the test suite (or `synfab fit`) first")
    kept = {}
    if path.is_file():
        old = load_records(path)
        if old["source_key"] == source_key:
            kept = old["records"]
    records = {**kept, **found}
    text = json.dumps({"what": "yosys results of one gateware source state, by cost-cache key (synfab cache seed)",
                       "source_key": source_key, "records": dict(sorted(records.items()))}, indent=1)
    write_text_atomically(path, text + "\n")
    return {"records": str(path), "source_key": source_key, "recorded": len(records),
            "from_cache": len(found), "kept": len(records) - len(found)}


# --- command line ------------------------------------------------------------------------------------

def human_bytes(n: int) -> str:
    for unit, size in (("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _short(name: str) -> str:
    """A 64-hex key as the builders print it (12 characters); other names whole."""
    key, sep, rest = name.partition(".")
    return f"{key[:12]}{sep}{rest}" if len(key) == 64 else name


def show_text(report: dict) -> str:
    lines = []
    for c in report["caches"]:
        state = f"{c['entries']:>4} entries" if c["exists"] else "  (absent)  "
        note = "" if c["pruned_by_default"] else "  [pruned only with --cache samples]"
        lines.append(f"{c['name']:<10} {human_bytes(c['bytes']):>10} {state}  {c['folder']}{note}")
        lines.append(f"{'':<10} {c['holds']}" + (f"; oldest use {c['oldest_use'][:10]}" if c["oldest_use"] else ""))
    lines.append(f"{'total':<10} {human_bytes(report['bytes']):>10}")
    return "\n".join(lines)


def prune_text(report: dict) -> str:
    verb = "would remove" if report["dry_run"] else "removed"
    lines = [f"{verb} {r['cache']}/{_short(r['name'])}  {human_bytes(r['bytes'])}, idle {r['idle_days']:.1f} days"
             for r in report["removed"]]
    lines += [f"kept {r['cache']}/{_short(r['name'])}  {human_bytes(r['bytes'])}: {r['reason']}" for r in report["kept"]]
    freed = "would free" if report["dry_run"] else "freed"
    count = len(report["removed"])
    lines.append(f"{freed} {human_bytes(report['bytes_freed'])} ({report['bytes_freed']} bytes) in {count} "
                 f"{'entry' if count == 1 else 'entries'}; {human_bytes(report['bytes_left'])} left in "
                 f"{', '.join(report['caches'])}")
    return "\n".join(lines)


def _number(text: str | None, option: str, unit: str) -> float | None:
    """A command-line number, checked here so that bad input is one SynfabError line (argparse's own
    type errors print the usage and exit 2)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise SynfabError(f"cache prune: {option} {text!r}: give a number of {unit}") from None
    if not (math.isfinite(value) and value >= 0):
        raise SynfabError(f"cache prune: {option} {text}: give a number of {unit} >= 0")
    return value


def _emit(report: dict, as_json: bool, text: str) -> None:
    print(json.dumps(report, indent=2) if as_json else text)


def cmd_cache(a) -> None:
    report = show()
    _emit(report, a.json, show_text(report))


def cmd_prune(a) -> None:
    days = _number(a.older_than, "--older-than", "days")
    gb = _number(a.max_gb, "--max-gb", "GB")
    report = prune(days, None if gb is None else int(gb * GB), a.caches, a.dry_run)
    _emit(report, a.json, prune_text(report))


def cmd_seed(a) -> None:
    report = seed(a.records)
    _emit(report, a.json, f"seeded the cost cache ({report['folder']}) with {report['added']} synthesis results "
          f"from {report['records']} ({report['already_cached']} cached already)")


def cmd_record(a) -> None:
    report = record(a.records)
    _emit(report, a.json, f"recorded {report['recorded']} synthesis results of sources {report['source_key'][:12]} "
          f"in {report['records']} ({report['from_cache']} from the cost cache)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add `cache` and `cache prune | seed | record` to the subparsers of the main `synfab` parser."""
    p = subparsers.add_parser("cache", help="the build caches (~/.cache/synfab): folders, entries, sizes; "
                              "`cache prune` removes least-recently-used entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache)
    sub = p.add_subparsers(dest="cache_command")
    q = sub.add_parser("prune", help="remove least-recently-used entries until the limits hold",
                       description="Removes least-recently-used entries until none left is older than --older-than "
                       "and those left total at most --max-gb (GB = 10^9 bytes; over the chosen caches together). "
                       "Entries whose lock is held, used in the last hour or open by a process stay. "
                       f"Caches: {', '.join(cache_names())}; samples only when named.")
    q.add_argument("--older-than", metavar="DAYS", help="remove entries unused for more than DAYS days")
    q.add_argument("--max-gb", metavar="GB", help="remove the least recently used until at most GB remain")
    q.add_argument("--cache", dest="caches", action="extend", nargs="+", metavar="NAME",
                   help="only these caches (default: all but samples)")
    q.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    # SUPPRESS: `synfab cache --json prune` keeps the --json given before `prune`.
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    q.set_defaults(func=cmd_prune)
    for name, func, text in (
            ("seed", cmd_seed, "copy the committed synthesis results (bitstreams/synthesis.json) into the cost "
             "cache; setup.sh runs it"),
            ("record", cmd_record, "write the cost cache's synthesis results of the current gateware sources "
             "into bitstreams/synthesis.json")):
        r = sub.add_parser(name, help=text, description=text)
        r.add_argument("--records", metavar="FILE", help=f"the records file (default: {records_path()})")
        r.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        r.set_defaults(func=func)
    return p
