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
