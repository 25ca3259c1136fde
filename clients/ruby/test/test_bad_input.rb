# frozen_string_literal: true

require_relative "helper"

# Options refused before anything runs, and a daemon that is not running.
class TestBadInput < Minitest::Test
  def test_unknown_option
    error = assert_raises(Bunker::ArgumentError) { Bunker.eval("1", memory: 5) }
    assert_equal "request_invalid", error.code
    assert_match(/unknown option :memory/, error.message)
  end

  def test_options_as_a_positional_hash_like_mquickjs_ruby
    assert_equal 4, Bunker.eval("2 + 2", { timeout_ms: 2000 }).value
    assert_raises(Bunker::ArgumentError) { Bunker.eval("1", { "timeout" => 5 }) }
    assert_raises(Bunker::ArgumentError) { Bunker::Sandbox.new({ memory_limit: 10 }) }
  end

  def test_unknown_http_key_names_the_known_ones
    error = assert_raises(Bunker::ArgumentError) { Bunker.eval("1", http: { allowlist: ["a.test"], max_redirects: 2 }) }
    assert_match(/unknown key :max_redirects/, error.message)
    assert_match(/allowlist, denylist/, error.message)
    error = assert_raises(Bunker::ArgumentError) { Bunker.eval("1", http: { whitelist: ["a.test"] }) }
    assert_match(/bunker calls it :allowlist/, error.message)
  end

  def test_bad_http_values
    assert_raises(Bunker::ArgumentError) { Bunker.eval("1", http: { allowed_ports: [0] }) }
    assert_raises(Bunker::ArgumentError) { Bunker.eval("1", http: { max_requests: -1 }) }
    assert_raises(Bunker::ArgumentError) { Bunker.eval("1", http: { block_private_ips: "no" }) }
    assert_raises(Bunker::ArgumentError) { Bunker.eval("1", http: ["example.com"]) }
  end

  def test_memory_limit_below_the_engine_minimum_names_it
    error = assert_raises(Bunker::ArgumentError) { Bunker.eval("1", memory_limit: 50_000) }
    minimum = Bunker::ENGINES[:bun][:min_memory]
    assert_match(/below the bun engine's minimum of #{minimum} bytes/, error.message)
  end

  def test_the_engine_minimum_itself_runs_one_plus_one
    assert_equal 2, Bunker.eval("1+1", memory_limit: Bunker::ENGINES[:bun][:min_memory]).value
  end

  def test_engines
    error = assert_raises(Bunker::ArgumentError) { Bunker.eval("1", engine: :quickjs) }
    assert_match(/QuickJS tier does not exist yet/, error.message)
    assert_raises(Bunker::ArgumentError) { Bunker.eval("1", engine: :v8) }
    assert_raises(Bunker::ArgumentError) { Bunker.eval(42) }
  end

  def test_daemon_not_running_is_unavailable
    error = assert_raises(Bunker::UnavailableError) do
      Bunker.eval("1+1", socket: File.join(BunkerTest::TMP, "nobody-listens.sock"))
    end
    assert_equal "unavailable", error.code
    assert_kind_of Bunker::Error, error
  end

  def test_bunker_socket_set_but_dead_is_unavailable_too
    saved = ENV["BUNKER_SOCKET"]
    ENV["BUNKER_SOCKET"] = File.join(BunkerTest::TMP, "dead.sock")
    assert_raises(Bunker::UnavailableError) { Bunker.eval("1+1") }
  ensure
    saved ? ENV["BUNKER_SOCKET"] = saved : ENV.delete("BUNKER_SOCKET")
  end
end
