"""The Python API behind the CLI: compile, report, run, demo."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiler.mapper import DEFAULT_OBJECTIVE
from .config import FabricConfig
from .errors import SynfabError

# Calibration images used as the sample input whose synaptic work the mapper balances (enough to
# average the activity, few enough to run through the dense reference quickly).
CALIBRATION_SAMPLE_FRAMES = 32


# -- devices -------------------------------------------------------------------------------------
def open_device(backend: str, cfg: FabricConfig, **kw):
    """A Device for `backend` ('model', 'sim', 'pynq', 'litex')."""
    if backend == "model":
        from .runtime.model import ModelDevice
        return ModelDevice(cfg)
    if backend == "sim":
        from .runtime.sim import SimDevice
        return SimDevice(cfg, **kw)
    if backend == "pynq":
        from .runtime.pynq import PynqDevice
        return PynqDevice(cfg, **kw)
    if backend == "litex":
        from .runtime.litex import LitexDevice
        return LitexDevice(cfg, **kw)
    raise SynfabError(f"unknown backend {backend!r}; choose model, sim, pynq or litex")


# -- networks --------------------------------------------------------------------------------------
def load_network(path, **options):
    """The network in a model file of any format synfab reads (synfab.frontend.load_model:
    network JSON, NIR, lava-dl netx, ONNX / QONNX, torch.export .pt2, a saved nn.Module with
    input_shape=(C, H, W)): a float Network or a QNetwork ('demo' = the embedded demo)."""
    if str(path) == "demo":
        from .demo import demo_qnetwork
        return demo_qnetwork()
    from .frontend import load_model
    return load_model(path, **options)


def load_images(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (N, C, H, W) or (N, H, W) from .npz ('images', optional 'labels') or .npy."""
    p = Path(path)
    if not p.exists():
        raise SynfabError(f"image file {p} not found")
    try:
        if p.suffix == ".npz":
            with np.load(p) as z:
                key = "images" if "images" in z else z.files[0]
                imgs, labels = z[key], (z["labels"] if "labels" in z else None)
        else:
            imgs, labels = np.load(p), None
    except Exception as e:  # numpy raises many kinds for a bad file
        raise SynfabError(f"cannot read images from {p}: {e}; expected .npz with 'images' (N,[C,]H,W)")
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    if imgs.ndim != 4:
        raise SynfabError(f"images in {p} have shape {imgs.shape}; expected (N, H, W) or (N, C, H, W)")
    return imgs, labels


def quantize_network(net, calib=None):
    from .frontend.ir import QNetwork
    if isinstance(net, QNetwork):
        return net
    if calib is None:
        raise SynfabError("a float network needs calibration inputs: pass --calib FILE.npz (images)")
    from .frontend import quant
    imgs, _ = load_images(calib) if isinstance(calib, (str, Path)) else (np.asarray(calib), None)
    return quant.quantize(net, imgs.astype(np.float32) / (255.0 if imgs.dtype == np.uint8 else 1.0))


def default_fabric(qnet) -> FabricConfig:
    """The fabric a network compiles to without --fabric: the default preset, or for a network
    with neuron models or time steps (e.g. a netx network: wide values, outputs beyond the stream
    word's 16 bits) the smallest mesh of wide cores (24-bit events and state, netx.NETX_FABRIC) it
    maps onto. Give --fabric of a board to run such a network on the gateware."""
    from .layouts import feature_name
    from .compiler.checks import STREAM_LIMITED_FEATURES
    if any(feature_name(e) not in STREAM_LIMITED_FEATURES for e in qnet.extended_features()):
        from .frontend import netx
        return netx.fabric(qnet)
    return FabricConfig()


def compile_qnetwork(qnet, fabric: FabricConfig | None = None, objective: str = DEFAULT_OBJECTIVE, sample=None):
    """Tables of qnet on `fabric` (default_fabric if None), placed for `objective` (memory,
    throughput, balanced: mapper.map_network), balancing the work of the `sample` input frames
    (T, C, H, W) when given, else the static estimate (compiler/work.py)."""
    return compile_placed(qnet, fabric, objective, sample)[0]


def compile_placed(qnet, fabric: FabricConfig | None = None, objective: str = DEFAULT_OBJECTIVE, sample=None):
    """(tables, placement) of compile_qnetwork: the placement says what it predicts of a frame."""
    from .compiler.build import compile_network
    from .compiler.mapper import map_network
    cfg = fabric or default_fabric(qnet)
    placement = map_network(qnet, cfg, objective=objective, sample=sample)
    return compile_network(qnet, cfg, placement), placement


def calibration_sample(qnet, calib):
    """The calibration images as input frames of qnet (the work the mapper balances), or None."""
    if calib is None:
        return None
    from .frontend.quant import quantize_input
    imgs, _ = load_images(calib) if isinstance(calib, (str, Path)) else (np.asarray(calib), None)
    x = imgs[:CALIBRATION_SAMPLE_FRAMES].astype(np.float32) / (255.0 if imgs.dtype == np.uint8 else 1.0)
    if x.shape[1:] != tuple(qnet.input_shape):
        return None   # images the importer reshapes: the static estimate instead
    return np.stack([quantize_input(qnet, xi) for xi in x])


def compile_file(path, out=None, fabric: FabricConfig | None = None, calib=None,
                 objective: str = DEFAULT_OBJECTIVE, **options):
    """Tables of the network in a model file of any format (load_network; options such as
    input_shape go to its importer), quantized with `calib` when it is a float network and
    placed for `objective` (the calibration images are the sample whose work is balanced); also
    written as a bundle to `out` when given."""
    qnet = quantize_network(load_network(path, **options), calib)
    tables = compile_qnetwork(qnet, fabric, objective, calibration_sample(qnet, calib))
    if out is not None:
        from .compiler import bundle
        bundle.save(tables, out)
    return tables


def compile_with_report(path, fabric: FabricConfig | None = None, calib=None, objective: str = DEFAULT_OBJECTIVE,
                        **options) -> tuple:
    """(tables, summary); the summary adds float vs quantized accuracy when the calibration file
    of a float network carries labels, and the placement's objective and predicted frame."""
    net = load_network(path, **options)
    qnet = quantize_network(net, calib)
    tables, placement = compile_placed(qnet, fabric, objective, calibration_sample(qnet, calib))
    info = bundle_summary(tables)
    info["placement"] = placement_summary(placement)
    if qnet is not net and isinstance(calib, (str, Path)):
        imgs, labels = load_images(calib)
        if labels is not None:
            from .frontend import quant
            x = imgs.astype(np.float32) / (255.0 if imgs.dtype == np.uint8 else 1.0)
            info["accuracy"] = quant.evaluate(net, qnet, x, labels, acc_bits=tables.cfg.acc_bits)
    return tables, info


def placement_summary(placement) -> dict:
    """The placement's objective and, when it weighed synaptic work, its predicted frame."""
    out = {"objective": placement.objective}
    if placement.prediction is not None:
        out["predicted"] = placement.prediction
    return out


def bundle_summary(tables) -> dict:
    md = tables.metadata
    cores = []
    for c, ct in enumerate(tables.cores):
        cores.append({"core": c, "populations": int(ct.pop_count), "esu_descriptors": int(ct.esu_count),
                      "peg_entries": int(len(ct.peg["kind"])) if ct.peg else 0,
                      "neurons": int(ct.neurons_used), "weight_words": int(ct.weights_used)})
    out = {"network": md["network"], "fabric": tables.cfg.name, "layers": len(md["layers"]),
           "input_shape": list(md["input_shape"]), "output": md["output"],
           "input_peg_entries": int(tables.regs["input_peg_count"]), "cores": cores}
    if tables.version != 1:     # version-2 tables: what they use, and what only the golden model runs
        out.update(table_layout_version=tables.version, extended=tables.extended_features,
                   golden_model_only=tables.unsupported_features,
                   pipelined=tables.pipelined, input_mode=tables.input_mode,
                   neuron_models={l["name"]: l.get("model", "sigma_delta") for l in md["layers"]})
    return out


# -- report ------------------------------------------------------------------------------------------
def report(target: str, neurons_per_core: int = 1024, fabric=None, objective: str = DEFAULT_OBJECTIVE,
           **options) -> dict:
    """Memory footprint of a network (zoo:NAME, a model file) placed for `objective`, and with a
    fabric its mapping there; a bundle's summary."""
    from .analysis import footprint
    if target.startswith("zoo:"):
        from .analysis import zoo
        return footprint.analyze(zoo.get(target[4:]), neurons_per_core=neurons_per_core, objective=objective)
    if target.endswith(".sfb"):
        from .compiler import bundle
        tables = bundle.load(target)
        return {"bundle": bundle_summary(tables)}
    net = load_network(target, **options)
    result = footprint.analyze(net, neurons_per_core=neurons_per_core, objective=objective)
    if fabric:
        from .frontend.ir import QNetwork
        if isinstance(net, QNetwork):
            tables, placement = compile_placed(net, FabricConfig.load(fabric), objective)
            result["mapping"] = {**bundle_summary(tables), "placement": placement_summary(placement)}
    return result


def format_report(result: dict) -> str:
    if "schemes" in result:
        from .analysis import footprint
        return footprint.format_table(result)
    return json.dumps(result, indent=2)


# -- running -------------------------------------------------------------------------------------------
def load_inputs(path, tables) -> np.ndarray:
    """Frames (T, C, H, W) of integers from a .npy file, one per time step; what each frame means
    (levels whose changes are sent, events or spikes sent as they are) is the network's input mode."""
    p = Path(path)
    if not p.exists():
        raise SynfabError(f"input file {p} not found")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise SynfabError(f"cannot read inputs from {p}: {e}; expected a .npy array (T, C, H, W)") from None
    shape = tuple(tables.metadata["input_shape"])
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise SynfabError(f"inputs in {p} have shape {x.shape}; this network takes (T, {', '.join(map(str, shape))})")
    if not np.issubdtype(x.dtype, np.integer) and not (np.issubdtype(x.dtype, np.floating) and np.all(x == np.round(x))):
        raise SynfabError(f"inputs in {p} are {x.dtype} with fractions; the network takes integers")
    return x.astype(np.int64)


def frames_from_files(tables, events=None, images=None, frames=None, window_ms=None, events_per_frame=None,
                      inputs=None):
    """Frames (T, C, H, W) int for the bundle's input from an event file, an image file or an
    inputs .npy file (T, C, H, W)."""
    shape = tuple(tables.metadata["input_shape"])
    if inputs is not None:
        x = load_inputs(inputs, tables)
    elif images is not None:
        imgs, _ = load_images(images)
        x = _images_to_input(tables, imgs)
    else:
        x = recording_frames(events, shape, window_ms=window_ms, events_per_frame=events_per_frame,
                             max_frames=frames)
    if frames is not None:
        x = x[:frames]
    if x.shape[1:] != shape:
        raise SynfabError(f"input frames have shape {x.shape[1:]} but the network input is {shape}")
    return x


# Frame length of an event recording framed by time when neither a window nor an event count is given.
DEFAULT_WINDOW_MS = 50.0


@dataclass(frozen=True)
class RecordingFrames:
    """A recording cut into frames: the input activations (T, C, H, W) and, per frame, the sensor
    events it holds (slices of the recording) and the window length (None: framed by event count)."""
    x: np.ndarray
    slices: list
    window_us: int | None


def recording_frames(path_or_rec, shape, window_ms=None, events_per_frame=None, max_frames=None,
                     hi: int = 255) -> np.ndarray:
    """Event recording -> input frames (T, C, H, W): per-frame event counts per pixel, polarity as
    channel when the network has two input channels.  The sensor must match the input size."""
    return cut_recording(path_or_rec, shape, window_ms, events_per_frame, max_frames, hi).x


def cut_recording(path_or_rec, shape, window_ms=None, events_per_frame=None, max_frames=None,
                  hi: int = 255) -> RecordingFrames:
    """recording_frames with what real-time replay also needs: each frame's events and the window."""
    from . import events as ev
    rec = path_or_rec if isinstance(path_or_rec, ev.Recording) else ev.read(path_or_rec)
    c, h, w = shape
    if (rec.width, rec.height) != (w, h):
        raise SynfabError(f"recording is {rec.width}x{rec.height} but the network input is {w}x{h}; make it fit "
                          f"with 'synfab events convert SRC DST --crop X0,Y0,W,H --downsample N'")
    if c not in (1, 2):
        raise SynfabError(f"event input needs a network with 1 or 2 input channels, this one has {c}")
    window_us = None
    if events_per_frame:
        frames = ev.frames_by_count(rec.events, events_per_frame)
    else:
        window_us = int((window_ms or DEFAULT_WINDOW_MS) * 1000)
        frames = ev.frames_by_time(rec.events, window_us)
    if max_frames is not None:
        frames = frames[:max_frames]
    x = ev.to_histograms(frames, (w, h), channels="polarity" if c == 2 else "merge")
    return RecordingFrames(np.minimum(x.astype(np.int64), hi), frames, window_us)


def _images_to_input(tables, imgs: np.ndarray) -> np.ndarray:
    hi = int(tables.metadata.get("input_hi", 255))
    if imgs.dtype == np.uint8:
        return np.minimum(imgs.astype(np.int64), hi)
    raise SynfabError("images must be uint8 (0..255); scale them before saving")


def run_frames(tables, frames, backend="model", threshold=0, check=False, progress=False,
               device_args=None, device=None, on_frame=None, pacer=None) -> dict:
    """Frames (T, C, H, W) through tables on a backend (or an open `device`); `on_frame` and
    `pacer` go to runtime.stream.stream."""
    from .runtime.device import check_fabric_runs
    from .runtime.stream import stream
    if backend != "model":     # before a Verilator build or a board connection: refuse in one line
        check_fabric_runs(tables, backend)
    own = device is None
    dev = device or open_device(backend, tables.cfg, **(device_args or {}))
    try:
        if own:
            dev.load(tables)
        dev.set_threshold(threshold)
        res = stream(dev, frames, check=check, progress=progress, on_frame=on_frame, pacer=pacer)
    finally:
        if own:
            dev.close()
    return {"backend": backend, "threshold": threshold, "summary": res.summary(),
            "predictions": res.predictions().tolist(), "result": res}


def replay_recording(tables, recording: RecordingFrames, speed: float | None = None, drop_late: bool = False,
                     clock_mhz: float | None = None, clock=None, sleep=None, **run_args) -> dict:
    """A recording cut into frames (cut_recording) replayed at its own timestamps divided by
    `speed` (default real time; runtime.replay: when frames are due, late and dropped, latencies): run_frames' dict
    (`run_args` go to it) plus 'realtime', per-frame arrays and a summary. `clock` (monotonic,
    seconds) and `sleep` default to the real ones; tests pass a fake pair."""
    import time
    from .runtime import replay
    speed, clock_mhz = replay.check_options(speed, clock_mhz)       # refuse bad options before running
    fabric_clock = replay.fabric_clock(tables.cfg, clock_mhz)
    due_us = replay.frame_due_us(recording.slices, recording.window_us)
    pacer = replay.Pacer(due_us / 1e6 / speed, drop_late, clock or time.monotonic, sleep or time.sleep)
    log = replay.ReplayLog()
    out = run_frames(tables, recording.x, on_frame=log.on_frame, pacer=pacer, **run_args)
    out["realtime"] = replay.report(pacer, log, speed, fabric_clock, due_us, [len(e) for e in recording.slices])
    return out


def demo(backend="model", frames=20, threshold=0, check=False, progress=False, device_args=None,
         network: str = "demo", fabric: FabricConfig | None = None, objective: str = DEFAULT_OBJECTIVE) -> dict:
    """The main job: real MNIST test digits through a shipped quantized CNN ('demo' or 'lenet',
    synfab.demo) on a backend, compiled for `fabric` (default: the network's own, demo.fabric) and
    placed for `objective` (static work estimate: the digits run are not used to place)."""
    from . import demo as shipped
    from .model import reference
    from .frontend.quant import quantize_input
    if frames < 1:
        raise SynfabError("--frames must be >= 1")
    qnet = shipped.qnetwork(network)
    cfg = fabric or shipped.fabric(network)
    tables = compile_qnetwork(qnet, cfg, objective)
    imgs, labels = shipped.load_demo_digits(frames)
    x = np.stack([quantize_input(qnet, im.astype(np.float32) / 255.0) for im in imgs])
    out = run_frames(tables, x, backend=backend, threshold=threshold, check=check, progress=progress,
                     device_args=device_args)
    res = out.pop("result")
    preds = np.array(out["predictions"])
    ref = [reference.run(qnet, xi)[qnet.output] for xi in x]
    match = all(np.array_equal(o, r) for o, r in zip(res.outputs, ref))
    ref_preds = np.array([int(np.argmax(r.reshape(r.shape[0], -1).sum(axis=1))) for r in ref])
    s = out["summary"]
    result = {"network": network, "fabric": cfg.name, "objective": objective, "backend": backend,
              "frames": res.frames,
              "threshold": threshold,
              "accuracy": float(np.mean(preds == labels[:len(preds)])),
              "reference_accuracy": float(np.mean(ref_preds == labels[:len(preds)])),
              "match": bool(match), "events": s["events"], "output_events": s["output_events"],
              "synaptic_ops": s["synaptic_ops"], "packets": s["packets"], "wall_s": s["wall_s"],
              "events_per_s": s["events_per_s"], "checked_against_model": bool(check),
              "predictions": preds.tolist(), "labels": labels[:len(preds)].tolist()}
    if res.cycles is not None:
        result["cycles"] = res.cycles
        result["synaptic_ops_per_cycle"] = s["synaptic_ops_per_cycle"]
    return result


def run_event_digits(tables, qnet, events_list, window_us: int, **run_args):
    """Event digits (event arrays) through `tables` (run_frames with `run_args`): each digit cut into
    frames of `window_us` of OFF/ON counts. Returns the frames (N*T, 2, 34, 34), run_frames' dict,
    the outputs per digit and frame (N, T, outputs) and each digit's class: the argmax of its output
    summed over its frames."""
    from .events import digits as ed
    x = ed.many_frames(events_list, window_us, hi=qnet.input_hi)            # (N, T, 2, 34, 34)
    n, t = x.shape[:2]
    flat = x.reshape(n * t, *x.shape[2:])
    out = run_frames(tables, flat, **run_args)
    outputs = np.stack(out["result"].outputs).reshape(n, t, -1)
    return flat, out, outputs, outputs.sum(axis=1).argmax(axis=1)


def event_digits_demo(backend="model", digits=20, window_ms: float | None = None, threshold=0, check=False,
                      progress=False, device_args=None, fabric: FabricConfig | None = None, start: int = 0) -> dict:
    """Held-out N-MNIST-style event digits (synfab.events.digits.load_subset: MNIST test digits
    0..199) through the shipped event-digit CNN on a backend. Each digit is cut into frames of
    `window_ms` (default: its whole 300 ms, one frame) of OFF/ON event counts; the host sends the
    changes of the counts from frame to frame (from one digit to the next too), and a digit's class is
    the argmax of the output summed over its frames. `match`: every frame's output equals the dense
    integer reference."""
    from . import demo as shipped
    from .events import digits as ed
    from .model import reference
    if not (isinstance(digits, (int, np.integer)) and digits >= 1):
        raise SynfabError(f"--frames (event digits) {digits!r} must be >= 1")
    window_us = ed.WINDOW_US if window_ms is None else int(round(float(window_ms) * 1000))
    if window_us < 1:
        raise SynfabError(f"--window-ms {window_ms} must be at least 0.001 (one microsecond)")
    qnet = shipped.event_qnetwork()
    cfg = fabric or shipped.event_fabric()
    tables = compile_qnetwork(qnet, cfg)
    evs, labels = ed.load_subset(start + digits)
    evs, labels = evs[start:], labels[start:]
    flat, out, outputs, preds = run_event_digits(tables, qnet, evs, window_us, backend=backend, threshold=threshold,
                                                 check=check, progress=progress, device_args=device_args)
    res = out.pop("result")
    n, t = outputs.shape[:2]
    ref = np.concatenate([reference.output(qnet, flat[i:i + 512]) for i in range(0, len(flat), 512)])
    ref = ref.reshape(n, t, -1)
    s = out["summary"]
    result = {"task": "event-digits", "network": qnet.name, "fabric": cfg.name, "backend": backend,
              "digits": int(n), "frames": res.frames, "window_ms": window_us / 1000, "threshold": threshold,
              "accuracy": float(np.mean(preds == labels)),
              "reference_accuracy": float(np.mean(ref.sum(axis=1).argmax(axis=1) == labels)),
              "match": bool(np.array_equal(outputs, ref)),
              "sensor_events": int(sum(len(e) for e in evs)), "events": s["events"],
              "output_events": s["output_events"], "synaptic_ops": s["synaptic_ops"], "packets": s["packets"],
              "sensor_events_per_digit": round(sum(len(e) for e in evs) / n, 1),
              "events_per_digit": round(s["events"] / n, 1),
              "synaptic_ops_per_digit": round(s["synaptic_ops"] / n, 1),
              "wall_s": s["wall_s"], "events_per_s": s["events_per_s"], "checked_against_model": bool(check),
              "predictions": preds.tolist(), "labels": labels.tolist()}
    if res.cycles is not None:
        result["cycles"] = res.cycles
        result["synaptic_ops_per_cycle"] = s["synaptic_ops_per_cycle"]
    return result


# -- several boards ------------------------------------------------------------------------------
def run_partitioned(qnet, frames, boards, cuts=None, backend: str = "model", link=None, threshold: int = 0,
                    check: bool = False, objective: str = DEFAULT_OBJECTIVE, device_args=None, sample=None,
                    measure_one_fabric: bool = False) -> dict:
    """qnet split into whole-layer slabs over `boards` (preset names or FabricConfigs; at `cuts`,
    else where the fewest events cross, compiler/partition.py), the frames (T, C, H, W) run
    through the boards on `backend` joined by `link` (runtime.multi.LinkModel, host-side; or a
    linkframe.Wire: the boards' link gateware, every board in one Verilator model, runtime.linked;
    the link events are
    predicted from the `sample` frames' activity when given, else statically); with `check` every
    frame is compared with the whole network's dense reference.  The summary (chain_summary) has
    per board cycles, per link traffic and utilisation, and the slowdown against one fabric with
    all the boards' cores (predicted; with `measure_one_fabric` also run on `backend`, whose cycles
    give `slowdown_measured`); "result" the ChainResult, "partition" the Partition."""
    from .compiler.partition import partition, predicted_cycles
    from .linkframe import Wire
    from .runtime.multi import LinkModel, MultiDevice, chain_frames, chain_summary
    frames = np.asarray(frames)
    part = partition(qnet, boards, cuts=cuts, sample=sample, objective=objective)
    if isinstance(link, Wire) and backend == "litex":
        # LiteX boards running the linked SoC (synfab build --link uart|eth): their own links.
        from .runtime.linked_litex import LinkedLitexBoards
        chain = LinkedLitexBoards(part, device_args, wire=link)
    elif isinstance(link, Wire):
        if backend != "sim":
            raise SynfabError(f"the boards' link gateware runs in Verilator (backend sim) or on linked LiteX "
                              f"boards (backend litex), not on {backend}")
        from .runtime.linked import LinkedChain
        chain = LinkedChain(part, link)
    else:
        chain = MultiDevice(part, backend, link or LinkModel(), device_args)
    with chain as multi:
        multi.set_threshold(threshold)
        res = chain_frames(multi, frames, check=check)
        summary = chain_summary(multi, res, predicted_cycles(part, frames, objective))
    summary["threshold"] = threshold
    if measure_one_fabric:
        _measure_one_fabric(summary, qnet, frames, [s.cfg for s in part.slabs], backend, threshold, objective,
                            device_args)
    return {"summary": summary, "predictions": [int(np.argmax(o.reshape(o.shape[0], -1).sum(axis=1)))
                                               for o in res.outputs], "result": res, "partition": part}


def _measure_one_fabric(summary: dict, qnet, frames, cfgs, backend, threshold, objective, device_args) -> None:
    """The whole network on one fabric with every board's cores, run on the same backend: its
    measured cycles per frame and the chain's measured slowdown against it."""
    from .compiler.partition import one_fabric
    cfg = one_fabric(cfgs)
    tables = compile_qnetwork(qnet, cfg, objective)
    cycles = run_frames(tables, frames, backend, threshold, device_args=device_args)["summary"].get("cycles")
    one = summary.setdefault("one_fabric", {"fabric": cfg.name, "cores": cfg.n_cores})
    one["measured_cycles_per_frame"] = round(cycles / max(1, len(frames)), 1) if cycles else None
    if cycles and summary.get("frame_cycles"):
        summary["slowdown_measured"] = round(summary["frame_cycles"] / one["measured_cycles_per_frame"], 3)
