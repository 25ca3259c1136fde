#!/usr/bin/env bash
# Fuzz the frame parser of `bunker serve` (fuzz/fuzz_targets/protocol_frame.rs) for N seconds
# (default 60). Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Not run
# in CI (fuzz/ is outside the workspace); `cargo build --manifest-path fuzz/Cargo.toml` checks
# that the targets build on stable.
#   scripts/fuzz-protocol.sh 300
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-protocol: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi
# Seeds: the first byte is the size bound / 16, then the stream.
mkdir -p corpus/protocol_frame
printf '\x10\x00\x00\x00\x1a{"op":"hello","version":1}' >corpus/protocol_frame/hello
printf '\x10\x00\x00\x00\x24{"id":1,"op":"kill","sandbox":"s-1"}' >corpus/protocol_frame/kill
printf '\x01\x40\x00\x00\x00' >corpus/protocol_frame/oversized
printf '\x10\x00\x00\x00\x02\xc3\x28' >corpus/protocol_frame/not-utf8
cargo +nightly fuzz run protocol_frame corpus/protocol_frame -- -max_total_time="$seconds" -max_len=4096
