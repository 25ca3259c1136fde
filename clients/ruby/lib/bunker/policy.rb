# frozen_string_literal: true

require "json"
require "open3"

module Bunker
  # Turns the `policy:` option into the protocol's `PolicyChoice` (docs/api.md): a Hash is a
  # policy document sent inline, a String or Symbol is a name the daemon knows (`default`,
  # `runtime:bun`, a config policy), a Pathname (or a String ending in `.json` or holding a `/`)
  # is a policy file: `bunker check FILE` loads it here, so its relative paths resolve against
  # the caller, and its effective policy is sent inline.
  module Policy
    module_function

    def choice(policy, bunker_bin: nil)
      case policy
      when nil then { "name" => "default" }
      when Hash then { "inline" => stringify(policy) }
      when Pathname then { "inline" => load_file(policy.to_s, bunker_bin) }
      when Symbol then { "name" => policy.to_s }
      when String
        file?(policy) ? { "inline" => load_file(policy, bunker_bin) } : { "name" => policy }
      else
        raise ArgumentError, "policy: expected a Hash (a policy document), a name or a path, got #{policy.class}"
      end
    end

    def file?(policy)
      policy.end_with?(".json") || policy.include?("/")
    end

    # The effective policy of a file, as a document to send inline: what `bunker check --document`
    # prints (no `sources`, no nulls).
    def load_file(path, bunker_bin)
      out, err, status = Open3.capture3(Bunker.bunker_bin(bunker_bin), "check", "--document", path)
      unless status.success?
        raise PolicyError.new("policy file #{path}: #{err.strip}", code: "policy_invalid")
      end

      JSON.parse(out)
    rescue Errno::ENOENT => e
      raise UnavailableError, "cannot run #{Bunker.bunker_bin(bunker_bin)} to load #{path}: #{e.message}"
    end

    def stringify(value)
      case value
      when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_s] = stringify(v) }
      when Array then value.map { |v| stringify(v) }
      when Symbol then value.to_s
      else value
      end
    end
  end
end
