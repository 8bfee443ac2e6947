"""Finding command-line tools the way an installed synfab would: from the running interpreter's
environment first (a venv's or pyenv's bin directory need not be on PATH), then PATH."""
import shutil
import sys
import sysconfig
from pathlib import Path


def interpreter_bin_dirs() -> list[Path]:
    """Where pip put console scripts for this interpreter."""
    dirs = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    return list(dict.fromkeys(dirs))


def find_tool(name: str) -> str | None:
    for d in interpreter_bin_dirs():
        exe = d / name
        if exe.is_file() and exe.stat().st_mode & 0o111:
            return str(exe)
    return shutil.which(name)


# The LiteX sim SoC's Verilator build needs these headers (setup.sh installs them as root).
LITEX_SIM_HEADERS = [Path("/usr/include/event2/event.h"), Path("/usr/include/json-c/json.h")]


def litex_sim_marks() -> list:
    """pytestmark of a LiteX-sim test module: slow, and skipped (which fails the session: not on
    the allow-list) when the headers are missing."""
    import pytest
    return [pytest.mark.slow,
            pytest.mark.skipif(not all(h.exists() for h in LITEX_SIM_HEADERS),
                               reason="LiteX sim needs libevent-dev and libjson-c-dev (setup.sh installs them as root)")]
