# frozen_string_literal: true

require_relative "helper"

# Bunker.run: real programs, real file and network access, limits, bad input.
class TestRun < Minitest::Test
  def setup
    @dir = Dir.mktmpdir("run-", BunkerTest::TMP)
    File.chmod(0o755, @dir)
  end

  def policy(**sections)
    { "extends" => ["default"] }.merge(Bunker::Policy.stringify(sections))
  end

  def test_output_exit_code_and_stdin
    result = Bunker.run(["python3", "-c", "import sys; d = sys.stdin.read(); print(d.upper()); sys.exit(3)"],
                        stdin: "hello")
    assert_equal "exit", result.status
    assert_equal 3, result.exit_code
    assert_equal "HELLO\n", result.stdout
    refute result.success?
    assert_kind_of Hash, result.report["enforced"]
  end

  def test_allowed_read_sees_the_file_and_denied_read_does_not
    granted = File.join(@dir, "granted")
    hidden = File.join(@dir, "hidden")
    [granted, hidden].each { |d| Dir.mkdir(d) }
    File.write(File.join(granted, "a.txt"), "granted content")
    File.write(File.join(hidden, "b.txt"), "secret content")
    allowed = Bunker.run(["cat", File.join(granted, "a.txt")], policy: policy(allow: { read: [granted] }))
    assert_equal "ok", allowed.status, allowed.stderr
    assert_equal "granted content", allowed.stdout

    denied = Bunker.run(["cat", File.join(hidden, "b.txt")], policy: policy(allow: { read: [granted] }))
    assert_equal "exit", denied.status
    refute_includes denied.stdout, "secret"
    assert_match(/No such file|Permission denied/, denied.stderr)
  end

  def test_allowed_write_lands_on_the_host_and_denied_write_does_not
    out = File.join(@dir, "out")
    Dir.mkdir(out)
    File.chmod(0o777, out)
    ok = Bunker.run(["sh", "-c", "echo written > #{out}/ok.txt"], policy: policy(allow: { write: [out] }))
    assert_equal "ok", ok.status, ok.stderr
    assert_equal "written\n", File.read(File.join(out, "ok.txt")) # checked from the host

    other = File.join(@dir, "other")
    Dir.mkdir(other)
    File.chmod(0o777, other)
    denied = Bunker.run(["sh", "-c", "echo x > #{other}/no.txt"], policy: policy(allow: { write: [out] }))
    refute_equal "ok", denied.status
    refute File.exist?(File.join(other, "no.txt")), "the denied write reached the host"
  end

  def test_a_policy_file_resolves_relative_paths_against_the_caller
    data = File.join(@dir, "data")
    Dir.mkdir(data)
    File.write(File.join(data, "f.txt"), "from the file policy")
    file = File.join(@dir, "policy.json")
    File.write(file, JSON.generate({ "extends" => ["default"], "allow" => { "read" => ["data"] } }))
    result = Bunker.run(["cat", File.join(data, "f.txt")], policy: Pathname(file))
    assert_equal "ok", result.status, result.stderr
    assert_equal "from the file policy", result.stdout
  end

  def test_network_allowed_host_is_reached_and_a_denied_one_is_not
    server = BunkerTest::HTTPServer.new("hi from loopback")
    fetch = ["python3", "-c", "import urllib.request, sys\n" \
                              "try:\n print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n" \
                              "except Exception as e:\n print('failed', e); sys.exit(7)", server.url("/x")]
    allowed = Bunker.run(fetch, policy: policy(allow: { net: ["127.0.0.1:#{server.port}"] }))
    assert_equal "ok", allowed.status, allowed.stdout + allowed.stderr
    assert_equal "hi from loopback\n", allowed.stdout
    assert(allowed.http_requests.any? { |r| r.allowed? && r.port == server.port })
    seen = server.requests.size
    assert_equal 1, seen

    denied = Bunker.run(fetch, policy: policy(allow: { net: ["127.0.0.1:1"] }))
    assert_equal 7, denied.exit_code, denied.stdout
    assert(denied.http_requests.any? { |r| !r.allowed? && r.port == server.port })
    assert_equal seen, server.requests.size, "the denied request reached the server"
  ensure
    server&.close
  end

  def test_timeout_is_hit_and_reported
    result = Bunker.run(["sleep", "30"], timeout_ms: 300)
    assert_equal "timeout", result.status
    assert result.timed_out?
    assert_equal "limit_timeout", result.error_code
  end

  def test_memory_limit_is_hit_and_reported
    result = Bunker.run(["python3", "-c", "x = bytearray(200 * 1024 * 1024); print(len(x))"],
                        policy: policy(limits: { memory: "48MB" }))
    assert_equal "memory_limit", result.status, result.report.inspect
    assert_equal "limit_memory", result.error_code
  end

  def test_output_limit_truncates
    result = Bunker.run(["python3", "-c", "print('x' * 100000)"], policy: policy(limits: { output: "1KB" }))
    assert_equal "ok", result.status
    assert result.truncated?
    assert_operator result.stdout.bytesize, :<=, 1000
  end

  def test_pids_limit_is_hit_and_reported
    script = "import os, sys\nfor i in range(64):\n try:\n  pid = os.fork()\n except OSError:\n  sys.exit(9)\n" \
             " if pid == 0:\n  import time; time.sleep(5); os._exit(0)\nsys.exit(0)"
    result = Bunker.run(["python3", "-c", script], policy: policy(limits: { pids: 8 }), timeout_ms: 10_000)
    assert_equal "pids_limit", result.status, result.report.inspect
    assert_equal "limit_pids", result.error_code
  end

  def test_invalid_policy_is_a_policy_error
    error = assert_raises(Bunker::PolicyError) { Bunker.run(["true"], policy: { "allow" => { "read" => 3 } }) }
    assert_equal "policy_invalid", error.code
    assert_match(/allow\.read/, error.message)
  end

  def test_bad_arguments_are_refused
    assert_raises(Bunker::ArgumentError) { Bunker.run([]) }
    error = assert_raises(Bunker::ArgumentError) { Bunker.run(["true"], timeout_ms: -5) }
    assert_equal "request_invalid", error.code
    assert_raises(ArgumentError) { Bunker.run(["true"], no_such_option: 1) } # Ruby's own keyword check
  end

  def test_daemon_not_running_is_unavailable
    error = assert_raises(Bunker::UnavailableError) do
      Bunker.run(["true"], socket: File.join(BunkerTest::TMP, "nobody-listens.sock"))
    end
    assert_equal "unavailable", error.code
    assert_match(/no bunker daemon answers on/, error.message)
  end
end
