# frozen_string_literal: true

require "json"
require "open3"
require "tempfile"

module Bunker
  # The CLI fallback of eval: `bunker eval ... CODE` runs the spec cold here and prints the
  # EvalResult as one JSON line on stdout (crates/cli/src/eval.rs, docs/workers.md).
  module CLIEval
    module_function

    # What `bunker eval` exits with when it printed no result (docs/api.md, "Error codes").
    EXIT_CODES = { 2 => "request_invalid", 120 => "policy_invalid", 121 => "setup_failed",
                   125 => "unavailable" }.freeze

    def run(spec, bunker_bin)
      bin = Bunker.bunker_bin(bunker_bin)
      with_policy_file(spec, bin) do |policy_file|
        argv = [bin, "eval", "--local"] + flags(spec)
        argv.push("--policy", policy_file) if policy_file
        argv.push("--", spec["code"])
        out, err, status = begin
          Open3.capture3(*argv)
        rescue Errno::ENOENT => e
          raise UnavailableError, "no bunker binary at #{bin} (set BUNKER_BIN or pass bunker_bin:): #{e.message}"
        end
        result_line(out) || raise_cli_error(bin, status, err)
      end
    end

    def flags(spec)
      flags = ["--engine", spec["engine"]]
      limits = spec["limits"] || {}
      flags.push("--timeout", "#{limits['timeout_ms']}ms") if limits["timeout_ms"]
      flags.push("--memory", limits["memory_bytes"].to_s) if limits["memory_bytes"]
      flags.push("--console-max", limits["console_bytes"].to_s) if limits["console_bytes"]
      flags.push("--globals", JSON.generate(spec["globals"])) if spec["globals"] && !spec["globals"].empty?
      flags
    end

    # `bunker eval` takes the spec's `policy` and `http` only as a policy file (`--policy`, which
    # extends the engine's profile): written here for the call, then removed. Yields nil when
    # neither is set.
    def with_policy_file(spec, bin)
      return yield(nil) if spec["policy"].nil? && spec["http"].nil?

      doc = policy_doc(spec["policy"])
      apply_http(doc, spec["http"]) if spec["http"]
      file = Tempfile.new(["bunker-eval-", ".json"])
      begin
        file.write(JSON.generate(doc))
        file.close
        yield file.path
      ensure
        file.close!
      end
    rescue Errno::ENOENT => e
      raise UnavailableError, "cannot run #{bin}: #{e.message}"
    end

    # The spec's `policy` as a document: an inline one as it is (use absolute paths: relative
    # ones would resolve against the temporary file's directory), a name as `extends`.
    def policy_doc(choice)
      return {} if choice.nil?
      return { "extends" => [choice["name"]] } if choice["name"]

      Marshal.load(Marshal.dump(choice["inline"]))
    end

    # The eval's `http` options as policy keys, for this fallback only: the daemon and the
    # `bunker eval` of a spec apply them with `HttpOptions::apply_to` (crates/policy/src/eval.rs),
    # whose rules this follows (`bunker eval` has no flag for the whole `http` object).
    def apply_http(doc, http)
      unless Array(http["allowed_methods"]).empty?
        raise PolicyError.new("http.allowed_methods #{http['allowed_methods']} cannot be enforced: the egress proxy " \
                              "does not see the method of a TLS connection; leave allowed_methods empty",
                              code: "policy_invalid")
      end
      ports = Array(http["allowed_ports"])
      allow = Array(http["allowlist"]).flat_map do |host|
        ports.empty? ? [host] : ports.map { |port| host.include?(":") && !host.start_with?("[") ? "[#{host}]:#{port}" : "#{host}:#{port}" }
      end
      (doc["allow"] ||= {})["net"] = Array(doc.dig("allow", "net")) + allow
      (doc["deny"] ||= {})["net"] = Array(doc.dig("deny", "net")) + Array(http["denylist"])
      section = (doc["http"] ||= {})
      section["block_private_ips"] = http["block_private_ips"] if http.key?("block_private_ips")
      { "max_requests" => "max_requests", "max_request_size" => "max_request_bytes",
        "max_response_size" => "max_response_bytes" }.each do |key, policy_key|
        section[policy_key] = http[key] if http[key]
      end
      section["request_timeout"] = "#{http['request_timeout']}ms" if http["request_timeout"]
    end

    def result_line(out)
      line = out.lines.map(&:strip).reject(&:empty?).last
      line && JSON.parse(line)
    rescue JSON::ParserError
      nil
    end

    def raise_cli_error(bin, status, err)
      message = err.strip.sub(/\Abunker: /, "")
      message = "no output" if message.empty?
      code = EXIT_CODES.fetch(status.exitstatus, "internal_error")
      raise Bunker.error_class_for_code(code).new("#{bin} eval (exit #{status.exitstatus.inspect}): #{message}", code: code)
    end
  end
end
