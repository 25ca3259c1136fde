#!/bin/sh
# The Ruby client's suite, run twice: against a real daemon (`bunker serve`, started by the
# harness) and against the CLI fallback. BUNKER_BIN defaults to the repo's debug build.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${BUNKER_BIN:=$repo/target/x86_64-unknown-linux-gnu/debug/bunker}"
export BUNKER_BIN
unset BUNKER_SOCKET
cd "$here"
modes=${BUNKER_RB_MODES:-daemon cli}
for mode in $modes; do
  echo "== clients/ruby: $mode mode"
  BUNKER_RB_MODE=$mode ruby -w -Ilib -Itest -e 'Dir["test/test_*.rb"].sort.each { |f| require File.expand_path(f) }' -- "$@"
done
