#!/usr/bin/env bash
# Shared by tools/setup_test_env.sh and benchmarks/setup_bench.sh:
#
#     bash tools/install.sh EXTRA [DEBIAN_PACKAGE...]
#
# installs the Debian packages given (the caller lists the missing ones; as root with
# apt-get, else it says what to install), then .venv with pcapdiag and its EXTRA extras.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=$1
shift
if [ $# -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing system packages: $*" >&2
        export DEBIAN_FRONTEND=noninteractive
        # tshark asks whether non-root users may capture; answer no instead of prompting.
        echo "wireshark-common wireshark-common/install-setuid boolean false" |
            debconf-set-selections
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        echo "missing system packages (install them as root): $*" >&2
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[$extra]"
# Bytecode, as pip writes it for an installed (not editable) package: where
# PYTHONDONTWRITEBYTECODE is set, pcapdiag's modules would otherwise be compiled again at
# every start (0.2 s of each run of the command; benchmarks/ measures the command).
.venv/bin/python -m compileall -q pcapdiag
# The kernels built ahead of time (pcapdiag/_native.py; about a minute, once): without a C
# compiler or Python's headers they are not, and analysis uses numba's JIT kernels.
.venv/bin/python -m pcapdiag._native >/dev/null ||
    echo "compiled kernels not built (see the .failed file named above): numba's JIT kernels will be used" >&2
