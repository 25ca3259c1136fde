"""run(), Sandbox and AsyncSandbox against the real bunker, in the mode support.MODE selects."""

from __future__ import annotations

import asyncio
import json
import os
import time
import unittest
import uuid
from pathlib import Path

from tests import support

support.setup_mode()

import bunker  # noqa: E402


def default_with(**sections: object) -> dict:
    return {"extends": ["default"], **sections}


class RunTest(unittest.TestCase):
    def test_exit_code_is_a_result_and_check_raises_with_it(self) -> None:
        r = bunker.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        self.assertEqual((r.status, r.exit_code, r.success), ("exit", 3, False))
        self.assertEqual((r.stdout, r.stderr, r.text()), (b"out\n", b"err\n", "out\n"))
        self.assertIn("wall_ms", r.usage)
        self.assertEqual(r.report["status"], "exit")
        with self.assertRaises(bunker.CommandError) as caught:
            bunker.run(["sh", "-c", "exit 4"], check=True)
        self.assertEqual(caught.exception.result.exit_code, 4)
        self.assertTrue(bunker.run(["true"], check=True).success)

    def test_stdin_env_and_cwd_reach_the_program(self) -> None:
        r = bunker.run(["sh", "-c", 'cat; echo "$GREETING"; pwd'], stdin=b"in\n", env={"GREETING": "hi"}, cwd="/usr")
        self.assertEqual(r.text(), "in\nhi\n/usr\n")

    def test_binary_output_is_exact(self) -> None:
        r = bunker.run(["printf", "\\377\\000\\001"])
        self.assertEqual(r.stdout, b"\xff\x00\x01")

    def test_a_missing_program_is_exit_127(self) -> None:
        r = bunker.run(["no-such-program-here"])
        self.assertEqual((r.exit_code, r.error_code), (127, "command_not_found"))


class FilesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = support.shared_tempdir()
        self.secret = Path(self.dir, "secret.txt")
        self.secret.write_text("the secret\n")

    def test_a_granted_file_is_readable(self) -> None:
        r = bunker.run(["cat", str(self.secret)], policy=default_with(allow={"read": [self.dir]}))
        self.assertEqual((r.status, r.text()), ("ok", "the secret\n"))

    def test_an_ungranted_file_is_not_readable(self) -> None:
        r = bunker.run(["cat", str(self.secret)])
        self.assertNotEqual(r.exit_code, 0)
        self.assertNotIn(b"the secret", r.stdout)

    def test_writes_only_where_granted(self) -> None:
        target = Path(self.dir, "written.txt")
        denied = bunker.run(
            ["sh", "-c", f"echo pwned > {target}"], policy=default_with(allow={"read": [self.dir]})
        )
        self.assertNotEqual(denied.exit_code, 0)
        self.assertFalse(target.exists(), "a read-only grant let the sandbox create a host file")
        allowed = bunker.run(["sh", "-c", f"echo kept > {target}"], policy=default_with(allow={"write": [self.dir]}))
        self.assertEqual(allowed.status, "ok")
        self.assertEqual(target.read_text(), "kept\n")

    def test_a_policy_file_is_loaded_here(self) -> None:
        policy = Path(self.dir, "policy.json")
        policy.write_text(json.dumps(default_with(allow={"read": [self.dir]})))
        for given in (str(policy), policy, bunker.Policy.file(str(policy))):
            r = bunker.run(["cat", str(self.secret)], policy=given)
            self.assertEqual(r.text(), "the secret\n", given)

    def test_a_relative_policy_path_resolves_against_the_caller(self) -> None:
        Path(self.dir, "policy.json").write_text(json.dumps(default_with(allow={"read": ["./secret.txt"]})))
        here = os.getcwd()
        os.chdir(self.dir)
        try:
            r = bunker.run(["cat", str(self.secret)], policy="./policy.json")
        finally:
            os.chdir(here)
        self.assertEqual(r.text(), "the secret\n")


class NetworkTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = support.LoopbackServer()
        self.addCleanup(self.server.close)
        self.url = f"http://127.0.0.1:{self.server.port}/probe"
        self.fetch = ["python3", "-c", f"import urllib.request; print(urllib.request.urlopen({self.url!r}).read().decode())"]

    def test_an_allowed_host_is_reached_through_the_proxy(self) -> None:
        r = bunker.run(self.fetch, policy={"extends": ["runtime:python"], "allow": {"net": [f"127.0.0.1:{self.server.port}"]}})
        self.assertEqual((r.status, r.text()), ("ok", "hello from the host\n\n"))
        self.assertEqual(self.server.paths, ["/probe"])
        self.assertTrue(any(req["allowed"] and req["port"] == self.server.port for req in r.http_requests))
        self.assertEqual(r.violations, [])

    def test_a_host_not_allowed_is_refused_and_reported(self) -> None:
        other = self.server.port + 1 if self.server.port < 65535 else 1
        r = bunker.run(self.fetch, policy={"extends": ["runtime:python"], "allow": {"net": [f"127.0.0.1:{other}"]}})
        self.assertNotEqual(r.exit_code, 0)
        self.assertEqual(self.server.paths, [], "the host's server was reached")
        self.assertTrue(r.violations, r.report["http"])
        self.assertEqual(r.violations[0]["layer"], "net")

    def test_no_network_by_default(self) -> None:
        r = bunker.run(self.fetch, policy="runtime:python")
        self.assertNotEqual(r.exit_code, 0)
        self.assertEqual(self.server.paths, [])


class LimitsTest(unittest.TestCase):
    def test_timeout(self) -> None:
        r = bunker.run(["sleep", "30"], timeout_ms=300)
        self.assertTrue(r.timed_out)
        self.assertEqual((r.status, r.error_code, r.signal), ("timeout", "limit_timeout", 9))

    def test_memory(self) -> None:
        r = bunker.run(
            ["python3", "-c", "x = bytearray(400 << 20); print(len(x))"],
            policy="runtime:python",
            memory_limit_bytes=64 << 20,
        )
        self.assertEqual((r.status, r.error_code), ("memory_limit", "limit_memory"))
        self.assertEqual(r.stdout, b"")

    def test_output_is_capped_and_marked_truncated(self) -> None:
        r = bunker.run(["sh", "-c", "head -c 10000 /dev/zero"], policy=default_with(limits={"output": 1000}))
        self.assertTrue(r.truncated)
        self.assertEqual(len(r.stdout), 1000)
        self.assertEqual(r.report["stdout"]["bytes"], 10000)

    def test_output_overflow_can_kill(self) -> None:
        r = bunker.run(
            ["sh", "-c", "while :; do echo yyyyyyyy; done"],
            policy=default_with(limits={"output": 1000, "kill_on_output_overflow": True}),
            timeout_ms=10000,
        )
        self.assertEqual((r.status, r.error_code), ("output_limit", "limit_output"))

    def test_pids(self) -> None:
        r = bunker.run(
            ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; wait"],
            policy=default_with(limits={"pids": 4}),
            timeout_ms=20000,
        )
        self.assertEqual((r.status, r.error_code), ("pids_limit", "limit_pids"))


class StreamingTest(unittest.TestCase):
    def test_output_arrives_while_the_program_runs(self) -> None:
        # The program waits for stdin after its first line, so the first line can only have
        # arrived while it is still running.
        seen: list = []
        with bunker.Sandbox(["sh", "-c", "echo first; read x; echo got $x; echo e >&2"], on_stderr=seen.append) as p:
            lines = p.lines()
            self.assertEqual(next(lines), "first")
            self.assertFalse(p.done)
            p.write("more\n")
            self.assertEqual(next(lines), "got more")
        result = p.wait()
        self.assertEqual((result.status, result.stdout, result.stderr), ("ok", b"first\ngot more\n", b"e\n"))
        self.assertEqual(b"".join(seen), b"e\n")
        # chunks() replays both streams (their relative order is only kept within each stream).
        self.assertEqual({s for s, _ in p.chunks()}, {"stdout", "stderr"})

    def test_stdin_end_of_file(self) -> None:
        p = bunker.Sandbox(["wc", "-c"])
        p.write(b"12345")
        p.close_stdin()
        self.assertEqual(p.wait().text().strip(), "5")

    def test_stdin_given_up_front(self) -> None:
        with bunker.Sandbox(["tr", "a-z", "A-Z"], stdin="shout") as p:
            self.assertEqual(b"".join(p.stdout_chunks()), b"SHOUT")

    def test_kill_ends_every_process(self) -> None:
        marker = str(100000 + uuid.uuid4().int % 800000)
        p = bunker.Sandbox(["sh", "-c", f"echo up; sleep {marker}; sleep {marker}"])
        self.assertEqual(next(p.lines()), "up")
        p.kill()
        r = p.wait(timeout=60)  # a kill that does nothing fails here instead of hanging
        self.assertEqual((r.status, r.signal, r.error_code), ("signal", 9, "cancelled"))
        deadline = time.monotonic() + 5
        while support.alive_with(f"sleep {marker}") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(support.alive_with(f"sleep {marker}"), [])

    def test_leaving_with_an_exception_kills(self) -> None:
        with self.assertRaises(KeyError):
            with bunker.Sandbox(["sleep", "30"]) as p:
                raise KeyError("boom")
        self.assertEqual(p.wait().error_code, "cancelled")


class AsyncTest(unittest.TestCase):
    def test_async_streaming_stdin_and_kill(self) -> None:
        async def main() -> None:
            async with bunker.AsyncSandbox(["sh", "-c", "echo first; read x; echo got $x"]) as p:
                lines = p.lines()
                self.assertEqual(await lines.__anext__(), "first")
                self.assertFalse(p.done)
                await p.write("more\n")
                self.assertEqual(await lines.__anext__(), "got more")
            self.assertEqual((await p.wait()).stdout, b"first\ngot more\n")
            k = await bunker.AsyncSandbox(["sleep", "30"]).start()
            await k.kill()
            self.assertEqual((await k.wait()).error_code, "cancelled")

        asyncio.run(main())


class BadInputTest(unittest.TestCase):
    def test_invalid_policy(self) -> None:
        with self.assertRaises(bunker.PolicyError) as caught:
            bunker.run(["true"], policy=default_with(limits={"memory": "lots"}))
        self.assertEqual(caught.exception.code, "policy_invalid")
        self.assertIn("limits.memory", caught.exception.message)
        self.assertIn('"lots"', caught.exception.message)

    def test_invalid_policy_for_a_streamed_sandbox(self) -> None:
        # Raised by the constructor (daemon: `start` is refused) or by wait() (CLI: the report).
        with self.assertRaises(bunker.PolicyError) as caught:
            with bunker.Sandbox(["true"], policy=default_with(limits={"pids": "many"})) as p:
                p.wait()
        self.assertEqual(caught.exception.code, "policy_invalid")
        self.assertIn("limits.pids", caught.exception.message)

    def test_invalid_policy_file(self) -> None:
        path = Path(support.shared_tempdir(), "bad.json")
        path.write_text('{"allow": {"reed": []}}')
        with self.assertRaises(bunker.PolicyError) as caught:
            bunker.run(["true"], policy=path)
        self.assertEqual(caught.exception.code, "policy_invalid")
        self.assertIn("reed", caught.exception.message)

    def test_unknown_option(self) -> None:
        with self.assertRaises(TypeError):
            bunker.run(["true"], no_such_option=1)  # type: ignore[call-arg]
        with self.assertRaises(TypeError):
            bunker.run("echo hi")

    def test_bad_values(self) -> None:
        with self.assertRaises(bunker.ArgumentError) as caught:
            bunker.run([])
        self.assertEqual(caught.exception.code, "request_invalid")
        with self.assertRaises(bunker.ArgumentError):
            bunker.run(["true"], timeout_ms=-1)

    def test_daemon_not_running(self) -> None:
        missing = os.path.join(support.shared_tempdir(), "nobody.sock")
        with self.assertRaises(bunker.UnavailableError) as caught:
            bunker.run(["true"], socket=missing)
        self.assertEqual(caught.exception.code, "unavailable")
        self.assertIn(missing, caught.exception.message)
        with self.assertRaises(bunker.UnavailableError):
            bunker.Sandbox(["true"], socket=missing)
        saved = os.environ.get("BUNKER_SOCKET")
        os.environ["BUNKER_SOCKET"] = missing
        try:
            with self.assertRaises(bunker.UnavailableError):
                bunker.run(["true"])
        finally:
            if saved is None:
                del os.environ["BUNKER_SOCKET"]
            else:
                os.environ["BUNKER_SOCKET"] = saved

    def test_a_name_only_a_daemon_knows(self) -> None:
        with self.assertRaises(bunker.NotFoundError) as caught:
            bunker.run(["true"], policy="no-such-policy")
        self.assertEqual(caught.exception.code, "not_found")


if __name__ == "__main__":
    unittest.main()
