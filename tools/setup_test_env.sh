#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, only what is missing:
# system packages (tcpdump, iproute2, iptables, nginx for live captures; tshark for TLS
# decryption; chromium and its driver for the report's browser test; gcc and Python's
# headers for the compiled kernels), then a virtual environment in .venv with pcapdiag
# and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need+=(python3-venv); fi
# a C compiler and Python's headers build the compiled kernels (pcapdiag/_native.py)
command -v cc >/dev/null 2>&1 || need+=(gcc)
python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' \
    >/dev/null 2>&1 || need+=(python3-dev)
bash tools/install.sh test ${need[@]+"${need[@]}"}
