#!/usr/bin/env bash
# Cost of a deny glob's walk against tree size, beside a baseline measured in the same run.
#
# For each size it builds a tree (pkgN/subM/deep/fK, 100 files a directory, one secret.key at the
# end) under a temporary directory, warms the page cache with one `find`, then takes the median
# wall time of:
#   find:    `find <tree> -name '*.key'` (the baseline: one pass over the same entries)
#   no glob: `bunker run` with `allow.read: [<tree>]`, running /bin/true
#   glob:    the same with `deny.read: ["**/*.key"]`
# and reports "walk" = glob − no glob: what the glob adds to a start. The trees are deleted after.
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

OUT="$(mktemp -d "$BASE_DIR/bunker-bench-globs.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
chmod 755 "$OUT"

# Median wall time of RUNS runs of a command, in milliseconds (one decimal).
median_ms() {
    local times=()
    for _ in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
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
    find_ms=$(median_ms find "$tree" -name '*.key')
    plain_ms=$(median_ms "$BUNKER" run --policy "$OUT/plain.json" -- /bin/true)
    glob_ms=$(median_ms "$BUNKER" run --policy "$OUT/glob.json" -- /bin/true)
    walk_ms=$(awk -v g="$glob_ms" -v p="$plain_ms" 'BEGIN {printf "%.1f", g - p}')
    rows+=("| $entries | $find_ms | $plain_ms | $glob_ms | $walk_ms |")
    rm -rf "$tree"
done

table="$(
    echo "Median of $RUNS runs each, warm page cache, $(nproc) cores, ext4 ($(uname -r))."
    echo
    echo "| entries | find -name '*.key' (ms) | bunker, no glob (ms) | bunker, \`**/*.key\` (ms) | walk = difference (ms) |"
    echo "| ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
)"
echo "$table"
if [[ "$WRITE" == 1 ]]; then
    write_bench_section globs scripts/bench-globs.sh <<<"$table"
fi
