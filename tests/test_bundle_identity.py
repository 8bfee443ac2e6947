"""Bundles, device words and footprint reports are byte for byte what main 242a849 produced.

tests/data/bundle_digests.json was written by tests/bundle_cases.py before the host package was
laid out as its data path (issue 10, item 5): every shipped network on every preset and mapping
strategy, the DVS workload, a seeded sample of random networks (geometry, weight shifts, neuron
models, random fabrics), Lava's netx networks, the zoo's footprint reports, and the one-line
errors of what does not fit.  Nothing here is computed from the reference side.
"""
import json

import pytest

import bundle_cases


@pytest.mark.parametrize("name", [name for name, _ in bundle_cases.cases()])
def test_identical_to_main(name):
    want = json.loads(bundle_cases.DIGESTS.read_text())[name]
    got = dict(bundle_cases.cases())[name]()
    assert got == want
