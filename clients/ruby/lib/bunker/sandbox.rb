# frozen_string_literal: true

require "json"

module Bunker
  # A reusable sandbox (mquickjs-ruby's `MQuickJS::Sandbox`): state persists between the evals
  # of one Sandbox.
  #
  # Through the daemon it opens a worker (`open_worker`, the opt-in multi-request mode) on a
  # connection of its own, the first time it is used; each `eval` runs in that worker, so globals
  # the code defines persist, and `set_variable` values ride on the next eval as `globals`. A
  # timeout or memory kill ends the worker: the next eval opens a new one, with every
  # `set_variable` value set again (what earlier evals defined is gone).
  #
  # Without a daemon (the CLI fallback) each eval runs in a fresh worker: `set_variable` values
  # are sent with every eval, but what an eval defines is not kept for the next one.
  class Sandbox
    # Options as for `Bunker.eval` (keywords, or one Hash as mquickjs-ruby takes them).
    def initialize(hash_options = nil, **options)
      options = Bunker.merged_options(hash_options, options)
      @base_spec = EvalSpec.build("", options) # validates every option once, here
      @base_spec.delete("code")
      @options = options
      @variables = {}
      @unsent = {}
      @socket = Daemon.socket_for(options[:socket])
      @connection = nil
      @worker = nil
    end

    # Sets a global variable for the code of this sandbox's evals: nil, true/false, numbers,
    # Strings, Symbols (as Strings), Arrays and Hashes of those (sent as JSON).
    def set_variable(name, value)
      name = name.to_s
      unless name.match?(/\A[A-Za-z_$][A-Za-z0-9_$]*\z/)
        raise ArgumentError, "set_variable: #{name.inspect} is not a valid variable name"
      end

      json = begin
        JSON.parse(JSON.generate([value]))[0]
      rescue JSON::GeneratorError, TypeError => e
        raise ArgumentError, "set_variable #{name}: the value cannot be sent as JSON (#{e.message})"
      end
      @variables[name] = json
      @unsent[name] = json
      nil
    end

    # Evaluates `code` in this sandbox; returns a `Bunker::Result` or raises like `Bunker.eval`.
    def eval(code)
      raise ArgumentError, "code must be a String, got #{code.class}" unless code.is_a?(String)

      @socket ? eval_in_worker(code) : eval_fresh(code)
    end

    # Ends the worker (if one is open) and its connection.
    def close
      @connection&.close
      @connection = nil
      @worker = nil
    end

    private

    def eval_fresh(code)
      spec = @base_spec.merge("code" => code)
      spec["globals"] = @variables unless @variables.empty?
      EvalSpec.result_or_raise(CLIEval.run(spec, @options[:bunker_bin]))
    end

    def eval_in_worker(code)
      open_worker unless @worker
      spec = @base_spec.merge("code" => code, "worker" => @worker)
      spec["globals"] = @unsent unless @unsent.empty?
      raw = begin
        @connection.request("eval", { "spec" => spec })
      rescue Error => e
        forget_worker if %w[not_found unavailable].include?(e.code)
        raise
      end
      @unsent = {}
      forget_worker if %w[timeout memory_limit output_limit crashed protocol_error].include?(raw.dig("error", "kind"))
      EvalSpec.result_or_raise(raw)
    end

    def open_worker
      @connection = Connection.new(@socket) if @connection.nil? || @connection.closed?
      reply = @connection.request("open_worker", { "spec" => @base_spec })
      @worker = reply["worker"]
      @unsent = @variables.dup
    end

    # The worker is gone (killed at a limit, or its connection lost): the next eval opens another.
    def forget_worker
      @worker = nil
      @unsent = @variables.dup
    end
  end
end
