"""`synfab events info|convert`: the subcommands and their Python twins `info()` and `convert()`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import SynfabError
from .readers import read
from .transforms import Compose, Crop, Denoise, Downsample, RefractoryFilter
from .writers import WRITABLE, WRITTEN_FORMAT, write


def _summary(rec) -> dict:
    ev = rec.events
    n = len(ev)
    duration_s = rec.duration_us / 1e6
    on = int(np.count_nonzero(ev["p"])) if n else 0
    return {
        "path": str(rec.path) if rec.path is not None else None,
        "format": rec.format,
        "events": n,
        "width": rec.width,
        "height": rec.height,
        "t_first_us": int(ev["t"][0]) if n else None,
        "t_last_us": int(ev["t"][-1]) if n else None,
        "duration_s": duration_s,
        "rate_ev_per_s": n / duration_s if duration_s > 0 else None,
        "on_events": on,
        "off_events": n - on,
        "on_fraction": on / n if n else None,
    }


def info(path, sensor_size=None) -> dict:
    """Size, duration, event count, rate and polarity balance of an event file."""
    return _summary(read(path, sensor_size=sensor_size))


def convert(src, dst, transforms=(), sensor_size=None, zero_time: bool = False) -> dict:
    """Read `src`, apply `transforms` in order, shift times to start at 0 if `zero_time`, write `dst`
    (.npz, .npy or EVT 2.0 .raw); returns the summary of what was written."""
    rec = Compose(transforms)(read(src, sensor_size=sensor_size))
    if zero_time and len(rec.events):
        events = rec.events.copy()
        events["t"] -= events["t"][0]
        rec = rec.replace(events=events)
    path = write(dst, rec)
    return _summary(rec.replace(path=path, format=WRITTEN_FORMAT[path.suffix.lower()]))


def _crop_box(text: str) -> Crop:
    try:
        x0, y0, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--crop {text!r}: expected X0,Y0,WIDTH,HEIGHT (integers)") from None
    try:
        return Crop(x0, y0, w, h)
    except SynfabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    return w, h


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if isinstance(value, float):
                value = f"{value:.6g}"
            print(f"{key:>14}: {value}")


def cmd_info(a) -> None:
    _print(info(a.file, sensor_size=a.sensor_size), a.json)


def cmd_convert(a) -> None:
    transforms = []
    if a.crop is not None:
        transforms.append(a.crop)
    if a.denoise_us is not None:
        transforms.append(Denoise(a.denoise_us))
    if a.refractory_us is not None:
        transforms.append(RefractoryFilter(a.refractory_us))
    if a.downsample is not None:
        transforms.append(Downsample(factor=a.downsample))
    if Path(a.dst).suffix.lower() not in WRITABLE:
        raise SynfabError(f"{a.dst}: cannot write this format; use one of {', '.join(WRITABLE)}")
    _print(convert(a.src, a.dst, transforms, sensor_size=a.sensor_size, zero_time=a.zero_time), a.json)


def register(subparsers) -> argparse.ArgumentParser:
    """Add `events info` and `events convert` to the subparsers of the main `synfab` parser. Handlers are
    stored as `func` and take the parsed arguments."""
    p = subparsers.add_parser("events", help="event-camera files: info, convert")
    sub = p.add_subparsers(dest="events_command", required=True)

    i = sub.add_parser("info", help="size, duration, event count, rate, polarity balance")
    i.add_argument("file", help="AEDAT4, EVT2/EVT3 .raw, .dat, .npy or .npz")
    i.add_argument("--sensor-size", type=_size, help="WIDTHxHEIGHT, for files that do not record it")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("convert", help="transform and write as .npz, .npy or EVT 2.0 .raw",
                       description="Transforms run in this order: crop, denoise, refractory, downsample.")
    c.add_argument("src")
    c.add_argument("dst", help=f"output file ({', '.join(WRITABLE)})")
    c.add_argument("--crop", type=_crop_box, metavar="X0,Y0,W,H", help="keep this box")
    c.add_argument("--denoise-us", type=int, metavar="T", help="background-activity filter window")
    c.add_argument("--refractory-us", type=int, metavar="T", help="per-pixel refractory period")
    c.add_argument("--downsample", type=int, metavar="N", help="divide coordinates by N")
    c.add_argument("--sensor-size", type=_size, help="WIDTHxHEIGHT, for files that do not record it")
    c.add_argument("--zero-time", action="store_true", help="shift times so the first event is at 0 "
                   "(EVT 2.0 holds times below 2^34 us)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_convert)
    return p


def main(argv=None) -> int:
    """Run the events subcommands on their own: `python -m synfab.events.cli info FILE`."""
    parser = argparse.ArgumentParser(prog="synfab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["events", *(sys.argv[1:] if argv is None else argv)])
    try:
        args.func(args)
    except SynfabError as e:
        print(f"synfab: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
