# frozen_string_literal: true

require "json"
require "open3"

module Bunker
  # The CLI fallback of eval: `bunker eval --spec -` runs the spec cold here and prints the
  # EvalResult as one JSON line on stdout (crates/cli/src/eval.rs, docs/workers.md).
  module CLIEval
    module_function

    # What `bunker eval` exits with when it printed no result (docs/api.md, "Error codes").
    EXIT_CODES = { 2 => "request_invalid", 120 => "policy_invalid", 121 => "setup_failed",
                   125 => "unavailable" }.freeze

    # The whole spec goes on `bunker eval --spec -`'s stdin: bunker composes its policy (the eval
    # profile, `policy`, then `http` and `limits`) as the daemon does.
    def run(spec, bunker_bin)
      bin = Bunker.bunker_bin(bunker_bin)
      out, err, status = begin
        Open3.capture3(bin, "eval", "--local", "--spec", "-", stdin_data: JSON.generate(spec))
      rescue Errno::ENOENT => e
        raise UnavailableError, "no bunker binary at #{bin} (set BUNKER_BIN or pass bunker_bin:): #{e.message}"
      end
      result_line(out) || raise_cli_error(bin, status, err)
    end

    def result_line(out)
      line = out.lines.map(&:strip).reject(&:empty?).last
      line && JSON.parse(line)
    rescue JSON::ParserError
      nil
    end

    # No result: the request-level error, whose ApiError is the last line on stderr (its code),
    # else the code of the exit status.
    def raise_cli_error(bin, status, err)
      lines = err.lines.map(&:strip).reject(&:empty?)
      api_error = begin
        JSON.parse(lines.last || "")
      rescue JSON::ParserError
        nil
      end
      if api_error.is_a?(Hash) && api_error["code"].is_a?(String)
        code = api_error["code"]
        message = api_error["message"].to_s
      else
        code = EXIT_CODES.fetch(status.exitstatus, "internal_error")
        message = err.strip.sub(/\Abunker: /, "")
        message = "no output" if message.empty?
      end
      raise Bunker.error_class_for_code(code).new("#{bin} eval (exit #{status.exitstatus.inspect}): #{message}", code: code)
    end
  end
end
