"""The integer arithmetic of a neuron, defined once.

The dense reference, the event-driven model and (in hardware) the evaluation unit all
compute exactly this.  Accumulators wrap in two's complement, so the order in which
synaptic contributions arrive never changes the result.

A layer's neurons follow one of four models (`Neuron.model`, DESIGN.md "Neuron models"):

- ``sigma_delta`` (the default): the accumulator holds bias + every weighted input change,
  its activation is requantized and the neuron sends the change of its activation.  With
  Lava's fixed-point SigmaDelta options: a per-layer threshold `theta`, a message shift
  (the event carries change >> msg_shift while the neuron keeps the full change), open
  activation bounds (ReLU without an upper clamp, or no clamp: Lava's Delta input encoder
  and Sigma output).
- ``if``: integrate and fire; v += input + bias every step, spike when v >= theta (or > theta),
  reset by subtraction or to v_reset, optional lower bound, optional multi-spike.
- ``cuba_lif``: Loihi's current-based LIF in fixed point, exactly as Lava's bit-accurate CPU
  model (lava.proc.lif.models.PyLifModelBitAcc) computes it.
- ``lif``: cuba_lif without the current state (the synaptic input is the current).

`step` advances the neurons of one layer by one time step, given their state words after the
step's synaptic input was added to `acc`; `live` says which neurons change without input (and
so are evaluated in a frame no synapse touched them).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

MODELS = ("sigma_delta", "if", "cuba_lif", "lif")
# Per-neuron words of each model (state and per-neuron constants), in memory order.
# acc: synaptic input accumulator (sigma_delta: bias + inputs; if: the membrane v itself;
# lif models: this step's input, cleared when evaluated); sent: last activation sent;
# u, v: Loihi current and voltage; ref: refractory steps left; bias: added every step.
MODEL_WORDS = {
    "sigma_delta": ("acc", "sent"),
    "if": ("acc", "bias"),
    "cuba_lif": ("acc", "u", "v", "ref", "bias"),
    "lif": ("acc", "v", "ref", "bias"),
}
STATE_WORDS = ("acc", "sent", "u", "v", "ref", "bias")

# Loihi fixed point (Lava's AbstractPyLifModelFixed): 24-bit u and v, 12-bit decays, synaptic
# input and threshold MSB-aligned by 6 bits.
LOIHI_STATE_BITS = 24
LOIHI_DECAY_BITS = 12
LOIHI_DECAY_UNITY = 1 << LOIHI_DECAY_BITS
LOIHI_ACT_SHIFT = 6
LOIHI_VTH_SHIFT = 6
# vThMant is an unsigned 17-bit field; Lava's netx gives a dense layer without a neuron
# vThMant 1 << 17 (an integrator that never fires: v <= 2**23 - 1 < 2**17 << 6), so that too.
LOIHI_VTH_MAX = 1 << 17
REFRACTORY_BITS = 6                  # refractory steps 0..63
MSG_SHIFT_MAX = 31


def wrap(x, bits: int):
    """Two's-complement wrap of integers (scalar or int64 array) to `bits` bits."""
    x = np.asarray(x, dtype=np.int64)
    m = np.int64(1) << np.int64(bits)
    h = np.int64(1) << np.int64(bits - 1)
    return ((x + h) & (m - 1)) - h


def synapse(w, d, wshift: int = 0):
    """What one synapse adds to its neuron's accumulator (before the wrap at acc_bits): the weight
    times the event value, times 2**wshift, the connection's weight shift (weights beyond int8
    that are multiples of 2**wshift, stored as w = weight >> wshift).  The neuron unit computes
    exactly this: the product w * d, then the left shift, kept modulo 2**acc_bits."""
    return (np.asarray(w, dtype=np.int64) * np.asarray(d, dtype=np.int64)) << np.int64(wshift)


def requantize(acc, mult: int, shift: int, lo: int | None, hi: int | None):
    """Activation of a neuron from its (wrapped) accumulator.

    a = clamp((acc * mult + round) >> shift, lo, hi), round = 2**(shift-1) (0 if shift == 0),
    with an arithmetic (flooring) shift.  ReLU is lo = 0; a bound of None does not clamp.
    """
    acc = np.asarray(acc, dtype=np.int64)
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    y = (acc * np.int64(mult) + np.int64(rnd)) >> np.int64(shift)
    if lo is not None:
        y = np.maximum(y, lo)
    if hi is not None:
        y = np.minimum(y, hi)
    return y


def fires(a, sent, threshold: int):
    """Sigma-delta output rule: send a - sent when it is non-zero and |a - sent| >= threshold."""
    d = np.asarray(a, dtype=np.int64) - np.asarray(sent, dtype=np.int64)
    return (d != 0) & (np.abs(d) >= threshold)


# ---------------------------------------------------------------------------------------
# Loihi fixed point, as Lava's PyLifModelBitAcc computes it
def loihi_decay(x, decay: int):
    """x * (4096 - decay) / 4096 rounded toward zero (Lava: sign(p) * (|p| >> 12))."""
    p = np.asarray(x, dtype=np.int64) * np.int64(LOIHI_DECAY_UNITY - decay)
    return np.sign(p) * (np.abs(p) >> LOIHI_DECAY_BITS)


def loihi_wrap_current(x):
    """Loihi's 24-bit current: x modulo 2**24, kept in (-2**23, 2**23].

    Within (-3 * 2**23, 3 * 2**23] this is Lava's one fold (it subtracts 2**24 above 2**23 and
    adds it at or below -2**23), so it differs from a two's-complement wrap only at exactly -2**23,
    which stands for +2**23. Lava's CPU model folds once and leaves a larger sum (one step's input
    beyond about 2**17) outside 24 bits; the state of Loihi's width wraps, and so does the gateware."""
    x = np.asarray(x, dtype=np.int64)
    m = np.int64(1) << np.int64(LOIHI_STATE_BITS - 1)
    return np.mod(x + (m - 1), 2 * m) - (m - 1)


def loihi_clip_voltage(x):
    """Lava clips the voltage (it does not wrap) to +-(2**23 - 1)."""
    m = (1 << (LOIHI_STATE_BITS - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), -m, m)


# ---------------------------------------------------------------------------------------
class NeuronError(ValueError):
    """Neuron parameters outside what the model defines."""


@dataclass(frozen=True)
class Neuron:
    """The neuron model of a layer and its parameters (the requantization mult/shift/lo/hi of
    sigma_delta and the bias live on the layer).  Fields a model does not use keep defaults.

    theta: sigma_delta: a change is sent only when |change| >= theta (and >= the runtime
        threshold); if: the threshold of v; cuba_lif/lif: Loihi's vThMant, the neuron fires
        when v > theta << 6.
    msg_shift: sigma_delta: the event carries change >> msg_shift (arithmetic shift); the
        neuron records the full change as sent (Lava's SigmaDelta: s_out >> state_exp).
    fire_gt: if: fire when v > theta instead of v >= theta.
    reset_to: if: None resets by subtracting theta per spike, an integer sets v to it.
    v_min: if: lower bound of v after the reset (None: unbounded).
    multi_spike: if: the event value is the number of spikes, n = floor(v / theta) (v > theta:
        floor((v - 1) / theta)); otherwise 1.
    du, dv: cuba_lif/lif: Loihi decay constants 0..4096 (Lava's du + 1 and dv): the current
        decays as u * (4096 - du) >> 12, the voltage as v * (4096 - dv) >> 12.
    refractory: cuba_lif/lif: steps after a spike during which v stays 0 and cannot fire.
    """
    model: str = "sigma_delta"
    theta: int = 0
    msg_shift: int = 0
    fire_gt: bool = False
    reset_to: int | None = None
    v_min: int | None = None
    multi_spike: bool = False
    du: int = LOIHI_DECAY_UNITY
    dv: int = 0
    refractory: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise NeuronError(f"unknown neuron model {self.model!r}; known: {', '.join(MODELS)}")
        for name in ("theta", "msg_shift", "du", "dv", "refractory"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise NeuronError(f"neuron {name} must be an integer >= 0, got {v!r}")
        if self.msg_shift > MSG_SHIFT_MAX:
            raise NeuronError(f"neuron msg_shift {self.msg_shift} exceeds {MSG_SHIFT_MAX}")
        if self.model == "if" and self.theta < 1:
            raise NeuronError("an if neuron needs theta >= 1 (its threshold)")
        if self.model in ("cuba_lif", "lif"):
            if self.theta > LOIHI_VTH_MAX:
                raise NeuronError(f"vThMant (theta) {self.theta} exceeds {LOIHI_VTH_MAX} (Loihi's 17 bits, or "
                                  f"netx's never-firing 2**17)")
            if self.du > LOIHI_DECAY_UNITY or self.dv > LOIHI_DECAY_UNITY:
                raise NeuronError(f"decays du={self.du}, dv={self.dv} must be in 0..{LOIHI_DECAY_UNITY}")
            if self.refractory >= 1 << REFRACTORY_BITS:
                raise NeuronError(f"refractory {self.refractory} exceeds {(1 << REFRACTORY_BITS) - 1} steps")
        unused = [f.name for f in fields(self) if f.name not in _USES[self.model] + ("model",)
                  and getattr(self, f.name) != f.default]
        if unused:
            raise NeuronError(f"{self.model} neurons do not use {', '.join(unused)}")

    @property
    def words(self) -> tuple[str, ...]:
        return MODEL_WORDS[self.model]

    @property
    def is_default(self) -> bool:
        """Today's sigma-delta neuron (what every fabric runs)."""
        return self == Neuron()

    def to_dict(self) -> dict:
        """The non-default fields (and the model): what network files store."""
        d = {"model": self.model}
        d.update({f.name: getattr(self, f.name) for f in fields(self)
                  if f.name != "model" and getattr(self, f.name) != f.default})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Neuron":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise NeuronError(f"unknown neuron field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def with_(self, **kw) -> "Neuron":
        return replace(self, **kw)


_USES = {
    "sigma_delta": ("theta", "msg_shift"),
    "if": ("theta", "fire_gt", "reset_to", "v_min", "multi_spike"),
    "cuba_lif": ("theta", "du", "dv", "refractory"),
    "lif": ("theta", "dv", "refractory"),
}


# ---------------------------------------------------------------------------------------
# One time step of a layer's neurons
@dataclass(frozen=True)
class Activation:
    """The requantization of a sigma_delta layer (QLayer mult, shift, lo, hi)."""
    mult: int = 1
    shift: int = 0
    lo: int | None = 0
    hi: int | None = 255


def step(neuron: Neuron, state: dict, acc_bits: int, act: Activation = Activation(),
         threshold: int = 0) -> tuple[dict, np.ndarray]:
    """One time step of neurons whose step input has been added to state['acc'] (wrapped).

    state: the model's words (MODEL_WORDS) as int64 arrays of equal length.  Returns the new
    state and the event value of every neuron (0: no event).  `threshold` is the runtime
    sigma-delta threshold (the fabric's register); the layer's own theta applies beside it.
    """
    return _STEP[neuron.model](neuron, {k: np.asarray(state[k], dtype=np.int64) for k in neuron.words},
                               acc_bits, act, threshold)


def _sigma_delta(n: Neuron, s: dict, acc_bits: int, act: Activation, threshold: int):
    a = requantize(s["acc"], act.mult, act.shift, act.lo, act.hi)
    fire = fires(a, s["sent"], max(threshold, n.theta))
    d = a - s["sent"]
    sent = np.where(fire, a, s["sent"])
    return {"acc": s["acc"], "sent": sent}, np.where(fire, d >> np.int64(n.msg_shift), 0)


def if_fires(n: Neuron, v):
    v = np.asarray(v, dtype=np.int64)
    return v > n.theta if n.fire_gt else v >= n.theta


def _if(n: Neuron, s: dict, acc_bits: int, act: Activation, threshold: int):
    v = wrap(s["acc"] + s["bias"], acc_bits)
    fire = if_fires(n, v)
    if n.multi_spike:
        count = np.where(fire, (v - (1 if n.fire_gt else 0)) // n.theta, 0)
    else:
        count = fire.astype(np.int64)
    if n.reset_to is None:
        v = v - count * n.theta
    else:
        v = np.where(fire, n.reset_to, v)
    if n.v_min is not None:
        v = np.maximum(v, n.v_min)
    return {"acc": wrap(v, acc_bits), "bias": s["bias"]}, count


def _lif(n: Neuron, s: dict, acc_bits: int, act: Activation, threshold: int):
    """cuba_lif and lif (lif: the current is this step's input alone)."""
    synaptic = s["acc"] << np.int64(LOIHI_ACT_SHIFT)
    if n.model == "cuba_lif":
        u = loihi_wrap_current(loihi_decay(s["u"], n.du) + synaptic)
    else:
        u = loihi_wrap_current(synaptic)
    held = s["ref"] > 0
    v = np.where(held, s["v"], loihi_clip_voltage(loihi_decay(s["v"], n.dv) + u + s["bias"]))
    fire = ~held & (v > (np.int64(n.theta) << np.int64(LOIHI_VTH_SHIFT)))
    out = {"acc": np.zeros_like(s["acc"]), "v": np.where(fire, 0, v),
           "ref": np.where(held, s["ref"] - 1, np.where(fire, n.refractory, 0)), "bias": s["bias"]}
    if n.model == "cuba_lif":
        out["u"] = u
    return out, fire.astype(np.int64)


_STEP = {"sigma_delta": _sigma_delta, "if": _if, "cuba_lif": _lif, "lif": _lif}


def live(neuron: Neuron, state: dict) -> np.ndarray:
    """Neurons whose next step changes something without any synaptic input: they are
    evaluated every frame (the rest only when a synapse touched them).

    sigma_delta: none (its step is a function of acc and sent alone: repeating it changes
    nothing).  if: a non-zero bias, or v still at the threshold (it fires again).
    cuba_lif / lif: any non-zero state word (decay, refractory countdown) or a non-zero bias."""
    s = {k: np.asarray(state[k], dtype=np.int64) for k in neuron.words}
    if neuron.model == "sigma_delta":
        return np.zeros(len(s["acc"]), dtype=bool)
    if neuron.model == "if":        # with bias 0 the next step's v is acc itself
        return (s["bias"] != 0) | if_fires(neuron, s["acc"])
    out = (s["v"] != 0) | (s["ref"] != 0) | (s["bias"] != 0)
    if neuron.model == "cuba_lif":
        out |= s["u"] != 0
    return out


def clear_state(neuron: Neuron, state: dict) -> dict:
    """Lava's LIFReset: u, v and the refractory count to 0 (the step's input and the bias stay)."""
    s = dict(state)
    for k in ("u", "v", "ref"):
        if k in neuron.words:
            s[k] = np.zeros_like(np.asarray(s[k], dtype=np.int64))
    return s


def initial_state(neuron: Neuron, bias, n: int, acc_bits: int) -> dict:
    """State words of n neurons of one channel-bias vector broadcast (bias: scalar or (n,))."""
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64), (n,)).copy()
    zeros = np.zeros(n, dtype=np.int64)
    s = {k: zeros.copy() for k in neuron.words}
    if neuron.model == "sigma_delta":
        s["acc"] = wrap(bias, acc_bits)      # the bias is the initial accumulator
    else:
        s["bias"] = bias                      # added every step
    return s


def event_bound(neuron: Neuron, act: Activation, acc_bits: int) -> int:
    """The largest |event value| the layer can send (for the event-width checks)."""
    if neuron.model == "sigma_delta":
        top = (1 << (acc_bits - 1))
        lo = -top * max(1, act.mult) >> act.shift if act.lo is None else act.lo
        hi = (top * max(1, act.mult)) >> act.shift if act.hi is None else act.hi
        span = max(0, hi - lo)
        return -((-span) >> neuron.msg_shift)      # a negative change shifts toward -infinity
    if neuron.model == "if" and neuron.multi_spike:
        return ((1 << (acc_bits - 1)) - 1) // neuron.theta + 1
    return 1
