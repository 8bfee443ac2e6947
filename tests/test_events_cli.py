"""`synfab events info|convert` and their Python twins."""
import json

import numpy as np
import pytest

from synfab.errors import SynfabError
from synfab.events import Recording, make_events, read, write
from synfab.events import cli as events_cli
from synfab.events import samples


@pytest.fixture
def small_npz(tmp_path):
    # 4 events over 2 s, 3 ON / 1 OFF, on a 64x48 sensor.
    ev = make_events([1, 40, 41, 63], [2, 30, 30, 47], [1_000_000, 1_500_000, 2_000_000, 3_000_000],
                     [1, 1, 0, 1])
    return write(tmp_path / "small.npz", Recording(ev, 64, 48, "evt3"))


def test_info_dict(small_npz):
    info = events_cli.info(small_npz)
    assert info["events"] == 4 and (info["width"], info["height"]) == (64, 48)
    assert info["format"] == "npz"
    assert info["duration_s"] == 2.0 and info["rate_ev_per_s"] == 2.0
    assert (info["on_events"], info["off_events"], info["on_fraction"]) == (3, 1, 0.75)
    assert (info["t_first_us"], info["t_last_us"]) == (1_000_000, 3_000_000)


def test_convert_with_transforms_and_zero_time(small_npz, tmp_path):
    from synfab.events import Crop, Downsample
    out = events_cli.convert(small_npz, tmp_path / "out.raw", [Crop(32, 16, 32, 32), Downsample(factor=4)],
                             zero_time=True)
    assert out["format"] == "evt2" and out["events"] == 3 and (out["width"], out["height"]) == (8, 8)
    rec = read(tmp_path / "out.raw")
    # (40,30) (41,30) (63,47) -> minus (32,16) -> (8,14) (9,14) (31,31) -> /4 -> (2,3) (2,3) (7,7); t from 0.
    assert [tuple(int(v) for v in e) for e in rec.events[["x", "y", "t", "p"]]] == [
        (2, 3, 0, 1), (2, 3, 500_000, 0), (7, 7, 1_500_000, 1)]
    assert rec.sensor_size == (8, 8)


def test_main_cli_info_json_and_convert(small_npz, tmp_path, capsys):
    from synfab.cli import main
    assert main(["events", "info", str(small_npz), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 4
    dst = tmp_path / "c.npz"
    assert main(["events", "convert", str(small_npz), str(dst), "--crop", "0,0,42,31",
                 "--refractory-us", "10", "--downsample", "2"]) == 0
    assert "events: 3" in capsys.readouterr().out
    assert read(dst).sensor_size == (21, 16)


def test_cli_errors_are_one_line(small_npz, tmp_path, capsys):
    assert events_cli.main(["convert", str(small_npz), str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("synfab: error:") and "x.csv" in err and "\n" not in err
    (tmp_path / "junk.raw").write_bytes(b"% evt 3.0\n\x01")
    assert events_cli.main(["info", str(tmp_path / "junk.raw")]) == 1
    assert "truncated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        events_cli.main(["convert", str(small_npz), str(tmp_path / "y.npz"), "--crop", "1,2"])


def test_convert_refuses_late_times_in_evt2_without_zero_time(small_npz, tmp_path):
    late = write(tmp_path / "late.npz", Recording(make_events([1], [1], [2**35], [1]), 4, 4))
    with pytest.raises(SynfabError, match="zero-time"):
        events_cli.convert(late, tmp_path / "late.raw")


def test_info_on_a_real_recording(capsys):
    pytest.importorskip("faery")
    path = samples.fetch("dvxplorer")
    assert events_cli.main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "width: 320" in text and "height: 240" in text and "format: aedat4" in text
    info = events_cli.info(path)
    assert 0 < info["on_fraction"] < 1 and info["rate_ev_per_s"] > 1000
    assert np.isclose(info["rate_ev_per_s"], info["events"] / info["duration_s"])
