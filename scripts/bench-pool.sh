#!/usr/bin/env bash
# A warm `/bin/true` through `bunker serve --pool` beside its anchors, in one run: bare
# `/bin/true` and `unshare -Urpnmif --mount-proc /bin/true`, each spawned and waited for, and a
# `run` of `/bin/true` under the pooled `default` profile, measured as the full round trip from
# the Rust bench client (crates/client/examples/bench.rs, `bench pool`), which keeps its
# connection open (request frame out, result frame in), waiting before each run until the pool is full again so every run is warm. A cold run
# through the same daemon (a policy no pool fits) is measured too. Rounds interleave the four,
# so load changes hit all alike. Then the refill rate (sandboxes prepared per second after a burst
# empties the pool, from `stats`) beside cold `bunker run` in a loop. Prints p50/p99 and the
# ratios to unshare, and writes them into
# the "Warm pools" section of docs/benchmarks.md.
#
# Usage: scripts/bench-pool.sh [--runs N] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: target/x86_64-unknown-linux-gnu/release/bunker, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=300
WRITE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

source scripts/bench-lib.sh
bench_bunker
require_tools unshare python3
cargo build --release -q -p bunker-client --example bench
BENCH=target/x86_64-unknown-linux-gnu/release/examples/bench

OUT="$(mktemp -d)"
"$BUNKER" serve --socket "$OUT/bunker.sock" --pool default=2 2>"$OUT/daemon.log" &
DAEMON=$!
trap 'kill "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null; rm -rf "$OUT"' EXIT

for _ in $(seq 500); do
    [[ -S "$OUT/bunker.sock" ]] && break
    sleep 0.01
done
[[ -S "$OUT/bunker.sock" ]] || { cat "$OUT/daemon.log" >&2; exit 1; }
RESULT="$("$BENCH" pool "$OUT/bunker.sock" "$BUNKER" "$RUNS")"

TABLE="$(python3 - "$RESULT" "$RUNS" "$(nproc)" <<'PY'
import json, sys
r, runs, cpus = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
u = r["unshare"]["p50"]
rows = [("bare `/bin/true`", "bare"),
        ("`unshare -Urpnmif --mount-proc /bin/true`", "unshare"),
        ("`bunker serve --pool default`: warm `run` of `/bin/true` (client round trip)", "warm"),
        ("same daemon, cold `run` (no pool fits)", "cold")]
print(f"{runs} interleaved rounds, {cpus} CPUs; p50 / p99 in ms; ratio = p50 / unshare's p50.\n")
print("| what | p50 ms | p99 ms | ratio to unshare |")
print("|---|---|---|---|")
for label, k in rows:
    print(f"| {label} | {r[k]['p50']:.3f} | {r[k]['p99']:.3f} | {r[k]['p50'] / u:.2f}× |")
f, l = r["refill_per_s"], r["run_loop_per_s"]
print("\nRefill after a burst that empties the pool (2 warm runs), from the first run's end until")
print("`stats` shows it full, against cold `bunker run -- /bin/true` in a loop; per second, p50 / p1.\n")
print("| what | p50 per s | p1 per s |")
print("|---|---|---|")
print(f"| pool refill: sandboxes prepared | {f['p50']:.0f} | {f['p1']:.0f} |")
print(f"| `bunker run -- /bin/true` in a loop: runs | {l['p50']:.0f} | {l['p1']:.0f} |")
PY
)"
echo "$TABLE"
if [[ "$WRITE" == 1 ]]; then
    echo "$TABLE" | write_bench_section pool scripts/bench-pool.sh
fi
