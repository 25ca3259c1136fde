#!/usr/bin/env bash
# Cost and precision of bunker's hard limits, measured in one run:
#   1. `bunker run -- /bin/true` under the same grants without any cgroup limit, with memory +
#      pids limits (what the default profile sets), and with every cgroup controller bunker uses
#      (memory, pids, cpu quota, cpu_time accounting) — hyperfine medians and ratios;
#   2. the timeout kill latency: N runs of `sleep 10` under a 100 ms timeout, latency = the
#      report's wall_ms − 100 (the time from the deadline until the whole sandbox is gone and
#      reaped), as p50 / p90 / p99 / max.
# Prints the figures and writes them into the "Limits" section of docs/benchmarks.md.
#
# Usage: scripts/bench-limits.sh [--runs N] [--kills N] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: target/x86_64-unknown-linux-gnu/release/bunker, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=200
KILLS=200
WRITE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --kills) KILLS="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

source scripts/bench-lib.sh
bench_bunker
require_tools hyperfine python3

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# The default profile's grants without its limits, then the same with every cgroup limit.
cat > "$OUT/no-limits.json" <<'EOF'
{"allow": {"read": ["/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"],
           "exec": ["/usr", "/bin", "/lib", "/lib64"]}}
EOF
cat > "$OUT/memory-pids.json" <<'EOF'
{"extends": ["no-limits.json"], "limits": {"memory": "1GiB", "pids": 512}}
EOF
cat > "$OUT/all-limits.json" <<'EOF'
{"extends": ["no-limits.json"],
 "limits": {"memory": "1GiB", "pids": 512, "cpu": 1, "cpu_time": "10s"}}
EOF

# In rounds, the three cases one after the other in each, so that load from elsewhere on the
# machine (it drifts) hits all of them alike; the medians are over every run of every round.
ROUNDS=10
PER_ROUND=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for round in $(seq "$ROUNDS"); do
    hyperfine -N --warmup 5 --runs "$PER_ROUND" --export-json "$OUT/startup-$round.json" \
        -n "no cgroup" "$BUNKER run --policy $OUT/no-limits.json -- /bin/true" \
        -n "memory, pids" "$BUNKER run --policy $OUT/memory-pids.json -- /bin/true" \
        -n "memory, pids, cpu, cpu_time" "$BUNKER run --policy $OUT/all-limits.json -- /bin/true" \
        >&2
done

# Kill latency: one JSON report per run, on fd 3 so stderr stays the program's.
: > "$OUT/kills.jsonl"
for _ in $(seq "$KILLS"); do
    "$BUNKER" run --timeout 100ms --report-fd 3 -- sleep 10 3>>"$OUT/kills.jsonl" >/dev/null 2>&1 || true
done

TEXT="$(python3 - "$OUT" "$RUNS" "$KILLS" "$WRITE" <<'PY'
import datetime, json, platform, re, sys

import glob, statistics
out, runs, kills, write = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
times = {}
for path in sorted(glob.glob(f"{out}/startup-*.json")):
    for r in json.load(open(path))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
med = {name: statistics.median(t) * 1000 for name, t in times.items()}
runs = len(next(iter(times.values())))
base = med["no cgroup"]

reports = [json.loads(l) for l in open(f"{out}/kills.jsonl") if l.strip()]
timeouts = [r for r in reports if r["status"] == "timeout"]
if len(timeouts) != kills:
    sys.exit(f"expected {kills} timeouts, got {len(timeouts)} of {len(reports)} reports")
lat = sorted(r["wall_ms"] - 100.0 for r in timeouts)
def pct(p):
    return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

lines = [
    f"Measured {datetime.date.today()} by `scripts/bench-limits.sh` (release build, run as root, "
    f"kernel {platform.release()}; cgroup v1 for memory, pids, cpu and cpuacct as on this "
    f"machine).",
    "",
    f"`bunker run -- /bin/true` with and without cgroup limits, same grants otherwise (hyperfine, "
    f"{runs} runs of each in 10 interleaved rounds, medians). A cgroup costs an "
    "mkdir, a few writes and an rmdir per hierarchy, made beside init's setup (spawn.rs), and "
    "init moving itself in (\"0\" written to each v1 `tasks` file, which needs no RCU grace "
    "period):",
    "",
    "| limits | median | ratio to no cgroup |",
    "|---|---|---|",
]
lines += [f"| {n} | {m:.2f} ms | {m / base:.2f}× |" for n, m in med.items()]
lines += [
    "",
    f"Timeout kill latency: {kills} runs of `sleep 10` under `--timeout 100ms` (default policy), "
    "latency = `wall_ms` − 100 ms, i.e. from the deadline until every process of the sandbox is "
    "dead and init is reaped:",
    "",
    "| p50 | p90 | p99 | max | target |",
    "|---|---|---|---|---|",
    f"| {pct(50):.2f} ms | {pct(90):.2f} ms | {pct(99):.2f} ms | {lat[-1]:.2f} ms | ≤ 10 ms |",
]
text = "\n".join(lines)
print(text)
PY
)"
echo "$TEXT"
if [[ "$WRITE" == 1 ]]; then
    write_bench_section limits bench-limits.sh <<<"$TEXT"
fi
