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
# With --memory-kill, only this instead (root: it creates memory cgroups and drops the page cache):
#   3. the memory kill latency: Bun allocating 500 MB in 5 MB steps under a 50 MB limit, with a
#      warm page cache and after `echo 3 > /proc/sys/vm/drop_caches` (which affects only caches),
#      latency = from the first moment the sandbox's cgroup is at its limit (a poller reads its
#      usage every 0.5 ms; "at" = within a sixteenth of it, at least 2 MiB, as bunker's own watch)
#      until bunker has exited. --baseline PATH measures a second binary beside it (before/after).
#      Written into the "limits-memory" block of docs/benchmarks.md.
#
# Usage: scripts/bench-limits.sh [--runs N] [--kills N] [--no-write]
#        scripts/bench-limits.sh --memory-kill [--rounds N] [--baseline PATH] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: target/x86_64-unknown-linux-gnu/release/bunker, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=200
KILLS=200
WRITE=1
MEMORY_KILL=0
ROUNDS_MEM=5
BASELINE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --kills) KILLS="$2"; shift 2 ;;
        --memory-kill) MEMORY_KILL=1; shift ;;
        --rounds) ROUNDS_MEM="$2"; shift 2 ;;
        --baseline) BASELINE="$(realpath "$2")"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

source scripts/bench-lib.sh
bench_bunker
if [[ "$MEMORY_KILL" == 1 ]]; then require_tools python3; else require_tools hyperfine python3; fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

if [[ "$MEMORY_KILL" == 1 ]]; then
    require_tools bun
    [[ "$(id -u)" == 0 ]] || { echo "--memory-kill needs root (memory cgroups, drop_caches)" >&2; exit 1; }
    TEXT="$(python3 - "$BUNKER" "$BASELINE" "$ROUNDS_MEM" "$(command -v bun)" <<'PY'
import datetime, glob, json, os, platform, statistics, subprocess, sys, time

after, before, rounds, bun = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
LIMIT, TIMEOUT_S = 50_000_000, 20
SCRIPT = ("const a = []; for (let i = 0; i < 100; i++) a.push(Buffer.alloc(5 << 20, 1)); "
          "console.log('allocated', a.length)")
line = next(l for l in open("/proc/self/cgroup") if l.split(":")[1] in ("memory", ""))
own = line.strip().split(":", 2)[2]
v1 = line.split(":")[1] == "memory"
base = ("/sys/fs/cgroup/memory" if v1 else "/sys/fs/cgroup") + own
usage_file = "memory.usage_in_bytes" if v1 else "memory.current"
prefix = "total_" if v1 else ""  # v1's hierarchical counters
slack = max(LIMIT // 16, 2 << 20)

def one(binary, cold):
    if cold:
        os.sync()
        open("/proc/sys/vm/drop_caches", "w").write("3")
    r, w = os.pipe()
    p = subprocess.Popen([binary, "run", "--memory", "50MB", "--timeout", f"{TIMEOUT_S}s",
                          "--report-fd", str(w), "--", bun, "-e", SCRIPT],
                         pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    at_limit = over = None
    last = None
    while p.poll() is None:
        for d in glob.glob(f"{base}/bunker-{p.pid}-*"):
            try:
                usage = int(open(f"{d}/{usage_file}").read())
                if usage + slack < LIMIT:
                    last = None
                    continue
                now = time.monotonic()
                at_limit = at_limit or now
                stat = dict(l.split() for l in open(f"{d}/memory.stat"))
            except (OSError, ValueError):
                continue
            get = lambda k: int(stat.get(f"{prefix}{k}", 0))
            file = get("active_file") + get("inactive_file")
            counts = (get("workingset_refault_file") + get("workingset_refault_anon"),
                      get("pgmajfault"))
            # Over: what reclaim cannot free fills the limit (the kernel's OOM point), or the
            # sandbox refaults and waits on major faults at it (its working set does not fit).
            thrash = last is not None and all(c > l for c, l in zip(counts, last))
            if over is None and (usage - file + slack >= LIMIT or thrash):
                over = now
            last = counts
        time.sleep(0.0005)
    end = time.monotonic()
    report = json.loads(os.read(r, 1 << 20).decode().strip().splitlines()[-1])
    os.close(r)
    ms = lambda t: None if t is None else (end - t) * 1000
    return report["status"], ms(at_limit), ms(over)

binaries = [("after", after)] + ([("before", before)] if before else [])
results = {}
for _ in range(rounds):  # interleaved, so drift on the machine hits every case alike
    for name, binary in binaries:
        for cold in (False, True):
            results.setdefault((name, cold), []).append(one(binary, cold))

lines = [
    f"Memory kill latency, measured {datetime.date.today()} by `scripts/bench-limits.sh "
    f"--memory-kill` (release build, root, kernel {platform.release()}, cgroup "
    f"{'v1' if v1 else 'v2'} memory): Bun allocating 500 MB in 5 MB steps under "
    f"`--memory 50MB --timeout {TIMEOUT_S}s`, {rounds} runs of each case interleaved; \"cold\" "
    "runs after `echo 3 > /proc/sys/vm/drop_caches`. A poller reads the sandbox's cgroup every "
    "0.5 ms. *At limit*: from the first poll that finds usage at the limit (within a sixteenth "
    "of it, at least 2 MiB) until bunker has exited; this includes the time the program still "
    "fits, displacing its page cache. *Over limit*: from the first poll at the limit where "
    "what reclaim cannot free (usage minus the file LRU) fills the limit, or where refaults "
    "and major faults both rose since the last poll, until bunker has exited. \"before\" is "
    "the binary without the thrash watch (only the kernel's OOM kill ended such a run). "
    "Medians, max in brackets.",
    "",
    "| binary | page cache | statuses | at limit → exit | over limit → exit |",
    "|---|---|---|---|---|",
]
fmt = lambda ms: f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
def cell(values):
    values = sorted(v for v in values if v is not None)
    return f"{fmt(statistics.median(values))} ({fmt(values[-1])})" if values else "—"
for (name, cold), runs in results.items():
    statuses = ", ".join(f"{n}× {s}" for s, n in
                         sorted({s: sum(1 for x, *_ in runs if x == s) for s, *_ in runs}.items()))
    lines.append(f"| {name} | {'cold' if cold else 'warm'} | {statuses} | "
                 f"{cell(r[1] for r in runs)} | {cell(r[2] for r in runs)} |")
print("\n".join(lines))
PY
)"
    echo "$TEXT"
    if [[ "$WRITE" == 1 ]]; then
        write_bench_section limits-memory bench-limits.sh <<<"$TEXT"
    fi
    exit 0
fi

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
