#!/bin/sh
# CI entry point of the TypeScript client: `bun test` once against a real daemon the harness
# starts (test/setup.ts), once against the CLI fallback. BUNKER_BIN defaults to the repo's debug
# build (built by the caller). Exits non-zero when either run fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${BUNKER_BIN:=$repo/target/x86_64-unknown-linux-gnu/debug/bunker}"
export BUNKER_BIN
if [ ! -x "$BUNKER_BIN" ]; then
  echo "clients/ts/test.sh: no bunker binary at $BUNKER_BIN (build it first, or set BUNKER_BIN)" >&2
  exit 1
fi
BUN=${BUN:-bun}
cd "$here"
status=0
for mode in daemon cli; do
  echo "== clients/ts: bun test ($mode)"
  BUNKER_TS_MODE=$mode "$BUN" test --timeout 30000 "$@" || status=1
done
exit $status
