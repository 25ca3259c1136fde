//! Egress from inside the sandbox: real curl, Python (urllib), Bun (fetch), git and pip reach servers on
//! the host's loopback only through bunker's proxy, and only where the policy allows. Each case
//! checks what the program saw and what the run's report (`http`) recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
// The loopback test servers and TLS helpers of the proxy's own tests.
#[path = "../../proxy/tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use support::{Origin, Silent, TestPki, TlsOrigin};

/// Runs `bunker run --report json ARGS` and returns the output and the report.
fn run(mut cmd: Command, args: &[&str]) -> (Output, Value) {
    let out = cmd
        .arg("run")
        .args(["--report", "json", "--timeout", "60s"])
        .args(args)
        .output()
        .unwrap();
    let report = report(&out);
    (out, report)
}

/// The proxy's decisions; also checks that the report's totals agree with them.
fn records(report: &Value) -> Vec<Value> {
    let requests = report["http"]["requests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let count = |allowed: bool| {
        requests
            .iter()
            .filter(|r| r["allowed"].as_bool() == Some(allowed))
            .count() as u64
    };
    let sum = |key: &str| requests.iter().filter_map(|r| r[key].as_u64()).sum::<u64>();
    assert_eq!(report["http"]["allowed"].as_u64(), Some(count(true)));
    assert_eq!(report["http"]["denied"].as_u64(), Some(count(false)));
    assert_eq!(
        report["http"]["bytes_sent"].as_u64(),
        Some(sum("bytes_sent"))
    );
    assert_eq!(
        report["http"]["bytes_received"].as_u64(),
        Some(sum("bytes_received"))
    );
    requests
}

fn allowed(r: &Value) -> bool {
    r["allowed"].as_bool().unwrap_or(false)
}

const PY_GET: &str = "import sys, urllib.request, urllib.error\n\
try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=20)\n    print(r.status, r.read().decode())\n\
except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n";

const BUN_GET: &str =
    "const r = await fetch(process.argv[1]); console.log(r.status, await r.text())";

#[test]
fn allowed_http_with_curl_python_and_bun_as_root_and_rootless() {
    let origin = Origin::start();
    let p = origin.port;
    let url = format!("http://app.test:{p}/hello");
    let net = [
        "--allow-net",
        "app.test",
        "--allow-net",
        &format!("127.0.0.1:{p}"),
        "--resolve",
        "app.test:127.0.0.1",
    ];
    for (mode, bunker) in modes() {
        let mut args = net.to_vec();
        args.extend(["--", "curl", "-sS", &url]);
        let (out, r) = run(bunker(), &args);
        assert_eq!(
            stdout(&out),
            "hello from origin",
            "{mode} curl: {}",
            stderr(&out)
        );

        let mut args = net.to_vec();
        args.extend([
            "--profile",
            "runtime:python",
            "--",
            "python3",
            "-c",
            PY_GET,
            &url,
        ]);
        let (out, r2) = run(bunker(), &args);
        assert_eq!(
            stdout(&out).trim(),
            "200 hello from origin",
            "{mode} python: {}",
            stderr(&out)
        );

        let bun = bun();
        let mut args = net.to_vec();
        args.extend(["--profile", "runtime:bun", "--", &bun, "-e", BUN_GET, &url]);
        let (out, r3) = run(bunker(), &args);
        assert_eq!(
            stdout(&out).trim(),
            "200 hello from origin",
            "{mode} bun: {}",
            stderr(&out)
        );

        for report in [r, r2, r3] {
            let recs = records(&report);
            assert_eq!(recs.len(), 1, "{mode}: {report}");
            let rec = &recs[0];
            assert!(allowed(rec), "{mode}: {rec}");
            assert_eq!(rec["kind"], "http");
            assert_eq!(rec["host"], "app.test");
            assert_eq!(rec["address"], "127.0.0.1");
            assert_eq!(rec["rule"], "allow.net[0] (app.test)");
            assert!(rec["bytes_received"].as_u64().unwrap() >= 17, "{rec}");
        }
    }
    assert_eq!(origin.connections(), 6);
}

#[test]
fn https_through_connect_with_a_test_ca() {
    let pki_dir = shared_tempdir();
    let pki = TestPki::create();
    // The CA must be readable inside the sandbox (and by nobody): copy it to a shared dir.
    let ca = pki_dir.path().join("ca.pem");
    std::fs::copy(pki.ca(), &ca).unwrap();
    let tls = TlsOrigin::start(&pki);
    let url = format!("https://tls.test:{}/", tls.port);
    let ca_s = ca.to_str().unwrap();
    let dir_s = pki_dir.path().to_str().unwrap();
    let port_rule = format!("127.0.0.1:{}", tls.port);
    let base = [
        "--allow-net",
        "tls.test",
        "--allow-net",
        &port_rule,
        "--resolve",
        "tls.test:127.0.0.1",
        "--allow-read",
        dir_s,
    ];

    let mut args = base.to_vec();
    args.extend(["--", "curl", "-sS", "--cacert", ca_s, &url]);
    let (out, r) = run(bunker(), &args);
    assert_eq!(stdout(&out), "tls ok", "{}", stderr(&out));

    let py = "import ssl, sys, urllib.request\n\
              ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
              print(urllib.request.urlopen(sys.argv[1], context=ctx).read().decode())";
    let mut args = base.to_vec();
    args.extend([
        "--profile",
        "runtime:python",
        "--",
        "python3",
        "-c",
        py,
        &url,
        ca_s,
    ]);
    let (out, r2) = run(bunker(), &args);
    assert_eq!(stdout(&out).trim(), "tls ok", "{}", stderr(&out));

    for report in [r, r2] {
        let recs = records(&report);
        assert_eq!(recs.len(), 1, "{report}");
        assert_eq!(recs[0]["kind"], "connect");
        assert!(allowed(&recs[0]));
        assert!(
            recs[0]["bytes_sent"].as_u64().unwrap() > 200
                && recs[0]["bytes_received"].as_u64().unwrap() > 200,
            "{}",
            recs[0]
        );
    }
}

#[test]
fn socks5_from_inside() {
    let origin = Origin::start();
    let p = origin.port;
    let rule = format!("127.0.0.1:{p}");
    let url = format!("http://app.test:{p}/hello");
    let (out, r) = run(
        bunker(),
        &[
            "--allow-net",
            "app.test",
            "--allow-net",
            &rule,
            "--resolve",
            "app.test:127.0.0.1",
            "--",
            "curl",
            "-sS",
            "--socks5-hostname",
            "127.0.0.1:1080",
            &url,
        ],
    );
    assert_eq!(stdout(&out), "hello from origin", "{}", stderr(&out));
    let recs = records(&r);
    assert_eq!(
        (recs.len(), recs[0]["kind"].as_str()),
        (1, Some("socks5")),
        "{r}"
    );
    // A denied host over SOCKS5: "connection not allowed by ruleset".
    let (out, r) = run(
        bunker(),
        &[
            "--allow-net",
            "app.test",
            "--",
            "curl",
            "-sS",
            "--socks5-hostname",
            "127.0.0.1:1080",
            "http://evil.test/",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("(2)"), "{}", stderr(&out));
    assert!(!allowed(&records(&r)[0]));
}

#[test]
fn denied_host_gets_an_error_naming_the_rule() {
    let origin = Origin::start();
    let url = format!("http://other.test:{}/hello", origin.port);
    let net = [
        "--allow-net",
        "app.test",
        "--resolve",
        "other.test:127.0.0.1",
    ];
    let mut args = net.to_vec();
    args.extend(["--", "curl", "-sS", &url]);
    let (out, r) = run(bunker(), &args);
    let expected = format!(
        "bunker: denied GET other.test:{} by no allow.net rule matches other.test:{}",
        origin.port, origin.port
    );
    assert_eq!(stdout(&out).trim(), expected);
    let mut args = net.to_vec();
    args.extend([
        "--profile",
        "runtime:python",
        "--",
        "python3",
        "-c",
        PY_GET,
        &url,
    ]);
    let (out, _) = run(bunker(), &args);
    assert_eq!(stdout(&out).trim(), format!("403 {expected}"));
    let bun = bun();
    let mut args = net.to_vec();
    args.extend(["--profile", "runtime:bun", "--", &bun, "-e", BUN_GET, &url]);
    let (out, _) = run(bunker(), &args);
    assert_eq!(
        stdout(&out).trim(),
        format!("403 {expected}"),
        "{}",
        stderr(&out)
    );
    // HTTPS to a denied host: the CONNECT is refused.
    let mut args = net.to_vec();
    let https = format!("https://other.test:{}/", origin.port);
    args.extend(["--", "curl", "-sS", &https]);
    let (out, r2) = run(bunker(), &args);
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert_eq!(origin.connections(), 0);
    for report in [r, r2] {
        let rec = &records(&report)[0];
        assert!(!allowed(rec) && rec["address"].is_null(), "{rec}");
    }
}

#[test]
fn wildcard_edge_cases_inside() {
    let origin = Origin::start();
    let p = origin.port;
    let script = format!(
        "for h in a.example.test a.b.example.test example.test evilexample.test; do \
         printf '%s=' $h; curl -s -o /dev/null -w '%{{http_code}} ' http://$h:{p}/hello; done"
    );
    let wildcard = format!("*.example.test:{p}");
    let ip = format!("127.0.0.1:{p}");
    let pins: Vec<String> = [
        "a.example.test",
        "a.b.example.test",
        "example.test",
        "evilexample.test",
    ]
    .iter()
    .map(|h| format!("{h}:127.0.0.1"))
    .collect();
    let mut args = vec!["--allow-net", &wildcard, "--allow-net", &ip];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    args.extend(["--", "sh", "-c", &script]);
    let (out, r) = run(bunker(), &args);
    assert_eq!(
        stdout(&out).trim(),
        "a.example.test=200 a.b.example.test=200 example.test=403 evilexample.test=403"
    );
    assert_eq!(records(&r).iter().filter(|x| allowed(x)).count(), 2);
}

#[test]
fn names_resolving_to_loopback_are_denied() {
    let origin = Origin::start();
    let p = origin.port;
    // `localhost` resolves (hosts file) to loopback; `rebind.test` is pinned to it.
    let script = format!(
        "curl -s http://localhost:{p}/hello; echo; curl -s http://rebind.test:{p}/hello; echo; \
         curl -s -o /dev/null -w '%{{http_connect}}' https://rebind.test:{p}/"
    );
    let (out, r) = run(
        bunker(),
        &[
            "--allow-net",
            "localhost",
            "--allow-net",
            "rebind.test",
            "--resolve",
            "rebind.test:127.0.0.1",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "bunker: denied GET localhost:{p} by http.block_private_ips"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "bunker: denied GET rebind.test:{p} by http.block_private_ips (127.0.0.1 is loopback"
        )),
        "{text}"
    );
    assert!(text.ends_with("403"), "{text}");
    assert_eq!(origin.connections(), 0);
    let recs = records(&r);
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter().all(|x| !allowed(x)
            && x["rule"]
                .as_str()
                .unwrap()
                .starts_with("http.block_private_ips")),
        "{r}"
    );
}

#[test]
fn unusual_spellings_of_loopback_are_denied() {
    let origin = Origin::start();
    let p = origin.port;
    let spellings = [
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "0x7f.1",
        "127.0.0.1.",
    ];
    // Python passes each spelling to the proxy as written; every one is loopback, and loopback
    // is not allowed (only names are).
    let py = "import sys, urllib.request, urllib.error\n\
              for h in sys.argv[2:]:\n\
              \x20   try:\n\
              \x20       urllib.request.urlopen('http://%s:%s/hello' % (h, sys.argv[1]), timeout=20); print(h, 'REACHED')\n\
              \x20   except urllib.error.HTTPError as e:\n\
              \x20       print(h, e.code)\n";
    let port = p.to_string();
    let mut args = vec![
        "--allow-net",
        "*",
        "--profile",
        "runtime:python",
        "--",
        "python3",
        "-c",
        py,
        &port,
    ];
    args.extend(spellings);
    let (out, r) = run(bunker(), &args);
    let expected: Vec<String> = spellings.iter().map(|s| format!("{s} 403")).collect();
    assert_eq!(stdout(&out).trim(), expected.join("\n"), "{}", stderr(&out));
    // curl (which normalizes some spellings itself) too, through CONNECT.
    let script = format!("curl -s -g -p -o /dev/null -w '%{{http_connect}} ' http://[::ffff:127.0.0.1]:{p}/hello http://2130706433:{p}/hello");
    let (out2, r2) = run(bunker(), &["--allow-net", "*", "--", "sh", "-c", &script]);
    assert_eq!(stdout(&out2).trim(), "403 403", "{}", stderr(&out2));
    assert_eq!(origin.connections(), 0);
    for rec in records(&r).iter().chain(records(&r2).iter()) {
        assert!(!allowed(rec) && rec["host"] == "127.0.0.1", "{rec}");
    }
}

#[test]
fn redirect_from_an_allowed_host_to_a_private_address_is_denied() {
    let origin = Origin::start();
    let secret = Origin::start();
    let url = format!(
        "http://app.test:{}/redirect?http://internal.test:{}/hello",
        origin.port, secret.port
    );
    let rule = format!("127.0.0.1:{}", origin.port);
    let (out, r) = run(
        bunker(),
        &[
            "--allow-net",
            "*.test",
            "--allow-net",
            &rule,
            "--resolve",
            "app.test:127.0.0.1",
            "--resolve",
            "internal.test:127.0.0.1",
            "--",
            "curl",
            "-sS",
            "-L",
            &url,
        ],
    );
    assert!(
        stdout(&out).starts_with(&format!("bunker: denied GET internal.test:{}", secret.port)),
        "{}",
        stdout(&out)
    );
    assert_eq!(secret.connections(), 0, "the private server was reached");
    let recs = records(&r);
    assert_eq!(recs.iter().map(allowed).collect::<Vec<_>>(), [true, false]);
}

fn limits_policy(dir: &std::path::Path, allow: &str, http: &str) -> String {
    let json =
        format!(r#"{{"extends": ["default"], "allow": {{"net": ["{allow}"]}}, "http": {http}}}"#);
    write_file(dir, "policy.json", &json)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn max_requests_is_hit_and_reported() {
    let origin = Origin::start();
    let dir = shared_tempdir();
    let policy = limits_policy(
        dir.path(),
        &format!("127.0.0.1:{}", origin.port),
        r#"{"max_requests": 2}"#,
    );
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let script =
        format!("for i in 1 2 3; do curl -s -o /dev/null -w '%{{http_code}} ' {url}; done");
    let (out, r) = run(bunker(), &["--policy", &policy, "--", "sh", "-c", &script]);
    assert_eq!(stdout(&out).trim(), "200 200 429");
    let recs = records(&r);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2]["limit"], "max_requests");
    assert_eq!(origin.connections(), 2);
}

#[test]
fn max_response_bytes_cuts_a_100_mb_body() {
    let origin = Origin::start();
    let dir = shared_tempdir();
    let policy = limits_policy(
        dir.path(),
        &format!("127.0.0.1:{}", origin.port),
        r#"{"max_response_bytes": "1MB"}"#,
    );
    let url = format!("http://127.0.0.1:{}/bytes/100000000", origin.port);
    let (out, r) = run(
        bunker(),
        &[
            "--policy",
            &policy,
            "--",
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &url,
        ],
    );
    assert!(!out.status.success(), "the transfer must fail");
    let got: u64 = stdout(&out).trim().parse().unwrap();
    assert!(got <= 1_000_000, "{got}");
    let rec = &records(&r)[0];
    assert_eq!(rec["limit"], "max_response_bytes", "{rec}");
    assert!(rec["bytes_received"].as_u64().unwrap() <= 1_000_000);
}

#[test]
fn request_timeout_against_a_server_that_never_answers() {
    let silent = Silent::start();
    let dir = shared_tempdir();
    let policy = limits_policy(
        dir.path(),
        &format!("127.0.0.1:{}", silent.port),
        r#"{"request_timeout": "500ms"}"#,
    );
    let url = format!("http://127.0.0.1:{}/", silent.port);
    let (out, r) = run(
        bunker(),
        &[
            "--policy",
            &policy,
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
    );
    assert_eq!(stdout(&out), "504");
    let rec = &records(&r)[0];
    assert_eq!(rec["limit"], "request_timeout", "{rec}");
}

#[test]
fn a_direct_connection_to_host_loopback_fails() {
    let origin = Origin::start();
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let rule = format!("127.0.0.1:{}", origin.port);
    // Even with the address allowed, going around the proxy reaches nothing: the sandbox's
    // loopback is its own.
    let (out, _) = run(
        bunker(),
        &[
            "--allow-net",
            &rule,
            "--",
            "curl",
            "-sS",
            "--noproxy",
            "*",
            &url,
        ],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let py = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {}), timeout=5); print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)",
        origin.port
    );
    let (out, _) = run(
        bunker(),
        &[
            "--allow-net",
            &rule,
            "--profile",
            "runtime:python",
            "--",
            "python3",
            "-c",
            &py,
        ],
    );
    assert!(stdout(&out).starts_with("refused"), "{}", stdout(&out));
    assert_eq!(origin.connections(), 0);
}

/// A static HTTPS file server (python's http.server over TLS) for `dir`, on 127.0.0.1.
struct TlsFiles {
    port: u16,
    child: std::process::Child,
}

impl TlsFiles {
    fn start(pki: &TestPki, dir: &std::path::Path) -> TlsFiles {
        use std::io::BufRead;
        const SERVER: &str = r#"
import functools, http.server, ssl, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[3])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
        let d = pki.dir.path();
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"))
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TlsFiles {
            port: line.trim().parse().unwrap(),
            child,
        }
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sh(dir: &std::path::Path, script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", stderr(&out));
}

/// git (libcurl) and pip pick the proxy up from the environment bunker sets, with no option of
/// their own: a clone and a package download over HTTPS (through CONNECT, with a test CA) from
/// servers on the host's loopback.
#[test]
fn git_and_pip_over_https_use_the_proxy_unchanged() {
    let pki = TestPki::create();
    let files = shared_tempdir();
    let root = files.path();
    // A repository served by the "dumb" HTTP protocol: plain files.
    sh(
        root,
        "git init -q --bare repo.git && git init -q work && cd work \
         && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m 'hello over https' \
         && git push -q ../repo.git HEAD:refs/heads/main && cd .. \
         && git --git-dir repo.git symbolic-ref HEAD refs/heads/main \
         && git --git-dir repo.git update-server-info",
    );
    // A one-package simple index with a minimal wheel.
    std::fs::create_dir_all(root.join("simple/tinypkg")).unwrap();
    let wheel = "tinypkg-1.0-py3-none-any.whl";
    let make_wheel = format!(
        "import zipfile\n\
         with zipfile.ZipFile('simple/tinypkg/{wheel}', 'w') as z:\n\
         \x20   z.writestr('tinypkg/__init__.py', 'X = 1\\n')\n\
         \x20   z.writestr('tinypkg-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: tinypkg\\nVersion: 1.0\\n')\n\
         \x20   z.writestr('tinypkg-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         \x20   z.writestr('tinypkg-1.0.dist-info/RECORD', '')\n"
    );
    let out = Command::new("python3")
        .args(["-c", &make_wheel])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(
        root.join("simple/tinypkg/index.html"),
        format!("<html><body><a href=\"{wheel}\">{wheel}</a></body></html>\n"),
    )
    .unwrap();
    sh(root, "chmod -R a+rX .");
    let ca_dir = shared_tempdir();
    let ca = ca_dir.path().join("ca.pem");
    std::fs::copy(pki.ca(), &ca).unwrap();
    let server = TlsFiles::start(&pki, root);
    let port_rule = format!("127.0.0.1:{}", server.port);
    let base = format!("https://tls.test:{}", server.port);
    let (ca_s, ca_dir_s) = (ca.to_str().unwrap(), ca_dir.path().to_str().unwrap());
    let common_args = [
        "--allow-net",
        "tls.test",
        "--allow-net",
        &port_rule,
        "--resolve",
        "tls.test:127.0.0.1",
        "--allow-read",
        ca_dir_s,
    ];

    let git_script = format!(
        "git -c http.sslCAInfo={ca_s} clone -q {base}/repo.git /tmp/clone && git -C /tmp/clone log --format=%s"
    );
    let mut args = common_args.to_vec();
    args.extend(["--", "sh", "-c", &git_script]);
    let (out, report) = run(bunker(), &args);
    assert_eq!(stdout(&out).trim(), "hello over https", "{}", stderr(&out));
    let recs = records(&report);
    assert!(!recs.is_empty() && recs.iter().all(|r| r["kind"] == "connect" && allowed(r)));

    let index = format!("{base}/simple");
    let mut args = common_args.to_vec();
    args.extend([
        "--",
        "/usr/bin/python3",
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--retries",
        "0",
        "--cert",
        ca_s,
        "--index-url",
        &index,
        "-d",
        "/tmp/dl",
        "tinypkg",
    ]);
    let (out, report) = run(bunker(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = records(&report);
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "connect" && r["host"] == "tls.test" && allowed(r)),
        "{report}"
    );
    // The same download without the rule for the name is refused by the proxy.
    let mut denied = args.clone();
    denied.drain(0..2);
    let (out, report) = run(bunker(), &denied);
    assert!(!out.status.success());
    let recs = records(&report);
    assert!(
        !recs.is_empty() && recs.iter().all(|r| !allowed(r)),
        "{report}"
    );
}

/// The supervisor's resident memory, from /proc/<pid>/status: (VmRSS, VmHWM) in KiB.
fn supervisor_memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 120 connections each send 390 KiB of an unfinished request head, then hold still. hyper
/// buffered up to 408 KiB of each: the supervisor reached 51 MiB. Now a head is bounded
/// (MAX_HEAD_BYTES, refused with 431), so the supervisor's peak stays near its idle size.
#[test]
fn unfinished_huge_request_heads_do_not_grow_the_supervisor() {
    // Sends, waits for the proxy to take it in, says so (the test reads the supervisor's memory
    // then), and collects the answers within 3 s.
    let script = "import select, socket, time\n\
        conns, codes = [], {}\n\
        pad = b'a' * (390 << 10)\n\
        for i in range(120):\n\
        \x20   s = socket.create_connection(('127.0.0.1', 3128))\n\
        \x20   s.settimeout(5)\n\
        \x20   try:\n\
        \x20       s.sendall(b'GET http://app.test/ HTTP/1.1\\r\\nHost: app.test\\r\\nX-Pad: ' + pad)\n\
        \x20   except OSError:\n\
        \x20       pass\n\
        \x20   conns.append(s)\n\
        time.sleep(1)\n\
        print('sent', flush=True)\n\
        deadline = time.time() + 3\n\
        waiting = list(conns)\n\
        while waiting and time.time() < deadline:\n\
        \x20   ready, _, _ = select.select(waiting, [], [], 0.1)\n\
        \x20   for s in ready:\n\
        \x20       try:\n\
        \x20           head = s.recv(64).split(b' ')\n\
        \x20           code = head[1].decode() if len(head) > 1 else 'closed'\n\
        \x20       except OSError as e:\n\
        \x20           code = type(e).__name__\n\
        \x20       codes[code] = codes.get(code, 0) + 1\n\
        \x20       waiting.remove(s)\n\
        codes['no answer'] = len(waiting)\n\
        print('answers', sorted(codes.items()), flush=True)\n\
        time.sleep(30)\n";
    for (mode, bunker) in modes() {
        let mut child = bunker()
            .args(["run", "--timeout", "60s", "--allow-net", "app.test", "--"])
            .args(["python3", "-c", script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let sent = lines.next().unwrap().unwrap();
        // Read while every connection is still open.
        let (rss, hwm) = supervisor_memory_kib(pid);
        let line = lines.next().unwrap().unwrap();
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        eprintln!("{mode}: supervisor VmRSS {rss} KiB, VmHWM {hwm} KiB; {line}");
        assert_eq!(sent, "sent", "{mode}: {}", stderr(&out));
        assert!(
            hwm < 24 << 10,
            "{mode}: supervisor peak {hwm} KiB (now {rss} KiB): {line}"
        );
        assert!(
            line.contains("'431'"),
            "{mode}: the heads were refused: {line}"
        );
    }
}
