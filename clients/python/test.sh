#!/usr/bin/env bash
# CI entry point of the Python client: `pip install ./clients/python` works offline (into a
# target dir), then the suite runs against that installed copy twice: against a `bunker serve`
# the harness starts, and through the CLI fallback. Exits non-zero on any failure.
#   PYTHON     the interpreter (default python3)
#   BUNKER_BIN the bunker binary (default: the repo's target/x86_64-unknown-linux-gnu/debug/bunker)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
export BUNKER_BIN="${BUNKER_BIN:-$repo/target/x86_64-unknown-linux-gnu/debug/bunker}"
[ -x "$BUNKER_BIN" ] || { echo "test.sh: $BUNKER_BIN is missing: build it first (cargo build -p bunker-cli)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== pip install ./clients/python (offline, --no-index)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || {
    echo "test.sh: $PYTHON has no pip (Debian: apt-get install python3-pip): cannot check that the package installs" >&2
    exit 1
}
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --no-cache-dir \
    --target "$tmp/site" "$here" 2> >(grep -v "Running pip as the 'root' user" >&2)
[ -f "$tmp/site/bunker/py.typed" ] || { echo "test.sh: the installed package has no py.typed" >&2; exit 1; }
(cd "$tmp" && PYTHONPATH="$tmp/site" "$PYTHON" -c '
import bunker, sys
assert bunker.__file__.startswith(sys.argv[1]), bunker.__file__
assert bunker.run(["true"], socket=False).success
' "$tmp/site")
export BUNKER_PY_PATH="$tmp/site"

cd "$here"
for mode in daemon cli; do
    echo "== python3 -m unittest ($mode)"
    BUNKER_PY_TEST_MODE="$mode" "$PYTHON" -m unittest discover -s tests -t . "$@"
done
