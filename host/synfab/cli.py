"""The `synfab` command line. Every subcommand has a Python API twin (see README)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import SynfabError
from .linkframe import LINK_KINDS

BACKENDS = ("model", "sim", "pynq", "litex")


def _print(obj, as_json: bool, text: str | None = None):
    if as_json:
        print(json.dumps(obj, indent=2, default=_jsonable))
    else:
        print(text if text is not None else "\n".join(f"{k:>24}: {v}" for k, v in obj.items()))


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _fabric(arg):
    from .config import FabricConfig
    return FabricConfig.load(arg) if arg else FabricConfig()


def _fabric_or_none(arg):
    """A fabric given on the command line, or None: the network's default (api.default_fabric)."""
    from .config import FabricConfig
    return FabricConfig.load(arg) if arg else None


# -- compile / report ------------------------------------------------------------------------
def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise SynfabError(f"--input-shape {text!r}: give channels, height, width as C,H,W (e.g. 1,28,28)")
    return shape


def _option_value(text: str):
    """A --option value: JSON when it parses (numbers, lists, true/false), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def model_options(a) -> dict:
    """Importer options from the command line (synfab.frontend.load_model takes them)."""
    options = {"input_shape": _input_shape(a.input_shape), "dt": a.dt}
    for item in a.option or ():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SynfabError(f"--option {item!r}: give KEY=VALUE")
        options[key.replace("-", "_")] = _option_value(value)
    return options


def _model_opts(q) -> None:
    q.add_argument("--input-shape", metavar="C,H,W", help="input shape of a saved nn.Module (.pt/.pth), or of an "
                                                          "ONNX model with symbolic dimensions")
    q.add_argument("--dt", type=float, help="NIR: time step of the discretization (seconds)")
    q.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="any other option of the format's importer (repeatable; VALUE as JSON or a string)")


def cmd_compile(a):
    from . import api
    from .compiler import bundle
    tables, info = api.compile_with_report(a.network, fabric=_fabric_or_none(a.fabric), calib=a.calib,
                                           objective=a.objective, **model_options(a))
    bundle.save(tables, a.output)
    info["bundle"] = str(a.output)
    if a.json:
        _print(info, True)
        return
    print(f"{info['network']}: {info['layers']} layers on fabric {info['fabric']!r} -> {a.output}")
    if info.get("extended"):
        print(f"table layout version {info['table_layout_version']}: {'; '.join(info['extended'])}")
        if info["golden_model_only"]:
            print(f"runs on the golden model only (the gateware does not run yet: "
                  f"{'; '.join(info['golden_model_only'])})")
    print(placement_line(info["placement"]))
    print(f"{'core':>6} {'populations':>12} {'esu':>5} {'peg':>5} {'neurons':>8} {'weights':>8}")
    for c in info["cores"]:
        print(f"{c['core']:>6} {c['populations']:>12} {c['esu_descriptors']:>5} {c['peg_entries']:>5} "
              f"{c['neurons']:>8} {c['weight_words']:>8}")
    if "accuracy" in info:
        acc = info["accuracy"]
        print(f"accuracy on the calibration set: float {acc['float_accuracy']:.4f}, "
              f"quantized {acc['quant_accuracy']:.4f} (agreement {acc['agreement']:.4f})")


def placement_line(placement: dict) -> str:
    """One line on the placement: its objective and what it predicts of a frame."""
    p = placement.get("predicted")
    if p is None:
        return f"placement objective {placement['objective']}"
    return (f"placement objective {placement['objective']}: predicted {p['frame_cycles']:,.0f} cycles/frame for "
            f"{p['synaptic_ops']:,.0f} synaptic ops ({p['work_from']} estimate), lower bound "
            f"{p['lower_bound_cycles']:,.0f} (ops / cores)")


def cmd_export(a):
    from . import api
    from .frontend import nir_export
    net = api.load_network(a.network)
    nir_export.export(net, a.output, dt=a.dt)
    print(f"{net.name}: {type(net).__name__} -> {a.output} (NIR, one time step = {a.dt:g})")


def cmd_report(a):
    from . import api
    result = api.report(a.target, neurons_per_core=a.neurons_per_core, fabric=a.fabric, objective=a.objective,
                        **model_options(a))
    if a.plot:
        from .analysis import footprint
        footprint.plot(result, a.plot)
    if a.json:
        _print(result, True)
    else:
        print(api.format_report(result))


# -- run / demo --------------------------------------------------------------------------------
def _realtime_speed(a) -> float | None:
    """The speed of a real-time replay (None: not one); one-line errors for real-time options that
    cannot go together, before anything is loaded."""
    from .runtime.replay import ReplayError, check_options
    if not a.realtime:
        given = [flag for flag, used in (("--speed", a.speed is not None), ("--drop-late", a.drop_late),
                                         ("--clock-mhz", a.clock_mhz is not None)) if used]
        if given:
            raise ReplayError(f"{', '.join(given)} only apply to a real-time replay: add --realtime")
        return None
    if a.events is None:
        raise ReplayError("--realtime replays an event recording at its timestamps: give it with --events FILE")
    return check_options(a.speed, a.clock_mhz)[0]


def cmd_run(a):
    from . import api
    from .compiler import bundle
    speed = _realtime_speed(a)
    tables = bundle.load(a.bundle)
    run_args = dict(backend=a.backend, threshold=a.threshold, check=a.check, progress=not a.json,
                    device_args=_device_args(a))
    if speed is not None:
        recording = api.cut_recording(a.events, tuple(tables.metadata["input_shape"]), window_ms=a.window_ms,
                                      events_per_frame=a.events_per_frame, max_frames=a.frames)
        out = api.replay_recording(tables, recording, speed=speed,
                                   drop_late=a.drop_late, clock_mhz=a.clock_mhz, **run_args)
    else:
        frames = api.frames_from_files(tables, events=a.events, images=a.images, frames=a.frames,
                                       window_ms=a.window_ms, events_per_frame=a.events_per_frame,
                                       inputs=a.inputs)
        out = api.run_frames(tables, frames, **run_args)
    res = out.pop("result")
    summary = out["summary"]
    names = [l["name"] for l in tables.metadata["layers"]]
    if res.layer_spikes is not None:
        out["layer_spikes"] = dict(zip(names, res.layer_spikes.tolist()))
    out["layers"] = [{"name": l["name"], "shape": l["shape"], "model": l.get("model", "sigma_delta")}
                     for l in tables.metadata["layers"]]
    out["layer_spikes_per_step"] = [dict(zip(names, step)) for step in res.layer_spikes_per_step]
    if res.evaluations_per_step:
        out["evaluations_per_step"] = res.evaluations_per_step
    out["output_per_step"] = [o.tolist() for o in res.outputs]
    if a.json:
        _print(out, True)
    else:
        for t, p in zip(_frames_run(out), out["predictions"]):
            print(f"frame {t:4d}: output class {p}")
        _print(summary, False)
        if "realtime" in out:
            print(realtime_text(out["realtime"]["summary"]))


def _frames_run(out: dict) -> list[int]:
    """Indices of the frames that ran (a real-time replay with --drop-late skips some)."""
    if "realtime" not in out:
        return list(range(len(out["predictions"])))
    return [k for k, dropped in enumerate(out["realtime"]["per_frame"]["dropped"]) if not dropped]


def realtime_text(s: dict) -> str:
    """The summary of a real-time replay in a few lines."""
    clock = f"{s['clock_mhz']} MHz ({'measured: ' if s['clock_measured'] else ''}{s['clock_source']})"
    lines = [f"real time x{s['speed']:g}: {s['frames']} frames, {s['taken']} taken, {s['late']} late, "
             f"{s['dropped']} dropped ({s['dropped_sensor_events']} sensor events); recording "
             f"{s['recording_s']} s, replayed in {s['wall_s']} s ({s['frames_per_s']} frames/s)"]
    for key, unit in (("latency_cycles", "cycles"), ("latency_us", f"us at {clock}"), ("wall_latency_us", "us wall")):
        p = s[key]
        if p["p50"] is not None:
            lines.append(f"latency p50 {p['p50']} / p99 {p['p99']} {unit}")
    if s["latency_cycles"]["p50"] is None:
        lines.append("no fabric cycle counts: this backend has no clock (the model backend)")
    return "\n".join(lines)


def cmd_demo(a):
    from . import api
    fabric = _fabric(a.fabric) if a.fabric else None
    if a.task == "event-digits":
        if a.network is not None:
            raise SynfabError("--network chooses the image-digit network; --task event-digits has its own")
        out = api.event_digits_demo(backend=a.backend, digits=a.frames, window_ms=a.window_ms,
                                    threshold=a.threshold, check=a.check, progress=not a.json,
                                    device_args=_device_args(a), fabric=fabric)
    else:
        if a.window_ms is not None:
            raise SynfabError("--window-ms is for --task event-digits (image digits are one frame each)")
        out = api.demo(backend=a.backend, frames=a.frames, threshold=a.threshold, check=a.check,
                       progress=not a.json, device_args=_device_args(a), network=a.network or "demo",
                       fabric=fabric, objective=a.objective)
    if a.json:
        _print(out, True)
    else:
        _print({k: v for k, v in out.items() if not isinstance(v, (list, dict))}, False)


def _device_args(a) -> dict:
    return {k: getattr(a, k) for k in ("bitstream", "port") if getattr(a, k, None) is not None}


def cmd_regs(a):
    from .layouts import RegisterMap
    rm = RegisterMap(_fabric(a.fabric)) if a.layout_version is None else RegisterMap(_fabric(a.fabric), a.layout_version)
    rows = rm.describe()
    if a.json:
        _print(rows, True)
        return
    if a.markdown:
        print(registers_markdown(rm))
        return
    print(f"{'address':>10}  {'kind':8} name")
    for r in rows:
        extra = f"  [{r['entries']} entries x {r['stride_words']} words]" if r["kind"] == "window" else ""
        print(f"{r['addr']:#010x}  {r['kind']:8} {r['name']}{extra}")


def registers_markdown(rm) -> str:
    """The register map and every table/packet/stream layout as Markdown (docs/REGISTERS.md)."""
    from . import layouts
    cfg = rm.cfg
    flag = "" if rm.version == layouts.FABRIC_LAYOUT_VERSION else f" --layout-version {rm.version}"
    out = [f"# synfab register map and bit layouts (fabric {cfg.name!r}, table layout version {rm.version})", "",
           f"Generated by `synfab regs --markdown{flag}`. Byte addresses on the AXI4-Lite port; 32-bit registers.",
           f"Table entries wider than 32 bits span consecutive words; writing the last word commits the entry.",
           "", "| address | kind | name | entries x words | meaning |", "|---|---|---|---|---|"]
    for r in rm.describe():
        size = f"{r['entries']} x {r['stride_words']}" if r["kind"] == "window" else ""
        out.append(f"| `{r['addr']:#07x}` | {r['kind']} | {r['name']} | {size} | {r['doc']} |")
    out += ["", f"`ctrl` bit 0: write 1 to clear every counter (and layer_spikes). Core windows repeat every "
            f"`{rm.core_stride:#x}` bytes from `{rm.core_base0:#x}`.", ""]
    v = rm.version
    if v == layouts.LAYOUT_VERSION:
        out += [f"Table layout version {v}: the tables of bundles of networks that use nothing of version 2 (and "
                f"fabrics built before version 2). The fabric decodes version {layouts.FABRIC_LAYOUT_VERSION} "
                f"(`synfab regs --markdown`): the host writes version-1 tables into its layouts with square "
                f"geometry and no weight shift (DESIGN.md, \"Table layout versions\").", ""]
    else:
        implemented = ", ".join(layouts.gateware_features(cfg))
        absent = [w for w in layouts.state_word_bits(cfg, v) if w not in layouts.gateware_state_words(cfg)]
        out += [f"Table layout version {v}: fields after the version-1 ones are appended (DESIGN.md, \"Table "
                f"layout versions\"). "
                + (f"The fabric decodes these layouts (`version` reads {v}) and executes of version 2 what its "
                   f"`features` register lists ({implemented}; bit i = `layouts.EXTENDED_FEATURES[i]`)"
                   + (f"; the per-neuron windows {', '.join(absent)} are not implemented (bus error)" if absent else
                      f", with every per-neuron window ({', '.join(layouts.gateware_state_words(cfg))}) in block RAM")
                   + ". The host writes `pipelined`, `reset_interval` and `step` = 0 with the tables. Bundles "
                   "whose output events may exceed the output stream's 16-bit d run on the golden model."
                   if v == layouts.FABRIC_LAYOUT_VERSION else ""), "",
                "## Bits per neuron of each neuron model", "",
                "| model | words | bits |", "|---|---|---|"]
        from .arith import MODEL_WORDS
        bits = layouts.state_word_bits(cfg, v)
        for model, words in MODEL_WORDS.items():
            out.append(f"| {model} | {', '.join(f'{w} ({bits[w]})' for w in words)} | "
                       f"{layouts.model_state_bits(cfg, model, v)} |")
        out.append("")
    for lay in (layouts.pop_desc(cfg, v), layouts.esu_desc(cfg, v), layouts.peg_entry(cfg, v), layouts.neuron_state(cfg),
                layouts.packet(cfg), layouts.STREAM_EVENT):
        out += [f"## {lay.name} ({lay.width} bits, {lay.words32} words)", "", lay.doc, "",
                "| bits | field | signed | meaning |", "|---|---|---|---|"]
        for f in lay.fields:
            o = lay.offsets[f.name]
            out.append(f"| {o + f.width - 1}:{o} | {f.name} | {'yes' if f.signed else ''} | {f.doc} |")
        out.append("")
    return "\n".join(out)


def _partition_input(a):
    """(qnet, frames) of `synfab partition`: a workload by name, or a model file with --images."""
    from .analysis.workloads import WORKLOADS
    if a.model in WORKLOADS:
        w = WORKLOADS[a.model]
        return w.load(a.frames or w.frames)
    if not a.images:
        raise SynfabError(f"{a.model!r} is no workload ({', '.join(WORKLOADS)}); a model file needs --images FILE")
    from . import api
    from .frontend.quant import quantize_input
    qnet = api.quantize_network(api.load_network(a.model), a.images)
    imgs, _ = api.load_images(a.images)
    imgs = imgs[:a.frames or 20].astype(np.float32) / (255.0 if imgs.dtype == np.uint8 else 1.0)
    return qnet, np.stack([quantize_input(qnet, im) for im in imgs])


def cmd_partition(a):
    from . import api
    from .runtime.multi import LinkModel
    boards = [b for b in a.boards.split(",") if b]
    cuts = [c for c in a.cuts.split(",") if c] if a.cuts is not None else None
    qnet, frames = _partition_input(a)
    if a.link in LINK_KINDS:
        from .linkframe import Wire
        if a.backend not in ("sim", "litex"):
            raise SynfabError(f"--link {a.link} runs the boards' link gateware: in Verilator (add --backend sim) "
                              f"or on linked LiteX boards (--backend litex --ports ...)")
        if a.link_drop or a.events_per_cycle != 1.0:
            raise SynfabError(f"--link-drop and --events-per-cycle set the link model; the {a.link} link's rate is "
                              f"{'--clocks-per-bit' if a.link == 'uart' else 'a byte a clock'} "
                              f"(faults: runtime.linked.LinkedChain.inject_fault)")
        link = Wire(a.latency, a.clocks_per_bit, a.link)
    else:
        link = LinkModel(a.latency, a.events_per_cycle, a.link_drop, a.seed)
    device_args = None
    if a.backend == "litex":
        ports = [p for p in (a.ports or "").split(",") if p]
        if len(ports) != len(boards):
            raise SynfabError(f"--backend litex takes one --ports entry per board ({len(boards)} boards, "
                              f"{len(ports)} ports), in board order: --ports tcp://HOST:P0,tcp://HOST:P1,...")
        if a.measure_one_fabric:
            raise SynfabError("--measure-one-fabric runs the whole network on one fabric of every board's cores: "
                              "no LiteX board holds it; leave it out with --backend litex")
        device_args = [{"port": p} for p in ports]
    elif a.ports:
        raise SynfabError("--ports names the LiteX boards of --backend litex")
    out = api.run_partitioned(qnet, frames, boards, cuts, a.backend, link,
                              a.threshold, a.check, a.objective, device_args=device_args,
                              measure_one_fabric=a.measure_one_fabric)
    s = out["summary"]
    s["predictions"] = out["predictions"]
    _print(s, a.json, partition_text(s))


def partition_text(s: dict) -> str:
    cyc = "cycles_per_frame" if s["cycles_from"] == "measured" else "predicted_cycles_per_frame"
    lines = [f"{len(s['boards'])} boards, {s['frames']} frames on {s['backend']}"
             + (", checked against the whole network" if s["checked_against_whole_network"] else "")]
    for k, b in enumerate(s["boards"]):
        # Boards joined by the link gateware share one clock: only the chain's frame is measured.
        cycles = (f"{b[cyc]} cycles/frame ({s['cycles_from']})" if b[cyc] is not None
                  else f"{b.get('predicted_cycles_per_frame')} cycles/frame (predicted)")
        lines.append(f"  board {k} {b['board']}: {', '.join(b['layers'])}: {cycles}, "
                     f"{b['events_in_per_frame']} events in/frame")
    for link in s["links"]:
        lines.append(f"  link {link['link']} ({link['cut_layer']}, {link['kind']}): {link['events_per_frame']} "
                     f"events/frame, {link['bytes_per_frame']} B/frame, +{link['added_cycles_per_frame']} cycles "
                     f"(store and forward), utilisation {link['utilisation']}")
    one = s.get("one_fabric", {})
    lines.append(f"  frame: {s['frame_cycles'] or s['predicted_frame_cycles']} cycles ({s['cycles_from']}); one "
                 f"fabric {one.get('fabric')} ({one.get('cores')} cores): {one.get('frame_cycles')} predicted; "
                 f"slowdown (predicted alike) {s.get('slowdown_predicted')}"
                 + (f"; measured {one['measured_cycles_per_frame']} cycles, slowdown {s.get('slowdown_measured')}"
                    if one.get("measured_cycles_per_frame") else ""))
    return "\n".join(lines)


def objective_opt(q) -> None:
    """--objective: how the mapper places the network (mapper.map_network). Checked by the
    mapper, so a bad value is its one-line error (exit 1), not argparse's usage text (exit 2)."""
    from .compiler.mapper import DEFAULT_OBJECTIVE, OBJECTIVES
    q.add_argument("--objective", default=DEFAULT_OBJECTIVE, metavar="|".join(OBJECTIVES),
                   help=f"placement objective (default {DEFAULT_OBJECTIVE}): memory replicates kernels least; "
                        f"cost takes the fewest parts; throughput balances the synaptic work over the cores; "
                        f"balanced does so where it shortens the predicted frame by 10%% or more")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synfab", description="Event-based CNN fabric with synapse compression")
    from . import __version__
    p.add_argument("--version", action="version", version=f"synfab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="network file -> compressed-table bundle")
    c.add_argument("network", help="model file: network JSON (float or quantized), NIR .nir, lava-dl netx .net, "
                                   "ONNX / QONNX .onnx, torch.export .pt2, saved nn.Module .pt/.pth "
                                   "(with --input-shape), or demo")
    c.add_argument("-o", "--output", required=True, help="bundle file to write (.sfb)")
    c.add_argument("--fabric", help="fabric config JSON or preset (default, small, tiny); default: 'default', or "
                                    "for a network only the golden model runs (e.g. netx) the smallest wide mesh")
    c.add_argument("--calib", help="calibration inputs (.npz/.npy images) for a float network")
    c.add_argument("--json", action="store_true")
    _model_opts(c)
    objective_opt(c)
    c.set_defaults(func=cmd_compile)

    from .frontend.nir import DEFAULT_DT
    x = sub.add_parser("export", help="network file -> NIR graph (.nir) for sinabs, snnTorch, Norse, ...")
    x.add_argument("network", help="network JSON (float or quantized), lava-dl netx .net file, or demo")
    x.add_argument("-o", "--output", required=True, help="NIR file to write (.nir)")
    x.add_argument("--dt", type=float, default=DEFAULT_DT, help=f"seconds per time step (default {DEFAULT_DT:g})")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="memory footprint and mapping summary")
    r.add_argument("target", help="model file (any format synfab compile takes), bundle (.sfb), demo or zoo:NAME")
    r.add_argument("--neurons-per-core", type=int, default=1024)
    r.add_argument("--fabric", help="fabric config for mapping a network file or bundle")
    r.add_argument("--plot", help="write a PNG bar chart of the schemes")
    r.add_argument("--json", action="store_true")
    _model_opts(r)
    objective_opt(r)
    r.set_defaults(func=cmd_report)

    def device_opts(q):
        q.add_argument("--backend", choices=BACKENDS, default="model")
        q.add_argument("--threshold", type=int, default=0, help="sigma-delta threshold (0 = exact)")
        q.add_argument("--check", action="store_true", help="run the golden model side by side; stop at the first mismatch")
        q.add_argument("--bitstream", help="pynq: overlay .bit (with its .hwh beside it)")
        q.add_argument("--port", help="litex: host:port of the LiteX server (litex_server)")
        q.add_argument("--json", action="store_true")

    u = sub.add_parser("run", help="stream events or images through a bundle on a backend")
    u.add_argument("bundle")
    src = u.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", help="event file (AEDAT4, EVT2/3 .raw, .dat, .npy/.npz)")
    src.add_argument("--images", help="images .npz/.npy (each image one frame)")
    src.add_argument("--inputs", help="(T, C, H, W) .npy, one frame per time step: levels whose changes are sent, "
                                      "or events/spikes sent as they are, as the network's input says")
    u.add_argument("--frames", type=int, help="at most this many frames")
    from .api import DEFAULT_WINDOW_MS
    u.add_argument("--window-ms", type=float, default=None,
                   help=f"events: frame length in ms (default {DEFAULT_WINDOW_MS:g})")
    u.add_argument("--events-per-frame", type=int, default=None, help="events: frame by event count")
    u.add_argument("--realtime", action="store_true",
                   help="events: replay the recording at its own timestamps; each frame is due when its last "
                        "event's time has passed; reports latencies and late frames")
    from .runtime.replay import DEFAULT_SPEED
    u.add_argument("--speed", type=float, default=None,
                   help=f"realtime: speed factor (default {DEFAULT_SPEED:g} = real time; 10 = ten times faster)")
    u.add_argument("--drop-late", action="store_true",
                   help="realtime: skip a late frame (counted as dropped) instead of running it behind "
                        "schedule (the default: every frame runs, counted late)")
    u.add_argument("--clock-mhz", type=float, default=None,
                   help="realtime: fabric clock for latencies in us (default: the measured Fmax of the fabric's "
                        "committed bitstream, else an assumed clock, stated in the output)")
    device_opts(u)
    u.set_defaults(func=cmd_run)

    from .demo import NETWORK_FILES
    d = sub.add_parser("demo", help="MNIST digits through a shipped CNN (the demo CNN or the LeNet-size CNN), "
                                    "or N-MNIST-style event digits through the event-digit CNN")
    d.add_argument("--task", choices=("digits", "event-digits"), default="digits",
                   help="digits: MNIST images (default); event-digits: held-out event digits (34x34, ON/OFF)")
    d.add_argument("--network", choices=list(NETWORK_FILES), default=None,
                   help="shipped network for --task digits (default demo; lenet: the LeNet-size CNN)")
    d.add_argument("--fabric", help="fabric config JSON or preset (default: the network's own fabric, "
                                    "synfab.demo.fabric; e.g. ulx3s-85f)")
    d.add_argument("--frames", type=int, default=20, help="digits to run (event digits: each is 300 ms / "
                                                          "window frames)")
    d.add_argument("--window-ms", type=float, default=None,
                   help="event-digits: frame window in ms (default 300: one frame per digit)")
    device_opts(d)
    objective_opt(d)
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("regs", help="print the AXI-Lite register map")
    g.add_argument("--fabric")
    g.add_argument("--json", action="store_true")
    g.add_argument("--markdown", action="store_true", help="register map and bit layouts as Markdown")
    g.add_argument("--layout-version", type=int, choices=(1, 2), default=None,
                   help="table layout version (default: the fabric's, 2; 1: the tables of version-1 bundles)")
    g.set_defaults(func=cmd_regs)

    from .analysis.workloads import WORKLOADS
    pt = sub.add_parser("partition", help="a network split by whole layers over several boards joined by "
                                          "event links (host-side): per board cycles, link traffic, slowdown")
    pt.add_argument("model", help=f"workload ({', '.join(WORKLOADS)}) or a model file (with --images)")
    pt.add_argument("--boards", required=True, help="board presets in chain order, e.g. ulx3s-85f,ulx3s-85f")
    pt.add_argument("--cuts", default=None, help="layers to cut after (default: the cuts with the fewest "
                                                 "predicted link events that fit every board)")
    pt.add_argument("--images", help="model file: images .npz/.npy (calibration and frames)")
    pt.add_argument("--frames", type=int, default=None, help="frames to run (default: the workload's)")
    pt.add_argument("--link", choices=("model", *LINK_KINDS), default="model",
                    help="model: the host carries each frame's events between the boards' devices (LinkModel); "
                         "uart: the boards' link gateware (frames with seq and CRC, credits, LiteX's RS232 PHY); "
                         "eth: the Ethernet link gateware (UDP packets with seq, credits, LiteEth's UDP/IP core "
                         "at both ends); both over simulated wires, every board in one Verilator model "
                         "(--backend sim), or on LiteX boards built with synfab build --link uart|eth "
                         "(--backend litex --ports ...: their own links)")
    pt.add_argument("--clocks-per-bit", type=int, default=4, help="uart link: clocks per UART bit (>= 4)")
    pt.add_argument("--latency", type=int, default=64, help="link latency in cycles (default 64; uart, eth: each way)")
    pt.add_argument("--events-per-cycle", type=float, default=1.0, help="link bandwidth in events per cycle")
    pt.add_argument("--link-drop", type=float, default=0.0, help="fault: fraction of link events lost (detected)")
    pt.add_argument("--seed", type=int, default=0, help="seed of the link faults")
    pt.add_argument("--backend", choices=("model", "sim", "litex"), default="model",
                    help="model; sim: a Verilator fabric per board; litex: a LiteX board (or LiteX sim SoC) per "
                         "board at --ports, the host carrying the link model's events between them (--link "
                         "uart|eth: the boards' own links)")
    pt.add_argument("--ports", default=None,
                    help="litex: one port per board, in board order, separated by commas (tcp://HOST:PORT, "
                         "udp://HOST:PORT, /dev/ttyUSB0@BAUD, HOST:PORT of a litex_server)")
    pt.add_argument("--threshold", type=int, default=0, help="sigma-delta threshold on every board (0 = exact)")
    pt.add_argument("--check", action="store_true", help="compare every frame with the whole network's reference")
    pt.add_argument("--measure-one-fabric", action="store_true",
                    help="also run the whole network on one fabric with every board's cores on the backend "
                         "(sim: a Verilator build of that fabric) for a measured slowdown")
    pt.add_argument("--json", action="store_true")
    objective_opt(pt)
    pt.set_defaults(func=cmd_partition)

    # These import only numpy and the standard library (heavy tools load inside their handlers),
    # so a failing import is a bug to see, not an optional feature to hide.
    from .analysis import bench
    from . import caches, hwcli
    from .events import cli as events_cli
    for mod in (events_cli, hwcli, bench, caches):
        mod.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "objective", None) is not None:   # before any model is loaded or simulated
            from .compiler.mapper import check_objective
            check_objective(args.objective)
        args.func(args)
    except SynfabError as e:
        print(f"synfab: error: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"synfab: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("synfab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
