# frozen_string_literal: true

require_relative "helper"

# Bunker::Sandbox: set_variable, and state between evals (a daemon worker; fresh per eval in the
# CLI fallback, as README.md documents).
class TestSandbox < Minitest::Test
  def setup
    @sandbox = Bunker::Sandbox.new(timeout_ms: 5000, console_log_max_size: 1000)
  end

  def teardown
    @sandbox.close
  end

  def test_set_variable_reaches_the_code
    @sandbox.set_variable("user", { name: "Alice", age: 30, tags: [:a, "b"] })
    @sandbox.set_variable(:items, [1, 2, 3, 4, 5])
    assert_equal "Alice is 30", @sandbox.eval("user.name + ' is ' + user.age").value
    assert_equal 15, @sandbox.eval("items.reduce((s, n) => s + n, 0)").value
    assert_equal %w[a b], @sandbox.eval("user.tags").value
  end

  def test_state_between_evals
    @sandbox.eval("globalThis.counter = 10")
    if BunkerTest.daemon?
      assert_equal 11, @sandbox.eval("++counter").value
      assert_equal 12, @sandbox.eval("++counter").value
    else
      error = assert_raises(Bunker::JavascriptError) { @sandbox.eval("++counter") }
      assert_equal "ReferenceError", error.js_name
    end
  end

  def test_a_timeout_ends_the_worker_but_not_the_sandbox
    sandbox = Bunker::Sandbox.new(timeout_ms: 500)
    sandbox.set_variable("base", 40)
    assert_raises(Bunker::TimeoutError) { sandbox.eval("while (true) {}") }
    assert_equal 42, sandbox.eval("base + 2").value
  ensure
    sandbox&.close
  end

  def test_bad_variables_are_refused
    assert_raises(Bunker::ArgumentError) { @sandbox.set_variable("not a name", 1) }
    assert_raises(Bunker::ArgumentError) { @sandbox.set_variable("x", Float::NAN) }
  end

  def test_options_are_checked_when_the_sandbox_is_made
    assert_raises(Bunker::ArgumentError) { Bunker::Sandbox.new(http: { whitelist: ["x"] }) }
    assert_raises(Bunker::ArgumentError) { Bunker::Sandbox.new(memory_limit: 50_000) }
  end
end
