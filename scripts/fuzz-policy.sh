#!/usr/bin/env bash
# Fuzz the policy loader (fuzz/fuzz_targets/policy_load.rs) for N seconds (default 60).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Not run in CI.
#   scripts/fuzz-policy.sh 300
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-policy: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi
# Seed the corpus with hand-written policies; libFuzzer grows it from there.
mkdir -p corpus/policy_load
cp -n seeds/*.json corpus/policy_load/ 2>/dev/null || true
exec cargo +nightly fuzz run policy_load corpus/policy_load -- \
    -max_total_time="$seconds" -dict=policy.dict -max_len=4096
