#!/usr/bin/env bash
# Start-up latency of `bunker run` beside its anchors, measured in one run with hyperfine:
#   /bin/true and `bun -e 1`, each bare, under `unshare -Urpnmif --mount-proc`, under bubblewrap
#   (`--unshare-all --ro-bind / / --dev /dev --proc /proc`), and under `bunker run` (every layer on:
#   the default policy's namespaces, new root, landlock, seccomp, cgroup limits).
# Prints the medians and ratios, and writes them into the "Start-up" section of docs/benchmarks.md.
#
# Usage: scripts/bench-startup.sh [--runs N] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: target/release/bunker, built if missing)
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

BUNKER="${BUNKER:-target/release/bunker}"
if [[ ! -x "$BUNKER" ]]; then
    cargo build --release -p bunker
fi
BUNKER="$(realpath "$BUNKER")"
BUN="$(command -v bun)"
for tool in hyperfine bwrap unshare python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# name|command — hyperfine runs them without a shell (-N), so quoting stays literal.
CASES=(
    "true: bare|/bin/true"
    "true: unshare -Urpnmif|unshare -Urpnmif --mount-proc /bin/true"
    "true: bwrap|bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc /bin/true"
    "true: bunker run|$BUNKER run -- /bin/true"
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
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/startup.json" "${args[@]}" >&2

python3 - "$OUT/startup.json" "$WRITE" "$RUNS" <<'PY'
import json, platform, re, subprocess, sys, datetime

data = json.load(open(sys.argv[1]))
write = sys.argv[2] == "1"
runs = sys.argv[3]
med = {r["command"]: r["median"] * 1000 for r in data["results"]}

def row(name):
    return f"| {name} | {med[name]:.2f} ms |"

lines = [
    f"Measured {datetime.date.today()} by `scripts/bench-startup.sh` (hyperfine, {runs} runs after 20 warm-up, "
    f"medians; release build; run as root; kernel {platform.release()}).",
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
    f"| rootless / root bunker, /bin/true | {ratio('true: bunker run (rootless)', 'true: bunker run'):.2f}× | |",
]
text = "\n".join(lines)
print(text)

if write:
    path = "docs/benchmarks.md"
    doc = open(path).read()
    begin = "<!-- startup:begin -->"
    end = "<!-- startup:end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.replace("(scripts/bench-startup.sh)", "(scripts/bench-startup.sh)\n\n" + block, 1)
    open(path, "w").write(doc)
    print(f"\nwrote {path}", file=sys.stderr)
PY
