# frozen_string_literal: true

# Per-call latency of the Ruby client, warm, through a daemon (call to return, in Ruby):
#   Bunker.eval("1+1")           one-shot evals, each from the `eval:bun` pool: before each call
#                                the pool is full and its runtime settled (150 ms), as the Rust
#                                bench (`bench eval`, scripts/bench-eval.sh) does
#   ... back to back             the same without waiting (the pool refills behind)
#   Sandbox#eval("1+1")          evals in one opened worker (open_worker)
#   Bunker.run(["/bin/true"])    whole runs from the `default` pool, refilled before each
# With BUNKER_SOCKET set it uses that daemon; otherwise it starts `bunker serve --pool eval:bun=2
# --pool default=2` (BUNKER_BIN, default the repo's debug build) and stops it by PID at the end.
#   ruby bench.rb [ITERATIONS]   (default 200; use a release build for figures)

$LOAD_PATH.unshift File.expand_path("lib", __dir__)
require "bunker"
require "tmpdir"
require "fileutils"

iterations = Integer(ARGV[0] || 200)
bin = ENV.fetch("BUNKER_BIN", File.expand_path("../../target/x86_64-unknown-linux-gnu/debug/bunker", __dir__))
daemon_pid = nil
tmp = nil
unless ENV["BUNKER_SOCKET"]
  tmp = Dir.mktmpdir("bunker-rb-bench-")
  socket = File.join(tmp, "bunker.sock")
  daemon_pid = Process.spawn(bin, "serve", "--socket", socket, "--pool", "eval:bun=2", "--pool", "default=2",
                             out: File.join(tmp, "serve.log"), err: File.join(tmp, "serve.log"))
  ENV["BUNKER_SOCKET"] = socket
  200.times do
    break if File.socket?(socket)

    sleep 0.05
  end
  sleep 1 # let the pools fill
end

def percentile(sorted, pct)
  sorted[[(sorted.size * pct / 100.0).ceil - 1, 0].max]
end

# Waits until `pool` has a ready sandbox, then lets its runtime reach its wait for work.
def pool_ready(pool)
  stats = Bunker::Connection.new(ENV.fetch("BUNKER_SOCKET"))
  200.times do
    break if stats.request("stats").dig("pools", pool, "ready").to_i.positive?

    sleep 0.01
  end
  stats.close
  sleep 0.15
end

def measure(label, iterations, pool: nil)
  5.times { yield } # warm-up: connection, pool refill, the client's own code paths
  warm = 0
  times = Array.new(iterations) do
    pool_ready(pool) if pool
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    warm += 1 if yield
    (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start) * 1000
  end.sort
  printf("%-28s n=%d  p50 %7.2f ms  p99 %7.2f ms  (warm %d/%d)\n",
         label, iterations, percentile(times, 50), percentile(times, 99), warm, iterations)
end

begin
  puts "#{`#{bin} --version`.strip}, ruby #{RUBY_VERSION}"
  measure("Bunker.eval(\"1+1\")", iterations, pool: "eval:bun") { Bunker.eval("1+1").warm? }
  measure("Bunker.eval(\"1+1\") back2back", iterations) { Bunker.eval("1+1").warm? }
  sandbox = Bunker::Sandbox.new
  measure("Sandbox#eval(\"1+1\")", iterations) { sandbox.eval("1+1") && true }
  sandbox.close
  measure("Bunker.run([\"/bin/true\"])", iterations, pool: "default") { Bunker.run(["/usr/bin/true"]).warm? }
ensure
  if daemon_pid
    Process.kill("TERM", daemon_pid)
    Process.wait(daemon_pid)
    FileUtils.rm_rf(tmp)
  end
end
