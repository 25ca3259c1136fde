#!/usr/bin/env bash
# A warm `/bin/true` through `bunker serve --pool` beside its anchors, in one run: bare
# `/bin/true` and `unshare -Urpnmif --mount-proc /bin/true`, each started with posix_spawn and
# waited for, and a `run` of `/bin/true` under the pooled `default` profile, measured as the
# full round trip from a client that keeps its connection open (request frame out, result frame
# in), waiting before each run until the pool is full again so every run is warm. A cold run
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

OUT="$(mktemp -d)"
"$BUNKER" serve --socket "$OUT/bunker.sock" --pool default=2 2>"$OUT/daemon.log" &
DAEMON=$!
trap 'kill "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null; rm -rf "$OUT"' EXIT

RESULT="$(python3 - "$OUT/bunker.sock" "$RUNS" "$BUNKER" <<'PY'
import json, os, socket, struct, sys, time

path, runs, bunker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
refill_bursts = max(10, runs // 10)
for _ in range(500):
    if os.path.exists(path):
        break
    time.sleep(0.01)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)

def recv_exact(n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("the daemon closed the connection")
        data += chunk
    return data

def call(obj):
    body = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
    while True:
        frame = json.loads(recv_exact(struct.unpack(">I", recv_exact(4))[0]))
        if "event" not in frame:
            return frame

call({"op": "hello", "version": 1})
warm_spec = {"policy": {"name": "default"}, "argv": ["/bin/true"]}
# No pool fits a higher memory limit than its own (`default`: 1GiB): a cold run through the
# same daemon.
cold_spec = {"policy": {"inline": {"extends": ["default"], "limits": {"memory": "2GiB"}}},
             "argv": ["/bin/true"]}

def pool_full():
    for _ in range(5000):
        pools = call({"id": 2, "op": "stats"})["ok"].get("pools", {})
        if pools.get("default", {}).get("ready") == 2:
            return
        time.sleep(0.0005)
    raise SystemExit("the pool never refilled")

def spawn(argv):
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ)
    _, status = os.waitpid(pid, 0)
    took = time.perf_counter_ns() - start
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return took

def through_daemon(spec, want_warm):
    start = time.perf_counter_ns()
    reply = call({"id": 1, "op": "run", "spec": spec})
    took = time.perf_counter_ns() - start
    result = reply["ok"]
    assert result["status"] == "ok", reply
    assert result.get("warm", False) == want_warm, reply
    return took

unshare = [os.popen("command -v unshare").read().strip(), "-Urpnmif", "--mount-proc", "/bin/true"]
samples = {"bare": [], "unshare": [], "warm": [], "cold": []}
for i in range(runs + 10):
    bare = spawn(["/bin/true"])
    ns = spawn(unshare)
    pool_full()
    warm = through_daemon(warm_spec, True)
    pool_full()
    cold = through_daemon(cold_spec, False)
    if i >= 10:  # warm-up rounds are dropped
        for k, v in (("bare", bare), ("unshare", ns), ("warm", warm), ("cold", cold)):
            samples[k].append(v / 1e6)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

# The refill rate: a burst takes the whole pool (2 warm runs back to back); builds are serial and
# the first starts when the burst's first run ends, so the pool is full 2 builds after that (the
# second run's own work competes with the first build, as it would in use). Beside it: cold
# `bunker run -- /bin/true` in a loop, each a full build, run and teardown.
refill_rates = []
for i in range(refill_bursts + 2):
    pool_full()
    through_daemon(warm_spec, True)
    first_end = time.perf_counter_ns()
    through_daemon(warm_spec, True)
    for _ in range(20000):
        if call({"id": 2, "op": "stats"})["ok"]["pools"]["default"]["ready"] == 2:
            break
        time.sleep(0.0002)
    else:
        raise SystemExit("the pool never refilled")
    if i >= 2:
        refill_rates.append(2 / ((time.perf_counter_ns() - first_end) / 1e9))
loop = []
for i in range(refill_bursts + 2):
    start = time.perf_counter_ns()
    pid = os.posix_spawn(bunker, [bunker, "run", "--", "/bin/true"], os.environ)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    if i >= 2:
        loop.append(1e9 / (time.perf_counter_ns() - start))

out = {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in samples.items()}
out["refill_per_s"] = {"p50": pct(refill_rates, 50), "p1": pct(refill_rates, 1)}
out["run_loop_per_s"] = {"p50": pct(loop, 50), "p1": pct(loop, 1)}
print(json.dumps(out))
PY
)"

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
