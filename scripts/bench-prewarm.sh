#!/usr/bin/env bash
# What making the program's binary resident before the clone (crates/sandbox/src/prewarm.rs)
# costs and buys, this binary beside a baseline without it, in one run (root: it creates memory
# cgroups and drops the page cache, which affects only caches):
#   1. warm cache: `bunker run --memory 64MB -- /bin/true` and `-- bun -e 1`, both binaries,
#      every round the four commands in a shuffled order; medians and quartiles of the wall time;
#   2. cold cache (`echo 3 > /proc/sys/vm/drop_caches` before each run): `/bin/true` and
#      `bun -e 'console.log(1)'` under --memory 50MB and 200MB; statuses, the kernel's peak usage
#      of the sandbox's cgroup, median wall time.
# Written into the "limits-prewarm" block of docs/benchmarks.md.
#
# Usage: scripts/bench-prewarm.sh --baseline PATH [--rounds N] [--cold-rounds N] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: target/x86_64-unknown-linux-gnu/release/bunker, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=200
COLD_ROUNDS=5
BASELINE=""
WRITE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --baseline) BASELINE="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --cold-rounds) COLD_ROUNDS="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ -n "$BASELINE" ]] || { echo "--baseline PATH (a bunker without prewarm) is required" >&2; exit 2; }
[[ "$(id -u)" == 0 ]] || { echo "needs root (memory cgroups, drop_caches)" >&2; exit 1; }

source scripts/bench-lib.sh
bench_bunker
BASELINE="$(realpath "$BASELINE")"
require_tools bun python3

TEXT="$(BUNKER="$BUNKER" BASELINE="$BASELINE" ROUNDS="$ROUNDS" COLD_ROUNDS="$COLD_ROUNDS" python3 - <<'PY'
import json, os, platform, random, statistics, subprocess, time

bins = {"baseline": os.environ["BASELINE"], "prewarm": os.environ["BUNKER"]}

def run(binary, args, cold=False):
    if cold:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    t = time.perf_counter_ns()
    r = subprocess.run([binary, "run", "--report", "json"] + args, capture_output=True, text=True)
    wall = (time.perf_counter_ns() - t) / 1e6
    return wall, json.loads(r.stderr.strip().splitlines()[-1]), r.stdout

warm = {"/bin/true": ["/bin/true"], "bun -e 1": ["bun", "-e", "1"]}
samples = {(b, p): [] for b in bins for p in warm}
for _ in range(int(os.environ["ROUNDS"])):
    cases = list(samples)
    random.shuffle(cases)
    for b, p in cases:
        wall, report, _ = run(bins[b], ["--memory", "64MB", "--"] + warm[p])
        assert report["status"] == "ok", report
        samples[(b, p)].append(wall)

cold = {}
for _ in range(int(os.environ["COLD_ROUNDS"])):
    for b in bins:
        for mem in ["50MB", "200MB"]:
            for name, prog in [("/bin/true", ["/bin/true"]), ("bun -e 'console.log(1)'", ["bun", "-e", "console.log(1)"])]:
                wall, report, out = run(bins[b], ["--memory", mem, "--timeout", "20s", "--"] + prog, cold=True)
                cold.setdefault((b, mem, name), []).append((wall, report["status"], report["peak_memory_bytes"], out.strip()))

def q(v):
    a, m, c = statistics.quantiles(v, n=4)
    return f"{statistics.median(v):.2f} ms ({a:.2f}–{c:.2f})"

print(f"Measured {time.strftime('%Y-%m-%d')} by `scripts/bench-prewarm.sh` (release build, root, kernel "
      f"{platform.release()}, cgroup v1 memory). *baseline*: the binary without prewarm. Warm cache: "
      f"{os.environ['ROUNDS']} rounds, each running the four commands in a shuffled order under "
      "`--memory 64MB`; median wall time of `bunker run` (quartiles in brackets).")
print()
print("| command | baseline | prewarm | difference of medians |")
print("|---|---|---|---|")
for p in warm:
    a, n = samples[("baseline", p)], samples[("prewarm", p)]
    diff = 1000 * (statistics.median(n) - statistics.median(a))
    print(f"| `{p}` | {q(a)} | {q(n)} | {diff:+.0f} µs |")
print()
print(f"Cold cache (`echo 3 > /proc/sys/vm/drop_caches` before each run), {os.environ['COLD_ROUNDS']} runs of each: "
      "statuses, the kernel's peak usage of the sandbox's memory cgroup, median wall time.")
print()
print("| binary | limit | command | statuses | peak usage | wall (median) |")
print("|---|---|---|---|---|---|")
for (b, mem, name), v in cold.items():
    statuses = {}
    for x in v:
        statuses[x[1]] = statuses.get(x[1], 0) + 1
    st = ", ".join(f"{n}× {s}" for s, n in statuses.items())
    peaks = [x[2] / 1e6 for x in v]
    print(f"| {b} | {mem} | `{name}` | {st} | {min(peaks):.1f}–{max(peaks):.1f} MB | {statistics.median(x[0] for x in v):.0f} ms |")
PY
)"
echo "$TEXT"
if [[ "$WRITE" == 1 ]]; then
    echo "$TEXT" | write_bench_section limits-prewarm scripts/bench-prewarm.sh
fi
