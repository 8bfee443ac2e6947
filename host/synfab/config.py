"""Fabric configuration: the hardware parameters every other part is sized from.

One dataclass, saved inside every compiled bundle and read by the gateware generator,
so host tables and gateware can never disagree about a size.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

from .errors import SynfabError
from dataclasses import dataclass, field


class ConfigError(SynfabError, ValueError):
    """A fabric configuration that cannot be built."""


# The lane counts a fabric may have (FabricConfig.lanes).
LANES = (1, 2, 4, 8)


def _bits(n: int) -> int:
    """Bits to address n items (at least 1)."""
    return max(1, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class FabricConfig:
    # Mesh of neuron cores; core id = y * mesh_x + x.
    mesh_x: int = 2
    mesh_y: int = 2
    neurons_per_core: int = 4096
    weight_words_per_core: int = 16384
    peg_entries_per_core: int = 64
    esu_descriptors_per_core: int = 64
    # Populations (layer parts) a core can hold; each has one evaluation descriptor.
    populations_per_core: int = 16
    # PEG entries of the fabric's input port (fan-out of host events).
    input_peg_entries: int = 64
    weight_bits: int = 8
    event_bits: int = 16          # signed event value d
    acc_bits: int = 24            # signed, wrapping accumulator
    coord_bits: int = 8           # x, y of any layer: up to 256
    chan_bits: int = 12           # channels of any layer: up to 4096
    kernel_bits: int = 4          # kernel size up to 15
    mult_bits: int = 16           # requantization multiplier (unsigned)
    shift_bits: int = 5           # requantization shift (0..31)
    event_fifo_depth: int = 16
    name: str = "default"
    # The neuron models the gateware carries, comma-separated (arith.MODELS; sigma_delta always):
    # each model beyond sigma_delta adds its per-neuron words (u, v, ref, bias in block RAM) and
    # its arithmetic to every core. "all" carries every model. The golden model runs every model
    # on any fabric; a hardware backend refuses tables whose models its fabric does not carry.
    neuron_models: str = "sigma_delta"
    # Synaptic lanes per core (issue 11): the ESU emits up to `lanes` (neuron, weight) pairs per
    # clock (consecutive output channels of a conv or dense connection), the neuron memory is
    # banked `lanes` ways so the pairs' read-modify-writes never meet. 1, 2, 4 or 8; a fabric of
    # one lane (every fabric before the field existed) leaves it out of its JSON and crc.
    lanes: int = 1

    def __post_init__(self):
        checks = [
            (self.mesh_x >= 1 and self.mesh_y >= 1, "mesh_x and mesh_y must be >= 1"),
            (self.n_cores <= 1 << 16, "at most 65536 cores"),
            (self.neurons_per_core >= 1, "neurons_per_core must be >= 1"),
            (self.weight_words_per_core >= 4 and self.weight_words_per_core % 4 == 0,
             "weight_words_per_core must be a positive multiple of 4"),
            (self.peg_entries_per_core >= 1, "peg_entries_per_core must be >= 1"),
            (self.esu_descriptors_per_core >= 1, "esu_descriptors_per_core must be >= 1"),
            (self.populations_per_core >= 1, "populations_per_core must be >= 1"),
            (self.input_peg_entries >= 1, "input_peg_entries must be >= 1"),
            (self.weight_bits == 8, "weight_bits must be 8 (int8 weights)"),
            (9 <= self.event_bits <= 24, "event_bits must be in 9..24"),
            (16 <= self.acc_bits <= 32, "acc_bits must be in 16..32"),
            (4 <= self.coord_bits <= 12, "coord_bits must be in 4..12"),
            (4 <= self.chan_bits <= 16, "chan_bits must be in 4..16"),
            (self.lanes in LANES, f"lanes must be one of {', '.join(map(str, LANES))}, got {self.lanes!r}"),
            (self.lanes not in LANES or self.lanes == 1 or (self.neurons_per_core % self.lanes == 0 and self.weight_words_per_core % 16 == 0),
             f"with lanes {self.lanes}, neurons_per_core must be a multiple of lanes (the neuron banks) and "
             f"weight_words_per_core a multiple of 16 (the weight banks)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"fabric config: {msg}")
        self.models  # checks neuron_models

    @property
    def models(self) -> tuple[str, ...]:
        """neuron_models as a tuple in arith.MODELS order (sigma_delta, always carried, first)."""
        from .arith import MODELS
        text = str(self.neuron_models).strip()
        names = MODELS if text == "all" else tuple(m.strip() for m in text.split(","))
        unknown = [m for m in names if m not in MODELS]
        if unknown:
            raise ConfigError(f"fabric config: neuron_models {self.neuron_models!r} names unknown model(s) "
                              f"{', '.join(unknown)}; use a comma-separated list of {', '.join(MODELS)}, or 'all'")
        return tuple(m for m in MODELS if m in names or m == "sigma_delta")

    # Derived sizes (never stored: always computed from the fields above).
    @property
    def n_cores(self) -> int:
        return self.mesh_x * self.mesh_y

    @property
    def core_bits(self) -> int:
        return _bits(self.n_cores)

    @property
    def neuron_addr_bits(self) -> int:
        return _bits(self.neurons_per_core)

    @property
    def weight_addr_bits(self) -> int:
        return _bits(self.weight_words_per_core)

    @property
    def peg_addr_bits(self) -> int:
        return _bits(max(self.peg_entries_per_core, self.input_peg_entries))

    @property
    def esu_addr_bits(self) -> int:
        return _bits(self.esu_descriptors_per_core)

    @property
    def pop_addr_bits(self) -> int:
        return _bits(self.populations_per_core)

    def neuron_state_bits(self, model: str = "sigma_delta", extended: bool = False) -> int:
        """Bits per neuron a core keeps for a neuron model (derived, never a field: the fields
        are what bundles and the gateware ID record).  sigma_delta: acc_bits + event_bits (its
        Lava options widen sent to acc_bits + 1: extended=True); if: acc (its v) + bias;
        cuba_lif: acc (step input) + Loihi's 24-bit u and v + 6-bit refractory count + bias;
        lif: cuba_lif without u.  Widths: layouts.state_word_bits."""
        from .layouts import EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, model_state_bits
        return model_state_bits(self, model, EXTENDED_LAYOUT_VERSION if extended else LAYOUT_VERSION)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # A sigma-delta-only fabric (every fabric before the field existed) leaves the field out,
        # so its JSON, its crc and the bundles compiled for it stay as they were.
        if self.models == ("sigma_delta",):
            del d["neuron_models"]
        else:
            d["neuron_models"] = ",".join(self.models)
        # Likewise one lane: the JSON, crc and bundles of every single-lane fabric stay as they were.
        if self.lanes == 1:
            del d["lanes"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def crc(self) -> int:
        """Identity of this configuration (stored in bundles and in the gateware ID register)."""
        return zlib.crc32(self.to_json().encode()) & 0xFFFFFFFF

    @classmethod
    def from_dict(cls, d: dict) -> "FabricConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict):
            raise ConfigError(f"fabric config must be a JSON object of fields, not {type(d).__name__}; "
                              f"known fields: {sorted(known)}")
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"fabric config: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        # Field types are checked here: a string for a size would fail deep inside with a TypeError.
        for f in dataclasses.fields(cls):
            want = {"int": int, "str": str}[f.type]
            if f.name in d and (not isinstance(d[f.name], want) or isinstance(d[f.name], bool)):
                raise ConfigError(f"fabric config: {f.name} must be {'an integer' if want is int else 'a string'}, "
                                  f"got {d[f.name]!r}")
        return cls(**d)

    @classmethod
    def load(cls, path) -> "FabricConfig":
        """Load a JSON file; a name of a preset ('default', 'small', 'tiny', a board's) also works."""
        if str(path) in PRESETS:
            return PRESETS[str(path)]
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"fabric config file {path} not found (or use a preset: {', '.join(PRESETS)})")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            # RecursionError: json's parser recurses once per nesting level of [ and {.
            raise ConfigError(f"fabric config file {path} is not valid JSON: {str(e).splitlines()[0]}") from None
        return cls.from_dict(doc)

    def with_(self, **kw) -> "FabricConfig":
        return dataclasses.replace(self, **kw)


BOARD_PRESETS = Path(__file__).resolve().parent / "data" / "boards"


def board_presets() -> dict:
    """The committed per-board presets (data/boards/NAME.json, written by `synfab fit --write-preset`):
    the largest fabric that fits each board (synfab.boards)."""
    return {path.stem: FabricConfig.from_dict(json.loads(path.read_text()))
            for path in sorted(BOARD_PRESETS.glob("*.json"))}


PRESETS = {
    "default": FabricConfig(),
    # Small enough for a quick FPGA build in CI.
    "small": FabricConfig(mesh_x=2, mesh_y=1, neurons_per_core=1024, weight_words_per_core=4096,
                          peg_entries_per_core=32, esu_descriptors_per_core=32,
                          populations_per_core=8, input_peg_entries=32, name="small"),
    "tiny": FabricConfig(mesh_x=1, mesh_y=1, neurons_per_core=512, weight_words_per_core=1024,
                         peg_entries_per_core=16, esu_descriptors_per_core=16,
                         populations_per_core=4, input_peg_entries=16, name="tiny"),
    # Every neuron model (if, cuba_lif, lif beside sigma_delta) in 2x2 cores of Loihi's widths
    # (24-bit events and state): lava-dl netx and NIR spiking networks on the gateware.
    "loihi": FabricConfig(neurons_per_core=4096, weight_words_per_core=16384, peg_entries_per_core=256,
                          input_peg_entries=256, event_bits=24, neuron_models="all", name="loihi"),
}
PRESETS.update(board_presets())
