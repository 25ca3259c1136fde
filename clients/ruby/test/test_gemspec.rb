# frozen_string_literal: true

require_relative "helper"
require "rubygems/package"

# The gemspec is ready to build: it validates, and the gem it builds holds the library and loads.
class TestGemspec < Minitest::Test
  ROOT = File.expand_path("..", __dir__)

  def test_the_gem_builds_and_its_files_load
    spec = Dir.chdir(ROOT) { Gem::Specification.load("bunker.gemspec") }
    refute_nil spec
    Dir.chdir(ROOT) { spec.validate(false) }
    assert_includes spec.files, "lib/bunker.rb"
    assert_includes spec.files, "README.md"
    assert_equal Bunker::VERSION, spec.version.to_s
    # Quiet: building prints rubygems' notes (no homepage yet) on stdout.
    gem_file = Gem::DefaultUserInteraction.use_ui(Gem::SilentUI.new) { Dir.chdir(ROOT) { Gem::Package.build(spec) } }
    built = File.join(ROOT, gem_file)
    assert_operator File.size(built), :>, 1000
  ensure
    File.delete(built) if built && File.exist?(built)
  end
end
