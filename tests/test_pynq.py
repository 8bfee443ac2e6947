"""The pynq backend end to end on the simulated PYNQ-Z2 (runtime/pynq_mock.py): PYNQ's Overlay,
MMIO and AXI DMA driver run unchanged over the Verilator fabric; results are bit-exact with the
dense reference and the golden model, and DMA transfers respect the overlay's length register."""
import math
import re
import shutil
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pynq = pytest.importorskip("pynq")

from synfab import api, randnet
from synfab.model import reference  # noqa: E402
from synfab.config import FabricConfig  # noqa: E402
from synfab.demo import demo_qnetwork, load_demo_digits  # noqa: E402
from synfab.layouts import IP_VLNV, RegisterMap  # noqa: E402
from synfab.frontend.quant import quantize_input  # noqa: E402
from synfab.runtime import pynq_mock  # noqa: E402
from synfab.runtime.device import DeviceError  # noqa: E402
from synfab.runtime.model import ModelDevice  # noqa: E402
from synfab.runtime.pynq import PynqDevice  # noqa: E402
from synfab.runtime.stream import MismatchError  # noqa: E402
from synfab_gateware.vivado import project as vivado  # noqa: E402

CFG = FabricConfig()            # the demo network's fabric: one Verilator build serves every test
BEAT = 8
RANDOM_SEED = 5                 # a random network whose 84-neuron output fills several small receives


@pytest.fixture(scope="module")
def board():
    dev = pynq_mock.activate()
    yield dev
    pynq_mock.deactivate()


@pytest.fixture(scope="module")
def overlay_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("overlays")


def overlay(directory, width):
    return pynq_mock.write_overlay(CFG, directory, name=f"synfab_w{width}", dma_length_width=width)


def demo_frames(n):
    qnet = demo_qnetwork()
    imgs, _ = load_demo_digits(n)
    return qnet, np.stack([quantize_input(qnet, im.astype(np.float32) / 255.0) for im in imgs])


def random_frames(qnet, seed, n, change=0.5):
    rng = np.random.default_rng(seed)
    frames, prev = [], None
    for _ in range(n):
        prev = randnet.random_input(qnet, rng, prev, change)
        frames.append(prev)
    return np.stack(frames)


def input_events_per_frame(frames):
    """Input events of each frame: the values that changed against the previous frame (or zero)."""
    prev = np.concatenate([np.zeros_like(frames[:1]), frames[:-1]])
    return [int(np.count_nonzero(a != b)) for a, b in zip(frames, prev)]


def model_output_events(tables, frames):
    """Output events per frame on the golden model (an independent backend)."""
    from synfab.runtime.stream import input_deltas
    dev = ModelDevice(tables.cfg)
    dev.load(tables)
    prev, counts = np.zeros_like(frames[0]), []
    for x in frames:
        counts.append(len(dev.run_frame(input_deltas(prev, x)).events))
        prev = x
    return counts


def transfers(board, channel):
    return [t for t in board.transfers if t.channel == channel]


def assert_split(board, width, n_in, n_out):
    """Every transfer fits the length register; MM2S sends each frame's beats (events + eof) in
    ceil(beats / per_transfer) transfers, S2MM takes each frame's outputs (+ eof) likewise."""
    per_transfer = ((1 << width) - 1) // BEAT
    sends, recvs = transfers(board, "MM2S"), transfers(board, "S2MM")
    assert all(t.length < 1 << width for t in sends + recvs)
    assert len(sends) == sum(math.ceil((n + 1) / per_transfer) for n in n_in)
    assert sum(t.moved for t in sends) == BEAT * sum(n + 1 for n in n_in)
    assert len(recvs) == sum(math.ceil((n + 1) / per_transfer) for n in n_out)
    assert sum(t.moved for t in recvs) == BEAT * sum(n + 1 for n in n_out)


def test_demo_is_bit_exact_with_reference_on_the_block_design_overlay(board, overlay_dir):
    qnet, x = demo_frames(3)
    tables = api.compile_qnetwork(qnet, CFG)
    bit = pynq_mock.write_overlay(CFG, overlay_dir, name="demo")     # the block design's DMA (26 bits)
    out = api.run_frames(tables, x, backend="pynq", check=True, device_args={"bitstream": str(bit)})
    res = out["result"]
    assert res.checked and res.frames == 3
    for t, xi in enumerate(x):
        assert np.array_equal(res.outputs[t], reference.run(qnet, xi)[qnet.output])
    # Each frame fits one transfer each way; FCLK0 was programmed to the overlay's 100 MHz.
    assert_split(board, 26, input_events_per_frame(x), model_output_events(tables, x))
    assert [t.channel for t in board.transfers] == ["S2MM", "MM2S"] * 3
    assert pynq.Clocks.fclk0_mhz == pytest.approx(vivado.FCLK_MHZ)


@pytest.mark.parametrize("width", [8, 10])
def test_random_network_transfers_are_split_to_the_length_register(board, overlay_dir, width):
    qnet = randnet.random_qnetwork(RANDOM_SEED, CFG)
    tables = api.compile_qnetwork(qnet, CFG)
    x = random_frames(qnet, RANDOM_SEED, 3)
    n_in, n_out = input_events_per_frame(x), model_output_events(tables, x)
    per_transfer = ((1 << width) - 1) // BEAT
    assert max(n_in) + 1 > per_transfer       # the first frame needs several send transfers
    out = api.run_frames(tables, x, backend="pynq", check=True,
                         device_args={"bitstream": str(overlay(overlay_dir, width))})
    for t, xi in enumerate(x):
        assert np.array_equal(out["result"].outputs[t], reference.run(qnet, xi)[qnet.output])
    assert_split(board, width, n_in, n_out)
    if width == 8:
        assert max(n_out) + 1 > per_transfer  # ... and several receives


@pytest.fixture(scope="module")
def narrow_device(board, overlay_dir):
    qnet = randnet.random_qnetwork(RANDOM_SEED, CFG)
    tables = api.compile_qnetwork(qnet, CFG)
    dev = PynqDevice(CFG, bitstream=overlay(overlay_dir, 9))
    dev.load(tables)
    yield qnet, tables, dev
    dev.close()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), change=st.floats(0.05, 1.0))
def test_random_frames_after_reset_split_and_match_the_model(board, narrow_device, seed, change):
    qnet, tables, dev = narrow_device
    dev.reset()
    board.transfers.clear()
    x = random_frames(qnet, seed, 2, change)
    out = api.run_frames(tables, x, check=True, device=dev)
    assert out["summary"]["frames"] == 2
    assert_split(board, 9, input_events_per_frame(x), model_output_events(tables, x))


def test_check_compares_the_counters_read_through_the_driver(board, narrow_device, monkeypatch):
    """--check on the pynq backend compares counters too: one counter word read wrong stops the run."""
    qnet, tables, dev = narrow_device
    dev.reset()
    addr = dev.regmap.core_counter(1, "packets_in")
    read = dev._read

    def off_by_one(addrs):
        words = np.array(read(addrs), dtype=np.int64)
        words[np.asarray(addrs) == addr] += 1
        return words
    monkeypatch.setattr(dev, "_read", off_by_one)
    with pytest.raises(MismatchError, match=r"^frame 0: core 1 counter packets_in: (\d+) vs model (?!\1)\d+$"):
        api.run_frames(tables, random_frames(qnet, 1, 2), check=True, device=dev)


def test_wrong_config_bitstream_is_refused_and_the_board_stays_usable(board, overlay_dir):
    bit = overlay(overlay_dir, 14)
    with pytest.raises(DeviceError, match=r"core was built for another fabric configuration \(crc"):
        PynqDevice(CFG.with_(name="other"), bitstream=bit)       # same register map, another crc
    bigger = CFG.with_(mesh_x=8)
    with pytest.raises(DeviceError, match=rf"maps {vivado.address_range(CFG):#x} bytes to the synfab IP but "
                                          rf"fabric .* has a {RegisterMap(bigger).size:#x}-byte register map"):
        PynqDevice(bigger, bitstream=bit)
    qnet, x = demo_frames(1)
    tables = api.compile_qnetwork(qnet, CFG)
    out = api.run_frames(tables, x, backend="pynq", check=True, device_args={"bitstream": str(bit)})
    assert np.array_equal(out["result"].outputs[0], reference.run(qnet, x[0])[qnet.output])


def test_a_transfer_that_does_not_finish_in_time_is_reported_and_a_reopened_device_works(board, overlay_dir):
    qnet, x = demo_frames(1)
    tables = api.compile_qnetwork(qnet, CFG)
    bit = overlay(overlay_dir, 14)
    dev = PynqDevice(CFG, bitstream=bit, timeout_s=0.0)
    dev.load(tables)
    with pytest.raises(DeviceError, match=r"DMA (send|receive) transfer did not finish within 0 s"):
        api.run_frames(tables, x, device=dev)
    out = api.run_frames(tables, x, backend="pynq", check=True, device_args={"bitstream": str(bit)})
    assert np.array_equal(out["result"].outputs[0], reference.run(qnet, x[0])[qnet.output])


def test_missing_files_are_named(board, tmp_path):
    bit = overlay(tmp_path, 14)
    lone = tmp_path / "lone" / "synfab.bit"
    lone.parent.mkdir()
    shutil.copy(bit, lone)
    with pytest.raises(DeviceError, match=r"synfab\.hwh not found: PYNQ needs the hardware handoff"):
        PynqDevice(CFG, bitstream=lone)
    with pytest.raises(DeviceError, match=r"bitstream .*nothing\.bit not found"):
        PynqDevice(CFG, bitstream=tmp_path / "nothing.bit")


def edited_overlay(tmp_path, edit):
    """An overlay whose .hwh was changed by edit(root element)."""
    bit = overlay(tmp_path, 14)
    hwh = bit.with_suffix(".hwh")
    tree = ET.parse(hwh)
    edit(tree.getroot())
    tree.write(hwh)
    return bit


def test_overlay_without_the_synfab_ip_is_refused(board, tmp_path):
    def drop_fabric(root):
        modules = root.find("MODULES")
        modules.remove(next(m for m in modules if m.get("VLNV") == IP_VLNV))
        ps_map = root.find(".//MODULE[@INSTANCE='ps7']/MEMORYMAP")
        ps_map.remove(next(r for r in ps_map if r.get("INSTANCE") == "synfab"))
    with pytest.raises(DeviceError, match=rf"has 0 synfab IPs \({IP_VLNV}\).*its IPs: dma, ps7"):
        PynqDevice(CFG, bitstream=edited_overlay(tmp_path, drop_fabric))


def test_overlay_with_a_scatter_gather_dma_is_refused(board, tmp_path):
    def sg_mode(root):
        root.find(".//MODULE[@INSTANCE='dma']//PARAMETER[@NAME='c_include_sg']").set("VALUE", "1")
    with pytest.raises(DeviceError, match="scatter-gather or micro mode"):
        PynqDevice(CFG, bitstream=edited_overlay(tmp_path, sg_mode))
    with pytest.raises(DeviceError, match=r"no AXI DMA \(xilinx.com:ip:axi_dma:7.1\) named .axi_dma_0. \(AXI DMAs: dma\)"):
        PynqDevice(CFG, bitstream=overlay(tmp_path, 14), dma_name="axi_dma_0")


def test_hwh_agrees_with_the_vivado_block_design(tmp_path):
    """Instance names, addresses and the DMA configuration of the generated .hwh, as PYNQ parses
    it, are those the Tcl block design creates."""
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import RuntimeMetadataParser
    from synfab.runtime.hwh import write_hwh
    tcl = vivado.block_design_tcl(CFG)
    cells = {name: vlnv for vlnv, name in re.findall(r"create_bd_cell -type ip -vlnv (\S+) (\w+)\]", tcl)}
    addrs = {seg: (int(off, 16), int(rng, 16)) for seg, off, rng in
             re.findall(r"get_bd_addr_segs (\S+)\] -offset (0x[0-9a-f]+) -range (0x[0-9a-f]+)", tcl)}
    dma_config = dict(re.findall(r"CONFIG\.(c_\w+) \{(\d+)\}", tcl))
    ip = RuntimeMetadataParser(Metadata(input=str(write_hwh(CFG, tmp_path / "synfab.hwh")))).ip_dict
    assert {name: ip[name]["type"] for name in ip} == {name: cells[name] for name in ("ps7", "dma", "synfab")}
    assert cells["synfab"] == IP_VLNV
    assert (ip["synfab"]["phys_addr"], ip["synfab"]["addr_range"]) == addrs["synfab/s_axil/regs"]
    assert (ip["dma"]["phys_addr"], ip["dma"]["addr_range"]) == addrs["dma/S_AXI_LITE/Reg"]
    assert ip["synfab"]["addr_range"] >= RegisterMap(CFG).size
    for key in ("c_include_sg", "c_sg_length_width", "c_m_axi_mm2s_data_width", "c_m_axis_mm2s_tdata_width",
                "c_m_axi_s2mm_data_width"):
        assert ip["dma"]["parameters"][key] == dma_config[key], key


def dma_regs(board):
    """MMIO onto the DMA registers of the downloaded overlay."""
    base, size = board.dma_window
    return pynq.MMIO(base, size, device=board)


def test_mock_dma_follows_the_register_semantics(board, overlay_dir):
    dev = PynqDevice(CFG, bitstream=overlay(overlay_dir, 14))      # pynq's DMA driver started both channels
    mmio = dma_regs(board)
    mm2s_sr, s2mm_sr = 0x04, 0x34
    assert mmio.read(mm2s_sr) & 0x3 == 0                # running, not idle before the first transfer
    buf = pynq.allocate((4,), np.uint64)
    mmio.write(0x18, buf.physical_address)
    mmio.write(0x28, 0)                                 # zero length: internal error, channel halts
    assert mmio.read(mm2s_sr) & 0x11 == 0x11 and mmio.read(0x00) & 1 == 0
    mmio.write(0x28, 32)                                # a halted channel ignores the length
    assert [t.length for t in board.transfers[-1:]] == [0]
    mmio.write(0x00, 0x4)                               # soft reset clears the error, both channels halt
    assert mmio.read(mm2s_sr) == 0x1 and mmio.read(s2mm_sr) == 0x1
    mmio.write(0x30, 0x1)
    mmio.write(0x48, buf.physical_address + buf.nbytes)   # beyond every allocated buffer
    mmio.write(0x58, 8)
    assert mmio.read(s2mm_sr) & 0x41 == 0x41            # decode error, halted
    # The driver's channels recover after a reset and a frame still runs bit-exact.
    dev._restart_dma()
    qnet, x = demo_frames(1)
    tables = api.compile_qnetwork(qnet, CFG)
    dev.load(tables)
    out = api.run_frames(tables, x, check=True, device=dev)
    assert np.array_equal(out["result"].outputs[0], reference.run(qnet, x[0])[qnet.output])
    assert mmio.read(s2mm_sr) & 0x1002 == 0x1002        # idle with IOC set; IOC is write-1-to-clear
    mmio.write(s2mm_sr, 0x1000)
    assert mmio.read(s2mm_sr) & 0x1000 == 0


def test_no_board_is_a_clear_error_and_the_environment_variable_finds_the_simulated_one(board, overlay_dir,
                                                                                       monkeypatch):
    bit = overlay(overlay_dir, 14)
    monkeypatch.delenv(pynq_mock.MOCK_ENV, raising=False)
    monkeypatch.delattr(pynq.Device, "_devices", raising=False)
    pynq_mock.deactivate()
    try:
        with pytest.warns(UserWarning, match="No devices found"):
            with pytest.raises(DeviceError, match=r"no PYNQ device found: .*SYNFAB_PYNQ_MOCK=1"):
                PynqDevice(CFG, bitstream=bit)
        monkeypatch.delattr(pynq.Device, "_devices", raising=False)
        monkeypatch.delattr(pynq.Device, "_active_device", raising=False)
        monkeypatch.setenv(pynq_mock.MOCK_ENV, "1")
        dev = PynqDevice(CFG, bitstream=bit)
        assert dev.overlay.device is board
    finally:
        pynq_mock.activate()
