"""Backend `model`: the golden model behind the Device interface."""
from __future__ import annotations


from ..model.golden import Model
from .device import Device, DeviceError, FrameOutput, stream_columns


class ModelDevice(Device):
    name = "model"

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = None

    def load(self, tables) -> None:
        if tables.cfg != self.cfg:
            raise DeviceError(f"model: bundle was compiled for fabric {tables.cfg.name!r} but the device is "
                              f"{self.cfg.name!r}; recompile with --fabric matching the device")
        self.model = Model(tables, threshold=self.threshold)
        self.tables = tables

    def reset(self) -> None:
        self._need_tables()
        self.model.reset()

    def set_threshold(self, threshold: int) -> None:
        if not 0 <= threshold < (1 << (self.cfg.event_bits - 1)):
            raise DeviceError(f"threshold {threshold} out of range 0..{(1 << (self.cfg.event_bits - 1)) - 1}")
        self.threshold = int(threshold)
        if self.model is not None:
            self.model.threshold = self.threshold

    def run_frame(self, events: dict) -> FrameOutput:
        self._need_tables()
        cols = stream_columns(events, self.cfg.event_bits)
        r = self.model.run_frame(cols)
        cores = [{k: int(r.counters[k][c]) for k in r.counters} for c in range(self.cfg.n_cores)]
        # As the fabric counts: every event beat received, in range or not.
        counters = {"frames": 1, "events_in": len(cols["x"]),
                    "events_out": len(r.events), "input_dropped": r.input_dropped, "cores": cores}
        return FrameOutput(events=r.events, layer_spikes=r.layer_spikes, counters=counters,
                           evaluations=r.evaluations, input_packets=r.input_packets)

    def read_state(self) -> list[dict]:
        """Per core every per-neuron word over the neurons in use (acc, sent; v2: u, v, ref, bias)."""
        self._need_tables()
        n = [ct.neurons_used for ct in self.tables.cores]
        return [{k: v[:n[c]] for k, v in self.model.words(c).items()} for c in range(self.cfg.n_cores)]
