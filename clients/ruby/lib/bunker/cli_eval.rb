# frozen_string_literal: true

require "json"
require "open3"
require "tempfile"

module Bunker
  # The CLI fallback of eval: `bunker eval ... CODE` runs the spec cold here and prints the
  # EvalResult as one JSON line on stdout (crates/cli/src/eval.rs).
  module CLIEval
    module_function

    def run(spec, bunker_bin)
      bin = Bunker.bunker_bin(bunker_bin)
      argv = [bin, "eval"] + flags(spec) + ["--", code_with_globals(spec)]
      out, err, status = begin
        Open3.capture3(*argv)
      rescue Errno::ENOENT => e
        raise UnavailableError, "no bunker binary at #{bin} (set BUNKER_BIN or pass bunker_bin:): #{e.message}"
      end
      line = out.lines.map(&:strip).reject(&:empty?).last
      raise_cli_error(bin, status, err) if line.nil?

      JSON.parse(line)
    rescue JSON::ParserError
      raise_cli_error(bin, status, err)
    end

    def flags(spec)
      flags = ["--engine", spec["engine"]]
      limits = spec["limits"] || {}
      flags.push("--timeout", "#{limits['timeout_ms']}ms") if limits["timeout_ms"]
      flags.push("--memory", limits["memory_bytes"].to_s) if limits["memory_bytes"]
      flags.push("--console-max", limits["console_bytes"].to_s) if limits["console_bytes"]
      if (http = spec["http"])
        flags.push("--http-json", JSON.generate(http))
      end
      if (policy = spec.dig("policy", "inline"))
        flags.push("--policy-json", JSON.generate(policy))
      elsif (name = spec.dig("policy", "name"))
        flags.push("--policy-json", JSON.generate({ "extends" => [name] }))
      end
      flags
    end

    # `bunker eval` has no globals flag: the values are set by statements before the code (JSON
    # is a JavaScript expression; Python reads it with json.loads).
    def code_with_globals(spec)
      globals = spec["globals"]
      return spec["code"] if globals.nil? || globals.empty?

      if spec["engine"] == "python"
        "globals().update(__import__('json').loads(#{JSON.generate(JSON.generate(globals))}))\n#{spec['code']}"
      else
        assignments = globals.map { |name, value| "globalThis[#{JSON.generate(name)}] = #{JSON.generate(value)};" }
        "#{assignments.join(' ')}\n#{spec['code']}"
      end
    end

    def raise_cli_error(bin, status, err)
      message = err.strip.empty? ? "no output" : err.strip
      code = status.exitstatus == 2 ? "request_invalid" : "internal_error"
      code = "policy_invalid" if status.exitstatus == 120
      raise Bunker.error_class_for_code(code).new("#{bin} eval failed (exit #{status.exitstatus.inspect}): #{message}", code: code)
    end
  end
end
