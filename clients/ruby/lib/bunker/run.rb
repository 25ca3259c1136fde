# frozen_string_literal: true

require "json"
require "open3"

module Bunker
  # Runs `argv` in a sandbox and returns a `Bunker::RunResult` once it ended. Through the daemon
  # (`socket:` or `BUNKER_SOCKET`) it is a `run` request with captured output; without one it is
  # `bunker run --report-fd 3`, with the same result.
  #
  #   policy:     a policy document (Hash), a name (`"default"`, `"runtime:python"`) or a file
  #               (Pathname or a path); default `default`
  #   timeout_ms: a wall-clock timeout that can only shorten the policy's
  #   stdin:      a String given to the program as its standard input (default: none)
  #   env, cwd:   environment variables to set (Hash) and the working directory inside
  #   on_output:  called with (:stdout or :stderr, String) for each chunk as it comes (streaming;
  #               the result still holds all of it)
  def self.run(argv, policy: nil, timeout_ms: nil, stdin: nil, env: nil, cwd: nil, socket: nil, bunker_bin: nil,
               on_output: nil)
    options = { policy: policy, timeout_ms: timeout_ms, env: env, cwd: cwd, socket: socket, bunker_bin: bunker_bin }
    argv = checked_argv(argv, options)
    if on_output
      process = RunningProcess.start(argv, options, on_output)
      process.write(stdin) if stdin
      process.close_stdin
      return process.wait
    end
    path = Daemon.socket_for(socket)
    if path
      spec = run_spec(argv, options)
      spec["stdin"] = { "data" => data_of(stdin) } if stdin
      RunResult.new(Daemon.shared(path).request("run", { "spec" => spec }))
    else
      report, out, err = CLI.spawn_with_report(run_command(argv, options), stdin: stdin)
      cli_result(report, out, err)
    end
  end

  # Starts `argv` in a sandbox and returns a `Bunker::RunningProcess` at once: `write`,
  # `close_stdin`, `next_output`, `kill`, `wait`. Options as for `Bunker.run` (no `stdin:`: write
  # it).
  def self.spawn(argv, policy: nil, timeout_ms: nil, env: nil, cwd: nil, socket: nil, bunker_bin: nil, on_output: nil)
    options = { policy: policy, timeout_ms: timeout_ms, env: env, cwd: cwd, socket: socket, bunker_bin: bunker_bin }
    RunningProcess.start(checked_argv(argv, options), options, on_output)
  end

  def self.checked_argv(argv, options)
    argv = Array(argv).map(&:to_s)
    raise ArgumentError, "argv is empty (give the program and its arguments)" if argv.empty?

    timeout = options[:timeout_ms]
    if timeout && !(timeout.is_a?(Integer) && timeout.positive?)
      raise ArgumentError, "timeout_ms must be a positive Integer of milliseconds, got #{timeout.inspect}"
    end
    argv
  end
  private_class_method :checked_argv

  # The `RunSpec` (docs/api.md) of a run through the daemon, output captured, stdin none.
  def self.run_spec(argv, options)
    spec = { "policy" => Policy.choice(options[:policy], bunker_bin: options[:bunker_bin]), "argv" => argv,
             "options" => { "output" => "capture" } }
    spec["options"]["timeout_ms"] = options[:timeout_ms] if options[:timeout_ms]
    spec["env"] = Policy.stringify(options[:env]).transform_values(&:to_s) if options[:env]
    spec["cwd"] = options[:cwd].to_s if options[:cwd]
    spec
  end

  # The CLI fallback's command: `bunker run -q --report-fd 3 [policy] [limits] -- argv`.
  def self.run_command(argv, options)
    policy = options[:policy]
    cmd = [Bunker.bunker_bin(options[:bunker_bin]), "run", "-q", "--report-fd", "3"]
    if policy
      doc = Policy.choice(policy, bunker_bin: options[:bunker_bin])["inline"] || { "extends" => [policy.to_s] }
      cmd.push("--policy-json", JSON.generate(doc))
    end
    cmd.push("--timeout", "#{options[:timeout_ms]}ms") if options[:timeout_ms]
    cmd.push("--cwd", options[:cwd].to_s) if options[:cwd]
    Policy.stringify(options[:env] || {}).each { |k, v| cmd.push("--set-env", "#{k}=#{v}") }
    cmd.push("--", *argv)
  end

  # A CLI run's result; a policy or setup error raises, as the daemon answers it with an error.
  def self.cli_result(report, out, err)
    result = RunResult.new(report, stdout: out, stderr: err)
    if %w[policy_error setup_error].include?(result.status)
      code = report["error_code"] || "setup_failed"
      raise Bunker.error_class_for_code(code).new(report["error"].to_s, code: code, details: report)
    end
    result
  end

  # Bytes as the protocol's `Data`: `{"utf8": ...}` or `{"base64": ...}`.
  def self.data_of(bytes)
    bytes = bytes.to_s
    utf8 = bytes.dup.force_encoding(Encoding::UTF_8)
    utf8.valid_encoding? ? { "utf8" => utf8 } : { "base64" => [bytes].pack("m0") }
  end

  # Spawning the `bunker` binary with a report pipe on fd 3.
  module CLI
    module_function

    # Runs `cmd` with `stdin` (a String or nil) and a pipe as fd 3; returns [report Hash, stdout,
    # stderr]. A missing report (bunker could not even start) raises with bunker's stderr.
    def spawn_with_report(cmd, stdin: nil)
      report_r, report_w = IO.pipe
      begin
        stdin_w, stdout_r, stderr_r, waiter = Open3.popen3(*cmd, 3 => report_w)
      rescue Errno::ENOENT => e
        raise UnavailableError, "no bunker binary at #{cmd.first} (set BUNKER_BIN or pass bunker_bin:): #{e.message}"
      ensure
        report_w.close
      end
      readers = [stdout_r, stderr_r, report_r].map { |io| Thread.new { io.binmode.read } }
      begin
        stdin_w.binmode.write(stdin.to_s) if stdin
      rescue Errno::EPIPE
        nil # the program did not read all of it
      end
      stdin_w.close
      out, err, report_text = readers.map(&:value)
      status = waiter.value
      [stdout_r, stderr_r, report_r].each(&:close)
      if report_text.strip.empty?
        raise Error.new("#{cmd.first} gave no report (exit #{status.exitstatus.inspect}): #{err.strip}",
                        code: "internal_error")
      end
      [JSON.parse(report_text.force_encoding(Encoding::UTF_8)), utf8_or_binary(out), utf8_or_binary(err)]
    end

    def utf8_or_binary(bytes)
      utf8 = bytes.dup.force_encoding(Encoding::UTF_8)
      utf8.valid_encoding? ? utf8 : bytes
    end
  end
end
