"""Every shipped network, workload, zoo entry, Lava netx vector and a seeded sample of random
networks, compiled: the digests tests/test_bundle_identity.py compares with
tests/data/bundle_digests.json.

That file was written by this module (`python tests/bundle_cases.py --write`) at main 242a849,
before the host package was laid out as its data path (issue 10, item 5): the bundles, the words a
device is loaded with (tables_to_words at the fabric's layout version) and the footprint reports
of the zoo must stay byte for byte what they were.  Uses only import paths that existed then.

Regenerated once since, when the mapper's default placement objective became `balanced` (issue 11,
item 2): the bundles of the networks whose synaptic work it spreads over more cores changed (each
still bit-exact with the golden model and the dense reference), the zoo reports gained
`objective` and `weight_replication` (their placements and every other figure unchanged), and
every other case kept its digest (the commit that rewrote the file lists the changed cases).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

DIGESTS = Path(__file__).parent / "data" / "bundle_digests.json"
RANDOM_SEEDS = range(24)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _words_digest(words: dict) -> str:
    h = hashlib.sha256()
    for (core, name), w in words.items():
        h.update(f"{core}.{name}:{w.shape}".encode())
        h.update(np.ascontiguousarray(w, dtype="<u4").tobytes())
    return h.hexdigest()


def tables_digest(tables) -> dict:
    from synfab import bundle
    from synfab.compiler import tables_to_words
    from synfab.layouts import FABRIC_LAYOUT_VERSION
    data = bundle.encode(tables)
    again = bundle.encode(bundle.decode(data))
    return {"bundle": _sha(data), "bytes": len(data), "reencoded": _sha(again),
            "fabric_words": _words_digest(tables_to_words(tables, FABRIC_LAYOUT_VERSION))}


def _compiled(qnet, cfg, strategy="auto") -> dict:
    from synfab.compiler import compile_network
    from synfab.errors import SynfabError
    from synfab.mapper import map_network
    try:
        return tables_digest(compile_network(qnet, cfg, map_network(qnet, cfg, strategy)))
    except SynfabError as e:
        return {"error": f"{type(e).__name__}: {e}"}


def cases(slow: bool = True):
    """(name, thunk -> dict) for every case."""
    from synfab import demo, footprint, randnet, zoo
    from synfab.config import PRESETS
    # Presets added (loihi) or refit (colorlight-i5: the sigma-delta options cost it 100 FF per
    # core) after the digests were written: their fabrics are not those of the digests.
    NEWER_PRESETS = {"loihi", "colorlight-i5"}
    for name in ("demo", "lenet"):
        yield f"{name}@own", lambda n=name: _compiled(demo.qnetwork(n), demo.fabric(n))
        for strategy in ("channel", "spatial"):
            yield f"{name}@own/{strategy}", lambda n=name, s=strategy: _compiled(demo.qnetwork(n), demo.fabric(n), s)
        for preset in sorted(set(PRESETS) - NEWER_PRESETS):
            yield f"{name}@{preset}", lambda n=name, p=preset: _compiled(demo.qnetwork(n), PRESETS[p])

    def dvs():
        from synfab import quant, workloads
        x = workloads.dvs_frames(workloads.DVS_CALIBRATION_FRAMES)
        qnet = quant.quantize(workloads.dvs_network(), x.astype(np.float32), input_scale=1.0)
        return _compiled(qnet, PRESETS["default"])
    yield "workload:dvs_dvxplorer", dvs
    kinds = randnet.BLOCKS + randnet.GEOMETRY_KINDS
    for seed in RANDOM_SEEDS:
        def rand(seed=seed):
            cfg = randnet.random_fabric_config(np.random.default_rng(seed))
            rng = np.random.default_rng(1000 + seed)
            qnet = randnet.random_qnetwork(rng, cfg, kinds)
            out = {"plain": _compiled(qnet, cfg),
                   "shifted": _compiled(randnet.with_weight_shifts(rng, qnet, cfg), cfg),
                   "neurons": _compiled(randnet.random_neuron_qnetwork(rng, cfg), cfg)}
            for strategy in ("channel", "spatial"):
                out[strategy] = _compiled(qnet, cfg, strategy)
            return out
        yield f"random:{seed}", rand
    for name in zoo.NAMES:
        yield f"zoo:{name}", lambda n=name: {"footprint": _sha(json.dumps(
            footprint.analyze(zoo.get(n)), sort_keys=True, default=str).encode())}
    if slow:
        from synfab import netx, netx_vectors
        for name, file in (("pilotnet_sdnn", "network.net"), ("pilotnet_sdnn", "square_network.net"),
                           ("pilotnet_lif", "network.net")):
            def lava(name=name, file=file):
                qnet = netx.load(netx_vectors.fetch(name) / file)
                return _compiled(qnet, netx.fabric(qnet))
            yield f"netx:{name}/{file}", lava


def compute(slow: bool = True) -> dict:
    return {name: thunk() for name, thunk in cases(slow)}


if __name__ == "__main__":
    import time
    t = time.time()
    out = {}
    for name, thunk in cases():
        t0 = time.time()
        out[name] = thunk()
        print(f"{name}: {time.time() - t0:.1f} s", file=sys.stderr)
    if "--write" in sys.argv:
        DIGESTS.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps(out, indent=1, sort_keys=True)[:3000], f"\n{time.time() - t:.1f} s", file=sys.stderr)
