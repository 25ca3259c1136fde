#!/usr/bin/env bash
# Cost of a deny glob's walk against tree size, beside a baseline measured in the same run.
#
# For each size it builds a tree (pkgN/subM/deep/fK, 100 files a directory, one secret.key at the
# end) under a temporary directory, warms the page cache with one `find`, then takes the median
# wall time of:
#   find:       `find <tree> -name '*.key'` (the baseline: one pass over the same entries)
#   walk alone: the walk in-process (crates/sandbox/examples/walk_globs.rs)
#   no glob:    `bunker run` with `allow.read: [<tree>]`, running /bin/true
#   glob:       the same with `deny.read: ["**/*.key"]`
# and "added" = glob − no glob: what the glob adds to a start. The trees are deleted after.
# Prints the table, and writes it into the "Deny globs" section of docs/benchmarks.md.
#
# Usage: scripts/bench-globs.sh [--runs N] [--sizes "100000 1000000"] [--dir DIR] [--no-write]
#   BUNKER=path/to/bunker   use this binary (default: a release build, made now)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=5
SIZES="100000 1000000"
BASE_DIR="${TMPDIR:-/tmp}"
WRITE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --sizes) SIZES="$2"; shift 2 ;;
        --dir) BASE_DIR="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

source scripts/bench-lib.sh
bench_bunker
require_tools python3 find
cargo build --release -q -p bunker-sandbox --example walk_globs
WALK=target/x86_64-unknown-linux-gnu/release/examples/walk_globs

OUT="$(mktemp -d "$BASE_DIR/bunker-bench-globs.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
chmod 755 "$OUT"

# "wall cpu" medians over RUNS runs of a command, in ms: wall clock, and user + system time of
# the command and everything it waited for (a sandbox's init included). CPU time is the figure
# to compare on a shared machine; wall time includes waiting for a core.
measure() {
    python3 - "$RUNS" "$@" <<'PY'
import resource, statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
walls, cpus = [], []
for _ in range(runs):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    walls.append((t1 - t0) * 1000)
    cpus.append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000)
print(f"{statistics.median(walls):.1f} {statistics.median(cpus):.1f}")
PY
}

rows=()
for size in $SIZES; do
    tree="$OUT/tree-$size"
    python3 - "$tree" "$size" <<'PY'
import os, sys
root, size = sys.argv[1], int(sys.argv[2])
per_dir, subs = 100, 10
made = 0
p = 0
while made < size:
    for s in range(subs):
        d = os.path.join(root, f"pkg{p}", f"sub{s}", "deep")
        os.makedirs(d)
        for f in range(per_dir):
            open(os.path.join(d, f"f{f}"), "w").close()
        made += per_dir + 2
    made += 1
    p += 1
open(os.path.join(root, f"pkg{p - 1}", f"sub{subs - 1}", "deep", "secret.key"), "w").write("SECRET")
PY
    entries=$(find "$tree" | wc -l)
    cat > "$OUT/plain.json" <<JSON
{"extends": ["default"], "allow": {"read": ["$tree"]}}
JSON
    cat > "$OUT/glob.json" <<JSON
{"extends": ["default"], "allow": {"read": ["$tree"]}, "deny": {"read": ["**/*.key"]}}
JSON
    # The glob must hold: the secret reads as the empty mask.
    if "$BUNKER" run --policy "$OUT/glob.json" -- cat "$(find "$tree" -name secret.key)" | grep -q SECRET; then
        echo "the deny glob did not hold on $entries entries" >&2
        exit 1
    fi
    find "$tree" -name '*.key' >/dev/null
    read -r find_wall find_cpu < <(measure find "$tree" -name '*.key')
    # The walk alone, in-process (crates/sandbox/examples/walk_globs.rs: 5 walks, median wall,
    # mean CPU).
    read -r _ _ _ _ _ _ _ walk_wall _ walk_cpu < <("$WALK" "$tree" '**/*.key')
    read -r plain_wall plain_cpu < <(measure "$BUNKER" run --policy "$OUT/plain.json" -- /bin/true)
    read -r glob_wall glob_cpu < <(measure "$BUNKER" run --policy "$OUT/glob.json" -- /bin/true)
    added=$(awk -v g="$glob_wall" -v p="$plain_wall" -v gc="$glob_cpu" -v pc="$plain_cpu" \
        'BEGIN {printf "%.1f / %.1f", g - p, gc - pc}')
    rows+=("| $entries | $find_wall / $find_cpu | $walk_wall / $walk_cpu | $plain_wall / $plain_cpu | $glob_wall / $glob_cpu | $added |")
    rm -rf "$tree"
done

table="$(
    echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench-globs.sh\`: medians of $RUNS runs each (the walk alone: 5), warm page cache, $(nproc) cores, $(df -T "$BASE_DIR" | awk 'NR == 2 {print $2}'), kernel $(uname -r), load average $(cut -d' ' -f1 /proc/loadavg) at the end."
    echo
    echo "Each cell: wall ms / CPU ms (user + system, every thread and child)."
    echo
    echo "| entries | \`find -name '*.key'\` | walk alone | \`bunker run\`, no glob | \`bunker run\`, \`**/*.key\` | added by the glob |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
)"
echo "$table"
if [[ "$WRITE" == 1 ]]; then
    write_bench_section globs scripts/bench-globs.sh <<<"$table"
fi
