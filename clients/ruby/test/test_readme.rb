# frozen_string_literal: true

require_relative "helper"
require "open3"
require "rbconfig"

# Every ```ruby block of README.md runs (```ruby daemon blocks only against the daemon), each in
# its own Ruby process with this suite's BUNKER_SOCKET / BUNKER_BIN; it must exit 0, and each
# `puts`/`p` line with a `# => X` comment must have printed the line X, in order.
class TestReadme < Minitest::Test
  README = File.expand_path("../README.md", __dir__)
  LIB = File.expand_path("../lib", __dir__)

  def self.blocks
    text = File.read(README)
    text.scan(/^```ruby( daemon)?\n(.*?)^```$/m).each_with_index.map do |(daemon, code), index|
      { code: code, daemon_only: !daemon.nil?, line: text[0, text.index(code)].count("\n") + 1, index: index }
    end
  end

  def test_readme_has_examples
    assert_operator self.class.blocks.size, :>=, 8
  end

  blocks.each do |block|
    define_method("test_readme_block_at_line_#{block[:line]}") do
      next assert(block[:daemon_only]) if block[:daemon_only] && !BunkerTest.daemon?

      out, err, status = Open3.capture3(RbConfig.ruby, "-I", LIB, "-e", block[:code], chdir: BunkerTest::TMP)
      assert status.success?, "README.md block at line #{block[:line]} failed:\n#{out}\n#{err}"
      printed = out.lines.map(&:chomp)
      block[:code].scan(/^\s*(?:puts|p) .*# => (.*)$/).flatten.map(&:strip).each do |expected|
        at = printed.index(expected)
        refute_nil at, "README.md block at line #{block[:line]}: expected a line #{expected.inspect}, printed:\n#{out}"
        printed = printed[(at + 1)..]
      end
    end
  end
end
