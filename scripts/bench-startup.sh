#!/usr/bin/env bash
# Start-up latency of `bunker run` beside its anchors, measured in one run with hyperfine:
#   /bin/true and `bun -e 1`, each bare, under `unshare -Urpnmif --mount-proc`, under bubblewrap
#   (`--unshare-all --ro-bind / / --dev /dev --proc /proc`), and under `bunker run` (every layer on:
#   the default policy's namespaces, new root, landlock, seccomp, cgroup limits).
# Prints the medians and ratios, and writes them into the "Start-up" section of docs/benchmarks.md.
#
# Usage: scripts/bench-startup.sh [--runs N] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: target/x86_64-unknown-linux-gnu/release/bunker, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=200
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
BUN="$(command -v bun)"
require_tools hyperfine bwrap unshare python3

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# The default policy without its cgroup limits: separates the cgroup's cost from the rest.
cat > "$OUT/no-cgroup.json" <<'JSON'
{"allow": {"read": ["/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"],
           "exec": ["/usr", "/bin", "/lib", "/lib64"]},
 "set_env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}}
JSON

# name|command — hyperfine runs them without a shell (-N), so quoting stays literal.
CASES=(
    "true: bare|/bin/true"
    "true: unshare -Urpnmif|unshare -Urpnmif --mount-proc /bin/true"
    "true: bwrap|bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc /bin/true"
    "true: bunker run|$BUNKER run -- /bin/true"
    "true: bunker run (no cgroup limits)|$BUNKER run --policy $OUT/no-cgroup.json -- /bin/true"
    "true: bunker run (rootless)|setpriv --reuid=65534 --regid=65534 --clear-groups -- $BUNKER run -- /bin/true"
    "bun: bare|$BUN -e 1"
    "bun: unshare -Urpnmif|unshare -Urpnmif --mount-proc $BUN -e 1"
    "bun: bwrap|bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc $BUN -e 1"
    "bun: bunker run|$BUNKER run -- $BUN -e 1"
)

args=()
for c in "${CASES[@]}"; do
    args+=(--command-name "${c%%|*}" "${c#*|}")
done
# The machine is shared: load drifts during a run. hyperfine runs each command's samples back to
# back, so the runs are split into rounds that each measure every command, and the medians are
# taken over all rounds' samples — a burst of load then hits every command alike.
ROUNDS=20
for round in $(seq "$ROUNDS"); do
    hyperfine -N --warmup 10 --runs "$(( (RUNS + ROUNDS - 1) / ROUNDS ))" \
        --export-json "$OUT/startup-$round.json" "${args[@]}" >&2
done

TEXT="$(python3 - "$OUT" "$WRITE" "$RUNS" "$ROUNDS" <<'PY'
import glob, json, platform, re, statistics, sys, datetime

samples = {}
for path in sorted(glob.glob(sys.argv[1] + "/startup-*.json")):
    for r in json.load(open(path))["results"]:
        samples.setdefault(r["command"], []).extend(r["times"])
write = sys.argv[2] == "1"
runs = sys.argv[3]
rounds = sys.argv[4]
med = {name: statistics.median(times) * 1000 for name, times in samples.items()}

def row(name):
    return f"| {name} | {med[name]:.2f} ms |"

lines = [
    f"Measured {datetime.date.today()} by `scripts/bench-startup.sh` (hyperfine `-N`, about {runs} runs per "
    f"command in {rounds} interleaved rounds, medians; release build; run as root; kernel {platform.release()}).",
    "",
    "| command | median |",
    "|---|---|",
]
lines += [row(n) for n in med]
ratio = lambda a, b: med[a] / med[b]
lines += [
    "",
    "| ratio | value | target |",
    "|---|---|---|",
    f"| bunker / unshare, /bin/true | {ratio('true: bunker run', 'true: unshare -Urpnmif'):.2f}× | ≤ 1.3× |",
    f"| bunker / bwrap, /bin/true | {ratio('true: bunker run', 'true: bwrap'):.2f}× | < 1× |",
    f"| bunker / bwrap, bun -e 1 | {ratio('bun: bunker run', 'bun: bwrap'):.2f}× | < 1× |",
    f"| bunker − bare, bun -e 1 | {med['bun: bunker run'] - med['bun: bare']:.2f} ms | |",
    f"| bunker without cgroup limits / unshare, /bin/true | {ratio('true: bunker run (no cgroup limits)', 'true: unshare -Urpnmif'):.2f}× | |",
    f"| rootless / root bunker, /bin/true | {ratio('true: bunker run (rootless)', 'true: bunker run'):.2f}× | |",
]
text = "\n".join(lines)
print(text)
PY
)"
echo "$TEXT"
if [[ "$WRITE" == 1 ]]; then
    write_bench_section startup bench-startup.sh <<<"$TEXT"
fi
