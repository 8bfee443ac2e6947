"""Synaptic lanes on the host side (FabricConfig.lanes, issue 11): the config field and its checks,
and the mapper's channel groups in multiples of the lanes (the gateware: test_cosim_lanes.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from synfab.compiler.mapper import map_network, split, split_aligned, split_odd
from synfab.boards import BOARDS
from synfab.config import PRESETS, ConfigError, FabricConfig
from synfab.frontend.ir import QConnection, QLayer, QNetwork
from synfab.layouts import Kind


def test_lanes_config_is_checked_and_left_out_at_one():
    assert "lanes" not in FabricConfig().to_dict()
    assert FabricConfig().crc() == FabricConfig(lanes=1).crc() != FabricConfig(lanes=2).crc()
    two = PRESETS["small"].with_(lanes=2)
    assert two.to_dict()["lanes"] == 2 and FabricConfig.from_dict(two.to_dict()) == two
    for preset in PRESETS.values():      # left out of the JSON at one lane only
        assert ("lanes" in preset.to_dict()) == (preset.lanes != 1)
    # The board presets carry their board's measured lane count (synfab.boards): 2 on the ECP5 boards.
    assert {b.preset: PRESETS[b.preset].lanes for b in BOARDS.values()} == {b.preset: b.lanes for b in BOARDS.values()}
    assert {n: p.lanes for n, p in PRESETS.items() if p.lanes != 1} == {
        "ulx3s-85f": 2, "ulx3s-45f": 2, "colorlight-i5": 2, "colorlight-i9": 2}
    for bad in (0, 3, 16, -1):
        with pytest.raises(ConfigError, match=r"^fabric config: lanes must be one of 1, 2, 4, 8, got"):
            FabricConfig(lanes=bad)
    with pytest.raises(ConfigError, match="multiple of lanes"):
        FabricConfig(neurons_per_core=100, lanes=8)
    with pytest.raises(ConfigError, match="multiple of 16"):
        FabricConfig(weight_words_per_core=1028, lanes=2)
    with pytest.raises(ConfigError, match="lanes must be an integer"):
        FabricConfig.from_dict({"lanes": "4"})


@pytest.mark.parametrize("n,k,align,cap", [(20, 3, 4, 8), (18, 3, 4, 8), (64, 4, 4, 64), (10, 3, 2, 4), (33, 5, 8, 8)])
def test_split_aligned_groups_are_multiples_of_lanes(n, k, align, cap):
    tiles = split_aligned(n, k, align, cap)
    sizes = tiles[:, 1] - tiles[:, 0] + 1
    assert tiles[0, 0] == 0 and tiles[-1, 1] == n - 1 and (tiles[1:, 0] == tiles[:-1, 1] + 1).all()
    assert len(tiles) == k and (sizes > 0).all() and sizes.max() <= cap
    assert (sizes[:-1] % align == 0).all()


def test_split_aligned_falls_back_where_aligned_groups_do_not_fit():
    assert np.array_equal(split_aligned(20, 3, 4, 7), split(20, 3))     # 8 + 8 + 4 > 7 per group
    assert np.array_equal(split_aligned(20, 3, 1, 7), split(20, 3))
    assert np.array_equal(split_aligned(5, 1, 4, 5), split(5, 1))


def test_the_mapper_groups_channels_in_multiples_of_lanes():
    """20 channels over 8x8 on cores of 9 * 64 neurons: three groups, 7 + 7 + 6 with one lane,
    8 + 8 + 4 with four."""
    weight = np.ones((20, 2, 3, 3), np.int8)
    layer = QLayer("conv", (20, 8, 8), [QConnection("in", Kind.CONV, k=3, stride=1, pad=1)], np.zeros(20, np.int64),
                   mult=1, shift=0, lo=0, hi=255, weight=weight, op="conv")
    qnet = QNetwork("t", "in", (2, 8, 8), [layer], "conv")
    cfg = FabricConfig(mesh_x=2, mesh_y=2, neurons_per_core=9 * 64, weight_words_per_core=4096)
    groups = {}
    for lanes in (1, 4):
        grid = map_network(qnet, cfg.with_(lanes=lanes), "channel").grids["conv"]
        groups[lanes] = (grid.cs[:, 1] - grid.cs[:, 0] + 1).tolist()
    assert groups == {1: [7, 7, 6], 4: [8, 8, 4]}


@given(n=st.integers(1, 200), k=st.integers(1, 12), slack=st.integers(0, 3))
def test_split_odd_makes_every_group_odd_that_parity_allows(n, k, slack):
    """k groups of n channels: all odd when n and k have the same parity, else all but one (the
    sum of k odd numbers has k's parity); within `cap` of split's largest + slack, else split."""
    k = min(k, n)
    cap = int((split(n, k)[:, 1] - split(n, k)[:, 0]).max()) + 1 + slack
    tiles = split_odd(n, k, cap)
    sizes = tiles[:, 1] - tiles[:, 0] + 1
    assert tiles[0, 0] == 0 and tiles[-1, 1] == n - 1 and (tiles[1:, 0] == tiles[:-1, 1] + 1).all()
    assert len(tiles) == k and (sizes > 0).all() and sizes.max() <= cap
    if slack >= 1:      # room for the +1 a pair of even groups trades
        assert (sizes % 2 == 0).sum() == (0 if n % 2 == k % 2 else 1)
    else:
        assert np.array_equal(tiles, split(n, k)) or (sizes % 2 == 0).sum() <= 1


def depthwise(channels: int, side: int, stride: int = 1) -> QNetwork:
    """A 3x3 pad-1 depthwise conv of real (random) weights over a side x side input."""
    weight = np.random.default_rng(0).integers(-8, 9, size=(channels, 1, 3, 3)).astype(np.int8)
    out = (side - 1) // stride + 1
    layer = QLayer("dw", (channels, out, out), [QConnection("in", Kind.DW, k=3, stride=stride, pad=1)],
                   np.zeros(channels, np.int64), mult=1, shift=4, lo=0, hi=255, weight=weight, op="dw")
    return QNetwork("dw", "in", (channels, side, side), [layer], "dw")


def test_the_mapper_splits_an_even_depthwise_layer_into_odd_groups_with_lanes():
    """32 depthwise channels over 4x4 on two cores: balancing work with 2 lanes, two odd groups (their
    columns' neurons lie in distinct banks: column lanes); with one lane, or placed for memory, the
    groups keep their plain sizes."""
    qnet = depthwise(32, 4)

    def groups(cfg, objective):
        grid = map_network(qnet, cfg, objective=objective).grids["dw"]
        return sorted((grid.cs[:, 1] - grid.cs[:, 0] + 1).tolist())
    two = PRESETS["small"].with_(lanes=2)
    assert groups(two, "balanced") == [15, 17]
    assert groups(two, "memory") == [32]
    assert groups(PRESETS["small"], "balanced") == [16, 16]


def test_column_lanes_take_strided_depthwise_weights_where_one_read_holds_them():
    """Stride 2 and 4 with two lanes (their weights w, w - sx within the two words one read gives),
    stride 1 at every lane count, a constant weight at any stride; stride 2 with four lanes does not
    fit the read (3 * 2 > 4 * 2 - 4)."""
    from synfab.compiler.work import column_reach
    from synfab.layouts import column_lane_stride_ok

    def conn(stride, wconst=None):
        return QConnection("in", Kind.DW, k=3, stride=stride, pad=1, wconst=wconst)
    assert [column_lane_stride_ok(2, s) for s in (1, 2, 4, 8)] == [True, True, True, False]
    assert [column_lane_stride_ok(p, 1) for p in (1, 2, 4, 8)] == [True] * 4
    assert not column_lane_stride_ok(4, 2) and not column_lane_stride_ok(8, 2)
    assert column_reach(conn(2), 2) == 2 and column_reach(conn(2), 4) == 1
    assert column_reach(conn(8, wconst=1), 8) == 1 and column_reach(conn(2, wconst=1), 8) == 2
