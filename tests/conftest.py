"""No silent skips: a test that skips for a reason not in allowed_skips.txt fails the session.

A skipped test looks like a passed one in a green run, so a missing tool or package would quietly
remove a whole part of the verification.  Every skip (at collection, e.g. `importorskip`, or in a
test) is recorded; at the end the session fails, listing each skip whose reason is not allowed
and what to do about it.  `--allow-skips` turns this off for a deliberately partial environment
(CI never uses it).  With pytest-xdist the workers' reports reach the controller, which decides.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

try:        # Migen's simulator running the design compiled to Python (a core test ~9x faster)
    from synfab_gateware.sim.migen_speed import install as _install_migen_speed
    _install_migen_speed()
    # The Verilator libraries of a test run are built plain: the profile-guided build compiles each
    # of the suite's 24 fabrics twice for simulations of seconds (synfab_gateware.sim.build.PGO_ENV).
    # Benchmarks and users keep the profile-guided build; tests/test_sim_build.py builds both.
    from synfab_gateware.sim.build import PGO_ENV
    os.environ.setdefault(PGO_ENV, "0")
except ImportError:         # no gateware extras: the tests that need Migen skip
    pass

ALLOWED_SKIPS_FILE = Path(__file__).with_name("allowed_skips.txt")
HINT = "run ./setup.sh (as root: it installs the system packages too), or add a reason to tests/allowed_skips.txt"


def allowed_skip_reasons(path: Path = ALLOWED_SKIPS_FILE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def skip_reason(report) -> str:
    """The reason of a skipped report ('Skipped: ' prefix removed)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def is_allowed(reason: str, allowed: list[str]) -> bool:
    return any(reason.startswith(prefix) for prefix in allowed)


class SkipGuard:
    def __init__(self, allowed: list[str]):
        self.allowed = allowed
        self.refused: dict[str, str] = {}     # node id -> reason

    def record(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = skip_reason(report)
            if not is_allowed(reason, self.allowed):
                self.refused[report.nodeid or str(report.fspath)] = reason

    def pytest_runtest_logreport(self, report):
        self.record(report)

    def pytest_collectreport(self, report):
        self.record(report)

    def pytest_sessionfinish(self, session):
        if self.refused and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if not self.refused:
            return
        tr = terminalreporter
        tr.section("skips not on the allow-list (tests/allowed_skips.txt)", red=True)
        for nodeid, reason in sorted(self.refused.items()):
            tr.line(f"{nodeid}: {reason}", red=True)
        tr.line(f"{len(self.refused)} disallowed skip(s) fail this session: {HINT}", red=True)


def pytest_addoption(parser):
    parser.addoption("--allow-skips", action="store_true",
                     help="do not fail the session on skips outside tests/allowed_skips.txt")


def pytest_configure(config):
    is_xdist_worker = hasattr(config, "workerinput")
    if not config.getoption("--allow-skips") and not is_xdist_worker:
        config.pluginmanager.register(SkipGuard(allowed_skip_reasons()), "synfab-skip-guard")


_sim_devices: dict = {}


@pytest.fixture(scope="session")
def device_for():
    """device_for(cfg): the session's one Verilated SimDevice of cfg (each fabric is built once
    per session and shared by the co-simulation tests)."""
    from synfab.runtime.sim import SimDevice

    def get(cfg):
        if cfg not in _sim_devices:
            _sim_devices[cfg] = SimDevice(cfg)
        return _sim_devices[cfg]
    yield get
    for dev in _sim_devices.values():
        dev.close()
    _sim_devices.clear()
