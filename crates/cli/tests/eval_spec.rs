//! `bunker eval --spec JSON` / `--spec -`: the whole EvalSpec (docs/cli.md, "bunker eval"), root
//! and rootless, on the real binary. Its `http` options are applied by the one mapping
//! (`HttpOptions::apply_to`): a loopback server this test starts is reached when the spec
//! allows it and not when it denies it; globals, function and args reach the worker; a bad spec
//! is `request_invalid` naming the field; and a daemon (`--connect`) prints what a cold eval
//! prints for the same spec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::serve::{eventually, Client, Daemon, DaemonSpec};
use common::{is_root, modes, stderr, stdout, CommandMaker};
use serde_json::{json, Value};

const ENGINES: [&str; 2] = ["bun", "python"];

/// `bunker eval [extra] --spec -` with `spec` on stdin: the output and its result line (null
/// when there is none).
fn eval_spec(mut cmd: Command, extra: &[&str], spec: &Value) -> (Output, Value) {
    let mut child = cmd
        .arg("eval")
        .env_remove("BUNKER_SOCKET")
        .args(extra)
        .args(["--spec", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(spec.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let value = serde_json::from_str(stdout(&out).trim()).unwrap_or(Value::Null);
    (out, value)
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

/// A loopback HTTP server answering every request with `200 hello`; counts what it served.
fn http_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    (port, served)
}

fn fetch_code(engine: &str, url: &str) -> String {
    match engine {
        "bun" => format!("fetch('{url}').then(r => r.text())"),
        _ => format!("import urllib.request\nurllib.request.urlopen('{url}').read().decode()"),
    }
}

#[test]
fn a_specs_http_options_allow_and_deny_through_the_proxy() {
    let (port, served) = http_server();
    let url = format!("http://127.0.0.1:{port}/x");
    for_each(|mode, make, engine| {
        let code = fetch_code(engine, &url);
        let http = |extra: Value| {
            let mut http = json!({"allowlist": ["127.0.0.1"], "allowed_ports": [port],
                                  "max_requests": 5, "max_response_size": 4096,
                                  "request_timeout": 5000});
            http.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"engine": engine, "code": code, "http": http})
        };
        // Allowed: the host on the server's port (allowlist x allowed_ports).
        let before = served.load(Ordering::SeqCst);
        let (out, r) = eval_spec(make(), &[], &http(json!({})));
        assert_eq!(r["value"], "hello", "{mode} {engine}: {r} {}", stderr(&out));
        assert_eq!(r["http_requests"][0]["allowed"], true, "{r}");
        assert_eq!(
            served.load(Ordering::SeqCst),
            before + 1,
            "the server saw it"
        );
        // Denied by the denylist, which wins over the allowlist: the server sees nothing.
        let (_, r) = eval_spec(make(), &[], &http(json!({"denylist": ["127.0.0.1"]})));
        assert_eq!(
            r["http_requests"][0]["allowed"], false,
            "{mode} {engine}: {r}"
        );
        assert_ne!(r["value"], "hello", "{mode} {engine}: {r}");
        // Denied: the allowlist applies to another port only.
        let (_, r) = eval_spec(make(), &[], &http(json!({"allowed_ports": [9]})));
        assert_eq!(
            r["http_requests"][0]["allowed"], false,
            "{mode} {engine}: {r}"
        );
        assert_eq!(
            served.load(Ordering::SeqCst),
            before + 1,
            "nothing else reached it"
        );
    });
}

#[test]
fn a_spec_carries_globals_a_function_and_its_args() {
    for_each(|mode, make, engine| {
        let code = match engine {
            "bun" => "function add(a, b) { return { sum: a + b + x, tag: name } }",
            _ => "def add(a, b):\n    return {'sum': a + b + x, 'tag': name}",
        };
        let spec = json!({"engine": engine, "code": code, "globals": {"x": 10, "name": "t"},
                          "function": "add", "args": [1, 2],
                          "limits": {"timeout_ms": 5000, "console_bytes": 100}});
        let (out, r) = eval_spec(make(), &[], &spec);
        assert_eq!(
            r["value"],
            json!({"sum": 13, "tag": "t"}),
            "{mode} {engine}: {r} {}",
            stderr(&out)
        );
        assert_eq!(out.status.code(), Some(0));
        // The same spec as an argument rather than on stdin.
        let out = make()
            .args(["eval", "--spec", &spec.to_string()])
            .env_remove("BUNKER_SOCKET")
            .output()
            .unwrap();
        let r: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(
            r["value"],
            json!({"sum": 13, "tag": "t"}),
            "{mode} {engine}"
        );
    });
}

/// The error JSON line on stderr of a refused eval.
fn error_line(out: &Output) -> Value {
    let text = stderr(out);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no error line ({e}): {text}"))
}

#[test]
fn a_bad_spec_is_refused_naming_the_field() {
    let bunker = common::bunker;
    // A value of the wrong type, deep inside: the field's path is named.
    let (out, r) = eval_spec(
        bunker(),
        &[],
        &json!({"engine": "bun", "code": "1", "http": {"max_requests": "ten"}}),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(r, Value::Null, "no result line");
    let e = error_line(&out);
    assert_eq!(e["code"], "request_invalid", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("`http.max_requests`"),
        "{e}"
    );
    // An unknown field, a missing one, text that is not JSON.
    for (spec, names) in [
        (r#"{"engine": "bun", "code": "1", "htpp": {}}"#, "`htpp`"),
        (r#"{"engine": "bun"}"#, "`code`"),
        (r#"{"engine": "ruby", "code": "1"}"#, "`engine`"),
        ("1+1", "not an eval spec"),
    ] {
        let out = bunker().args(["eval", "--spec", spec]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        let e = error_line(&out);
        assert_eq!(e["code"], "request_invalid", "{spec}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(names),
            "{spec}: {e}"
        );
    }
    // Methods cannot be enforced: the mapping refuses them, naming the key (a policy error).
    let (out, _) = eval_spec(
        bunker(),
        &[],
        &json!({"engine": "bun", "code": "1", "http": {"allowed_methods": ["GET"]}}),
    );
    assert_eq!(out.status.code(), Some(120), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("http.allowed_methods"),
        "{}",
        stderr(&out)
    );
    // A policy name that is no built-in profile: there is no daemon config to name it.
    let (out, _) = eval_spec(
        bunker(),
        &[],
        &json!({"engine": "bun", "code": "1", "policy": {"name": "nope"}}),
    );
    assert_eq!(error_line(&out)["code"], "not_found", "{}", stderr(&out));
    // A control: the same spec with a built-in profile's name runs.
    let (out, r) = eval_spec(
        bunker(),
        &[],
        &json!({"engine": "bun", "code": "1", "policy": {"name": "runtime:bun"}}),
    );
    assert_eq!(r["value"], 1, "{}", stderr(&out));
    // Flags and a spec together: a usage error naming both.
    let (out, _) = eval_spec(
        bunker(),
        &["--timeout", "1s"],
        &json!({"engine": "bun", "code": "1"}),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--spec") && stderr(&out).contains("--timeout"),
        "{}",
        stderr(&out)
    );
    let out = bunker()
        .args(["eval", "--spec", r#"{"engine": "bun", "code": "1"}"#, "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("[CODE]"), "{}", stderr(&out));
}

/// A daemon with one pre-started worker of each engine; as rootless this test's uid (root) is
/// let in under the eval profiles.
fn daemon(mode: &str) -> Daemon {
    let grants = if mode == "root" {
        "[]"
    } else {
        r#"[{"uid": 0, "ceiling": "eval:bun"}, {"uid": 0, "ceiling": "eval:python"}]"#
    };
    let config = format!(
        r#"{{"max_sandboxes": 8, "grants": {grants}, "pools": {{"eval:bun": 1, "eval:python": 1}}}}"#
    );
    Daemon::start_with(DaemonSpec {
        config: Some(&config),
        as_nobody: mode != "root",
        files: &[],
    })
}

fn ready(daemon: &Daemon, engine: &str) {
    let mut c: Client = daemon.client();
    let mut last = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            last = c.call(json!({"id": 90, "op": "stats"}))["ok"].clone();
            last["pools"][format!("eval:{engine}")]["ready"] == 1
        }),
        "the eval:{engine} pool never filled: {last}\n{}",
        daemon.log_text()
    );
}

#[test]
fn a_spec_through_the_daemon_prints_what_a_cold_eval_prints() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        common::skip("the rootless daemon is started through setpriv, which needs root");
        return;
    }
    let (port, served) = http_server();
    let url = format!("http://127.0.0.1:{port}/x");
    let same = |r: &Value| {
        json!({"value": r["value"], "console_output": r["console_output"],
               "console_truncated": r["console_truncated"], "error": r["error"],
               "status": r["status"],
               "http": r["http_requests"].as_array().map(|a| a.iter()
                   .map(|h| h["allowed"].clone()).collect::<Vec<_>>())})
    };
    for mode in ["root", "rootless"] {
        let daemon = daemon(mode);
        let mut specs = vec![
            json!({"engine": "bun", "code": "console.log('hi'); x + 1", "globals": {"x": 41}}),
            json!({"engine": "python", "code": "def f(a, b):\n    return a * b",
                   "function": "f", "args": [6, 7]}),
            json!({"engine": "bun", "code": "while (true) {}", "limits": {"timeout_ms": 300}}),
        ];
        // Rootless, the eval profiles are this test's ceiling: no network beyond them.
        if mode == "root" {
            for engine in ENGINES {
                let code = fetch_code(engine, &url);
                specs.push(json!({"engine": engine, "code": code,
                                  "http": {"allowlist": ["127.0.0.1"], "allowed_ports": [port]}}));
                specs.push(json!({"engine": engine, "code": code,
                                  "http": {"allowlist": ["127.0.0.1"], "allowed_ports": [port],
                                           "denylist": ["127.0.0.0/8"]}}));
            }
        }
        for spec in &specs {
            ready(&daemon, "bun");
            ready(&daemon, "python");
            let socket = daemon.socket.display().to_string();
            let before = served.load(Ordering::SeqCst);
            let (warm_out, warm) = eval_spec(common::bunker(), &["--connect", &socket], spec);
            let through = served.load(Ordering::SeqCst) - before;
            let (cold_out, cold) = eval_spec(common::bunker(), &["--local"], spec);
            assert_ne!(warm, Value::Null, "{mode} {spec}: {}", stderr(&warm_out));
            assert_eq!(
                same(&warm),
                same(&cold),
                "{mode} {spec}\ndaemon: {warm} {}\ncold: {cold} {}",
                stderr(&warm_out),
                stderr(&cold_out)
            );
            assert_eq!(
                warm_out.status.code(),
                cold_out.status.code(),
                "{mode} {spec}"
            );
            assert_eq!(cold["warm"], false);
            if warm["value"] == "hello" {
                assert_eq!(through, 1, "the server saw the daemon's eval");
            }
        }
    }
    // A bad spec is refused before any daemon is asked: the same error as cold.
    let gone = std::env::temp_dir().join("bunker-no-daemon-here.sock");
    let (out, _) = eval_spec(
        common::bunker(),
        &["--connect", &gone.display().to_string()],
        &json!({"engine": "bun", "code": 1}),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(error_line(&out)["message"]
        .as_str()
        .unwrap()
        .contains("`code`"));
}

#[test]
fn check_document_prints_a_policy_to_send_inline() {
    let dir = common::shared_tempdir();
    let data = common::write_file(dir.path(), "data.txt", "granted");
    let file = common::write_file(
        dir.path(),
        "policy.json",
        &json!({"allow": {"read": ["."]}}).to_string(),
    );
    let out = common::bunker()
        .args(["check", "--document"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    let doc: Value = serde_json::from_str(text.trim()).unwrap();
    assert!(doc.get("sources").is_none(), "{doc}");
    fn no_nulls(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Object(m) => m.values().all(no_nulls),
            Value::Array(a) => a.iter().all(no_nulls),
            _ => true,
        }
    }
    assert!(no_nulls(&doc), "{doc}");
    // Its relative grant is resolved (against the file's directory): sent inline from anywhere,
    // it grants the file; the control without it is refused.
    let code = format!("open('{}').read()", data.display());
    let spec = json!({"engine": "python", "code": code, "policy": {"inline": doc}});
    let (out, r) = eval_spec(common::bunker(), &[], &spec);
    assert_eq!(r["value"], "granted", "{r} {}", stderr(&out));
    let (_, r) = eval_spec(
        common::bunker(),
        &[],
        &json!({"engine": "python", "code": code}),
    );
    assert_eq!(r["error"]["kind"], "thrown", "{r}");
}
