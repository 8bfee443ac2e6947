"""The notebooks under notebooks/: committed with real outputs, and they still execute.

Committed notebooks carry their outputs (a person opening one on the web sees the results and the
plots), made by `python tools/run_notebooks.py` on the sim backend.  Two kinds of test:

- the committed outputs are a real, complete run: every code cell executed once, in order, no error,
  the plots present as PNG images and the result lines the notebooks print (their own assertions
  held when these lines were printed);
- CI executes every notebook again, a copy in memory (the committed file is never rewritten), and
  fails on a cell error; each notebook asserts its own results (outputs equal to the dense reference,
  check=True against the golden model), and the run's outputs must hold the same lines.
"""
import base64
import importlib.util
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_flash_and_run.ipynb", "02_pytorch_to_tables.ipynb", "03_dvs_streaming.ipynb",
             "04_event_digits.ipynb")

# The plots of each notebook, counted by hand from its cells: a plot that stops displaying (a
# figure built but not shown, a cell that prints instead) makes the count fall short.
PLOTS = {"01_flash_and_run.ipynb": 2, "02_pytorch_to_tables.ipynb": 2, "03_dvs_streaming.ipynb": 6,
         "04_event_digits.ipynb": 4}
# A plotting cell: it calls a synfab.plots function or ends by showing its matplotlib figure.
PLOT_CALL = re.compile(r"\bplots\.[a-z_]+\(")

# Lines the outputs must contain, written here from what the notebooks are for, not copied from a run.
LITEX = "frames checked against the golden model"   # notebook 01's ECP5 section (LiteX SoC)
DIGITS_EXACT = "outputs equal to the dense reference: 16/16 frames"   # 01 streams FRAMES = 16 digits
SIM_01 = ("no PYNQ board attached: falling back to the sim backend", "sim: id", DIGITS_EXACT, LITEX)
EXPECTED = {"01_flash_and_run.ipynb": SIM_01,
            "02_pytorch_to_tables.ipynb": ("event-driven outputs equal to the dense reference: True",),
            "03_dvs_streaming.ipynb": ("outputs equal to the dense reference: 12/12 frames",),
            # 04 streams EVENT_DIGITS = 12 held-out event digits on the sim backend, one frame each
            "04_event_digits.ipynb": ("quantized accuracy on the subset equals the recorded value: True",
                                      "outputs equal to the dense reference: 12/12 frames")}

# (notebook, extra environment, lines its outputs must contain): 01 runs twice, once falling back to
# the sim backend (the run that is committed) and once on the simulated PYNQ-Z2
# (runtime/pynq_mock.py) through the PYNQ driver.
RUNS = [("01_flash_and_run.ipynb", {}, SIM_01),
        ("01_flash_and_run.ipynb", {"SYNFAB_PYNQ_MOCK": "1"},
         ("simulated PYNQ-Z2", "pynq: id", DIGITS_EXACT, LITEX)),
        ("02_pytorch_to_tables.ipynb", {}, EXPECTED["02_pytorch_to_tables.ipynb"]),
        ("03_dvs_streaming.ipynb", {}, EXPECTED["03_dvs_streaming.ipynb"]),
        ("04_event_digits.ipynb", {}, EXPECTED["04_event_digits.ipynb"])]


def load_tool():
    """tools/run_notebooks.py, the documented command: CI executes the notebooks the way it does."""
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def printed_text(nb) -> str:
    """Everything the code cells printed (stdout and stderr)."""
    return "".join(o.get("text", "") for c in code_cells(nb) for o in c.outputs if o.output_type == "stream")


def png_images(cell) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in cell.outputs
            if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})]


def is_plotting_cell(cell) -> bool:
    lines = [line for line in cell.source.strip().splitlines() if line.strip()]
    return bool(PLOT_CALL.search(cell.source)) or (bool(lines) and lines[-1].strip() == "fig")


def test_the_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert load_tool().NOTEBOOKS == NOTEBOOKS     # the command regenerates every one of them


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_are_a_complete_run(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = code_cells(nb)
    assert code, f"{name} has no code cells"
    # One run, top to bottom: a cell re-run by hand or skipped breaks the sequence.
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), \
        f"{name}: execution counts {counts}; regenerate with python tools/run_notebooks.py"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{name} was saved with an error"
    # Timing and widget state would turn every regeneration into a diff.
    assert not any("execution" in c.metadata for c in code), f"{name}: per-cell timestamps saved"
    assert "widgets" not in nb.metadata

    plotting = [i for i, c in enumerate(code, start=1) if is_plotting_cell(c)]
    assert len(plotting) == PLOTS[name], f"{name}: plotting cells {plotting}"
    for i in plotting:
        images = png_images(code[i - 1])
        assert images, f"{name}: code cell {i} plots but has no image/png output"
        assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images), f"{name}: cell {i}: not a PNG"
    assert sum(len(png_images(c)) for c in code) == PLOTS[name]

    text = printed_text(nb)
    for line in EXPECTED[name]:
        assert line in text, f"{name}: the committed outputs lack {line!r}"


def test_check_finds_changed_outputs():
    """`run_notebooks.py --check` compares an executed notebook with the committed one: it must see
    a changed number and a changed image, and nothing in an identical copy."""
    tool = load_tool()
    committed = nbformat.read(NOTEBOOK_DIR / "03_dvs_streaming.ipynb", as_version=4)
    assert tool.differences(committed, nbformat.from_dict(committed)) == []

    changed = nbformat.from_dict(committed)
    stream = next(o for c in code_cells(changed) for o in c.outputs if o.output_type == "stream")
    stream.text = stream.text.replace("12/12", "11/12") + "0"
    found = tool.differences(committed, changed)
    assert len(found) == 1 and "text" in found[0]

    changed = nbformat.from_dict(committed)
    cell = next(c for c in code_cells(changed) if png_images(c))
    output = next(o for o in cell.outputs if "image/png" in o.get("data", {}))
    image = base64.b64decode(output.data["image/png"])
    output.data["image/png"] = base64.b64encode(image[:-1] + bytes([image[-1] ^ 1])).decode()
    found = tool.differences(committed, changed)
    assert len(found) == 1 and "images" in found[0]


def test_the_saved_run_uses_no_board(monkeypatch):
    """The committed outputs are what a user without a board sees, whatever the shell sets."""
    tool = load_tool()
    monkeypatch.setenv("SYNFAB_PYNQ_MOCK", "1")
    monkeypatch.setenv("SYNFAB_LITEX_PORT", "/dev/ttyUSB0@1000000")
    env = tool.kernel_environment()
    assert "SYNFAB_PYNQ_MOCK" not in env and "SYNFAB_LITEX_PORT" not in env
    assert env["TQDM_DISABLE"] == "1"
    assert tool.kernel_environment({"SYNFAB_PYNQ_MOCK": "1"})["SYNFAB_PYNQ_MOCK"] == "1"


@pytest.mark.slow
@pytest.mark.parametrize("name, env, expected", RUNS, ids=["01-sim", "01-pynq-mock", "02", "03", "04"])
def test_notebook_executes(name, env, expected):
    pytest.importorskip("nbclient")
    path = NOTEBOOK_DIR / name
    before = path.read_bytes()
    nb = load_tool().execute(path, env)   # raises CellExecutionError (with the cell and traceback) on any error
    assert path.read_bytes() == before, "executing must not rewrite the committed notebook"
    outputs = [o for c in code_cells(nb) for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = printed_text(nb)
    for line in expected:
        assert line in text, f"{name}: the run's outputs lack {line!r}"
    images = sum(len(png_images(c)) for c in code_cells(nb))
    assert images == PLOTS[name], f"{name}: expected its {PLOTS[name]} plots inline, found {images} images"
