# frozen_string_literal: true

module Bunker
  # Every error this library raises. `code` is the stable string of the API (docs/api.md,
  # "Error codes": `unavailable`, `policy_invalid`, `limit_timeout`, ...); errors of an eval also
  # carry `kind`, the eval result's `error.kind` (`syntax`, `thrown`, `timeout`, `memory_limit`,
  # `output_limit`, `http_blocked`, `http_limit`, `protocol_error`, `crashed`).
  class Error < StandardError
    attr_reader :code, :kind, :details, :console_output

    def initialize(message = nil, code: nil, kind: nil, details: nil, console_output: nil)
      super(message)
      @code = code || self.class.default_code
      @kind = kind
      @details = details
      @console_output = console_output
    end

    def self.default_code
      "internal_error"
    end
  end

  # An option or argument the client refuses before anything runs (an unknown `http:` key, a
  # `memory_limit` below the engine's minimum, an engine that does not exist yet).
  class ArgumentError < Error
    def self.default_code
      "request_invalid"
    end
  end

  # The daemon could not be reached (no socket, nobody listening) or the connection was lost
  # before the answer; also the `bunker` binary of the CLI fallback not found.
  class UnavailableError < Error
    def self.default_code
      "unavailable"
    end
  end

  # The policy does not load (`policy_invalid`) or goes beyond the caller's ceiling
  # (`policy_not_permitted`).
  class PolicyError < Error
    def self.default_code
      "policy_invalid"
    end
  end

  # The code does not parse.
  class SyntaxError < Error
    def self.default_code
      "syntax"
    end
  end

  # An exception escaped the code: `message` is "Name: message", `js_name` the JS class name,
  # `stack` its stack trace, `console_output` what was logged before it.
  class JavascriptError < Error
    attr_reader :stack, :js_name

    def initialize(message = nil, stack: nil, js_name: nil, **rest)
      super(message, **rest)
      @stack = stack
      @js_name = js_name
    end

    def self.default_code
      "thrown"
    end
  end
  # mquickjs-ruby spells it JavaScriptError: both names work.
  JavaScriptError = JavascriptError

  # Killed by the memory limit (`limit_memory`).
  class MemoryLimitError < Error
    def self.default_code
      "limit_memory"
    end
  end

  # Killed at the timeout (`limit_timeout`).
  class TimeoutError < Error
    def self.default_code
      "limit_timeout"
    end
  end

  # Console or program output past its cap with a kill (`limit_output`).
  class OutputLimitError < Error
    def self.default_code
      "limit_output"
    end
  end

  # An HTTP problem of sandboxed code: the parent of the two below (as in mquickjs-ruby).
  class HTTPError < Error
    def self.default_code
      "http_error"
    end
  end

  # The egress proxy refused a request (not on the allowlist, on the denylist, a private
  # address, a port or method not allowed).
  class HTTPBlockedError < HTTPError
    def self.default_code
      "http_blocked"
    end
  end

  # An HTTP limit was hit (max_requests, max_request_size, max_response_size, request_timeout).
  class HTTPLimitError < HTTPError
    def self.default_code
      "http_limit"
    end
  end

  # The worker ended without a result, or broke the ring protocol (its sandbox was killed).
  class CrashedError < Error
    def self.default_code
      "crashed"
    end
  end

  # The error class for an API error code (an `ApiError` reply or a run's `error_code`).
  def self.error_class_for_code(code)
    case code
    when "unavailable" then UnavailableError
    when "policy_invalid", "policy_not_permitted" then PolicyError
    when "request_invalid" then ArgumentError
    when "limit_timeout" then TimeoutError
    when "limit_memory" then MemoryLimitError
    when "limit_output" then OutputLimitError
    else Error
    end
  end

  # An `ApiError` object (`{"code": ..., "message": ...}`) as an exception.
  def self.error_from_api(api_error)
    code = api_error["code"].to_s
    error_class_for_code(code).new(api_error["message"].to_s, code: code, details: api_error)
  end
end
