"""Backend `sim`: the Verilator simulation of the generated fabric (cycle-accurate)."""
from __future__ import annotations

import numpy as np

from .device import DeviceError, RegisterDevice

# Upper bound on the clock cycles one frame may take before the simulation is declared stuck.
MAX_FRAME_CYCLES = 200_000_000


class SimDevice(RegisterDevice):
    name = "sim"

    def __init__(self, cfg, gaps: tuple[float, float] | None = None, seed: int = 0, quiet: bool = True):
        super().__init__(cfg)
        try:
            from synfab_gateware.sim.fabric_sim import SimFabric
        except ImportError as e:
            raise DeviceError(f"the sim backend needs the gateware extras ({e.name} missing): "
                              f"pip install -e '.[gateware]'") from None
        self.sim = SimFabric(cfg, quiet=quiet)
        if gaps:
            self.sim.set_gaps(gaps[0], gaps[1], seed)

    def _write(self, addrs, values) -> None:
        self.sim.write_block(np.asarray(addrs), np.asarray(values, dtype=np.uint32))

    def _read(self, addrs) -> np.ndarray:
        return np.asarray(self.sim.read_block(np.asarray(addrs)), dtype=np.int64)

    def _exchange(self, words, lasts):
        self.sim.push(words, lasts)
        cycles = self.sim.run_frames(1, MAX_FRAME_CYCLES)
        out, out_lasts = self.sim.pull()
        return out, out_lasts, cycles

    def close(self) -> None:
        self.sim.close()
