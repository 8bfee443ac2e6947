"""Hardware in the loop: checked runs on a physical board, when one is attached.

CI has no board, so these are the only tests allowed to skip (tests/allowed_skips.txt).  With a
board, point the test at it:

    SYNFAB_PYNQ_BITSTREAM=/path/overlay.bit [SYNFAB_PYNQ_FABRIC=small]   # on the PYNQ-Z2 itself
    SYNFAB_ECP5_PORT=/dev/ttyUSB0@1000000 [SYNFAB_ECP5_FABRIC=tiny]      # a ULX3S flashed with
                                                                          # bitstreams/ulx3s-tiny

Each runs random networks frame by frame with `check=True` (every frame compared with the golden
model: outputs, spikes per layer, counters, neuron states) and against the dense reference.
"""
import os

import numpy as np
import pytest

from synfab import api, randnet
from synfab.model import reference
from synfab.config import FabricConfig

PYNQ_BITSTREAM, PYNQ_FABRIC = "SYNFAB_PYNQ_BITSTREAM", "SYNFAB_PYNQ_FABRIC"
ECP5_PORT, ECP5_FABRIC = "SYNFAB_ECP5_PORT", "SYNFAB_ECP5_FABRIC"
SEEDS = (3, 4)
FRAMES = 4


def board_setting(name: str, board: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"no physical {board} board: set {name} to run this test on one")
    return value


def check_random_networks(backend: str, cfg: FabricConfig, device_args: dict) -> None:
    for seed in SEEDS:
        qnet = randnet.random_qnetwork(seed, cfg)
        rng = np.random.default_rng(seed)
        frames, prev = [], None
        for _ in range(FRAMES):
            prev = randnet.random_input(qnet, rng, prev, change=0.4)
            frames.append(prev)
        out = api.run_frames(api.compile_qnetwork(qnet, cfg), frames, backend=backend, check=True,
                             device_args=device_args)
        for frame, got in zip(frames, out["result"].outputs):
            assert np.array_equal(got, reference.run(qnet, frame)[qnet.output])


def test_random_networks_on_a_physical_pynq_board():
    bitstream = board_setting(PYNQ_BITSTREAM, "PYNQ-Z2")
    cfg = FabricConfig.load(os.environ.get(PYNQ_FABRIC, "small"))
    check_random_networks("pynq", cfg, {"bitstream": bitstream})


def test_random_networks_on_a_physical_ecp5_board():
    port = board_setting(ECP5_PORT, "ECP5")
    cfg = FabricConfig.load(os.environ.get(ECP5_FABRIC, "tiny"))     # tiny: the committed ULX3S bitstream
    check_random_networks("litex", cfg, {"port": port})
