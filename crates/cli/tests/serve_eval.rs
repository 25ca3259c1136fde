//! `eval` through `bunker serve` (docs/protocol.md, "eval"), as root and rootless: pre-started
//! workers of `eval:bun` / `eval:python` pools give what a worker started for the request gives;
//! limits, errors and a worker that breaks the ring protocol are each reported as such and leave
//! the daemon serving; a pre-started worker is never handed out twice; an eval pool refills
//! after a burst and leaves nothing behind when the daemon is SIGKILLed during a refill; an
//! opened worker keeps its globals and dies with its connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::serve::{
    assert_all_end_after_sigkill, assert_no_cgroups_of, descendants, eventually, pid_alive, Client,
    Daemon, DaemonSpec,
};
use serde_json::{json, Value};

const ENGINES: [&str; 2] = ["bun", "python"];

/// A daemon for `mode` with `pool` pre-started workers of each engine (none when 0); as
/// rootless (uid 65534) this test's uid (root) is let in under the eval profiles.
fn daemon(mode: &str, pool: usize) -> Daemon {
    let pools = if pool > 0 {
        format!(r#", "pools": {{"eval:bun": {pool}, "eval:python": {pool}}}"#)
    } else {
        String::new()
    };
    let grants = if mode == "root" {
        "[]"
    } else {
        r#"[{"uid": 0, "ceiling": "eval:bun"}, {"uid": 0, "ceiling": "eval:python"}]"#
    };
    let config = format!(r#"{{"max_sandboxes": 8, "grants": {grants}{pools}}}"#);
    Daemon::start_with(DaemonSpec {
        config: Some(&config),
        as_nobody: mode != "root",
        files: &[],
    })
}

fn modes() -> Vec<&'static str> {
    if common::is_root() {
        vec!["root", "rootless"]
    } else {
        vec!["root"]
    }
}

fn needs_root() -> bool {
    if common::is_root() {
        return false;
    }
    common::skip("the rootless daemon is started through setpriv, which needs root");
    true
}

fn stats(c: &mut Client) -> Value {
    c.call(json!({"id": 90, "op": "stats"}))["ok"].clone()
}

/// Waits until the `eval:ENGINE` pool has `n` ready workers, then a little longer, so that
/// the runtimes have loaded their worker library and wait for `R`.
fn ready(daemon: &Daemon, c: &mut Client, engine: &str, n: u64) {
    let mut last = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            last = stats(c);
            last["pools"][format!("eval:{engine}")]["ready"] == n
        }),
        "the eval:{engine} pool never had {n} ready: {last}\n{}",
        daemon.log_text()
    );
}

fn eval(c: &mut Client, spec: Value) -> Value {
    c.call(json!({"id": 1, "op": "eval", "spec": spec}))
}

/// The result of an eval; panics on an error reply.
fn result(reply: &Value) -> &Value {
    reply
        .get("ok")
        .unwrap_or_else(|| panic!("an error reply: {reply}"))
}

/// What a warm eval must share with a cold one: all but `warm` and `wall_ms`.
fn comparable(reply: &Value) -> Value {
    let mut r = result(reply).clone();
    let object = r.as_object_mut().unwrap();
    object.remove("warm");
    object.remove("wall_ms");
    r
}

/// Cases of each engine: a value, console output, a thrown error, a syntax error, globals,
/// a function called with arguments.
fn cases(engine: &str) -> Vec<Value> {
    let codes: Vec<Value> = match engine {
        "bun" => vec![
            json!({"code": "1+1"}),
            json!({"code": "console.log('hi'); ({a: [1, 'two', null]})"}),
            json!({"code": "function f() { throw new TypeError('boom') }\nf()"}),
            json!({"code": "1 +* 2"}),
            json!({"code": "x + 1", "globals": {"x": 41}}),
            json!({"code": "function handler(a, b) { return a * b }", "function": "handler", "args": [6, 7]}),
        ],
        _ => vec![
            json!({"code": "1+1"}),
            json!({"code": "print('hi')\n{'a': [1, 'two', None]}"}),
            json!({"code": "def f():\n    raise TypeError('boom')\nf()"}),
            json!({"code": "1 +* 2"}),
            json!({"code": "x + 1", "globals": {"x": 41}}),
            json!({"code": "def handler(a, b):\n    return a * b", "function": "handler", "args": [6, 7]}),
        ],
    };
    codes
        .into_iter()
        .map(|mut c| {
            c["engine"] = json!(engine);
            c
        })
        .collect()
}

#[test]
fn warm_and_cold_evals_give_the_same_results() {
    if needs_root() {
        return;
    }
    for mode in modes() {
        let cold_daemon = daemon(mode, 0);
        let warm_daemon = daemon(mode, 1);
        let mut cold = cold_daemon.client();
        let mut warm = warm_daemon.client();
        for engine in ENGINES {
            for case in cases(engine) {
                ready(&warm_daemon, &mut warm, engine, 1);
                let warm_reply = eval(&mut warm, case.clone());
                let cold_reply = eval(&mut cold, case.clone());
                assert_eq!(
                    comparable(&warm_reply),
                    comparable(&cold_reply),
                    "{mode}: {case}\nwarm: {warm_reply}\ncold: {cold_reply}"
                );
                assert_eq!(result(&warm_reply)["warm"], true, "{mode}: {warm_reply}");
                assert_eq!(result(&cold_reply)["warm"], false, "{mode}: {cold_reply}");
            }
            // The cases are not all alike: the value, the thrown error and the syntax error.
            ready(&warm_daemon, &mut warm, engine, 1);
            let two = eval(&mut warm, cases(engine)[0].clone());
            assert_eq!(result(&two)["value"], 2, "{mode} {engine}: {two}");
            assert_eq!(result(&two)["error"], Value::Null, "{mode} {engine}: {two}");
            let product = eval(&mut cold, cases(engine)[5].clone());
            assert_eq!(result(&product)["value"], 42, "{mode} {engine}: {product}");
            let thrown = eval(&mut cold, cases(engine)[2].clone());
            let error = &result(&thrown)["error"];
            assert_eq!(error["kind"], "thrown", "{mode} {engine}: {thrown}");
            assert_eq!(error["name"], "TypeError", "{mode} {engine}: {thrown}");
            assert!(
                error["message"].as_str().unwrap_or("").contains("boom"),
                "{mode} {engine}: {thrown}"
            );
            let stack = error["stack"].as_str().unwrap_or("");
            assert!(stack.contains('f'), "{mode} {engine}: no stack: {thrown}");
            let syntax = eval(&mut cold, cases(engine)[3].clone());
            assert_eq!(
                result(&syntax)["error"]["kind"],
                "syntax",
                "{mode} {engine}: {syntax}"
            );
        }
        let pools = &stats(&mut warm)["pools"];
        assert!(
            pools["eval:bun"]["taken"].as_u64().unwrap() >= 6,
            "{mode}: {pools}"
        );
    }
}

/// An infinite loop, an allocation without end, an output flood: each engine's code.
fn hungry(engine: &str) -> [&'static str; 3] {
    match engine {
        "bun" => [
            "while (true) {}",
            "const a = []; while (true) a.push(new Array(1 << 20).fill(7))",
            "for (let i = 0; i < 100000; i++) console.log('x'.repeat(100)); 5",
        ],
        _ => [
            "while True:\n    pass",
            "a = []\nwhile True:\n    a.append(bytearray(1 << 20))",
            "for i in range(100000):\n    print('x' * 100)\n5",
        ],
    }
}

#[test]
fn limits_end_evals_through_the_daemon_as_their_kinds() {
    if needs_root() {
        return;
    }
    for mode in modes() {
        let daemon = daemon(mode, 1);
        let mut c = daemon.client();
        for engine in ENGINES {
            let [spin, grow, flood] = hungry(engine);
            for warm in [true, false] {
                // A policy extension (here: none of substance) makes it cold.
                let extend = |mut spec: Value| {
                    if !warm {
                        spec["policy"] = json!({"inline": {}});
                    }
                    spec
                };
                ready(&daemon, &mut c, engine, 1);
                let timeout = eval(
                    &mut c,
                    extend(json!({"engine": engine, "code": spin, "limits": {"timeout_ms": 500}})),
                );
                let r = result(&timeout);
                assert_eq!(r["warm"], warm, "{mode} {engine}: {timeout}");
                assert_eq!(r["error"]["kind"], "timeout", "{mode} {engine}: {timeout}");
                assert_eq!(r["status"], "timeout", "{mode} {engine}: {timeout}");
                // Rootless, the memory limit is best effort, and off without cgroup
                // delegation (as here).
                if mode == "root" {
                    ready(&daemon, &mut c, engine, 1);
                    let memory = eval(
                        &mut c,
                        extend(json!({"engine": engine, "code": grow,
                                      "limits": {"memory_bytes": 128 << 20, "timeout_ms": 20000}})),
                    );
                    let r = result(&memory);
                    assert_eq!(r["warm"], warm, "{mode} {engine}: {memory}");
                    assert_eq!(
                        r["error"]["kind"], "memory_limit",
                        "{mode} {engine}: {memory}"
                    );
                    assert_eq!(r["status"], "memory_limit", "{mode} {engine}: {memory}");
                }
                ready(&daemon, &mut c, engine, 1);
                let flooded = eval(
                    &mut c,
                    extend(json!({"engine": engine, "code": flood,
                                  "limits": {"console_bytes": 1000}})),
                );
                let r = result(&flooded);
                assert_eq!(r["warm"], warm, "{mode} {engine}: {flooded}");
                assert_eq!(r["console_truncated"], true, "{mode} {engine}: {flooded}");
                assert_eq!(r["value"], 5, "{mode} {engine}: {flooded}");
                let kept = r["console_output"].as_str().unwrap_or("");
                assert!(
                    kept.len() <= 1000 && kept.starts_with("xxxx"),
                    "{mode} {engine}: {flooded}"
                );
            }
        }
        // The control: the daemon serves on.
        ready(&daemon, &mut c, "bun", 1);
        let two = eval(&mut c, json!({"engine": "bun", "code": "1+1"}));
        assert_eq!(result(&two)["value"], 2, "{mode}: {two}");
    }
}

/// Eval code that maps the channel's memfd (fd 4), scribbles over the `out` ring's header
/// (at half the file: both rings have the same size) and rings `D` on the control socket (fd 3).
const SCRIBBLE: &str = "import mmap, os, socket
m = mmap.mmap(4, 0)
half = len(m) // 2
m[half:half + 32] = os.urandom(32)
socket.socket(fileno=os.dup(3)).send(b'D')
1";

const SCRIBBLE_BUN: &str = "const fs = require('fs');
const size = fs.fstatSync(4).size;
const m = Bun.mmap('/proc/self/fd/4', {shared: true});
for (let i = 0; i < 32; i++) m[size / 2 + i] = 0xa5;
fs.writeSync(3, 'D');
1";

#[test]
fn a_worker_that_breaks_the_ring_protocol_is_killed_and_the_daemon_serves_on() {
    if needs_root() {
        return;
    }
    for mode in modes() {
        let daemon = daemon(mode, 1);
        let mut c = daemon.client();
        for (engine, code) in [("python", SCRIBBLE), ("bun", SCRIBBLE_BUN)] {
            for warm in [true, false] {
                ready(&daemon, &mut c, engine, 1);
                let mut spec = json!({"engine": engine, "code": code});
                if !warm {
                    spec["policy"] = json!({"inline": {}});
                }
                let reply = eval(&mut c, spec);
                let r = result(&reply);
                assert_eq!(
                    r["error"]["kind"],
                    "protocol_error",
                    "{mode} {engine}: {reply}\n{}",
                    daemon.log_text()
                );
                assert_eq!(r["warm"], warm, "{mode} {engine}: {reply}");
                // The control: the next eval works.
                ready(&daemon, &mut c, engine, 1);
                let next = eval(&mut c, json!({"engine": engine, "code": "1+1"}));
                assert_eq!(result(&next)["value"], 2, "{mode} {engine}: {next}");
            }
        }
        // The killed sandboxes are gone: only the pools' ready workers are left.
        assert!(
            eventually(Duration::from_secs(10), || stats(&mut c)["live"] == 0),
            "{mode}: {}",
            stats(&mut c)
        );
    }
}

#[test]
fn a_pre_started_worker_is_never_handed_out_twice() {
    if needs_root() {
        return;
    }
    let look = [
        (
            "bun",
            "const fs = require('fs');
const seen = fs.existsSync('/tmp/marker') || globalThis.marker === 1;
fs.writeFileSync('/tmp/marker', 'x'); globalThis.marker = 1;
seen ? 'reused' : 'fresh'",
        ),
        (
            "python",
            "import os, builtins
seen = os.path.exists('/tmp/marker') or getattr(builtins, 'marker', 0) == 1
open('/tmp/marker', 'w').write('x'); builtins.marker = 1
'reused' if seen else 'fresh'",
        ),
    ];
    for mode in modes() {
        let daemon = daemon(mode, 2);
        let mut c = daemon.client();
        for (engine, code) in look {
            // More evals than the pool holds, each from a full pool.
            for n in 0..5 {
                ready(&daemon, &mut c, engine, 2);
                let reply = eval(&mut c, json!({"engine": engine, "code": code}));
                let r = result(&reply);
                assert_eq!(r["warm"], true, "{mode} {engine} eval {n}: {reply}");
                assert_eq!(r["value"], "fresh", "{mode} {engine} eval {n}: {reply}");
            }
            let pool = &stats(&mut c)["pools"][format!("eval:{engine}")];
            assert_eq!(pool["taken"], 5, "{mode} {engine}: {pool}");
        }
    }
}

#[test]
fn an_eval_pool_refills_after_a_burst_and_reports_its_idle_memory() {
    if needs_root() {
        return;
    }
    for mode in modes() {
        let daemon = daemon(mode, 2);
        let mut c = daemon.client();
        for engine in ENGINES {
            ready(&daemon, &mut c, engine, 2);
        }
        if mode == "root" {
            // An idle worker's cgroup holds its runtime (once it has loaded): more than the
            // few KiB of a plain pooled sandbox's waiting init.
            for engine in ENGINES {
                let mut pools = Value::Null;
                assert!(
                    eventually(Duration::from_secs(10), || {
                        pools = stats(&mut c)["pools"].clone();
                        pools[format!("eval:{engine}")]["idle_memory_bytes"]
                            .as_u64()
                            .unwrap_or(0)
                            > 2 * (1 << 20)
                    }),
                    "{engine}: {pools}"
                );
            }
        }
        // A burst larger than the pool: the first ones warm, the rest cold, all fine.
        let socket = daemon.socket.clone();
        let replies: Vec<Value> = std::thread::scope(|s| {
            let evals: Vec<_> = (0..5)
                .map(|i| {
                    let socket = socket.clone();
                    s.spawn(move || {
                        let mut c = Client::connect(&socket);
                        eval(&mut c, json!({"engine": "bun", "code": format!("{i} * 2")}))
                    })
                })
                .collect();
            evals.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(result(reply)["value"], i * 2, "{mode}: {reply}");
        }
        assert!(
            replies.iter().any(|r| result(r)["warm"] == true),
            "{mode}: none warm: {replies:?}"
        );
        ready(&daemon, &mut c, "bun", 2);
        let pool = &stats(&mut c)["pools"]["eval:bun"];
        assert!(pool["taken"].as_u64().unwrap() >= 1, "{mode}: {pool}");
    }
}

#[test]
fn a_daemon_killed_while_an_eval_pool_fills_leaves_nothing() {
    if !common::is_root() {
        common::skip("the cgroups a killed daemon leaves are root's");
        return;
    }
    let mut daemon = daemon("root", 3);
    let mut c = daemon.client();
    ready(&daemon, &mut c, "bun", 3);
    // Take some, so the refill is running when the kill comes.
    for _ in 0..2 {
        eval(&mut c, json!({"engine": "bun", "code": "1"}));
    }
    let own = descendants(daemon.pid());
    assert!(own.len() >= 3, "no pre-started workers among {own:?}");
    let daemon_pid = daemon.pid();
    daemon.sigkill();
    assert_all_end_after_sigkill(&own);
    daemon.restart();
    let mut c = daemon.client();
    ready(&daemon, &mut c, "bun", 3);
    // The restarted daemon removed the killed one's cgroups.
    assert_no_cgroups_of(daemon_pid);
}

#[test]
fn an_opened_worker_keeps_its_globals_and_dies_with_its_connection() {
    if needs_root() {
        return;
    }
    for mode in modes() {
        let daemon = daemon(mode, 0);
        let mut c = daemon.client();
        let before = descendants(daemon.pid());
        let opened = c.call(json!({"id": 2, "op": "open_worker",
                                   "spec": {"engine": "python", "limits": {"timeout_ms": 2000}}}));
        let worker = opened["ok"]["worker"]
            .as_str()
            .unwrap_or_else(|| panic!("{opened}"));
        let first = eval(
            &mut c,
            json!({"engine": "python", "code": "x = 41\nx", "worker": worker}),
        );
        assert_eq!(result(&first)["value"], 41, "{mode}: {first}");
        let second = eval(
            &mut c,
            json!({"engine": "python", "code": "x + 1", "worker": worker}),
        );
        assert_eq!(result(&second)["value"], 42, "{mode}: {second}");
        // Another connection cannot name it.
        let mut other = daemon.client();
        let foreign = eval(
            &mut other,
            json!({"engine": "python", "code": "x", "worker": worker}),
        );
        assert_eq!(foreign["error"]["code"], "not_found", "{mode}: {foreign}");
        // Its timeout ends it: later evals do not find it.
        let spin = eval(
            &mut c,
            json!({"engine": "python", "code": "while True:\n    pass", "worker": worker}),
        );
        assert_eq!(result(&spin)["error"]["kind"], "timeout", "{mode}: {spin}");
        let gone = eval(
            &mut c,
            json!({"engine": "python", "code": "x", "worker": worker}),
        );
        assert_eq!(gone["error"]["code"], "not_found", "{mode}: {gone}");
        // A second one dies with its connection.
        let opened = c.call(json!({"id": 3, "op": "open_worker", "spec": {"engine": "bun"}}));
        let worker = opened["ok"]["worker"]
            .as_str()
            .unwrap_or_else(|| panic!("{opened}"));
        let set = eval(
            &mut c,
            json!({"engine": "bun", "code": "globalThis.y = 6; y", "worker": worker}),
        );
        assert_eq!(result(&set)["value"], 6, "{mode}: {set}");
        let live: Vec<i32> = descendants(daemon.pid())
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert!(!live.is_empty(), "{mode}: no worker process");
        drop(c);
        assert!(
            eventually(Duration::from_secs(5), || live
                .iter()
                .all(|p| !pid_alive(*p))),
            "{mode}: the closed connection's worker lives on: {live:?}"
        );
        assert!(
            eventually(Duration::from_secs(5), || stats(&mut other)["live"] == 0),
            "{mode}: {}",
            stats(&mut other)
        );
    }
}

/// A loopback HTTP server that answers `hello` to every request, and how many it served.
fn http_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    (port, served)
}

/// `bunker eval` with the args, through `--connect socket` when given; its result line.
fn cli_eval(socket: Option<&std::path::Path>, args: &[&str]) -> (std::process::Output, Value) {
    let mut cmd = common::bunker();
    cmd.arg("eval").env_remove("BUNKER_SOCKET");
    if let Some(socket) = socket {
        cmd.arg("--connect").arg(socket);
    }
    let out = cmd.args(args).output().unwrap();
    let line = common::stdout(&out);
    let value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
    (out, value)
}

#[test]
fn bunker_eval_through_the_daemon_prints_what_a_cold_eval_prints() {
    if needs_root() {
        return;
    }
    let (port, served) = http_server();
    let url = format!("http://127.0.0.1:{port}/x");
    let allow = format!("127.0.0.1:{port}");
    let fetch = format!("fetch('{url}').then(r => r.text())");
    // A policy file extending the profile with a read grant (loaded by the CLI, sent inline).
    let dir = common::shared_tempdir();
    let data = common::write_file(dir.path(), "data.txt", "granted");
    let policy = common::write_file(
        dir.path(),
        "policy.json",
        &json!({"allow": {"read": [dir.path()]}}).to_string(),
    );
    let read = format!("open('{}').read()", data.display());
    let policy = policy.display().to_string();
    let same = |r: &Value| {
        json!({"value": r["value"], "console_output": r["console_output"],
               "console_truncated": r["console_truncated"], "error": r["error"],
               "status": r["status"]})
    };
    for mode in modes() {
        let daemon = daemon(mode, 1);
        let mut cases: Vec<Vec<&str>> = vec![
            vec!["1+1"],
            vec!["--engine", "python", "print('hi')\n6*7"],
            vec!["--timeout", "300ms", "while (true) {}"],
            vec!["throw new RangeError('no')"],
        ];
        // Rootless, the eval profiles are this test's ceiling: no network beyond them.
        if mode == "root" {
            cases.push(vec!["--allow-net", &allow, &fetch]);
            cases.push(vec!["--engine", "python", "--policy", &policy, &read]);
        }
        for args in &cases {
            let mut c = daemon.client();
            ready(&daemon, &mut c, "bun", 1);
            ready(&daemon, &mut c, "python", 1);
            let before = served.load(std::sync::atomic::Ordering::SeqCst);
            let (warm_out, warm) = cli_eval(Some(&daemon.socket), args);
            let through = served.load(std::sync::atomic::Ordering::SeqCst) - before;
            let (cold_out, cold) = cli_eval(None, args);
            assert_eq!(
                same(&warm),
                same(&cold),
                "{mode} {args:?}\ndaemon: {warm} {}\ncold: {cold} {}",
                common::stderr(&warm_out),
                common::stderr(&cold_out)
            );
            assert_eq!(
                warm_out.status.code(),
                cold_out.status.code(),
                "{mode} {args:?}"
            );
            assert_eq!(cold["warm"], false, "{cold}");
            if args.contains(&fetch.as_str()) {
                // Through the daemon's proxy, and recorded: the daemon waited for the end.
                assert_eq!(warm["value"], "hello", "{mode}: {warm}");
                assert_eq!(
                    warm["warm"], false,
                    "an eval with http is never pooled: {warm}"
                );
                assert_eq!(warm["http_requests"][0]["allowed"], true, "{warm}");
                assert_eq!(through, 1, "the server saw the daemon's eval");
            } else if args.contains(&read.as_str()) {
                assert_eq!(warm["value"], "granted", "{mode}: {warm}");
                assert_eq!(warm["warm"], false, "an eval with a policy is never pooled");
            } else {
                assert_eq!(warm["warm"], true, "{mode} {args:?}: {warm}");
            }
        }
        assert_eq!(
            cli_eval(
                Some(&daemon.socket),
                &["--timeout", "300ms", "while (true) {}"]
            )
            .0
            .status
            .code(),
            Some(124),
            "{mode}: a timeout exits 124"
        );
    }
    // A daemon that is not running: `unavailable`, exit 125, no result line.
    let gone = std::env::temp_dir().join("bunker-no-daemon-here.sock");
    let (out, value) = cli_eval(Some(&gone), &["1+1"]);
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    assert_eq!(value, Value::Null);
    assert!(
        common::stderr(&out).contains("unavailable"),
        "{}",
        common::stderr(&out)
    );
}
