# frozen_string_literal: true

require_relative "helper"
require "timeout"

# Bunker.spawn and streaming: output as it comes, stdin written while it runs, kill.
class TestSpawn < Minitest::Test
  # Echoes each line upper-cased, flushing each, until end of input.
  ECHO = ["python3", "-u", "-c", "import sys\nfor line in sys.stdin:\n print(line.strip().upper(), flush=True)\nprint('bye')"].freeze

  # The next line of stdout (chunks may split a line anywhere).
  # A client that only delivered output at the end would hang here: the guard turns that into a
  # failure (it bounds a hang, it does not time anything).
  def next_line(process)
    Timeout.timeout(60) { read_line(process) }
  end

  def read_line(process)
    line = +""
    until line.end_with?("\n")
      stream, data = process.next_output
      flunk "the output ended before a full line (got #{line.inspect})" if stream.nil?
      line << data if stream == :stdout
    end
    line
  end

  def test_output_streams_while_the_program_waits_for_input
    process = Bunker.spawn(ECHO)
    process.write("first\n")
    # The program is still running (stdin open): this chunk can only have been streamed.
    assert_equal "FIRST\n", next_line(process)
    process.write("second\n")
    assert_equal "SECOND\n", next_line(process)
    process.close_stdin
    result = process.wait
    assert_equal "ok", result.status
    assert_equal "FIRST\nSECOND\nbye\n", result.stdout
  end

  def test_run_with_on_output_hears_each_chunk
    chunks = []
    result = Bunker.run(["sh", "-c", "echo out; echo err >&2; echo more"], on_output: ->(stream, data) { chunks << [stream, data] })
    assert_equal "ok", result.status
    assert_equal "out\nmore\n", chunks.select { |s, _| s == :stdout }.map(&:last).join
    assert_equal "err\n", chunks.select { |s, _| s == :stderr }.map(&:last).join
    assert_equal "out\nmore\n", result.stdout
    assert_equal "err\n", result.stderr
  end

  def test_kill_ends_the_sandbox
    process = Bunker.spawn(["python3", "-u", "-c", "print('started'); import time; time.sleep(60)"])
    assert_equal "started\n", next_line(process)
    process.kill
    result = process.wait
    assert_equal "signal", result.status
    assert_equal BunkerTest.daemon? ? "cancelled" : "terminated", result.error_code
    assert_nil process.next_output
  end

  def test_spawn_refuses_bad_input
    assert_raises(Bunker::ArgumentError) { Bunker.spawn([]) }
    assert_raises(Bunker::PolicyError) { Bunker.spawn(["true"], policy: { "allow" => { "read" => 3 } }).wait }
  end
end
