"""eval_js / eval_python against the real bunker (the daemon's `eval` op with pre-started
workers, or `bunker eval`), in the mode support.MODE selects."""

from __future__ import annotations

import builtins
import os
import time
import unittest

from tests import support

support.setup_mode()

import bunker  # noqa: E402


class ArgumentsTest(unittest.TestCase):
    """Checked before anything is sent: the same in both modes, with or without eval."""

    def test_unknown_option_engine_and_http_key(self) -> None:
        with self.assertRaises(TypeError):
            bunker.eval_js("1", timeout=5)  # type: ignore[call-arg]
        with self.assertRaises(bunker.ArgumentError) as caught:
            bunker.eval_js("1", engine="quickjs")
        self.assertEqual(caught.exception.code, "request_invalid")
        self.assertIn("engine", caught.exception.message)
        with self.assertRaises(bunker.ArgumentError) as caught:
            bunker.eval_js("1", http={"allowlist": [], "max_requestz": 1})
        self.assertIn("max_requestz", caught.exception.message)
        with self.assertRaises(bunker.ArgumentError):
            bunker.eval_js("1", memory_limit_bytes=0)

    def test_error_classes(self) -> None:
        self.assertTrue(issubclass(bunker.TimeoutError, builtins.TimeoutError))
        for cls in (bunker.SyntaxError, bunker.JavascriptError, bunker.PythonError, bunker.MemoryLimitError,
                    bunker.HTTPBlockedError, bunker.HTTPLimitError, bunker.TimeoutError):
            self.assertTrue(issubclass(cls, bunker.EvalError) and issubclass(cls, bunker.BunkerError), cls)
        self.assertTrue(issubclass(bunker.HTTPBlockedError, bunker.HTTPError))


class EvalTest(unittest.TestCase):
    def test_value_and_console(self) -> None:
        r = bunker.eval_js("console.log('hi'); ({a: [1, 2], b: 'x'})")
        self.assertEqual(r.value, {"a": [1, 2], "b": "x"})
        self.assertEqual(r.console_output, "hi\n")
        self.assertFalse(r.console_truncated)
        self.assertEqual(bunker.eval_js("1+1").value, 2)
        self.assertIsNone(bunker.eval_js("undefined").value)

    def test_warm_through_the_daemon_cold_through_the_cli(self) -> None:
        if support.MODE == "cli":
            self.assertFalse(bunker.eval_js("1+1").warm)
            return
        from bunker._protocol import Connection

        conn = Connection(os.environ["BUNKER_SOCKET"])
        self.addCleanup(conn.close)
        deadline = time.monotonic() + 30
        while conn.request("stats").get("pools", {}).get("eval:bun", {}).get("ready", 0) == 0:
            self.assertLess(time.monotonic(), deadline, "the eval:bun pool never had a ready worker")
            time.sleep(0.02)
        r = bunker.eval_js("1+1")
        self.assertEqual((r.value, r.warm), (2, True))

    def test_function_args_and_globals(self) -> None:
        r = bunker.eval_js("function add(a, b) { return a + b + offset }", function="add", args=[1, 2], globals={"offset": 10})
        self.assertEqual(r.value, 13)
        self.assertEqual(bunker.eval_python("x + 1", globals={"x": 41}).value, 42)

    def test_python(self) -> None:
        r = bunker.eval_python("print('p')\n6 * 7")
        self.assertEqual((r.value, r.console_output), (42, "p\n"))
        with self.assertRaises(bunker.PythonError) as caught:
            bunker.eval_python("raise ValueError('nope')")
        self.assertEqual(caught.exception.name, "ValueError")
        self.assertIn("nope", str(caught.exception))

    def test_thrown_error_has_stack_and_console(self) -> None:
        with self.assertRaises(bunker.JavascriptError) as caught:
            bunker.eval_js("console.log('before'); function f() { throw new TypeError('bad thing') } f()")
        e = caught.exception
        self.assertEqual((e.kind, e.name), ("thrown", "TypeError"))
        self.assertIn("bad thing", str(e))
        self.assertTrue(e.stack)
        self.assertEqual(e.console_output, "before\n")

    def test_syntax_error(self) -> None:
        with self.assertRaises(bunker.SyntaxError) as caught:
            bunker.eval_js("let = = 1;")
        self.assertEqual(caught.exception.kind, "syntax")

    def test_timeout(self) -> None:
        with self.assertRaises(bunker.TimeoutError) as caught:
            bunker.eval_js("while (true) {}", timeout_ms=300)
        self.assertEqual(caught.exception.code, "limit_timeout")

    def test_memory_limit(self) -> None:
        with self.assertRaises(bunker.MemoryLimitError) as caught:
            bunker.eval_js(
                "const a = []; while (true) a.push(new Array(1 << 20).fill(1.5));",
                memory_limit_bytes=192 << 20,
                timeout_ms=20000,
            )
        self.assertEqual(caught.exception.code, "limit_memory")

    def test_console_is_capped(self) -> None:
        r = bunker.eval_js("console.log('x'.repeat(5000)); 1", console_log_max_size=100)
        self.assertTrue(r.console_truncated)
        self.assertLessEqual(len(r.console_output.encode()), 100)


class EvalHttpTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = support.LoopbackServer()
        self.addCleanup(self.server.close)
        # A refused request is an HTTP error response from the proxy (403, 429): the code throws
        # on it, as real code would, and the eval's error says the proxy was why.
        self.fetch = (
            f"fetch('http://127.0.0.1:{self.server.port}/e')"
            ".then(r => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text() })"
        )

    def test_allowlisted_host(self) -> None:
        r = bunker.eval_js(self.fetch, http={"allowlist": ["127.0.0.1"], "allowed_ports": [self.server.port]})
        self.assertEqual(r.value, "hello from the host\n")
        self.assertEqual(self.server.paths, ["/e"])
        self.assertTrue(r.http_requests and r.http_requests[0]["allowed"])

    def test_host_not_in_allowlist(self) -> None:
        with self.assertRaises(bunker.HTTPBlockedError):
            bunker.eval_js(self.fetch, http={"allowlist": ["example.invalid"], "allowed_ports": [self.server.port]})
        self.assertEqual(self.server.paths, [])

    def test_max_requests(self) -> None:
        with self.assertRaises(bunker.HTTPLimitError):
            bunker.eval_js(
                f"{self.fetch}.then(() => {self.fetch})",
                http={"allowlist": ["127.0.0.1"], "allowed_ports": [self.server.port], "max_requests": 1},
            )
        self.assertEqual(self.server.paths, ["/e"])


if __name__ == "__main__":
    unittest.main()
