"""compiler.tables.pack / unpack (vectorised over the entries) give exactly the words of the
layouts' own Layout.pack / Layout.unpack, for every table layout of every version and preset."""
import numpy as np
import pytest

from synfab.compiler.tables import pack, unpack
from synfab.config import PRESETS
from synfab.layouts import LAYOUT_VERSIONS, STREAM_EVENT, esu_desc, packet, peg_entry, pop_desc


def layouts():
    for preset in sorted(PRESETS):
        cfg = PRESETS[preset]
        for v in LAYOUT_VERSIONS:
            for make in (peg_entry, esu_desc, pop_desc):
                yield f"{preset}/v{v}/{make.__name__}", make(cfg, v)
        yield f"{preset}/packet", packet(cfg)
    yield "stream_event", STREAM_EVENT


@pytest.mark.parametrize("name,layout", list(layouts()), ids=[n for n, _ in layouts()])
def test_vectorised_pack_equals_layout_pack(name, layout):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for n in (0, 1, 37):
        cols = {}
        for f in layout.fields:
            lo, hi = layout.field_range(f)
            v = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64)
            if n:
                v[0], v[-1] = lo, hi             # the extremes of every field
            cols[f.name] = v
        words = pack(layout, cols)
        assert words.dtype == np.uint32 and words.shape == (n, layout.words32)
        assert np.array_equal(words, layout.pack(cols))
        back = unpack(layout, words)
        want = layout.unpack(words)
        assert back.keys() == want.keys()
        for k in want:
            assert back[k].dtype == want[k].dtype and np.array_equal(back[k], want[k])
            assert np.array_equal(back[k], cols[k])


def test_pack_refuses_what_a_field_cannot_hold():
    layout = STREAM_EVENT
    cols = {f.name: np.zeros(1, np.int64) for f in layout.fields}
    cols["x"][0] = 1 << layout.by_name["x"].width
    with pytest.raises(ValueError, match="field x="):
        pack(layout, cols)
