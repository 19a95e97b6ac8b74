#!/usr/bin/env bash
# Install what benchmarks/record_load.py and benchmarks/bench_peers.py need, only what is
# missing, on a fresh Debian machine with Python 3.11:
#
#     bash benchmarks/setup_bench.sh
#
# System: tcpdump (recording), tshark + capinfos (peer and packet count), tcptrace (peer),
# GNU time (peak RSS of a tool), nginx-light (the real server), apache2-utils (`ab`, the
# bulk load; wrk measured no faster here), iproute2, iptables and ethtool (the namespaced
# test network). Python (into .venv): the `bench` extra of
# pyproject.toml (nfstream, scapy, dpkt, psutil, pyshark, requests).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have tcpdump || need+=(tcpdump)
have tshark || need+=(tshark)
have capinfos || need+=(tshark)
have tcptrace || need+=(tcptrace)
[ -x /usr/bin/time ] || need+=(time)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
have ab || need+=(apache2-utils)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have ethtool || need+=(ethtool)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need+=(python3-venv); fi

bash tools/install.sh bench ${need[@]+"${need[@]}"}
echo "benchmark dependencies installed" >&2
