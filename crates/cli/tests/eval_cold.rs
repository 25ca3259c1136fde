//! `bunker eval` without a daemon (the cold path): Bun and Python workers, root and rootless,
//! on the real binary. Each limit and error is reported as its kind; a worker that writes
//! garbage into its ring is killed as `protocol_error` and bunker goes on (with a control that
//! writes a valid record the same way and is accepted); HTTP goes through the proxy to a
//! loopback server this test starts, allowed and denied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{is_root, modes, stderr, stdout, CommandMaker};
use serde_json::Value;

const ENGINES: [&str; 2] = ["bun", "python"];

fn eval(make: CommandMaker, engine: &str, args: &[&str], code: &str) -> (Output, Value) {
    let mut cmd: Command = make();
    cmd.args(["eval", "--engine", engine]).args(args).arg(code);
    let out = cmd.output().unwrap();
    let line = stdout(&out);
    let result: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON line ({e}):\nstdout: {line}\nstderr: {}",
            stderr(&out)
        )
    });
    (out, result)
}

fn kind(r: &Value) -> &str {
    r["error"]["kind"].as_str().unwrap_or("none")
}

fn for_each(test: impl Fn(&str, CommandMaker, &str)) {
    assert!(
        is_root() || std::env::var_os("CI").is_none(),
        "CI runs as root"
    );
    for (mode, make) in modes() {
        for engine in ENGINES {
            test(mode, make, engine);
        }
    }
}

#[test]
fn one_plus_one_is_two() {
    for_each(|mode, make, engine| {
        let (out, r) = eval(make, engine, &[], "1+1");
        assert_eq!(r["value"], 2, "{mode} {engine}: {r} {}", stderr(&out));
        assert_eq!(r["error"], Value::Null, "{mode} {engine}: {r}");
        assert_eq!(r["warm"], false);
        assert_eq!(out.status.code(), Some(0), "{mode} {engine}");
    });
}

#[test]
fn console_output_is_kept_and_capped() {
    for_each(|mode, make, engine| {
        let code = match engine {
            "bun" => "console.log('hello', 1); process.stdout.write('w'); 5",
            _ => "print('hello', 1); import sys; sys.stdout.write('w'); 5",
        };
        let (_, r) = eval(make, engine, &[], code);
        assert_eq!(r["console_output"], "hello 1\nw", "{mode} {engine}: {r}");
        assert_eq!(r["console_truncated"], false);
        assert_eq!(r["value"], 5);
        // A flood: bounded to the cap, flagged, and the eval still answers.
        let flood = match engine {
            "bun" => "for (let i = 0; i < 200000; i++) console.log('flood line', i); 7",
            _ => "for i in range(200000): print('flood line', i)\n7",
        };
        let (out, r) = eval(make, engine, &["--console-max", "1KB"], flood);
        assert_eq!(r["console_truncated"], true, "{mode} {engine}: {r}");
        let kept = r["console_output"].as_str().unwrap();
        assert!(
            kept.len() <= 1000 && kept.starts_with("flood line 0\n"),
            "{kept}"
        );
        assert_eq!(r["value"], 7, "{mode} {engine}: {r}");
        assert!(
            out.stdout.len() < 4000,
            "the result is bounded: {}",
            out.stdout.len()
        );
    });
}

#[test]
fn a_thrown_error_has_its_name_message_and_stack() {
    for_each(|mode, make, engine| {
        let code = match engine {
            "bun" => "function deep() { throw new TypeError('bad thing') }\ndeep()",
            _ => "def deep():\n    raise ValueError('bad thing')\ndeep()",
        };
        let (out, r) = eval(make, engine, &[], code);
        assert_eq!(kind(&r), "thrown", "{mode} {engine}: {r}");
        let name = if engine == "bun" {
            "TypeError"
        } else {
            "ValueError"
        };
        assert_eq!(r["error"]["name"], name);
        assert_eq!(r["error"]["message"], "bad thing");
        assert!(
            r["error"]["stack"].as_str().unwrap().contains("deep"),
            "{r}"
        );
        assert_eq!(r["value"], Value::Null);
        assert_eq!(out.status.code(), Some(1));
    });
}

#[test]
fn a_syntax_error_is_syntax_and_a_runtime_syntax_error_is_thrown() {
    for_each(|mode, make, engine| {
        let (_, r) = eval(make, engine, &[], "1 +* 2");
        assert_eq!(kind(&r), "syntax", "{mode} {engine}: {r}");
        assert_eq!(r["error"]["name"], "SyntaxError");
        let runtime = match engine {
            "bun" => "JSON.parse('{')",
            _ => "compile('1 +* 2', 'x', 'eval')",
        };
        let (_, r) = eval(make, engine, &[], runtime);
        assert_eq!(kind(&r), "thrown", "{mode} {engine}: {r}");
    });
}

#[test]
fn an_infinite_loop_is_a_timeout() {
    for_each(|mode, make, engine| {
        let code = if engine == "bun" {
            "while (true) {}"
        } else {
            "while True: pass"
        };
        let (out, r) = eval(make, engine, &["--timeout", "500ms"], code);
        assert_eq!(kind(&r), "timeout", "{mode} {engine}: {r}");
        assert_eq!(r["status"], "timeout");
        assert_eq!(out.status.code(), Some(124));
    });
}

/// Memory limits need a memory cgroup, which only root has on this host (rootless runs mark
/// memory best effort and report it as not enforced; tests/limits.rs covers that).
#[test]
fn allocating_past_memory_is_memory_limit() {
    assert!(is_root(), "the memory limit needs root's cgroups");
    for engine in ENGINES {
        let code = match engine {
            "bun" => "const a = []; for (let i = 0; i < 100; i++) a.push(Buffer.alloc(5 << 20, 1)); a.length",
            _ => "x = b'a' * (500 << 20)\nlen(x)",
        };
        let (out, r) = eval(common::bunker, engine, &["--memory", "50MB"], code);
        assert_eq!(kind(&r), "memory_limit", "{engine}: {r}");
        assert_eq!(r["status"], "memory_limit");
        assert_eq!(out.status.code(), Some(122));
    }
}

#[test]
fn globals_and_a_function_with_args() {
    for_each(|mode, make, engine| {
        let (_, r) = eval(
            make,
            engine,
            &["--globals", r#"{"x": 41, "name": "b"}"#],
            "x + 1",
        );
        assert_eq!(r["value"], 42, "{mode} {engine}: {r}");
        let code = match engine {
            "bun" => "function add(a, b) { return { sum: a + b + x, tag: name } }",
            _ => "def add(a, b):\n    return {'sum': a + b + x, 'tag': name}",
        };
        let (_, r) = eval(
            make,
            engine,
            &[
                "--globals",
                r#"{"x": 10, "name": "t"}"#,
                "--function",
                "add",
                "--args",
                "[1, 2]",
            ],
            code,
        );
        assert_eq!(
            r["value"],
            serde_json::json!({"sum": 13, "tag": "t"}),
            "{mode} {engine}: {r}"
        );
        // An async value is awaited.
        let code = match engine {
            "bun" => "Promise.resolve(9)",
            _ => "async def f():\n    return 9\nf()",
        };
        let (_, r) = eval(make, engine, &[], code);
        assert_eq!(r["value"], 9, "{mode} {engine}: {r}");
    });
}

#[test]
fn values_that_are_not_json_become_strings() {
    for_each(|mode, make, engine| {
        let (code, want) = match engine {
            "bun" => ("const o = {}; o.self = o; o", "Circular"),
            _ => ("l = []\nl.append(l)\nl", "[[...]]"),
        };
        let (_, r) = eval(make, engine, &[], code);
        assert!(
            r["value"].as_str().unwrap().contains(want),
            "{mode} {engine}: {r}"
        );
        let none = if engine == "bun" { "undefined" } else { "None" };
        let (_, r) = eval(make, engine, &[], none);
        assert_eq!(r["value"], Value::Null, "{mode} {engine}: {r}");
        assert_eq!(r["error"], Value::Null);
    });
}

/// Eval code that maps the channel itself and writes the `out` ring as it likes, then rings
/// `D`. `record` is the record's bytes as a JS/Python expression, `len` its length prefix.
fn ring_writer(engine: &str, record: &str, len: &str, then: &str) -> String {
    match engine {
        "bun" => format!(
            "const fs = require('node:fs');
             const m = Bun.mmap('/proc/self/fd/4', {{ shared: true }});
             const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
             const out = 64 + Number(v.getBigUint64(8, true));
             const rec = new TextEncoder().encode({record});
             v.setUint32(out + 64, {len}, true);
             m.set(rec, out + 68);
             v.setBigUint64(out + 24, BigInt(4 + rec.length), true);
             fs.writeSync(3, 'D');
             {then}"
        ),
        _ => format!(
            "import mmap, os, struct
m = mmap.mmap(4, 0)
out = 64 + struct.unpack_from('<Q', m, 8)[0]
rec = ({record}).encode()
struct.pack_into('<I', m, out + 64, {len})
m[out + 68:out + 68 + len(rec)] = rec
struct.pack_into('<Q', m, out + 24, 4 + len(rec))
os.write(3, b'D')
{then}"
        ),
    }
}

#[test]
fn a_garbage_writing_worker_is_killed_as_a_protocol_error() {
    for_each(|mode, make, engine| {
        let valid = r#"'{"value": "forged-but-valid", "console_output": "", "console_truncated": false, "error": null}'"#;
        let (len, forever, exit) = match engine {
            "bun" => ("rec.length", "while (true) {}", "process.exit(0)"),
            _ => ("len(rec)", "while True: pass", "os._exit(0)"),
        };
        // Control: a well-formed record written the same way is accepted.
        let (out, r) = eval(make, engine, &[], &ring_writer(engine, valid, len, exit));
        assert_eq!(
            r["value"],
            "forged-but-valid",
            "{mode} {engine}: {r} {}",
            stderr(&out)
        );
        assert_eq!(out.status.code(), Some(0));
        // A huge length, then a loop: killed for the protocol error, long before the timeout.
        let (out, r) = eval(
            make,
            engine,
            &["--timeout", "60s"],
            &ring_writer(engine, valid, "0xffffffff", forever),
        );
        assert_eq!(kind(&r), "protocol_error", "{mode} {engine}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("length 4294967295"),
            "{r}"
        );
        assert_eq!(out.status.code(), Some(125));
        // Killed for it: the loop did not run on to the timeout.
        assert_eq!(r["status"], "signal", "{mode} {engine}: {r}");
        // Not JSON of the reply's shape.
        let (_, r) = eval(
            make,
            engine,
            &[],
            &ring_writer(engine, "'{\"value\": 1}'", len, forever),
        );
        assert_eq!(kind(&r), "protocol_error", "{mode} {engine}: {r}");
        // bunker goes on: the next eval is fine.
        let (_, r) = eval(make, engine, &[], "1+1");
        assert_eq!(r["value"], 2, "{mode} {engine}: {r}");
    });
}

#[test]
fn a_scribbled_ring_header_is_a_protocol_error() {
    for_each(|mode, make, engine| {
        let code = match engine {
            "bun" => {
                "const fs = require('node:fs');
                      const m = Bun.mmap('/proc/self/fd/4', { shared: true });
                      const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
                      const out = 64 + Number(v.getBigUint64(8, true));
                      v.setBigUint64(out + 8, 1n << 40n, true);
                      fs.writeSync(3, 'D');
                      while (true) {}"
            }
            _ => {
                "import mmap, os, struct
m = mmap.mmap(4, 0)
out = 64 + struct.unpack_from('<Q', m, 8)[0]
struct.pack_into('<Q', m, out + 8, 1 << 40)
os.write(3, b'D')
while True: pass"
            }
        };
        let (_, r) = eval(make, engine, &["--timeout", "60s"], code);
        assert_eq!(kind(&r), "protocol_error", "{mode} {engine}: {r}");
        assert_eq!(
            r["status"], "signal",
            "killed for it, not at the timeout: {r}"
        );
        assert!(
            r["error"]["message"].as_str().unwrap().contains("capacity"),
            "{r}"
        );
    });
}

#[test]
fn the_worker_cannot_resize_its_rings() {
    // A shrunk memfd would turn bunker's reads of its mapping into SIGBUS; a grown one would
    // charge bunker for the worker's pages. The seals refuse both, to the worker's own fd 4;
    // control: the same calls on a file of its own in /tmp resize it.
    for_each(|mode, make, engine| {
        let code = match engine {
            "bun" => {
                "const fs = require('node:fs');
                 const t = (fd, n) => { try { fs.ftruncateSync(fd, n); return 'resized'; } catch (e) { return e.code; } };
                 const own = fs.openSync('/tmp/own', 'w+');
                 [t(4, 0), t(4, 1 << 30), t(own, 0), t(own, 4096)]"
            }
            _ => {
                "import errno, os
def t(fd, n):
    try:
        os.ftruncate(fd, n)
        return 'resized'
    except OSError as e:
        return errno.errorcode[e.errno]
own = os.open('/tmp/own', os.O_RDWR | os.O_CREAT)
[t(4, 0), t(4, 1 << 30), t(own, 0), t(own, 4096)]"
            }
        };
        let (out, r) = eval(make, engine, &[], code);
        assert_eq!(
            r["value"],
            serde_json::json!(["EPERM", "EPERM", "resized", "resized"]),
            "{mode} {engine}: {r} {}",
            stderr(&out)
        );
    });
}

/// A loopback HTTP server answering every request with `200 hello`; counts what it served.
fn http_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            count.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    (port, served)
}

#[test]
fn http_goes_through_the_proxy_allowed_and_denied() {
    let (port, served) = http_server();
    let url = format!("http://127.0.0.1:{port}/x");
    for_each(|mode, make, engine| {
        let code = match engine {
            "bun" => format!("fetch('{url}').then(r => r.text())"),
            _ => format!("import urllib.request\nurllib.request.urlopen('{url}').read().decode()"),
        };
        let before = served.load(Ordering::SeqCst);
        let allow = format!("127.0.0.1:{port}");
        let (_, r) = eval(make, engine, &["--allow-net", &allow], &code);
        assert_eq!(r["value"], "hello", "{mode} {engine}: {r}");
        assert_eq!(r["http_requests"][0]["allowed"], true, "{r}");
        assert_eq!(
            served.load(Ordering::SeqCst),
            before + 1,
            "the server saw it"
        );
        // Another host allowed: the proxy refuses this one, the server sees nothing.
        let (_, r) = eval(make, engine, &["--allow-net", "example.com"], &code);
        assert_eq!(
            r["http_requests"][0]["allowed"], false,
            "{mode} {engine}: {r}"
        );
        if engine == "python" {
            // urllib raises on the proxy's 403: an exception while a request was denied.
            assert_eq!(kind(&r), "http_blocked", "{mode} {engine}: {r}");
        }
        // No http at all: no network.
        let (_, r) = eval(make, engine, &[], &code);
        assert_eq!(kind(&r), "thrown", "{mode} {engine}: {r}");
        assert_eq!(r["http_requests"], serde_json::json!([]));
        assert_eq!(
            served.load(Ordering::SeqCst),
            before + 1,
            "nothing else reached it"
        );
    });
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let out = common::bunker()
        .args(["eval", "--engine", "ruby", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected one of bun, python"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    let out = common::bunker()
        .args(["eval", "--timeout", "soon", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
    let out = common::bunker()
        .args(["eval", "--connect", "/nonexistent/bunker.sock", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"unavailable\""), "{}", stderr(&out));
}

#[test]
fn the_worker_gets_its_channel_as_fds_3_and_4_and_nothing_else() {
    for (mode, make) in modes() {
        let code = "import os\nfds = os.listdir('/proc/self/fd')\n{f: os.readlink('/proc/self/fd/' + f) for f in fds if os.path.exists('/proc/self/fd/' + f)}";
        let (_, r) = eval(make, "python", &[], code);
        let fds = r["value"]
            .as_object()
            .unwrap_or_else(|| panic!("{mode}: {r}"));
        assert!(
            fds["3"].as_str().unwrap().starts_with("socket:"),
            "{mode}: {r}"
        );
        assert!(
            fds["4"].as_str().unwrap().contains("memfd:bunker-worker"),
            "{mode}: {r}"
        );
        for (fd, target) in fds {
            let n: u32 = fd.parse().unwrap();
            let target = target.as_str().unwrap();
            // Python's mmap keeps a duplicate of fd 4; listdir has the directory open.
            let expected =
                n <= 4 || target.contains("memfd:bunker-worker") || target.starts_with("/proc/");
            assert!(
                expected,
                "{mode}: fd {fd} -> {target} leaked into the worker: {r}"
            );
        }
    }
}
