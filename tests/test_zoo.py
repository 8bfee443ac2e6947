"""Zoo networks against published weight and MAC counts (independent oracle)."""
import pytest

from synfab import SynfabError
from synfab.analysis import zoo

# (weights, MACs) as published; MACs = multiply-accumulates of conv and dense layers.
PUBLISHED = {
    # torchvision ResNet50_Weights.IMAGENET1K_V1 model card: 25,557,032 params (incl. BN), 4.09 GFLOPS (MACs).
    "resnet50": (25.557e6, 4.09e9),
    # Howard et al. 2017, MobileNets, Table 8 (1.0 MobileNet-224): 4.2M params, 569M mult-adds.
    "mobilenetv1": (4.2e6, 569e6),
    # Sandler et al. 2018, MobileNetV2, Table 4 (1.0, 224): 3.4M params, 300M MAdds.
    "mobilenetv2": (3.4e6, 300e6),
    # Redmon & Farhadi 2018, YOLOv3, Table 2: Darknet-53 at 256x256, 18.7 Bn FLOPs = 9.35 G MACs;
    # 41.6M params (darknet53.cfg summary, also timm's darknet53 model card).
    "darknet53": (41.6e6, 9.35e9),
}


def test_names():
    assert set(zoo.NAMES) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_published(name):
    counts = zoo.get(name).count()
    weights, macs = PUBLISHED[name]
    assert counts["weights"] == pytest.approx(weights, rel=0.05)
    assert counts["macs"] == pytest.approx(macs, rel=0.05)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_classifier_output_and_hardware_legal_geometry(name):
    net = zoo.get(name)
    assert net.nodes[net.output].shape == (1000, 1, 1)
    assert all(n.params == {} for n in net)  # shape-only
    for n in net:
        if n.op in ("conv", "sumpool", "avgpool"):
            assert n.attrs.get("stride", n.attrs["kernel"]) in (1, 2, 4, 8), n.name
            assert n.attrs["kernel"] <= 15 and n.attrs.get("padding", 0) <= 15, n.name


def test_resnet50_stem_pool_is_sum_pool_with_published_shape():
    net = zoo.resnet50()
    pool = net.nodes["pool1"]
    assert pool.op == "sumpool"
    assert net.nodes["conv1"].shape == (64, 112, 112)
    assert pool.shape == (64, 56, 56)
    # torchvision stage output shapes
    assert net.nodes["layer1.2.add_relu"].shape == (256, 56, 56)
    assert net.nodes["layer2.3.add_relu"].shape == (512, 28, 28)
    assert net.nodes["layer3.5.add_relu"].shape == (1024, 14, 14)
    assert net.nodes["layer4.2.add_relu"].shape == (2048, 7, 7)


def test_darknet53_has_52_convs_and_23_residuals():
    net = zoo.darknet53()
    assert sum(n.op == "conv" for n in net) == 52  # + the classifier = 53 layers
    assert sum(n.op == "add" for n in net) == 1 + 2 + 8 + 8 + 4
    assert net.nodes["stage5.3.add"].shape == (1024, 8, 8)


def test_mobilenetv2_residuals_only_where_shapes_allow():
    net = zoo.mobilenetv2()
    # Table 2: residuals in repeated blocks: 1 + 2 + 3 + 2 + 2 = 10
    assert sum(n.op == "add" for n in net) == 10
    assert sum(n.op == "conv" and n.attrs.get("groups", 1) > 1 for n in net) == 17


def test_get_is_case_insensitive_and_fresh():
    a, b = zoo.get("ResNet50"), zoo.get("resnet50")
    assert a is not b and a.count() == b.count()


def test_unknown_name_is_a_user_error():
    with pytest.raises(SynfabError, match="unknown zoo network 'vgg16'.*resnet50"):
        zoo.get("vgg16")
