# frozen_string_literal: true

require "json"

module Bunker
  # The engines `engine:` takes, with the smallest `memory_limit` each still runs `1+1` under
  # its eval profile with (measured with the eval profile, then doubled for margin; see
  # README.md, "Memory limits").
  ENGINES = {
    bun: { name: "bun", min_memory: 16 * 1024 * 1024 },
    python: { name: "python", min_memory: 16 * 1024 * 1024 }
  }.freeze
  # Engines that are planned but do not exist yet: refused with a clear error.
  PLANNED_ENGINES = { quickjs: "the QuickJS tier does not exist yet" }.freeze

  # The `http:` keys (mquickjs-ruby's names), with the kind of value each takes. They map onto
  # the eval spec's `http`, which the daemon applies to the policy's `allow.net` / `deny.net` /
  # `http` (docs/workers.md).
  HTTP_KEYS = {
    allowlist: :hosts, denylist: :hosts, block_private_ips: :boolean, allowed_ports: :ports,
    allowed_methods: :methods, max_requests: :count, max_request_size: :count,
    max_response_size: :count, request_timeout: :count
  }.freeze
  # mquickjs-ruby spellings that bunker names differently: named in the error.
  HTTP_RENAMED = { whitelist: :allowlist, blocked_ips: :denylist }.freeze

  EVAL_OPTIONS = %i[memory_limit timeout_ms console_log_max_size http engine policy socket bunker_bin].freeze

  # Evaluates `code` in a fresh sandboxed worker and returns a `Bunker::Result` (mquickjs-ruby's
  # `MQuickJS.eval`). Raises `Bunker::SyntaxError`, `JavascriptError`, `TimeoutError`,
  # `MemoryLimitError`, `HTTPBlockedError`, `HTTPLimitError`, ... (all `Bunker::Error`).
  def self.eval(code, hash_options = nil, **options)
    options = merged_options(hash_options, options)
    spec = EvalSpec.build(code, options)
    EvalSpec.result_or_raise(EvalSpec.submit(spec, options))
  end

  # Keyword options, plus the options Hash mquickjs-ruby callers pass positionally
  # (`MQuickJS.eval(code, { timeout_ms: 100 })`).
  def self.merged_options(hash_options, options)
    return options if hash_options.nil?
    raise ArgumentError, "options: expected a Hash, got #{hash_options.class}" unless hash_options.is_a?(Hash)

    hash_options.transform_keys(&:to_sym).merge(options)
  end

  # Builds, submits and interprets eval specs (the eval contract, docs/protocol.md "eval").
  module EvalSpec
    module_function

    def build(code, options)
      unknown = options.keys - EVAL_OPTIONS
      raise ArgumentError, "unknown option #{unknown.map(&:inspect).join(', ')} (known: #{EVAL_OPTIONS.join(', ')})" unless unknown.empty?
      raise ArgumentError, "code must be a String, got #{code.class}" unless code.is_a?(String)

      engine = engine_of(options.fetch(:engine, :bun))
      spec = { "engine" => engine[:name], "code" => code }
      limits = limits_of(options, engine)
      spec["limits"] = limits unless limits.empty?
      spec["http"] = http_of(options[:http]) if options[:http]
      if options[:policy]
        spec["policy"] = Policy.choice(options[:policy], bunker_bin: options[:bunker_bin])
      end
      spec
    end

    def engine_of(engine)
      key = engine.to_s.to_sym
      raise ArgumentError, "engine #{engine.inspect} is not available: #{PLANNED_ENGINES[key]} (use :bun)" if PLANNED_ENGINES.key?(key)

      ENGINES.fetch(key) do
        raise ArgumentError, "unknown engine #{engine.inspect} (known: #{ENGINES.keys.map(&:inspect).join(', ')})"
      end
    end

    def limits_of(options, engine)
      limits = {}
      if (memory = options[:memory_limit])
        positive_integer!(:memory_limit, memory)
        if memory < engine[:min_memory]
          raise ArgumentError, "memory_limit: #{memory} bytes is below the #{engine[:name]} engine's minimum of " \
                               "#{engine[:min_memory]} bytes (#{engine[:min_memory] / (1024 * 1024)} MiB)"
        end
        limits["memory_bytes"] = memory
      end
      if (timeout = options[:timeout_ms])
        positive_integer!(:timeout_ms, timeout)
        limits["timeout_ms"] = timeout
      end
      if (console = options[:console_log_max_size])
        positive_integer!(:console_log_max_size, console)
        limits["console_bytes"] = console
      end
      limits
    end

    def http_of(http)
      raise ArgumentError, "http: expected a Hash of #{HTTP_KEYS.keys.join(', ')}, got #{http.class}" unless http.is_a?(Hash)

      http.each_with_object({}) do |(key, value), out|
        sym = key.to_s.to_sym
        kind = HTTP_KEYS.fetch(sym) do
          hint = HTTP_RENAMED.key?(sym) ? " (bunker calls it :#{HTTP_RENAMED[sym]})" : ""
          raise ArgumentError, "http: unknown key #{key.inspect}#{hint}; known: #{HTTP_KEYS.keys.join(', ')}"
        end
        out[sym.to_s] = http_value(sym, kind, value)
      end
    end

    def http_value(key, kind, value)
      case kind
      when :hosts
        list = Array(value)
        raise ArgumentError, "http: #{key} must be a list of host Strings" unless list.all? { |v| v.is_a?(String) && !v.empty? }

        list
      when :boolean
        raise ArgumentError, "http: #{key} must be true or false, got #{value.inspect}" unless [true, false].include?(value)

        value
      when :ports
        list = Array(value)
        raise ArgumentError, "http: allowed_ports must be a list of ports 1-65535" unless list.all? { |p| p.is_a?(Integer) && p.between?(1, 65_535) }

        list
      when :methods
        list = Array(value).map { |m| m.to_s.upcase }
        raise ArgumentError, "http: allowed_methods must be a list of HTTP method names" unless list.all? { |m| m.match?(/\A[A-Z]+\z/) }

        list
      when :count
        positive_integer!("http: #{key}", value)
        value
      end
    end

    def positive_integer!(name, value)
      return if value.is_a?(Integer) && value.positive?

      raise ArgumentError, "#{name} must be a positive Integer, got #{value.inspect}"
    end

    # Sends `spec` through the daemon (`socket:` / `BUNKER_SOCKET`) or the CLI fallback and
    # returns the EvalResult Hash.
    def submit(spec, options)
      path = Daemon.socket_for(options[:socket])
      return Daemon.shared(path).request("eval", { "spec" => spec }) if path

      CLIEval.run(spec, options[:bunker_bin])
    end

    ERROR_CLASSES = {
      "syntax" => SyntaxError, "thrown" => JavascriptError, "timeout" => TimeoutError,
      "memory_limit" => MemoryLimitError, "output_limit" => OutputLimitError,
      "http_blocked" => HTTPBlockedError, "http_limit" => HTTPLimitError,
      "protocol_error" => CrashedError, "crashed" => CrashedError
    }.freeze
    # The API error code of each kind that has one (the rest keep their kind as `code`).
    KIND_CODES = { "timeout" => "limit_timeout", "memory_limit" => "limit_memory",
                   "output_limit" => "limit_output", "protocol_error" => "protocol_error" }.freeze

    # A `Bunker::Result` for an EvalResult without `error`; otherwise raises its error class.
    def result_or_raise(raw)
      error = raw["error"]
      return Result.new(raw) if error.nil?

      kind = error["kind"].to_s
      klass = ERROR_CLASSES.fetch(kind, Error)
      message = error["message"].to_s
      common = { code: KIND_CODES.fetch(kind, kind), kind: kind, details: raw, console_output: raw["console_output"].to_s }
      if klass == JavascriptError
        name = error["name"]
        full = name && !name.empty? ? "#{name}: #{message}" : message
        raise JavascriptError.new(full, stack: error["stack"], js_name: name, **common)
      end
      raise klass.new(message.empty? ? kind : message, **common)
    end
  end
end
