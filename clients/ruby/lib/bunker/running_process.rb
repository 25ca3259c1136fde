# frozen_string_literal: true

require "json"
require "open3"

module Bunker
  # A program started by `Bunker.spawn`, running in its sandbox: write its stdin, read its output
  # as it comes, kill it, wait for its `Bunker::RunResult`. Through a daemon it is a `start` on a
  # connection of its own (output as events); in the CLI fallback a `bunker run` child.
  #
  # Output is delivered while the caller is in one of these methods (there is no background
  # thread calling back): `next_output` blocks for the next chunk, and the `on_output:` callback
  # of `Bunker.spawn` hears every chunk as `write`, `close_stdin`, `next_output`, `kill` and `wait`
  # read it. `wait`'s result holds all of the output either way.
  class RunningProcess
    def self.start(argv, spec_options, on_output)
      path = Daemon.socket_for(spec_options[:socket])
      path ? DaemonProcess.new(path, argv, spec_options, on_output) : CLIProcess.new(argv, spec_options, on_output)
    end

    def initialize(on_output)
      @on_output = on_output
      @pending = [] # chunks not yet taken by next_output
      @out = +"".b
      @err = +"".b
      @result = nil
    end

    # The next chunk of output as `[:stdout, String]` or `[:stderr, String]`, waiting for it;
    # nil once the program's output has ended.
    def next_output
      read_more until !@pending.empty? || output_ended?
      @pending.shift
    end

    # Waits for the end and returns the `Bunker::RunResult` (stdout and stderr complete).
    def wait
      @result ||= finish
    end

    private

    def deliver(stream, bytes)
      (stream == :stdout ? @out : @err) << bytes.b
      @pending << [stream, CLI.utf8_or_binary(bytes)]
      @on_output&.call(stream, CLI.utf8_or_binary(bytes))
    end

    def outputs
      [CLI.utf8_or_binary(@out), CLI.utf8_or_binary(@err)]
    end
  end

  # `start` through the daemon, with `stdin: "stream"` and output as events.
  class DaemonProcess < RunningProcess
    attr_reader :sandbox

    def initialize(path, argv, options, on_output)
      super(on_output)
      @connection = Connection.new(path)
      @ended = nil
      spec = Bunker.run_spec(argv, options).merge("stdin" => "stream")
      spec["options"]["output"] = "events"
      reply = @connection.request("start", { "spec" => spec }, keep_events: true) { |event| on_event(event) }
      @sandbox = reply["sandbox"]
    rescue StandardError
      @connection&.close
      raise
    end

    def write(bytes)
      @connection.request("stdin", { "sandbox" => @sandbox, "data" => Bunker.data_of(bytes) })
      nil
    end

    def close_stdin
      @connection.request("close_stdin", { "sandbox" => @sandbox })
      nil
    end

    # Kills every process of the sandbox; its result's `error_code` is `cancelled`.
    def kill
      @connection.request("kill", { "sandbox" => @sandbox }) unless @ended
      nil
    end

    private

    def on_event(event)
      case event["event"]
      when "stdout", "stderr" then deliver(event["event"].to_sym, RunResult.data_bytes(event["data"]))
      when "exit" then @ended = event
      when "error" then @ended = event
      end
    end

    # Reads frames until a chunk is pending (or, with `to_end`, until the sandbox ended).
    def read_more(to_end: false)
      @connection.pump(-> { @ended || (!to_end && !@pending.empty?) })
    end

    def output_ended?
      !@ended.nil?
    end

    def finish
      read_more(to_end: true)
      @connection.close
      raise Bunker.error_from_api(@ended["error"]) if @ended["event"] == "error"

      out, err = outputs
      RunResult.new(@ended["result"], stdout: out, stderr: err)
    end
  end

  # `bunker run --report-fd 3` as a child, its stdin and output as pipes.
  class CLIProcess < RunningProcess
    def initialize(argv, options, on_output)
      super(on_output)
      cmd = Bunker.run_command(argv, options)
      report_r, report_w = IO.pipe
      begin
        @stdin, stdout_r, stderr_r, @waiter = Open3.popen3(*cmd, 3 => report_w)
      rescue Errno::ENOENT => e
        raise UnavailableError, "no bunker binary at #{cmd.first} (set BUNKER_BIN or pass bunker_bin:): #{e.message}"
      ensure
        report_w.close
      end
      @chunks = Queue.new # [stream, bytes], then [stream, nil] at each stream's end
      @open_streams = 2
      [[:stdout, stdout_r], [:stderr, stderr_r]].each do |stream, io|
        Thread.new do
          loop { @chunks << [stream, io.readpartial(65_536)] }
        rescue EOFError, IOError
          @chunks << [stream, nil]
        ensure
          io.close
        end
      end
      @report_reader = Thread.new { report_r.read.tap { report_r.close } }
    end

    def write(bytes)
      @stdin.write(bytes.to_s)
      nil
    rescue Errno::EPIPE, IOError
      nil # the program closed its stdin or ended
    end

    def close_stdin
      @stdin.close unless @stdin.closed?
      nil
    end

    # Stops `bunker run` (SIGTERM), which kills every process of the sandbox; its result's
    # `error_code` is `terminated` (through a daemon: `cancelled`).
    def kill
      @killed = true
      ::Process.kill("TERM", @waiter.pid) if @waiter.alive?
      nil
    rescue Errno::ESRCH
      nil
    end

    private

    # Takes the next chunk (or, with `to_end`, every chunk until both streams ended).
    def read_more(to_end: false)
      until output_ended?
        stream, bytes = @chunks.pop
        bytes ? deliver(stream, bytes) : @open_streams -= 1
        break unless to_end
      end
    end

    def output_ended?
      @open_streams.zero?
    end

    def finish
      close_stdin
      read_more(to_end: true)
      status = @waiter.value
      report_text = @report_reader.value.to_s
      if report_text.strip.empty?
        # A SIGTERM that came before bunker handled signals ended it before any sandbox: as the
        # daemon answers a request cancelled before its sandbox was up.
        raise Error.new("killed before bunker had started the sandbox", code: "cancelled") if @killed && status.signaled?

        raise Error.new("bunker gave no report (exit #{status.exitstatus.inspect}): #{outputs[1].strip}",
                        code: "internal_error")
      end
      out, err = outputs
      Bunker.cli_result(JSON.parse(report_text.force_encoding(Encoding::UTF_8)), out, err)
    end
  end
end
