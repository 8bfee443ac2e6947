"""Shape-only reference networks (no parameters) for memory-footprint analysis.

Each builder returns an `ir.Network` with exactly the published layer shapes, so weights
and MACs (`Network.count()`) match the published figures. Common modelling choices:

- BatchNorm is folded into the preceding convolution (it adds no neurons or synapses).
- ReLU6 (MobileNetV2) and leaky ReLU (Darknet53) are written as `relu`: only the
  activation range differs, never a shape.
- Global average pooling uses stride 1: its window covers the whole map, so the output is
  1x1 for any stride, and 1 keeps it a hardware-legal power of two (the published stride 7
  is not).
"""
from __future__ import annotations

from ..errors import SynfabError
from ..frontend.ir import Network, Node


class _Builder:
    """Appends nodes in topological order; every helper returns the new node's name."""

    def __init__(self, name: str, shape: tuple[int, int, int]):
        self.name = name
        self.nodes = [Node("input", "input", attrs={"shape": shape})]

    def _add(self, name: str, op: str, inputs: list[str], **attrs) -> str:
        self.nodes.append(Node(name, op, list(inputs), dict(attrs)))
        return name

    def conv(self, name, x, out_channels, kernel, stride=1, relu=True, depthwise_of=None):
        """Conv with 'same' padding (kernel // 2); depthwise_of=C makes it a depthwise conv."""
        groups = depthwise_of or 1
        y = self._add(name, "conv", [x], out_channels=out_channels, kernel=kernel, stride=stride,
                      padding=kernel // 2, groups=groups)
        return self._add(name + "_relu", "relu", [y]) if relu else y

    def add(self, name, a, b, relu=False):
        y = self._add(name, "add", [a, b])
        return self._add(name + "_relu", "relu", [y]) if relu else y

    def global_avgpool(self, name, x, size):
        return self._add(name, "avgpool", [x], kernel=size, stride=1)

    def dense(self, name, x, out_features):
        return self._add(name, "dense", [x], out_features=out_features)

    def network(self) -> Network:
        return Network(self.nodes, name=self.name)


def resnet50() -> Network:
    """ResNet50 at 224x224, torchvision layout (v1.5: the stride sits in each bottleneck's
    3x3 conv; projection shortcuts are strided 1x1 convs).

    The stem's 3x3 stride-2 *max* pool is not linear, so the fabric cannot run it; it is
    modelled as a 3x3 stride-2 padding-1 sum pool with the same output shape (56x56). It has
    no weights and no MACs, so the published counts are unchanged.
    """
    b = _Builder("resnet50", (3, 224, 224))
    x = b.conv("conv1", "input", 64, 7, stride=2)
    x = b._add("pool1", "sumpool", [x], kernel=3, stride=2, padding=1)
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
        for i in range(blocks):
            s = stride if i == 0 else 1
            p = f"layer{stage}.{i}"
            y = b.conv(p + ".conv1", x, width, 1)
            y = b.conv(p + ".conv2", y, width, 3, stride=s)
            y = b.conv(p + ".conv3", y, 4 * width, 1, relu=False)
            shortcut = x
            if i == 0:
                shortcut = b._add(p + ".downsample", "conv", [x], out_channels=4 * width, kernel=1,
                                  stride=s, padding=0)
            x = b.add(p + ".add", y, shortcut, relu=True)
    x = b.global_avgpool("avgpool", x, 7)
    b.dense("fc", x, 1000)
    return b.network()


def mobilenetv1() -> Network:
    """MobileNetV1 (width 1.0) at 224x224: a 3x3 stride-2 conv, 13 depthwise-separable
    blocks, global average pool, 1000-way classifier (Howard et al. 2017, Table 1; the
    second-to-last depthwise conv has stride 1 as in the reference implementations)."""
    b = _Builder("mobilenetv1", (3, 224, 224))
    x = b.conv("conv1", "input", 32, 3, stride=2)
    channels = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for i, (out, stride) in enumerate(plan, 1):
        x = b.conv(f"block{i}.dw", x, channels, 3, stride=stride, depthwise_of=channels)
        x = b.conv(f"block{i}.pw", x, out, 1)
        channels = out
    x = b.global_avgpool("avgpool", x, 7)
    b.dense("fc", x, 1000)
    return b.network()


def mobilenetv2() -> Network:
    """MobileNetV2 (width 1.0) at 224x224 (Sandler et al. 2018, Table 2): inverted residual
    blocks (1x1 expand unless t = 1, 3x3 depthwise, linear 1x1 project; residual add when
    stride 1 and channels unchanged), 1x1 conv to 1280, global average pool, classifier."""
    b = _Builder("mobilenetv2", (3, 224, 224))
    x = b.conv("conv1", "input", 32, 3, stride=2)
    channels = 32
    index = 0
    for t, out, n, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            s = stride if i == 0 else 1
            p = f"block{index}"
            hidden = channels * t
            y = b.conv(p + ".expand", x, hidden, 1) if t != 1 else x
            y = b.conv(p + ".dw", y, hidden, 3, stride=s, depthwise_of=hidden)
            y = b.conv(p + ".project", y, out, 1, relu=False)
            x = b.add(p + ".add", y, x) if s == 1 and channels == out else y
            channels = out
            index += 1
    x = b.conv("conv_last", x, 1280, 1)
    x = b.global_avgpool("avgpool", x, 7)
    b.dense("fc", x, 1000)
    return b.network()


def darknet53() -> Network:
    """Darknet53 classifier at 256x256 (Redmon and Farhadi 2018, Table 1): 3x3 convs with
    stride-2 downsampling and residual blocks [1x1 half, 3x3 full] repeated 1, 2, 8, 8, 4
    times, global average pool, 1000-way classifier."""
    b = _Builder("darknet53", (3, 256, 256))
    x = b.conv("conv0", "input", 32, 3)
    for stage, (channels, repeats) in enumerate([(64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)], 1):
        x = b.conv(f"down{stage}", x, channels, 3, stride=2)
        for i in range(repeats):
            p = f"stage{stage}.{i}"
            y = b.conv(p + ".conv1", x, channels // 2, 1)
            y = b.conv(p + ".conv2", y, channels, 3)
            x = b.add(p + ".add", y, x)
    x = b.global_avgpool("avgpool", x, 8)
    b.dense("fc", x, 1000)
    return b.network()


_BUILDERS = {"resnet50": resnet50, "mobilenetv1": mobilenetv1, "mobilenetv2": mobilenetv2,
             "darknet53": darknet53}
NAMES = tuple(_BUILDERS)


def get(name: str) -> Network:
    """A fresh shape-only network by name (case-insensitive)."""
    builder = _BUILDERS.get(str(name).lower())
    if builder is None:
        raise SynfabError(f"unknown zoo network {name!r}; choose one of: {', '.join(NAMES)}")
    return builder()
