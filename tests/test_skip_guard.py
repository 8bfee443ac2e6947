"""tests/conftest.py: a skip for a reason outside tests/allowed_skips.txt fails the session, with
and without pytest-xdist; allowed skips do not.  Runs pytest on small generated test files."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ALLOWED_SKIPS_FILE, allowed_skip_reasons

HERE = Path(__file__).parent
ALLOWED = allowed_skip_reasons()[0]


def run_pytest(tmp_path: Path, files: dict, *args) -> subprocess.CompletedProcess:
    for name in ("conftest.py", ALLOWED_SKIPS_FILE.name):
        shutil.copy(HERE / name, tmp_path / name)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


PASSING = "def test_ok():\n    assert 1 + 1 == 2\n"
ALLOWED_SKIP = f"import pytest\n\ndef test_board():\n    pytest.skip({ALLOWED + ' attached here'!r})\n"
RUNTIME_SKIP = "import pytest\n\ndef test_tool():\n    pytest.skip('frobnicator not installed')\n"
IMPORT_SKIP = "import pytest\n\npytest.importorskip('no_such_module_anywhere')\n\ndef test_x():\n    pass\n"


def test_the_allow_list_is_short_and_about_boards():
    reasons = allowed_skip_reasons()
    assert 1 <= len(reasons) <= 5
    assert all("board" in r for r in reasons)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_disallowed_skip_fails_the_session_and_is_named(tmp_path, workers):
    proc = run_pytest(tmp_path, {"test_a.py": PASSING, "test_b.py": RUNTIME_SKIP, "test_c.py": IMPORT_SKIP,
                                 "test_d.py": ALLOWED_SKIP}, *workers)
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout
    assert "skips not on the allow-list" in out
    assert "test_b.py::test_tool: frobnicator not installed" in out
    assert "test_c.py: could not import 'no_such_module_anywhere'" in out
    assert "2 disallowed skip(s) fail this session" in out
    assert "test_d.py::test_board" not in out.split("skips not on the allow-list")[1]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_allowed_skips_keep_the_session_green(tmp_path, workers):
    proc = run_pytest(tmp_path, {"test_a.py": PASSING, "test_d.py": ALLOWED_SKIP}, *workers)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout and "allow-list" not in proc.stdout


def test_opting_out_reports_the_skip_without_failing(tmp_path):
    proc = run_pytest(tmp_path, {"test_a.py": PASSING, "test_b.py": RUNTIME_SKIP}, "--allow-skips")
    assert proc.returncode == 0, proc.stdout
    assert "frobnicator not installed" in proc.stdout      # -rs still lists it
