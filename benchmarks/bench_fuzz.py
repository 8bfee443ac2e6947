"""Fuzz campaign over every reader and loader of user files: prints one JSON object.

    python benchmarks/bench_fuzz.py [--inputs 2000] [--seed 0] [--targets evt2,netx] [--timeout 30]
                                    [--findings DIR]

Per target (synfab.fuzz_targets: event files, network JSON, netx, NIR, ONNX, load_model, bundles,
fabric configs, images): inputs run (the unmutated seed files first, then mutated copies), how
many loaded ('accepted'), how many were refused with a one-line SynfabError ('clean'), the
findings by class (another exception type, a multi-line message, a timeout, a crashed worker)
and seconds.  Each finding's reproducer files and summary go under --findings (default
fuzz-findings/).  Exit status 1 when there is any finding.  CI runs a short campaign of the same
targets in tests/test_fuzz.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synfab import fuzz, fuzz_targets


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=2000, help="inputs per target (seeds included)")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed")
    ap.add_argument("--targets", default="", help="comma-separated target names (default: all)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds allowed per input before a hang is reported (above h5check's 10 s bound)")
    ap.add_argument("--findings", type=Path, default=Path("fuzz-findings"), help="where reproducers are saved")
    args = ap.parse_args(argv)
    targets = fuzz_targets.targets()
    names = [n for n in args.targets.split(",") if n] or list(targets)
    unknown = sorted(set(names) - set(targets))
    if unknown:
        ap.error(f"unknown target(s) {unknown}; known: {', '.join(targets)}")
    reports = fuzz.run_all({n: targets[n] for n in names}, args.inputs, args.seed, args.timeout, args.findings)
    out = {"seed": args.seed, "targets": {n: r.as_dict() for n, r in reports.items()},
           "total": _total(reports.values()),
           "findings": [{"target": f.target, "outcome": f.outcome, "mutation": f.mutation, "error": f.error,
                         "where": f.where} for r in reports.values() for f in r.findings]}
    print(json.dumps(out, indent=1))
    return out


def _total(reports) -> dict:
    total = dict.fromkeys(["inputs", *fuzz.OUTCOMES, "seconds"], 0)
    for r in reports:
        for k, v in r.as_dict().items():
            total[k] += v
    total["seconds"] = round(total["seconds"], 2)
    return total


if __name__ == "__main__":
    sys.exit(1 if main()["findings"] else 0)
