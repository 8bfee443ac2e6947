"""A real DVS recording, end to end on the Verilator fabric, checked against the golden model.

Recording (DVXplorer sample, pinned by sha256) -> `synfab events convert` (crop, downsample) ->
a CNN for 2-channel 32x32 input, quantized with frames of the same recording -> `synfab compile`
-> `synfab run --backend sim --check`.
"""
import json

import numpy as np
import pytest

from synfab import api, events
from synfab.frontend import netfile
from synfab.cli import main
from synfab.analysis.workloads import dvs_network as dvs_cnn   # the benchmark's DVS workload network

pytestmark = pytest.mark.slow


def test_dvs_recording_runs_bit_exact_on_the_sim(tmp_path, capsys):
    src = events.samples.fetch("dvxplorer")
    small = tmp_path / "dvs32.npz"
    # 320x240 sensor: crop the central 256x240, downsample 8x -> 32x30.
    assert main(["events", "convert", str(src), str(small), "--crop", "32,0,256,240",
                 "--downsample", "8", "--json"]) == 0
    capsys.readouterr()
    rec = events.read(small)
    assert (rec.width, rec.height) == (32, 30)
    # Pad the 30 rows to the network's 32 by declaring the sensor 32x32 (events keep their coordinates).
    rec = events.Recording(rec.events, 32, 32, rec.format, rec.path)
    padded = tmp_path / "dvs32x32.npz"
    events.write(padded, rec)

    frames = api.recording_frames(padded, (2, 32, 32), window_ms=20)
    assert frames.shape[0] >= 10 and frames.sum() > 0
    net = tmp_path / "dvs_cnn.json"
    netfile.save(dvs_cnn(), net)
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=frames[:10].astype(np.uint8))
    bundle = tmp_path / "dvs.sfb"
    assert main(["compile", str(net), "-o", str(bundle), "--calib", str(calib)]) == 0
    capsys.readouterr()

    rc = main(["run", str(bundle), "--backend", "sim", "--events", str(padded), "--window-ms", "20",
               "--frames", "8", "--check", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads(out)
    model_rc = main(["run", str(bundle), "--backend", "model", "--events", str(padded), "--window-ms", "20",
                     "--frames", "8", "--json"])
    model = json.loads(capsys.readouterr().out)
    assert model_rc == 0
    assert res["summary"]["checked_against_model"] is True
    assert res["summary"]["frames"] == 8
    assert res["summary"]["events"] == model["summary"]["events"] > 0
    assert res["summary"]["synaptic_ops"] == model["summary"]["synaptic_ops"] > 0
    assert res["predictions"] == model["predictions"]
    assert res["layer_spikes"] == model["layer_spikes"]
    assert res["summary"]["cycles"] > 0


def test_wrong_sensor_size_is_one_line(tmp_path, capsys):
    src = events.samples.fetch("dvxplorer")
    net = tmp_path / "dvs_cnn.json"
    netfile.save(dvs_cnn(), net)
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=np.ones((2, 2, 32, 32), np.uint8))
    bundle = tmp_path / "dvs.sfb"
    assert main(["compile", str(net), "-o", str(bundle), "--calib", str(calib)]) == 0
    capsys.readouterr()
    rc = main(["run", str(bundle), "--events", str(src)])
    err = capsys.readouterr().err
    assert rc == 1 and "320x240" in err and "32x32" in err and len(err.strip().splitlines()) == 1
