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


def running_litex_sim(cfg, ethernet: bool = False):
    """Generator for a module-scoped fixture: the LiteX sim SoC of cfg (UART, or the Ethernet SoC),
    built or taken from its cache, running until the module is done."""
    from synfab_gateware.soc.sim import LitexSim
    with LitexSim(cfg, ethernet=ethernet) as sim:
        yield sim


def check_random_network(cfg, port: str, seed: int, threshold: int, frames: int = 3) -> None:
    """A compiled random network streamed through the litex backend at `port` with --check: every
    frame's outputs, spikes and counters equal the golden model's, and at threshold 0 the outputs
    equal the dense integer reference's (which knows nothing of events)."""
    import numpy as np
    from synfab import api, randnet
    from synfab.model import reference
    qnet = randnet.random_qnetwork(seed, cfg)
    tables = api.compile_qnetwork(qnet, cfg)
    inputs = randnet.random_frames(qnet, np.random.default_rng(seed), frames)
    res = api.run_frames(tables, inputs, backend="litex", threshold=threshold, check=True,
                         device_args={"port": port})["result"]
    assert res.checked and res.frames == frames
    assert res.cycles is not None and res.cycles > 0      # every frame fitted the bridge FIFOs
    if threshold == 0:
        for frame, got in zip(inputs, res.outputs):
            assert np.array_equal(got, reference.run(qnet, frame)[qnet.output])
