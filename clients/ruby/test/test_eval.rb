# frozen_string_literal: true

require_relative "helper"

# Bunker.eval: values, console capture, each error class from a real cause, HTTP on loopback.
class TestEval < Minitest::Test
  # A fetch that throws when the answer is not 2xx: a plain-http request the proxy refuses is
  # answered 403 by the proxy, so code that checks `ok` throws, and the error is http_blocked.
  CHECKED_FETCH = "const get = (url) => fetch(url).then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); " \
                  "return r.text() });\n"

  def test_values_come_back_as_ruby_values
    assert_equal 2, Bunker.eval("1+1").value
    assert_equal "HELLO", Bunker.eval("'hello'.toUpperCase()").value
    assert_equal({ "a" => [1, 2.5, nil, true] }, Bunker.eval("({a: [1, 2.5, null, true]})").value)
    assert_nil Bunker.eval("undefined").value
    assert_equal 6, Bunker.eval("const f = (n) => n * 2; f(3)").value
  end

  def test_console_output_is_captured
    result = Bunker.eval('console.log("Hello"); console.log("Sum:", 1 + 2); 42')
    assert_equal 42, result.value
    assert_equal "Hello\nSum: 3\n", result.console_output
    refute result.console_truncated?
  end

  def test_console_output_is_capped
    result = Bunker.eval('for (let i = 0; i < 1000; i++) console.log("spam spam spam spam"); 7',
                         console_log_max_size: 100)
    assert_equal 7, result.value
    assert result.console_truncated?
    assert_operator result.console_output.bytesize, :<=, 100
    assert_operator result.console_output.bytesize, :>, 0
  end

  def test_syntax_error
    error = assert_raises(Bunker::SyntaxError) { Bunker.eval("var x = ;") }
    assert_equal "syntax", error.code
    assert_kind_of Bunker::Error, error
  end

  def test_thrown_error_carries_name_stack_and_console
    code = "console.log('before'); function inner() { throw new TypeError('boom') } inner()"
    error = assert_raises(Bunker::JavascriptError) { Bunker.eval(code) }
    assert_equal "thrown", error.code
    assert_equal "TypeError", error.js_name
    assert_match(/TypeError: boom/, error.message)
    assert_match(/inner/, error.stack.to_s)
    assert_equal "before\n", error.console_output
  end

  def test_infinite_loop_is_a_timeout
    error = assert_raises(Bunker::TimeoutError) { Bunker.eval("while (true) {}", timeout_ms: 500) }
    assert_equal "limit_timeout", error.code
    assert_equal "timeout", error.kind
  end

  def test_allocation_is_a_memory_limit_error
    code = "const keep = []; while (true) keep.push(new Array(1 << 20).fill(7));"
    error = assert_raises(Bunker::MemoryLimitError) do
      Bunker.eval(code, memory_limit: 64 * 1024 * 1024, timeout_ms: 20_000)
    end
    assert_equal "limit_memory", error.code
  end

  def test_fetch_to_an_allowed_host_works_and_is_in_http_requests
    server = BunkerTest::HTTPServer.new("pong")
    result = Bunker.eval("fetch(#{server.url('/ping').to_json}).then((r) => r.text())",
                         http: { allowlist: ["127.0.0.1"], allowed_ports: [server.port] })
    assert_equal "pong", result.value
    assert_equal ["GET /ping HTTP/1.1"], server.requests
    record = result.http_requests.find { |r| r.port == server.port }
    refute_nil record, result.http_requests.inspect
    assert record.allowed?
    assert_equal "127.0.0.1", record.host
  ensure
    server&.close
  end

  def test_fetch_to_a_denied_host_is_http_blocked
    allowed = BunkerTest::HTTPServer.new
    other = BunkerTest::HTTPServer.new
    error = assert_raises(Bunker::HTTPBlockedError) do
      Bunker.eval("#{CHECKED_FETCH}get(#{other.url.to_json})",
                  http: { allowlist: ["127.0.0.1"], allowed_ports: [allowed.port] })
    end
    assert_equal "http_blocked", error.code
    assert_kind_of Bunker::HTTPError, error
    assert_empty other.requests, "the denied request reached the server"
  ensure
    allowed&.close
    other&.close
  end

  def test_max_requests_is_an_http_limit
    server = BunkerTest::HTTPServer.new
    code = "#{CHECKED_FETCH}get(#{server.url('/1').to_json}).then(() => get(#{server.url('/2').to_json}))"
    error = assert_raises(Bunker::HTTPLimitError) do
      Bunker.eval(code, http: { allowlist: ["127.0.0.1"], allowed_ports: [server.port], max_requests: 1 })
    end
    assert_equal "http_limit", error.code
    assert_equal ["GET /1 HTTP/1.1"], server.requests
  ensure
    server&.close
  end

  def test_without_http_there_is_no_network
    server = BunkerTest::HTTPServer.new
    assert_raises(Bunker::Error) { Bunker.eval("fetch(#{server.url.to_json}).then((r) => r.text())") }
    assert_empty server.requests
  ensure
    server&.close
  end

  def test_python_engine
    assert_equal 45, Bunker.eval("sum(range(10))", engine: :python).value
    result = Bunker.eval("print('hi')\n[n * 2 for n in (1, 2)]", engine: :python,
                                                                  memory_limit: Bunker::ENGINES[:python][:min_memory])
    assert_equal [2, 4], result.value
    assert_equal "hi\n", result.console_output
    error = assert_raises(Bunker::JavascriptError) { Bunker.eval("1 / 0", engine: :python) }
    assert_equal "ZeroDivisionError", error.js_name
    assert_raises(Bunker::SyntaxError) { Bunker.eval("def (", engine: :python) }
  end
end
