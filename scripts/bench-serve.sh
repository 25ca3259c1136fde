#!/usr/bin/env bash
# The service's cost, measured in one run against its one-shot baseline: `bunker serve` started
# here (release build, as the calling user), driven by crates/client/examples/bench.rs, which keeps
# its connections open:
#   - latency of a cold `/bin/true` through the daemon, p50 and p99, interleaved round by round
#     with the one-shot `bunker run -q -- /bin/true` (fork/exec/wait), `bunker check --profile
#     default` (the one-shot's process cost without a sandbox) and a `health` round trip;
#   - sandboxes per second with 1, 8 and 32 concurrent clients;
#   - the daemon's RSS while 32 sandboxes are live (sleeping).
# Prints the figures and writes them into the "Service" section of docs/benchmarks.md, where the
# added overhead is defined.
#
# Usage: scripts/bench-serve.sh [--rounds N] [--seconds S] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: the release build, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=500
SECONDS_PER_RATE=5
WRITE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RATE="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

source scripts/bench-lib.sh
bench_bunker
require_tools python3
cargo build --release -q -p bunker-client --example bench
BENCH=target/x86_64-unknown-linux-gnu/release/examples/bench

OUT="$(mktemp -d)"
DAEMON=
cleanup() {
    if [[ -n "$DAEMON" ]]; then kill -TERM "$DAEMON" 2>/dev/null || true; wait "$DAEMON" || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

# 32 slots, so 32 clients (and 32 live sandboxes) never queue.
echo '{"max_sandboxes": 32, "max_queue": 64}' > "$OUT/serve.json"
"$BUNKER" serve --socket "$OUT/bunker.sock" --config "$OUT/serve.json" 2>"$OUT/daemon.log" &
DAEMON=$!
for _ in $(seq 500); do
    [[ -S "$OUT/bunker.sock" ]] && break
    sleep 0.01
done
[[ -S "$OUT/bunker.sock" ]] || { cat "$OUT/daemon.log" >&2; exit 1; }

"$BENCH" "$OUT/bunker.sock" "$DAEMON" "$BUNKER" "$ROUNDS" "$SECONDS_PER_RATE" 1,8,32 32 \
    > "$OUT/bench.json"

TEXT="$(python3 - "$OUT/bench.json" "$ROUNDS" "$SECONDS_PER_RATE" <<'PY'
import datetime, json, platform, sys

b = json.load(open(sys.argv[1]))
rounds, seconds = sys.argv[2], sys.argv[3]
lat, rss = b["latency"], b["rss"]
d, cli, check, health = lat["daemon_run"], lat["oneshot_run"], lat["oneshot_check"], lat["health"]
sandbox_work = cli["p50"] - check["p50"]
overhead = d["p50"] - sandbox_work
rate = {r["clients"]: r["per_second"] for r in b["throughput"]}
mib = lambda kib: kib / 1024
lines = [
    f"Measured {datetime.date.today()} by `scripts/bench-serve.sh` ({rounds} interleaved rounds; "
    f"{seconds} s per client count; release build; run as root; kernel {platform.release()}).",
    "",
    "| what | p50 | p99 |",
    "|---|---|---|",
    f"| `/bin/true` through the daemon (one connection, request to reply) | {d['p50']:.2f} ms | {d['p99']:.2f} ms |",
    f"| `bunker run -q -- /bin/true` (one-shot, fork/exec/wait) | {cli['p50']:.2f} ms | {cli['p99']:.2f} ms |",
    f"| `bunker check --profile default` (one-shot process, no sandbox) | {check['p50']:.2f} ms | {check['p99']:.2f} ms |",
    f"| `health` round trip (the protocol's floor) | {health['p50']:.3f} ms | {health['p99']:.3f} ms |",
    f"| daemon round trip − the run's own `wall_ms` | {lat['daemon_run_minus_wall_ms']['p50']:.2f} ms | {lat['daemon_run_minus_wall_ms']['p99']:.2f} ms |",
    "",
    "| figure | value | target |",
    "|---|---|---|",
    f"| daemon / one-shot, `/bin/true` p50 | {d['p50'] / cli['p50']:.2f}× | |",
    f"| daemon / one-shot, `/bin/true` p99 | {d['p99'] / cli['p99']:.2f}× | |",
    f"| one-shot's own sandbox work (run p50 − check p50) | {sandbox_work:.2f} ms | |",
    f"| **daemon's added overhead** (daemon p50 − one-shot's sandbox work) | {overhead:.2f} ms | < 0.3 ms |",
]
lines += [f"| sandboxes/s, {n} client{'s' if n > 1 else ''} | {rate[n]:.0f} | |" for n in sorted(rate)]
lines += [
    f"| CPU per daemon run: the daemon's own threads | {lat['daemon_cpu_ms_per_run']:.2f} ms | |",
    f"| CPU per daemon run: its live helper processes (the spawner) | {lat['helpers_cpu_ms_per_run']:.2f} ms | |",
    f"| CPU per daemon run: the children it reaped (the sandbox) | {lat['children_cpu_ms_per_run']:.2f} ms | |",
    f"| CPU per one-shot run (`bunker run` and its sandbox) | {lat['oneshot_cpu_ms_per_run']:.2f} ms | |",
    f"| daemon RSS, idle | {mib(rss['daemon_idle_kib']):.1f} MiB | |",
    f"| daemon RSS, {rss['live']} sandboxes live | {mib(rss['daemon_live_kib']):.1f} MiB | ≤ 16 MiB |",
    f"| its {rss['descendants']} descendant processes (the sandboxes: not counted above) | {mib(rss['descendants_kib']):.1f} MiB | |",
]
print("\n".join(lines))
PY
)"
echo "$TEXT"
if [[ "$WRITE" == 1 ]]; then
    write_bench_section service bench-serve.sh <<<"$TEXT"
fi
