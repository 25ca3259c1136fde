# frozen_string_literal: true

require_relative "lib/bunker/version"

Gem::Specification.new do |spec|
  spec.name = "bunker"
  spec.version = Bunker::VERSION
  spec.summary = "Sandboxed eval and process runs through bunker (mquickjs-ruby's API shape)"
  spec.description = "Ruby client of the bunker Linux sandbox supervisor: Bunker.eval and " \
                     "Bunker::Sandbox (the API of mquickjs-ruby, backed by sandboxed Bun or Python " \
                     "workers) and Bunker.run, through a bunker serve daemon or the bunker CLI."
  spec.license = "Apache-2.0"
  spec.authors = ["bunker contributors"]
  spec.required_ruby_version = ">= 3.0"
  spec.files = Dir["lib/**/*.rb"] + ["README.md", "bunker.gemspec"]
  spec.require_paths = ["lib"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
