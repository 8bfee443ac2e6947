"""Measured place-and-route results of fabrics whose bitstreams are not committed.

`synfab build --record bitstreams/placements.json` keeps what nextpnr reported for one build (Fmax,
utilization, the critical path, the seed and clock asked, the source revision and gateware source
key), without the bitstream: the board presets other than the ULX3S-85F's, and the seed spread of a
fabric, are measured here but only two bitstreams are shipped (bitstreams/manifest.json).
`synfab fit` and `synfab bench` read these records when no build of the fabric is cached or
committed; a record made from other gateware sources says so (`current_sources`).

One entry per (board, fabric config crc, clock asked, seed, Ethernet SoC): a new build of the same
replaces it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import FabricConfig

FILE_NAME = "placements.json"
# The fields that name one placement (a rebuild with all of them equal replaces the entry).
IDENTITY = ("board", "config_crc", "sys_clk_mhz", "seed", "ethernet", "link", "board_index")


def bitstreams_dir() -> Path:
    """The repository's bitstreams/ (beside host/): the committed bitstreams and their manifests,
    these placements, the committed synthesis results (synfab.caches)."""
    return Path(__file__).resolve().parents[3] / "bitstreams"


def default_path() -> Path:
    """bitstreams/placements.json of the repository."""
    return bitstreams_dir() / FILE_NAME


def load(path: Path | None = None) -> list[dict]:
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        return []
    return json.loads(path.read_text()).get("placements", [])


def record(path: Path, entry: dict) -> None:
    """Add the entry, or replace the one with the same IDENTITY; kept sorted for stable diffs."""
    path = Path(path)
    entries = [e for e in load(path) if any(e.get(k) != entry.get(k) for k in IDENTITY)]
    entries.append(entry)
    entries.sort(key=lambda e: (e["board"], e["fabric"], e["sys_clk_mhz"], e["seed"], e.get("ethernet", False)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"placements": entries}, indent=1) + "\n")


def critical_path(nextpnr_report: Path) -> dict | None:
    """The sys clock's critical path from nextpnr's --report JSON ("critical_paths": per clock pair,
    segments of type clk-to-q / source / logic / routing / setup with their delays): where it starts
    and ends, its logic and routing time, and its segments; None if the report has none."""
    path = Path(nextpnr_report)
    if not path.is_file():
        return None
    rep = json.loads(path.read_text())
    from synfab_gateware.soc.report import slowest_sys_clock
    clock = slowest_sys_clock({c: v["achieved"] for c, v in rep.get("fmax", {}).items()})
    if clock is None:
        return None
    same = [p for p in rep.get("critical_paths", []) if p["from"].endswith(clock) and p["to"].endswith(clock)]
    if not same or not same[0]["path"]:
        return None
    segs = same[0]["path"]

    def total(kind):
        return round(sum(s["delay"] for s in segs if s["type"] == kind), 2)
    return {"clock": clock, "delay_ns": round(sum(s["delay"] for s in segs), 2),
            "from": f"{segs[0]['from']['cell']}.{segs[0]['from']['port']}",
            "to": f"{segs[-1]['to']['cell']}.{segs[-1]['to']['port']}",
            "routing_ns": total("routing"), "logic_ns": round(sum(s["delay"] for s in segs) - total("routing"), 2),
            "segments": _segments(segs)}


NAME_CHARS = 80      # yosys' names of carry chains run to hundreds of characters


def _segments(segs) -> list:
    """[type, ns, net or cell] per nextpnr segment, compacted (compact_segments)."""
    return compact_segments([s["type"], s["delay"], s.get("net") or s["to"]["cell"]] for s in segs)


def compact_segments(triples) -> list:
    """[type, ns, name] triples with the zero-delay hops inside carry chains left out and runs of
    one type merged (their delays summed, the last name kept, names cut to NAME_CHARS)."""
    out = []
    for kind, delay, name in triples:
        delay = round(delay, 2)
        if delay == 0 and kind in ("routing", "logic"):
            continue
        name = name[:NAME_CHARS]
        if out and out[-1][0] == kind:
            out[-1] = [kind, round(out[-1][1] + delay, 2), name]
        else:
            out.append([kind, delay, name])
    return out


def entry(rep: dict, seed: int, ethernet: bool, revision: str, source_key: str, command: str,
          nextpnr_report: Path | None = None, link: str = "", board_index: int = 0) -> dict:
    """A record of one ECP5 build report (soc.ecp5.build_bitstream's, through hwcli.build_ecp5) and
    the critical path of nextpnr's own report beside it."""
    return {"board": rep["board"], "device": rep["device"], "fabric": rep["fabric"],
            "config_crc": rep["config_crc"], "lanes": rep["fabric_config"].get("lanes", 1),
            "sys_clk_mhz": rep["sys_clk_mhz"], "seed": seed, "ethernet": ethernet, **({"link": link} if link else {}),
            **({"board_index": board_index} if link == "eth" else {}),
            "fmax_mhz": rep["fmax_mhz"], "timing_met": rep["timing_met"], "clocks": rep.get("clocks"),
            "critical_path": critical_path(nextpnr_report) if nextpnr_report else None,
            "utilization": rep["utilization"],
            "build_seconds": rep.get("build_seconds"), "toolchain": rep["toolchain"],
            "source_revision": revision, "source_key": source_key, "command": command}


def measured(board: str, cfg: FabricConfig, path: Path | None = None, source_key: str | None = None) -> dict | None:
    """The placements of exactly this fabric on the board (UART SoC): every seed's Fmax, and the
    lowest as the figure to use (a clock every recorded placement meets). Records from the current
    gateware sources (source_key) are preferred over older ones; None if there is none."""
    crc = f"{cfg.crc():#010x}"
    found = [e for e in load(path) if e["board"] == board and e["config_crc"] == crc and not e.get("ethernet")
             and not e.get("link") and e.get("fmax_mhz")]
    if not found:
        return None
    current = [e for e in found if source_key is not None and e["source_key"] == source_key]
    use = current or found
    low = min(use, key=lambda e: e["fmax_mhz"])
    fmaxes = sorted(e["fmax_mhz"] for e in use)
    return {"fmax_mhz": low["fmax_mhz"], "sys_clk_mhz": low["sys_clk_mhz"], "timing_met": low["timing_met"],
            "runs": [{k: e[k] for k in ("seed", "sys_clk_mhz", "fmax_mhz", "source_revision")} for e in use],
            "fmax_spread_mhz": [fmaxes[0], fmaxes[-1]], "utilization": low["utilization"],
            "critical_path": low.get("critical_path"), "source_revision": low["source_revision"],
            "source_revisions": sorted({e["source_revision"] for e in use}),
            "current_sources": bool(current), "command": low["command"]}
