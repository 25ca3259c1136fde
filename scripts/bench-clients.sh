#!/usr/bin/env bash
# Per-call overhead of the three clients against the raw protocol, warm, each through a daemon
# its own bench starts with the release build: clients/ts/bench.ts (run and evalJs),
# clients/python/bench.py (run and eval_js), clients/ruby/bench.rb (Bunker.eval, Sandbox#eval,
# Bunker.run). Prints each bench's table; docs/benchmarks.md "Clients" quotes one run.
#
# Usage: scripts/bench-clients.sh [ITERATIONS]      (default 200)
#   BUNKER=path/to/bunker   use this binary (default: the release build, built now)
set -euo pipefail

cd "$(dirname "$0")/.."
N="${1:-200}"
source scripts/bench-lib.sh
bench_bunker
require_tools bun python3 ruby
export BUNKER_BIN="$BUNKER"
unset BUNKER_SOCKET
echo "== TypeScript (clients/ts/bench.ts)"
(cd clients/ts && bun bench.ts --iterations "$N")
echo "== Python (clients/python/bench.py)"
python3 clients/python/bench.py "$N"
echo "== Ruby (clients/ruby/bench.rb)"
ruby -Iclients/ruby/lib clients/ruby/bench.rb "$N"
