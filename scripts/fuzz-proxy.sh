#!/usr/bin/env bash
# Fuzz the proxy's parsers of bytes from the sandbox (fuzz/fuzz_targets/proxy_http.rs and
# proxy_socks5.rs) for N seconds each (default 60). Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Not run in CI.
#   scripts/fuzz-proxy.sh 300
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-proxy: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi
# Seeds: request targets with Host headers, and SOCKS5 greetings and requests.
mkdir -p corpus/proxy_http corpus/proxy_socks5
printf 'http://example.com:8080/a?b#c\nexample.com:8080' >corpus/proxy_http/forward
printf '0x7f.1:443' >corpus/proxy_http/connect-hex
printf '[::ffff:127.0.0.1]:80' >corpus/proxy_http/connect-mapped
printf 'http://2130706433/\n127.0.0.1\nclose, X-Hop' >corpus/proxy_http/decimal
printf '\x05\x01\x00' >corpus/proxy_socks5/greeting
printf '\x05\x01\x00\x03\x08evil.com\x01\xbb' >corpus/proxy_socks5/domain
printf '\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50' >corpus/proxy_socks5/ipv4
for target in proxy_http proxy_socks5; do
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=1024
done
