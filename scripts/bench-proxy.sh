#!/usr/bin/env bash
# Egress proxy benchmark, in one run on host loopback: 100 MB through the forward path, the
# CONNECT path and SOCKS5 against a direct download (curl), and the latency of 1,000 small
# requests over one keep-alive connection, direct and through the forward proxy. Prints ratios.
#   scripts/bench-proxy.sh [MEGABYTES] [REQUESTS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "bench-proxy: needs curl" >&2; exit 2; }
cargo build --release -q -p bunker-proxy --example bench
exec target/x86_64-unknown-linux-gnu/release/examples/bench "${1:-100}" "${2:-1000}" "${3:-5}"
