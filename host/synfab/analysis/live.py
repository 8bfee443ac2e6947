"""What time steps cost: a leaky neuron changes without input, so a neuron with non-zero state
(arith.live) is evaluated at every step even when no synapse touched it. The gateware keeps that
proportional to the live neurons: an evaluated neuron that stays live marks itself dirty again
through the evaluation unit's write-back queue, and clean neurons are skipped 32 at a time.

`live_network(model, neurons, live)` is a one-layer network whose first `live` neurons have a
bias (so they stay live forever) and whose input never sends anything; `frame_costs` runs empty
frames of it on a device and returns the cycles each frame took (the fabric's `cycles` counter),
beside the golden model's spikes so that a cost is only reported for a bit-exact run.
"""
from __future__ import annotations

import numpy as np

from ..arith import Neuron
from ..compiler import compile_network
from ..compiler.mapper import map_network
from ..frontend.ir import QConnection, QLayer, QNetwork
from ..layouts import Kind
from ..model.golden import Model

# Neuron parameters of the live layer: a threshold the bias reaches every few steps, so the
# layer spikes (and resets) as well as integrates.
LIVE_NEURONS = {
    "if": Neuron("if", theta=100),
    "lif": Neuron("lif", theta=2, dv=512, refractory=1),
    "cuba_lif": Neuron("cuba_lif", theta=2, du=1024, dv=512, refractory=1),
}
BIAS = 40


def live_network(model: str, neurons: int, live: int) -> QNetwork:
    """input (1,1,1) -> `neurons` neurons of `model` (dense, zero weights): the first `live`
    of them have bias BIAS, the others none."""
    if model not in LIVE_NEURONS:
        raise ValueError(f"model {model!r}: use one of {', '.join(LIVE_NEURONS)}")
    if not 0 <= live <= neurons:
        raise ValueError(f"live {live} must be in 0..{neurons}")
    bias = np.zeros(neurons, np.int64)
    bias[:live] = BIAS
    layer = QLayer("live", (neurons, 1, 1), [QConnection("in", Kind.DENSE)], bias, 1, 0, 0, 255,
                   np.zeros((neurons, 1), np.int64), "dense", LIVE_NEURONS[model])
    return QNetwork(f"live_{model}_{live}", "in", (1, 1, 1), [layer], "live")


def frame_costs(device, qnet: QNetwork, cfg, frames: int) -> dict:
    """Run `frames` empty frames of qnet on `device` (loaded here) and on the golden model.
    Returns per frame the fabric's cycles and the layer's spikes, the neurons the golden model
    evaluated, and whether every frame's spikes equal the model's."""
    tables = compile_network(qnet, cfg, map_network(qnet, cfg))
    device.load(tables)
    model = Model(tables)
    empty = {k: np.zeros(0, np.int64) for k in ("x", "y", "c", "d")}
    cycles, spikes, evaluated, match = [], [], [], True
    for _ in range(frames):
        got = device.run_frame(empty)
        want = model.run_frame(empty)
        cycles.append(got.counters.get("cycles"))     # None on the model backend (no clock)
        spikes.append(int(got.layer_spikes.sum()))
        evaluated.append(int(np.sum(want.evaluations)) if getattr(want, "evaluations", None) is not None else None)
        match &= np.array_equal(got.layer_spikes, want.layer_spikes) and np.array_equal(
            got.sorted_events(), np.sort(want.events, order=["tag", "c", "y", "x", "d"]))
    return {"cycles": cycles, "spikes": spikes, "evaluated": evaluated, "match": bool(match)}
