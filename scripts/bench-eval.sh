#!/usr/bin/env bash
# A warm `eval` of `1+1` through `bunker serve` (pre-started workers of the `eval:bun` and
# `eval:python` pools), measured as the full round trip from the Rust bench client
# (crates/client/examples/bench.rs, `bench eval`), which keeps its connection open (request
# frame out, result frame in), beside `bun -e 1` and `python3 -c 1` spawned bare and waited for
# in the same rounds. Before each eval the client waits until the pool is full again and its
# runtime has had 150 ms to reach its wait for `R` (outside the measured time), so every
# measured eval is warm (it checks `warm` and the value). Then the memory per idle pooled
# sandbox from `stats`: a plain `default` one beside a pre-started Bun and Python. Prints the
# figures and writes them into the "Warm eval" section of docs/benchmarks.md.
#
# Usage: scripts/bench-eval.sh [--rounds N] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: the release build, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=200
WRITE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

source scripts/bench-lib.sh
bench_bunker
require_tools bun python3
cargo build --release -q -p bunker-client --example bench
BENCH=target/x86_64-unknown-linux-gnu/release/examples/bench

OUT="$(mktemp -d)"
DAEMON=
cleanup() {
    if [[ -n "$DAEMON" ]]; then kill -TERM "$DAEMON" 2>/dev/null || true; wait "$DAEMON" || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

"$BUNKER" serve --socket "$OUT/bunker.sock" --pool eval:bun=1 --pool eval:python=1 \
    --pool default=1 2>"$OUT/daemon.log" &
DAEMON=$!
for _ in $(seq 500); do
    [[ -S "$OUT/bunker.sock" ]] && break
    sleep 0.01
done
[[ -S "$OUT/bunker.sock" ]] || { cat "$OUT/daemon.log" >&2; exit 1; }

"$BENCH" eval "$OUT/bunker.sock" "$ROUNDS" bun,python default > "$OUT/bench.json"

TEXT="$(python3 - "$OUT/bench.json" "$ROUNDS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import datetime, json, platform, sys

b = json.load(open(sys.argv[1]))
rounds, cpus, load = sys.argv[2], sys.argv[3], sys.argv[4]
mem = b["idle_memory_bytes_per_sandbox"]
mib = lambda n: f"{n / (1 << 20):.1f} MiB ({n // 1024} KiB)" if n is not None else "n/a"
lines = [
    f"Measured {datetime.date.today()} by `scripts/bench-eval.sh` ({rounds} interleaved rounds; "
    f"release build; run as root; kernel {platform.release()}; {cpus} CPUs shared with other "
    f"sessions' work, load average {load} at the end).",
    "",
    "| what | p50 | p99 | target |",
    "|---|---|---|---|",
]
for engine, bare in (("bun", "`bun -e 1`"), ("python", "`python3 -c 1`")):
    e = b[engine]
    target = " p50 < 2 ms, p99 < 5 ms" if engine == "bun" else " (as Bun's)"
    lines += [
        f"| warm `eval` of `1+1`, {engine} (client round trip) | {e['warm']['p50']:.2f} ms | {e['warm']['p99']:.2f} ms |{target} |",
        f"| its `wall_ms` (hand-over to checked reply, in the daemon) | {e['wall_ms']['p50']:.2f} ms | {e['wall_ms']['p99']:.2f} ms | |",
        f"| {bare} bare (spawned and waited for) | {e['bare']['p50']:.2f} ms | {e['bare']['p99']:.2f} ms | |",
    ]
lines += [
    "| mquickjs-ruby, cold (the first seed's figure, in-process) | 1–5 ms | | |",
    "",
    "| figure | value |",
    "|---|---|",
    f"| warm Bun eval / bare `bun -e 1`, p50 | {b['bun']['warm']['p50'] / b['bun']['bare']['p50']:.2f}× |",
    f"| warm Python eval / bare `python3 -c 1`, p50 | {b['python']['warm']['p50'] / b['python']['bare']['p50']:.2f}× |",
    f"| memory per idle pooled sandbox: plain (`default`) | {mib(mem.get('default'))} |",
    f"| memory per idle pooled sandbox: pre-started Bun (`eval:bun`) | {mib(mem.get('eval:bun'))} |",
    f"| memory per idle pooled sandbox: pre-started Python (`eval:python`) | {mib(mem.get('eval:python'))} |",
]
print("\n".join(lines))
PY
)"
echo "$TEXT"
if [[ "$WRITE" == 1 ]]; then
    write_bench_section eval scripts/bench-eval.sh <<<"$TEXT"
fi
