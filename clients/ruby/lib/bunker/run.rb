# frozen_string_literal: true

require "json"
require "open3"

module Bunker
  RUN_OPTIONS = %i[policy timeout_ms stdin env cwd socket bunker_bin].freeze

  # Runs `argv` in a sandbox and returns a `Bunker::RunResult` once it ended. Through the daemon
  # (`socket:` or `BUNKER_SOCKET`) it is a `run` request with captured output; without one it is
  # `bunker run --report-fd 3`, with the same result.
  #
  #   policy:     a policy document (Hash), a name (`"default"`, `"runtime:python"`) or a file
  #               (Pathname or a path); default `default`
  #   timeout_ms: a wall-clock timeout that can only shorten the policy's
  #   stdin:      a String given to the program as its standard input (default: none)
  #   env, cwd:   environment variables to set (Hash) and the working directory inside
  def self.run(argv, policy: nil, timeout_ms: nil, stdin: nil, env: nil, cwd: nil, socket: nil, bunker_bin: nil)
    argv = Array(argv).map(&:to_s)
    raise ArgumentError, "run: argv is empty (give the program and its arguments)" if argv.empty?
    if timeout_ms && !(timeout_ms.is_a?(Integer) && timeout_ms.positive?)
      raise ArgumentError, "run: timeout_ms must be a positive Integer of milliseconds, got #{timeout_ms.inspect}"
    end

    path = Daemon.socket_for(socket)
    if path
      run_through_daemon(path, argv, policy, timeout_ms, stdin, env, cwd, bunker_bin)
    else
      run_with_cli(argv, policy, timeout_ms, stdin, env, cwd, bunker_bin)
    end
  end

  def self.run_through_daemon(path, argv, policy, timeout_ms, stdin, env, cwd, bunker_bin)
    spec = { "policy" => Policy.choice(policy, bunker_bin: bunker_bin), "argv" => argv,
             "options" => { "output" => "capture" } }
    spec["options"]["timeout_ms"] = timeout_ms if timeout_ms
    spec["stdin"] = { "data" => data_of(stdin) } if stdin
    spec["env"] = Policy.stringify(env).transform_values(&:to_s) if env
    spec["cwd"] = cwd.to_s if cwd
    RunResult.new(Daemon.shared(path).request("run", { "spec" => spec }))
  end
  private_class_method :run_through_daemon

  # The CLI fallback: `bunker run -q --report-fd 3 [policy] -- argv`, output from pipes and the
  # report (a RunResult) from fd 3.
  def self.run_with_cli(argv, policy, timeout_ms, stdin, env, cwd, bunker_bin)
    cmd = [Bunker.bunker_bin(bunker_bin), "run", "-q", "--report-fd", "3"]
    cmd.push("--policy-json", JSON.generate(Policy.choice(policy, bunker_bin: bunker_bin)["inline"] || { "extends" => [policy.to_s] })) if policy
    cmd.push("--timeout", "#{timeout_ms}ms") if timeout_ms
    cmd.push("--cwd", cwd.to_s) if cwd
    Policy.stringify(env || {}).each { |k, v| cmd.push("--set-env", "#{k}=#{v}") }
    cmd.push("--", *argv)
    report, out, err = CLI.spawn_with_report(cmd, stdin: stdin)
    result = RunResult.new(report, stdout: out, stderr: err)
    # The daemon answers these with an error reply instead of a result: the same here.
    if %w[policy_error setup_error].include?(result.status)
      code = report["error_code"] || "setup_failed"
      raise Bunker.error_class_for_code(code).new(report["error"].to_s, code: code, details: report)
    end
    result
  end
  private_class_method :run_with_cli

  def self.data_of(bytes)
    bytes = bytes.to_s
    utf8 = bytes.dup.force_encoding(Encoding::UTF_8)
    utf8.valid_encoding? ? { "utf8" => utf8 } : { "base64" => [bytes].pack("m0") }
  end
  private_class_method :data_of

  # Spawning the `bunker` binary with a report pipe on fd 3.
  module CLI
    module_function

    # Runs `cmd` with `stdin` (a String or nil) and a pipe as fd 3; returns [report Hash, stdout,
    # stderr]. A missing report (bunker could not even start) raises with bunker's stderr.
    def spawn_with_report(cmd, stdin: nil)
      report_r, report_w = IO.pipe
      begin
        stdin_r, stdout_r, stderr_r, waiter = Open3.popen3(*cmd, 3 => report_w)
      rescue Errno::ENOENT => e
        raise UnavailableError, "no bunker binary at #{cmd.first} (set BUNKER_BIN or pass bunker_bin:): #{e.message}"
      ensure
        report_w.close
      end
      readers = [stdout_r, stderr_r, report_r].map { |io| Thread.new { io.binmode.read } }
      begin
        stdin_r.binmode.write(stdin.to_s) if stdin
      rescue Errno::EPIPE
        nil # the program did not read all of it
      end
      stdin_r.close
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
