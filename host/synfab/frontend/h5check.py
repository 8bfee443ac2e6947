"""A bounded-time, crash-proof trial read of an HDF5 file.

A damaged HDF5 file can hold a link list (B-tree or local heap) that loops, so listing that group
never returns, or a dataset header that makes the HDF5 C library crash (segmentation fault) when
the data is read; both happen inside C, where no Python signal, timeout or exception reaches.
Readers of HDF5 formats (netx, NIR) call `problem(path)` first: it reads every group and dataset
in a forked child and reports a child that does not finish in time or dies by a signal.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import time

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"   # an HDF5 file's first 8 bytes (netx and NIR files are HDF5)
WALK_SECONDS = 10.0       # reading a real network file takes milliseconds


def _read_all(group, depth: int = 0) -> None:
    """Iterate every group as the readers do (h5py's group iteration, not H5Lvisit, which returns on
    files where iteration loops) and read every dataset and attribute."""
    import h5py
    for name in group:
        try:
            item = group[name]
            for key in item.attrs:
                item.attrs[key]
            if isinstance(item, h5py.Dataset):
                item[()]
        except (KeyError, RuntimeError, OSError, ValueError, TypeError):
            continue
        if isinstance(item, h5py.Group) and depth < 64:
            _read_all(item, depth + 1)


def _child(path: str) -> None:
    """In the child: read everything; exit 0 when done, whatever Python raises."""
    faulthandler.disable()       # a crash here is the expected finding, not a report for the user's terminal
    try:
        import h5py
        with h5py.File(path, "r") as f:
            _read_all(f)
    except BaseException:  # noqa: BLE001 - the reader reports what Python raises; only C crashes and hangs count
        pass
    os._exit(0)


def problem(path, seconds: float | None = None) -> str | None:
    """What reading the file does to the HDF5 library, in words, or None when it reads (or fails
    cleanly). None too where processes cannot be forked (the check is then skipped)."""
    if not hasattr(os, "fork"):
        return None
    seconds = WALK_SECONDS if seconds is None else seconds
    pid = os.fork()          # os.fork, not multiprocessing: this may run inside a daemon process
    if pid == 0:
        _child(str(path))
    deadline = time.monotonic() + seconds
    delay = 0.001
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return f"the HDF5 library crashes reading it ({signal.Signals(os.WTERMSIG(status)).name})"
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return f"listing or reading its HDF5 groups does not end within {seconds:g} s (a damaged link list)"
