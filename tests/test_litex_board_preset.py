"""The shipped networks on the ULX3S-85F board preset, in the LiteX simulation of that board's SoC
(the SoC its bitstream is built from: fabric + stream bridge + UARTBone), every frame checked
against the golden model (--check) and the outputs against the dense integer reference.

The sim build (about a minute with a warm ccache, a few cold) is cached per source state in
~/.cache/synfab/litex-sim; it needs Verilator and the libevent/json-c headers (setup.sh).
"""
import json
import time

import numpy as np
import pytest

pytest.importorskip("migen")
pytest.importorskip("litex")

from envtools import litex_sim_marks, running_litex_sim  # noqa: E402
from synfab import api, demo
from synfab.model import reference  # noqa: E402
from synfab.cli import main  # noqa: E402
from synfab.config import PRESETS  # noqa: E402
from synfab.frontend.quant import quantize_input  # noqa: E402

CFG = PRESETS["ulx3s-85f"]
pytestmark = litex_sim_marks()


@pytest.fixture(scope="module")
def board_sim():
    yield from running_litex_sim(CFG)


def digits(qnet, n):
    images, labels = demo.load_demo_digits(n)
    return np.stack([quantize_input(qnet, im.astype(np.float32) / 255.0) for im in images]), labels


@pytest.mark.parametrize("network, frames", [("demo", 4), ("lenet", 2)])
def test_shipped_network_is_bit_exact_on_the_board_soc(board_sim, network, frames):
    qnet = demo.qnetwork(network)
    tables = api.compile_qnetwork(qnet, CFG)
    x, _ = digits(qnet, frames)
    start = time.perf_counter()
    out = api.run_frames(tables, x, backend="litex", check=True, device_args={"port": board_sim.port})
    print(f"{network}: loaded and {frames} frames checked on the LiteX sim of {CFG.name} in "
          f"{time.perf_counter() - start:.1f} s")
    res = out["result"]
    assert res.checked and res.frames == frames
    assert res.cycles is not None and res.cycles > 0        # every frame fitted the bridge FIFOs
    for t, (frame, got) in enumerate(zip(x, res.outputs)):
        np.testing.assert_array_equal(got, reference.run(qnet, frame)[qnet.output], err_msg=f"frame {t}")
    assert np.all(np.asarray(res.layer_spikes) > 0)          # every layer took part
    # Every core of the preset holds part of the network.
    assert all(c["populations"] for c in api.bundle_summary(tables)["cores"])


def test_synfab_demo_on_the_board_soc(board_sim, capsys):
    """`synfab demo --fabric ulx3s-85f --backend litex --check` prints what the dense reference predicts."""
    frames = 3
    rc = main(["demo", "--network", "demo", "--fabric", CFG.name, "--backend", "litex", "--port", board_sim.port,
               "--check", "--frames", str(frames), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    qnet = demo.qnetwork("demo")
    x, labels = digits(qnet, frames)
    want = [int(np.argmax(r.reshape(r.shape[0], -1).sum(axis=1)))
            for r in (reference.run(qnet, xi)[qnet.output] for xi in x)]
    assert out["fabric"] == CFG.name and out["backend"] == "litex" and out["network"] == "demo"
    assert out["match"] is True and out["checked_against_model"] is True and out["frames"] == frames
    assert out["predictions"] == want and out["labels"] == labels.tolist()
    assert out["cycles"] > 0
