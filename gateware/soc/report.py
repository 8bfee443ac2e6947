"""What nextpnr-ecp5 reports about a build (its --report JSON): Fmax per clock against the clock's
own constraint, utilization, critical paths.

    rep = parse_nextpnr_report(path)   # fmax_mhz (the fabric's sys clock), clocks, timing_met, ...

Only reads what a build wrote: no generated gateware depends on this module, so the source key
leaves it out (soc/toolchain.ANALYSIS_ONLY) and mending how a report is read makes no bitstream
stale. No LiteX imports: the host's analysis (synfab.analysis.placements) reads reports with it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path


def slowest_sys_clock(fmax: dict) -> str | None:
    """The clock of nextpnr's report {clock: achieved MHz} a build's Fmax is: the slowest of the
    clocks named sys (the fabric's; LiteX names them sys, sys_ps, ...), else the slowest of all."""
    sys_clocks = [c for c in fmax if "sys" in c] or list(fmax)
    return min(sys_clocks, key=lambda c: fmax[c]) if sys_clocks else None


def clock_name(net: str) -> str:
    """A clock net of nextpnr's report as a reader knows it: '$glbnet$eth_clocks0_rx$TRELLIS_IO_IN'
    -> 'eth_clocks0_rx', '$glbnet$crg_clkout' -> 'crg_clkout'."""
    name = re.sub(r"^\$glbnet\$", "", net)
    return re.sub(r"\$TRELLIS_IO_IN$", "", name)


def clocks(rep: dict) -> dict:
    """{clock: {achieved_mhz, constraint_mhz, met}} for every clock nextpnr timed: each against
    its own constraint (an Ethernet PHY's 125 MHz receive clock as much as the sys clock)."""
    out = {}
    for net, v in rep.get("fmax", {}).items():
        achieved, constraint = v["achieved"], v.get("constraint")
        out[clock_name(net)] = {"achieved_mhz": round(achieved, 2),
                                "constraint_mhz": constraint,
                                "met": constraint is None or achieved >= constraint}
    return out


def parse_nextpnr_report(path: Path) -> dict:
    """From --report JSON: fmax_mhz (the sys clock's), fmax_by_clock, clocks (each against its own
    constraint), timing_met (every clock met), failing_clocks, utilization {bel: {used, available}}."""
    rep = json.loads(Path(path).read_text())
    fmax = {name: v["achieved"] for name, v in rep.get("fmax", {}).items()}
    clock = slowest_sys_clock(fmax)
    timed = clocks(rep)
    failing = [name for name, c in timed.items() if not c["met"]]
    return {"fmax_mhz": round(fmax[clock], 2) if clock else None,
            "fmax_by_clock": fmax,
            "clocks": timed,
            "timing_met": bool(timed) and not failing,
            "failing_clocks": failing,
            "utilization": {k: {"used": v["used"], "available": v["available"]}
                            for k, v in rep.get("utilization", {}).items() if v["used"]}}


def timing_summary(rep: dict) -> str:
    """One line for a build's report: 'met', or which clocks fail and what would help."""
    if rep["timing_met"]:
        return "met"
    sys_net = slowest_sys_clock(rep["fmax_by_clock"])
    sys_name = clock_name(sys_net) if sys_net else None
    parts = []
    for name in rep["failing_clocks"]:
        c = rep["clocks"][name]
        advice = (f"rebuild with --sys-clk-mhz {int(c['achieved_mhz'] * 0.9)} before using it" if name == sys_name
                  else "a fixed clock (its PHY's): no --sys-clk-mhz helps, the design must get faster")
        parts.append(f"{name} {c['achieved_mhz']} of {c['constraint_mhz']} MHz: {advice}")
    return "NOT MET: " + "; ".join(parts)
