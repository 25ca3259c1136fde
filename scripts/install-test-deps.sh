#!/usr/bin/env bash
# Installs what bunker's tests need when it is missing: the system packages curl, git, openssl,
# python3, ruby (the Ruby client's suite), util-linux (setpriv, prlimit, ionice), libcap2-bin
# (setcap, getcap) and time (apt-get), pip, Bun (from npm) and the test runner cargo-nextest (`cargo install --locked`). Idempotent; safe to run on a developer machine.
# Needs root for apt-get and /usr/local/bin.
set -euo pipefail

need_apt=()
for tool in curl git openssl python3 ruby setpriv prlimit ionice setcap getcap; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
[ -x /usr/bin/python3 ] || need_apt+=(python3)
[ -x /usr/bin/time ] || need_apt+=(time)  # GNU time: the supervisor-memory test
if [ ${#need_apt[@]} -gt 0 ]; then
  pkgs=()
  for t in "${need_apt[@]}"; do
    case "$t" in
      setpriv | prlimit | ionice) pkgs+=(util-linux) ;;
      setcap | getcap) pkgs+=(libcap2-bin) ;;
      *) pkgs+=("$t") ;;
    esac
  done
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# Bun: the npm package ships the binary. Installed outside /root so the rootless tests
# (uid 65534) can execute it too.
if ! command -v bun >/dev/null 2>&1; then
  mkdir -p /opt/bunker-test-deps
  (cd /opt/bunker-test-deps && npm install --silent --no-audit --no-fund @oven/bun-linux-x64 >/dev/null)
  ln -sf /opt/bunker-test-deps/node_modules/@oven/bun-linux-x64/bin/bun /usr/local/bin/bun
fi
bun --version >/dev/null

# pip, for the Python client's install check: CPython's own ensurepip when it has one (offline),
# else Debian's package (Debian disables ensurepip).
if ! python3 -m pip --version >/dev/null 2>&1; then
  python3 -m ensurepip --default-pip >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  }
fi
python3 -m pip --version >/dev/null

# The test runner scripts/test.sh uses.
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
