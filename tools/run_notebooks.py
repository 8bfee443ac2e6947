"""Execute the notebooks under notebooks/ and save them with their outputs.

    python tools/run_notebooks.py [--check] [NAME ...]

Each notebook runs top to bottom in a fresh `python3` kernel (nbclient), started in notebooks/, and
is written back in place with its outputs, so that a person opening it on the web sees the results
and the plots.  The run is the one a user without a board gets: the variables that select a board
or the simulated PYNQ-Z2 (SYNFAB_PYNQ_MOCK, SYNFAB_LITEX_PORT, ...) are removed, so notebook 01
falls back to the sim backend and runs its ECP5 section on the LiteX Verilator sim.  A cell error
stops the run and nothing is written.

The saved notebooks change only when a result changes: no per-cell timestamps, no kernel version
in the metadata, progress bars off; the notebooks seed their data and weights and leave wall-clock
figures out of what they print.

--check executes the notebooks the same way but writes nothing: it lists the cells whose outputs
differ from the committed ones (exit status 1), e.g. after a change that moves a cycle count.
NAME restricts the run to some notebooks (01_flash_and_run.ipynb or just 01).
"""
from __future__ import annotations

import argparse
import base64
import copy
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_flash_and_run.ipynb", "02_pytorch_to_tables.ipynb", "03_dvs_streaming.ipynb",
             "04_event_digits.ipynb")
# Per cell: the first sim device of a fabric configuration compiles it with Verilator (minutes).
CELL_TIMEOUT_S = 900
# Variables that make a notebook use hardware (or the simulated PYNQ-Z2) instead of the simulation
# a user without a board sees: the saved outputs must not depend on the shell they were made in.
BOARD_VARIABLES = ("SYNFAB_PYNQ_MOCK", "SYNFAB_BITSTREAM", "SYNFAB_LITEX_PORT", "SYNFAB_ECP5_FABRIC")
# Progress bars would land in the outputs as carriage-return noise; a fixed hash seed keeps any
# set or dict-of-str ordering the same from one run to the next.
QUIET = {"TQDM_DISABLE": "1", "PYTHONHASHSEED": "0"}


def kernel_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the board variables, with QUIET and `extra` set."""
    env = {k: v for k, v in os.environ.items() if k not in BOARD_VARIABLES}
    env.update(QUIET)
    env.update(extra or {})
    return env


def execute(path: Path, extra_env: dict[str, str] | None = None):
    """Run the notebook at `path` in a fresh kernel; return the executed copy (the file is untouched).

    Raises nbclient's CellExecutionError, naming the cell and its traceback, on any cell error."""
    nb = nbformat.read(path, as_version=4)
    metadata = copy.deepcopy(nb.metadata)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            record_timing=False,          # per-cell timestamps: a diff on every run
                            coalesce_streams=True,        # one stdout output per cell, not one per print
                            store_widget_state=False)
    # The kernel is a child of this process: the environment passed here is the one it sees.
    client.execute(env=kernel_environment(extra_env))
    nb.metadata = metadata     # nbclient adds the kernel's Python version: not a result
    return nb


def outputs_of(nb) -> list[list[dict]]:
    """Per code cell, its outputs as plain data (images decoded, so that line wrapping of the
    base64 text does not count as a difference)."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = []
        for o in cell.outputs:
            o = dict(o)
            if "data" in o:
                o["data"] = {k: (base64.b64decode(v) if k.startswith("image/") else v)
                             for k, v in o["data"].items()}
            outs.append(o)
        cells.append(outs)
    return cells


def differences(committed, executed) -> list[str]:
    """The code cells (1-based among the code cells) whose outputs differ, with what differs."""
    old, new = outputs_of(committed), outputs_of(executed)
    if len(old) != len(new):
        return [f"{len(old)} code cells committed, {len(new)} executed"]
    found = []
    for i, (a, b) in enumerate(zip(old, new), start=1):
        if a == b:
            continue
        text_a = [o.get("text", o.get("data", {}).get("text/plain", "")) for o in a]
        text_b = [o.get("text", o.get("data", {}).get("text/plain", "")) for o in b]
        what = "text" if text_a != text_b else "images"
        found.append(f"code cell {i}: {what} differ")
    return found


def select(names: list[str]) -> list[str]:
    if not names:
        return list(NOTEBOOKS)
    chosen = []
    for name in names:
        hits = [n for n in NOTEBOOKS if n == name or n.startswith(name)]
        if len(hits) != 1:
            raise SystemExit(f"run_notebooks: {name!r} names {len(hits)} of the notebooks {', '.join(NOTEBOOKS)}")
        chosen += hits
    return chosen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebooks to run (default: all), e.g. 01 or 03_dvs_streaming.ipynb")
    ap.add_argument("--check", action="store_true",
                    help="execute without writing; exit 1 if any output differs from the committed one")
    args = ap.parse_args(argv)
    stale = 0
    for name in select(args.names):
        path = NOTEBOOK_DIR / name
        t0 = time.perf_counter()
        executed = execute(path)
        seconds = time.perf_counter() - t0
        if args.check:
            diffs = differences(nbformat.read(path, as_version=4), executed)
            stale += bool(diffs)
            status = "up to date" if not diffs else "OUT OF DATE: " + "; ".join(diffs)
            print(f"{name}: {status} ({seconds:.0f} s)", flush=True)
        else:
            nbformat.write(executed, path)
            print(f"{name}: executed and saved ({seconds:.0f} s)", flush=True)
    if stale:
        print(f"{stale} notebook(s) differ: regenerate them with python tools/run_notebooks.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
