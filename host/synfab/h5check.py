"""A bounded-time check that an HDF5 file's groups can be listed.

A damaged HDF5 file can hold a link list (B-tree or local heap) that loops: listing that group
never returns, inside the HDF5 C library, where no Python signal or timeout reaches.  Readers of
HDF5 formats (netx, NIR) call `loops(path)` first: it lists every group in a forked child and
reports a child that does not finish in time.
"""
from __future__ import annotations

import os
import signal
import time

WALK_SECONDS = 10.0       # listing the groups of a real network file takes milliseconds


def _list(group, depth: int = 0) -> None:
    """Iterate every group's names as the readers do (h5py's group iteration, not H5Lvisit, which
    returns on files where iteration loops)."""
    import h5py
    for name in group:
        try:
            item = group[name]
        except (KeyError, RuntimeError, OSError, ValueError, TypeError):
            continue
        if isinstance(item, h5py.Group) and depth < 64:
            _list(item, depth + 1)


def _walk(path: str) -> None:
    """In the child: list every group (not the data); exit 0 when done, whatever happens."""
    try:
        import h5py
        with h5py.File(path, "r") as f:
            _list(f)
    except BaseException:  # noqa: BLE001 - the reader itself reports a damaged file; only time matters here
        pass
    os._exit(0)


def loops(path, seconds: float | None = None) -> bool:
    """True when listing the file's groups does not finish within `seconds` (a looping link list).
    False too where processes cannot be forked (the check is then skipped)."""
    if not hasattr(os, "fork"):
        return False
    seconds = WALK_SECONDS if seconds is None else seconds
    pid = os.fork()          # os.fork, not multiprocessing: this may run inside a daemon process
    if pid == 0:
        _walk(str(path))
    deadline = time.monotonic() + seconds
    delay = 0.001
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True
