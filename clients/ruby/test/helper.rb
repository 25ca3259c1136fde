# frozen_string_literal: true

# The suite's harness. BUNKER_RB_MODE picks how the client reaches bunker:
#   daemon (default): a real `bunker serve --socket <tmp> --pool eval:bun=1` started here, killed
#                     by its PID at the end; BUNKER_SOCKET points at it.
#   cli:              no daemon; the client spawns `bunker run` / `bunker eval` (BUNKER_SOCKET unset).
# BUNKER_BIN is the binary (clients/ruby/test.sh defaults it to the repo's debug build).

require "minitest/autorun"
require "socket"
require "tmpdir"
require "fileutils"

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "bunker"

module BunkerTest
  MODE = ENV.fetch("BUNKER_RB_MODE", "daemon")
  raise "BUNKER_RB_MODE must be daemon or cli, got #{MODE.inspect}" unless %w[daemon cli].include?(MODE)

  BIN = ENV.fetch("BUNKER_BIN") { raise "set BUNKER_BIN to the bunker binary (clients/ruby/test.sh does)" }
  raise "BUNKER_BIN #{BIN} is not an executable" unless File.executable?(BIN)

  # Every temporary file of the suite lives under here (removed at the end).
  TMP = Dir.mktmpdir("bunker-rb-test-")
  File.chmod(0o755, TMP)

  def self.daemon?
    MODE == "daemon"
  end

  # Starts the daemon and waits until it answers `health` (at most 20 s).
  def self.start_daemon
    socket = File.join(TMP, "bunker.sock")
    log = File.join(TMP, "serve.log")
    # BUNKER_RB_POOLS (default "eval:bun=1") are the daemon's warm pools, space-separated.
    pools = ENV.fetch("BUNKER_RB_POOLS", "eval:bun=1").split.flat_map { |pool| ["--pool", pool] }
    pid = Process.spawn(BIN, "serve", "--socket", socket, *pools, out: log, err: log, pgroup: true)
    Minitest.after_run { stop_daemon(pid, log) }
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
    loop do
      begin
        conn = Bunker::Connection.new(socket)
        conn.request("health")
        conn.close
        break
      rescue Bunker::UnavailableError
        exited = Process.waitpid(pid, Process::WNOHANG)
        raise "bunker serve exited before answering: #{File.read(log)}" if exited
        raise "bunker serve did not answer within 20 s: #{File.read(log)}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.05
      end
    end
    ENV["BUNKER_SOCKET"] = socket
  end

  def self.stop_daemon(pid, log)
    Bunker::Daemon.close_all
    Process.kill("TERM", pid)
    50.times do
      return FileUtils.rm_rf(TMP) if Process.waitpid(pid, Process::WNOHANG)

      sleep 0.1
    end
    Process.kill("KILL", pid)
    Process.waitpid(pid)
    warn "bunker serve did not stop at SIGTERM within 5 s; log:\n#{File.read(log)}"
    FileUtils.rm_rf(TMP)
  rescue Errno::ESRCH, Errno::ECHILD
    FileUtils.rm_rf(TMP)
  end

  # A loopback HTTP server (127.0.0.1, a free port) answering every request with `body`; counts
  # the requests it received, so a test can check what reached the host.
  class HTTPServer
    attr_reader :port, :requests

    def initialize(body = "hello from the host")
      @server = TCPServer.new("127.0.0.1", 0)
      @port = @server.addr[1]
      @requests = []
      @thread = Thread.new { serve(body) }
    end

    def url(path = "/")
      "http://127.0.0.1:#{@port}#{path}"
    end

    def close
      @thread.kill
      @server.close
    end

    private

    def serve(body)
      loop do
        client = @server.accept
        request_line = client.gets.to_s.strip
        while (line = client.gets) && line != "\r\n"; end
        @requests << request_line
        client.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\n" \
                     "Connection: close\r\n\r\n#{body}")
        client.close
      rescue IOError, Errno::ECONNRESET, Errno::EPIPE
        next
      end
    end
  end
end

if BunkerTest.daemon?
  BunkerTest.start_daemon
else
  ENV.delete("BUNKER_SOCKET")
  Minitest.after_run { FileUtils.rm_rf(BunkerTest::TMP) }
end
