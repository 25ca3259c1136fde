# Shared by the benchmark scripts (sourced, not run).

# Sets BUNKER to the binary to measure: $BUNKER if given, else a release build made now, so a
# stale release binary is never measured (cargo does nothing when it is up to date).
bench_bunker() {
    if [[ -z "${BUNKER:-}" ]]; then
        cargo build --release -q -p bunker
        BUNKER=target/x86_64-unknown-linux-gnu/release/bunker
    fi
    BUNKER="$(realpath "$BUNKER")"
}

# Fails naming the first tool that is not installed.
require_tools() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
    done
}

# Replaces the block between <!-- NAME:begin --> and <!-- NAME:end --> in docs/benchmarks.md
# with standard input (or puts it after the "(scripts/SCRIPT)" line the first time).
write_bench_section() {
    # The text travels in the environment: python's own stdin is the script below.
    BENCH_TEXT="$(cat)" python3 - "$1" "$2" <<'PY'
import os, re, sys
name, script = sys.argv[1], sys.argv[2]
text = os.environ["BENCH_TEXT"].rstrip("\n")
path = "docs/benchmarks.md"
doc = open(path).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = f"{begin}\n{text}\n{end}"
if begin in doc:
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
else:
    doc = doc.replace(f"({script})", f"({script})\n\n{block}", 1)
open(path, "w").write(doc)
print(f"wrote {path}", file=sys.stderr)
PY
}
