# frozen_string_literal: true

require "base64"

module Bunker
  # One decision of the egress proxy, from the run's report (docs/report.md, `http.requests`).
  HTTPRequest = Struct.new(:kind, :host, :port, :address, :allowed, :rule, :bytes_sent,
                           :bytes_received, :duration_ms, :limit, keyword_init: true) do
    def self.from_report(record)
      new(**record.each_with_object({}) { |(k, v), h| h[k.to_sym] = v if members.include?(k.to_sym) })
    end

    def allowed?
      allowed == true
    end
  end

  # What an eval gave: mquickjs-ruby's `Result`, plus what bunker knows about the run.
  class Result
    # The value of the code's last expression (JSON: nil, true/false, Integer/Float, String,
    # Array, Hash with String keys); undefined is nil, non-JSON values come as their string form.
    attr_reader :value
    # What console.log and friends wrote, at most `console_log_max_size` bytes.
    attr_reader :console_output
    # Every request the sandboxed code made through the egress proxy (`Bunker::HTTPRequest`).
    attr_reader :http_requests
    # The run's status (`ok`), its wall time in ms, and the whole EvalResult (a Hash).
    attr_reader :status, :wall_ms, :raw

    def initialize(raw)
      @raw = raw
      @value = raw["value"]
      @console_output = raw["console_output"].to_s
      @console_truncated = raw["console_truncated"] == true
      @http_requests = Array(raw["http_requests"]).map { |r| HTTPRequest.from_report(r) }
      @status = raw["status"]
      @wall_ms = raw["wall_ms"]
      @warm = raw["warm"] == true
    end

    def console_truncated?
      @console_truncated
    end

    # Whether a pre-started worker served it.
    def warm?
      @warm
    end
  end

  # What `Bunker.run` gave: the program's exit and output, and the whole report
  # (docs/report.md). A non-zero exit is a result, not an error.
  class RunResult
    attr_reader :status, :exit_code, :signal, :stdout, :stderr, :report, :http_requests

    def initialize(report, stdout: nil, stderr: nil)
      @report = report
      @status = report["status"]
      @exit_code = report["exit_code"]
      @signal = report["signal"]
      @stdout = stdout || RunResult.data_bytes(report.dig("stdout", "data"))
      @stderr = stderr || RunResult.data_bytes(report.dig("stderr", "data"))
      @http_requests = Array(report.dig("http", "requests")).map { |r| HTTPRequest.from_report(r) }
    end

    # `{"utf8": ...}` or `{"base64": ...}` (docs/api.md, "Bytes") as a String: UTF-8 text, or
    # binary (ASCII-8BIT) bytes.
    def self.data_bytes(data)
      return +"" if data.nil?
      return data["utf8"].dup.force_encoding(Encoding::UTF_8) if data.key?("utf8")

      Base64.strict_decode64(data["base64"].to_s)
    end

    def success?
      status == "ok"
    end

    def timed_out?
      status == "timeout"
    end

    # Whether stdout or stderr was cut at `limits.output`.
    def truncated?
      report.dig("stdout", "truncated") == true || report.dig("stderr", "truncated") == true
    end

    def error_code
      report["error_code"]
    end

    def error
      report["error"]
    end

    def wall_ms
      report["wall_ms"]
    end

    def peak_memory_bytes
      report["peak_memory_bytes"]
    end

    def warm?
      report["warm"] == true
    end
  end
end
