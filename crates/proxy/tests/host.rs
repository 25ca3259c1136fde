//! The proxy on host loopback, driven by real clients (curl, python3, bun) and raw bytes,
//! against test servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use bunker_policy::HttpLimits;
use support::*;

fn no_limits() -> HttpLimits {
    HttpLimits::default()
}

#[test]
fn http_allowed_by_ip_and_port() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], no_limits()),
        &[],
    );
    let out = curl(&[
        "-x",
        &proxy.url(),
        &format!("http://127.0.0.1:{}/hello", origin.port),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from origin");
    let records = proxy.finish();
    let r = record_for(&records, "127.0.0.1", origin.port);
    assert!(r.allowed, "{r:?}");
    assert_eq!(
        (r.kind.as_str(), r.address.as_deref()),
        ("http", Some("127.0.0.1"))
    );
    assert_eq!(r.rule, format!("allow.net[0] (127.0.0.1:{})", origin.port));
    assert!(r.bytes_sent > 0 && r.bytes_received >= 17, "{r:?}");
}

#[test]
fn http_allowed_by_pinned_name_with_curl_python_and_bun() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(
            &["app.test", &format!("127.0.0.1:{}", origin.port)],
            &[],
            no_limits(),
        ),
        &[("app.test", "127.0.0.1")],
    );
    let url = format!("http://app.test:{}/hello", origin.port);
    let out = curl(&["-x", &proxy.url(), &url]);
    assert_eq!(
        text(&out.stdout),
        "hello from origin",
        "{}",
        text(&out.stderr)
    );

    let py = Command::new("python3")
        .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())", &url])
        .env("http_proxy", proxy.url())
        .output()
        .unwrap();
    assert_eq!(
        text(&py.stdout).trim(),
        "hello from origin",
        "{}",
        text(&py.stderr)
    );

    if have("bun") {
        let bun = Command::new("bun")
            .args([
                "-e",
                "const r = await fetch(process.argv[1]); console.log(await r.text())",
                &url,
            ])
            .env("HTTP_PROXY", proxy.url())
            .output()
            .unwrap();
        assert_eq!(
            text(&bun.stdout).trim(),
            "hello from origin",
            "{}",
            text(&bun.stderr)
        );
    }
    let records = proxy.finish();
    let expected = if have("bun") { 3 } else { 2 };
    assert_eq!(records.len(), expected, "{records:#?}");
    for r in &records {
        assert!(
            r.allowed && r.host == "app.test" && r.rule == "allow.net[0] (app.test)",
            "{r:?}"
        );
        assert_eq!(r.address.as_deref(), Some("127.0.0.1"));
    }
}

#[test]
fn https_through_connect_to_a_tls_server_with_a_test_ca() {
    if !have("openssl") {
        panic!("openssl CLI is required to make the test CA");
    }
    let pki = TestPki::create();
    let tls = TlsOrigin::start(&pki);
    let mut proxy = Proxy::start(
        policy(
            &["tls.test", &format!("127.0.0.1:{}", tls.port)],
            &[],
            no_limits(),
        ),
        &[("tls.test", "127.0.0.1")],
    );
    let ca = pki.ca();
    let url = format!("https://tls.test:{}/", tls.port);
    let out = curl(&["-x", &proxy.url(), "--cacert", ca.to_str().unwrap(), &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tls ok");

    let py = Command::new("python3")
        .args([
            "-c",
            "import sys, ssl, urllib.request; ctx = ssl.create_default_context(cafile=sys.argv[2]); \
             print(urllib.request.urlopen(sys.argv[1], context=ctx).read().decode())",
            &url,
            ca.to_str().unwrap(),
        ])
        .env("https_proxy", proxy.url())
        .output()
        .unwrap();
    assert_eq!(text(&py.stdout).trim(), "tls ok", "{}", text(&py.stderr));

    let records = proxy.finish();
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!((r.kind.as_str(), r.allowed), ("connect", true), "{r:?}");
        // A TLS handshake and a response went through the tunnel in both directions.
        assert!(r.bytes_sent > 200 && r.bytes_received > 200, "{r:?}");
    }
}

#[test]
fn socks5_with_remote_and_local_resolution() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(
            &["app.test", &format!("127.0.0.1:{}", origin.port)],
            &[],
            no_limits(),
        ),
        &[("app.test", "127.0.0.1")],
    );
    let socks = proxy.socks.to_string();
    let out = curl(&[
        "--socks5-hostname",
        &socks,
        &format!("http://app.test:{}/hello", origin.port),
    ]);
    assert_eq!(
        text(&out.stdout),
        "hello from origin",
        "{}",
        text(&out.stderr)
    );
    let out = curl(&[
        "--socks5",
        &socks,
        &format!("http://127.0.0.1:{}/hello", origin.port),
    ]);
    assert_eq!(
        text(&out.stdout),
        "hello from origin",
        "{}",
        text(&out.stderr)
    );
    let records = proxy.finish();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(
        records
            .iter()
            .all(|r| r.kind == "socks5" && r.allowed && r.bytes_received > 17),
        "{records:#?}"
    );
    assert_eq!(records[0].host, "app.test");
    assert_eq!(records[1].host, "127.0.0.1");
}

#[test]
fn socks5_refuses_bind_udp_associate_and_denied_hosts() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], no_limits()),
        &[],
    );
    let port = origin.port.to_be_bytes();
    // UDP ASSOCIATE and BIND: "command not supported".
    for cmd in [3u8, 2] {
        let (code, _) =
            socks5_request(proxy.socks, &[5, cmd, 0, 1, 127, 0, 0, 1, port[0], port[1]]);
        assert_eq!(code, 0x07, "command {cmd}");
    }
    // A host no rule allows: "connection not allowed by ruleset".
    let mut denied = vec![5, 1, 0, 3, 8];
    denied.extend_from_slice(b"evil.com");
    denied.extend_from_slice(&443u16.to_be_bytes());
    let (code, _) = socks5_request(proxy.socks, &denied);
    assert_eq!(code, 0x02);
    // A decimal spelling of loopback in the domain field is loopback, and the allowed port works.
    let mut spelled = vec![5, 1, 0, 3, 10];
    spelled.extend_from_slice(b"2130706433");
    spelled.extend_from_slice(&port);
    let (code, mut stream) = socks5_request(proxy.socks, &spelled);
    assert_eq!(code, 0x00);
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.ends_with("hello from origin"), "{body}");
    let records = proxy.finish();
    assert_eq!(records.len(), 4, "{records:#?}");
    assert!(records[0].rule.contains("UDP ASSOCIATE") && !records[0].allowed);
    assert!(records[1].rule.contains("BIND") && !records[1].allowed);
    assert_eq!(
        (records[2].host.as_str(), records[2].allowed),
        ("evil.com", false)
    );
    assert_eq!(
        (records[3].host.as_str(), records[3].allowed),
        ("127.0.0.1", true)
    );
}

#[test]
fn denied_host_gets_403_naming_the_rule() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&["app.test"], &["blocked.app.test"], no_limits()),
        &[
            ("other.test", "127.0.0.1"),
            ("blocked.app.test", "127.0.0.1"),
        ],
    );
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-i",
        &format!("http://other.test:{}/hello", origin.port),
    ]);
    let body = text(&out.stdout);
    assert!(body.starts_with("HTTP/1.1 403"), "{body}");
    assert!(
        body.contains(&format!("bunker: denied GET other.test:{} by", origin.port)),
        "{body}"
    );
    assert!(body.contains("allow.net"), "{body}");
    // CONNECT is refused the same way.
    let out = curl(&[
        "-x",
        &proxy.url(),
        &format!("https://other.test:{}/", origin.port),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    let resp = raw(
        proxy.http,
        format!(
            "CONNECT blocked.app.test:{0} HTTP/1.1\r\nHost: blocked.app.test:{0}\r\n\r\n",
            origin.port
        )
        .as_bytes(),
    );
    assert_eq!(status(&resp), 403);
    assert!(
        text(&resp).contains("by deny.net[0] (blocked.app.test)"),
        "{}",
        text(&resp)
    );
    assert_eq!(origin.connections(), 0, "nothing may reach the origin");
    let records = proxy.finish();
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| !r.allowed && r.address.is_none()),
        "{records:#?}"
    );
    assert_eq!(records[1].kind, "connect");
}

#[test]
fn wildcard_edge_cases() {
    let origin = Origin::start();
    let names = [
        "a.example.test",
        "a.b.example.test",
        "example.test",
        "evilexample.test",
        "a.example.test.evil.test",
    ];
    let pins: Vec<(&str, &str)> = names.iter().map(|n| (*n, "127.0.0.1")).collect();
    let mut proxy = Proxy::start(
        policy(
            &[
                &format!("*.example.test:{}", origin.port),
                &format!("127.0.0.1:{}", origin.port),
            ],
            &[],
            no_limits(),
        ),
        &pins,
    );
    let get = |host: &str| {
        let resp = raw(
            proxy.http,
            format!(
                "GET http://{host}:{0}/hello HTTP/1.1\r\nHost: {host}:{0}\r\n\r\n",
                origin.port
            )
            .as_bytes(),
        );
        status(&resp)
    };
    assert_eq!(get("a.example.test"), 200);
    assert_eq!(get("a.b.example.test"), 200);
    assert_eq!(
        get("A.Example.TEST."),
        200,
        "case and the trailing dot do not matter"
    );
    assert_eq!(
        get("example.test"),
        403,
        "the wildcard needs one more label"
    );
    assert_eq!(
        get("evilexample.test"),
        403,
        "a suffix match is not a label match"
    );
    assert_eq!(get("a.example.test.evil.test"), 403);
    // The wildcard has a port: another port is not allowed.
    let resp = raw(proxy.http, b"CONNECT a.example.test:1 HTTP/1.1\r\n\r\n");
    assert_eq!(status(&resp), 403);
    let records = proxy.finish();
    assert_eq!(
        records.iter().filter(|r| r.allowed).count(),
        3,
        "{records:#?}"
    );
}

#[test]
fn localhost_allowed_by_name_is_denied_by_address() {
    let origin = Origin::start();
    // /etc/hosts resolves localhost to 127.0.0.1 (and maybe ::1); the name rule alone is not enough.
    let mut proxy = Proxy::start(policy(&["localhost"], &[], no_limits()), &[]);
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-i",
        &format!("http://localhost:{}/hello", origin.port),
    ]);
    let body = text(&out.stdout);
    assert!(body.starts_with("HTTP/1.1 403"), "{body}");
    assert!(
        body.contains("http.block_private_ips") && body.contains("loopback"),
        "{body}"
    );
    assert_eq!(origin.connections(), 0);
    let records = proxy.finish();
    assert!(
        !records[0].allowed && records[0].rule.starts_with("http.block_private_ips"),
        "{records:#?}"
    );
}

#[test]
fn pinned_name_resolving_to_loopback_is_denied() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&["rebind.test"], &[], no_limits()),
        &[("rebind.test", "127.0.0.1")],
    );
    for args in [
        vec![
            "-x".to_string(),
            proxy.url(),
            format!("http://rebind.test:{}/hello", origin.port),
        ],
        vec![
            "-x".to_string(),
            proxy.url(),
            format!("https://rebind.test:{}/", origin.port),
        ],
        vec![
            "--socks5-hostname".to_string(),
            proxy.socks.to_string(),
            format!("http://rebind.test:{}/hello", origin.port),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&args);
        assert!(
            !out.status.success() || text(&out.stdout).contains("bunker: denied"),
            "{args:?}"
        );
    }
    assert_eq!(origin.connections(), 0);
    let records = proxy.finish();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(!r.allowed, "{r:?}");
        assert_eq!(r.address.as_deref(), Some("127.0.0.1"));
        assert!(r.rule.contains("127.0.0.1 is loopback"), "{r:?}");
    }
    // A private address also defeats a pin that mixes it with a public-looking one.
    let mut proxy = Proxy::start(
        policy(&["mixed.test"], &[], no_limits()),
        &[("mixed.test", "192.0.2.10"), ("mixed.test", "10.0.0.1")],
    );
    let resp = raw(
        proxy.http,
        b"GET http://mixed.test/ HTTP/1.1\r\nHost: mixed.test\r\n\r\n",
    );
    assert_eq!(status(&resp), 403);
    let records = proxy.finish();
    assert!(
        records[0].rule.contains("192.0.2.10 is documentation"),
        "{records:?}"
    );
}

#[test]
fn unusual_spellings_of_loopback_are_loopback() {
    let origin = Origin::start();
    let p = origin.port;
    let spellings = [
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "0x7f.1",
        "127.1",
        "127.0.0.1.",
    ];
    // Names are allowed (any), addresses are not: every spelling is recognised as an address.
    let mut proxy = Proxy::start(policy(&["*"], &[], no_limits()), &[]);
    for s in spellings {
        let resp = raw(
            proxy.http,
            format!("GET http://{s}:{p}/hello HTTP/1.1\r\nHost: {s}:{p}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&resp), 403, "GET {s}: {}", text(&resp));
        let resp = raw(
            proxy.http,
            format!("CONNECT {s}:{p} HTTP/1.1\r\nHost: {s}:{p}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&resp), 403, "CONNECT {s}: {}", text(&resp));
    }
    // python's urllib passes the spelling through unchanged.
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request\ntry:\n urllib.request.urlopen(sys.argv[1])\nexcept Exception as e:\n print(e.code, e.read().decode())",
            &format!("http://2130706433:{p}/hello"),
        ])
        .env("http_proxy", proxy.url())
        .output()
        .unwrap();
    assert!(
        text(&py.stdout).starts_with("403 bunker: denied GET 127.0.0.1"),
        "{}{}",
        text(&py.stdout),
        text(&py.stderr)
    );
    // curl normalizes some spellings itself; the result must be the same.
    for s in ["[::ffff:127.0.0.1]", "2130706433", "0x7f000001"] {
        let out = curl(&[
            "-x",
            &proxy.url(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-g",
            &format!("http://{s}:{p}/hello"),
        ]);
        assert_eq!(text(&out.stdout), "403", "curl {s}");
    }
    assert_eq!(origin.connections(), 0);
    let records = proxy.finish();
    assert!(
        records.iter().all(|r| !r.allowed && r.host == "127.0.0.1"),
        "{records:#?}"
    );

    // With the address allowed by IP and port, every spelling reaches the same server.
    let mut proxy = Proxy::start(policy(&[&format!("127.0.0.1:{p}")], &[], no_limits()), &[]);
    for s in spellings {
        let resp = raw(
            proxy.http,
            format!("GET http://{s}:{p}/hello HTTP/1.1\r\nHost: {s}:{p}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&resp), 200, "GET {s}: {}", text(&resp));
    }
    // deny.net by CIDR beats the allow rule for every spelling.
    let mut denying = Proxy::start(
        policy(&[&format!("127.0.0.1:{p}")], &["127.0.0.0/8"], no_limits()),
        &[],
    );
    for s in spellings {
        let resp = raw(
            denying.http,
            format!("CONNECT {s}:{p} HTTP/1.1\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&resp), 403, "CONNECT {s}");
        assert!(
            text(&resp).contains("deny.net[0] (127.0.0.0/8)"),
            "{}",
            text(&resp)
        );
    }
    proxy.finish();
    denying.finish();
}

#[test]
fn redirect_from_allowed_host_to_private_address_is_denied() {
    let origin = Origin::start();
    let secret = Origin::start();
    let mut proxy = Proxy::start(
        policy(
            &["*.test", &format!("127.0.0.1:{}", origin.port)],
            &[],
            no_limits(),
        ),
        &[("app.test", "127.0.0.1"), ("internal.test", "127.0.0.1")],
    );
    let url = format!(
        "http://app.test:{}/redirect?http://internal.test:{}/hello",
        origin.port, secret.port
    );
    let out = curl(&["-x", &proxy.url(), "-L", "-i", &url]);
    let body = text(&out.stdout);
    assert!(body.starts_with("HTTP/1.1 302"), "{body}");
    assert!(body.contains("HTTP/1.1 403"), "{body}");
    assert!(
        body.contains(&format!("bunker: denied GET internal.test:{}", secret.port)),
        "{body}"
    );
    // Straight to the address does not work either.
    let url = format!(
        "http://app.test:{}/redirect?http://127.0.0.1:{}/hello",
        origin.port, secret.port
    );
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-L",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(text(&out.stdout), "403");
    assert_eq!(secret.connections(), 0, "the private server was reached");
    let records = proxy.finish();
    assert_eq!(
        records.iter().map(|r| r.allowed).collect::<Vec<_>>(),
        [true, false, true, false]
    );
}

#[test]
fn max_requests_is_enforced_and_reported() {
    let origin = Origin::start();
    let limits = HttpLimits {
        max_requests: Some(2),
        ..no_limits()
    };
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], limits),
        &[],
    );
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let codes: Vec<String> = (0..3)
        .map(|_| {
            text(
                &curl(&[
                    "-x",
                    &proxy.url(),
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ])
                .stdout,
            )
        })
        .collect();
    assert_eq!(codes, ["200", "200", "429"]);
    // A CONNECT counts too, and is refused the same way.
    let resp = raw(
        proxy.http,
        format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", origin.port).as_bytes(),
    );
    assert_eq!(status(&resp), 429);
    assert!(text(&resp).contains("http.max_requests"), "{}", text(&resp));
    assert_eq!(origin.connections(), 2);
    let records = proxy.finish();
    assert_eq!(records.len(), 4);
    assert_eq!(records[2].limit.as_deref(), Some("max_requests"));
    assert_eq!(records[3].limit.as_deref(), Some("max_requests"));
    assert!(!records[3].allowed && records[3].kind == "connect");
}

#[test]
fn max_response_bytes_cuts_a_100_mb_body() {
    let origin = Origin::start();
    let limits = HttpLimits {
        max_response_bytes: Some(1 << 20),
        ..no_limits()
    };
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], limits),
        &[],
    );
    let url = format!("http://127.0.0.1:{}/bytes/100000000", origin.port);
    let started = Instant::now();
    // Forwarded.
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ]);
    assert!(!out.status.success(), "the transfer must fail");
    let got: u64 = text(&out.stdout).parse().unwrap();
    assert!(got <= 1 << 20, "{got} bytes passed");
    // Tunnelled (curl -p: CONNECT, then HTTP inside).
    let out = curl(&[
        "-p",
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ]);
    assert!(
        !out.status.success(),
        "tunnel: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let got: u64 = text(&out.stdout).parse().unwrap();
    // Exactly the allowed bytes pass (the response head counts too), then the cut.
    assert!(
        got <= 1 << 20 && got > (1 << 20) - 1000,
        "{got} bytes passed"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let records = proxy.finish();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.limit.as_deref(), Some("max_response_bytes"), "{r:?}");
        assert_eq!(r.bytes_received, 1 << 20, "{r:?}");
    }
}

#[test]
fn request_timeout_against_a_silent_server() {
    let silent = Silent::start();
    let limits = HttpLimits {
        request_timeout: Some(Duration::from_millis(500)),
        ..no_limits()
    };
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", silent.port)], &[], limits),
        &[],
    );
    let url = format!("http://127.0.0.1:{}/", silent.port);
    let started = Instant::now();
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(text(&out.stdout), "504");
    let out = curl(&["-p", "-x", &proxy.url(), &url]);
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let records = proxy.finish();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r.allowed);
        assert_eq!(r.limit.as_deref(), Some("request_timeout"), "{r:?}");
        assert!(r.duration_ms >= 450.0 && r.duration_ms < 10_000.0, "{r:?}");
    }
}

#[test]
fn max_request_bytes_and_max_total_bytes() {
    let origin = Origin::start();
    let limits = HttpLimits {
        max_request_bytes: Some(64 << 10),
        max_total_bytes: Some(3 << 20),
        ..no_limits()
    };
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], limits),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'y'; 200 << 10]).unwrap();
    let up = format!("http://127.0.0.1:{}/upload", origin.port);
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        &format!("@{}", big.display()),
        &up,
    ]);
    assert_eq!(text(&out.stdout), "413");
    let out = curl(&["-x", &proxy.url(), "--data-binary", "small", &up]);
    assert_eq!(text(&out.stdout), "got 5 bytes");
    // 2 MB twice: the second crosses the run's 3 MB total and is cut; then nothing more passes.
    let url = format!("http://127.0.0.1:{}/bytes/2000000", origin.port);
    assert!(curl(&["-x", &proxy.url(), "-o", "/dev/null", &url])
        .status
        .success());
    assert!(!curl(&["-x", &proxy.url(), "-o", "/dev/null", &url])
        .status
        .success());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(text(&out.stdout), "429");
    let records = proxy.finish();
    let limits: Vec<Option<&str>> = records.iter().map(|r| r.limit.as_deref()).collect();
    assert_eq!(
        limits,
        [
            Some("max_request_bytes"),
            None,
            None,
            Some("max_total_bytes"),
            Some("max_total_bytes")
        ]
    );
}

#[test]
fn host_header_must_match_and_hop_by_hop_headers_are_stripped() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], no_limits()),
        &[],
    );
    let p = origin.port;
    let resp = raw(
        proxy.http,
        format!("GET http://127.0.0.1:{p}/hello HTTP/1.1\r\nHost: evil.example:{p}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&resp), 400, "{}", text(&resp));
    assert!(text(&resp).contains("does not match"), "{}", text(&resp));
    let resp = raw(proxy.http, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&resp), 400);
    let resp = raw(
        proxy.http,
        format!(
            "GET http://127.0.0.1:{p}/headers HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
             Connection: X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\n\r\n"
        )
        .as_bytes(),
    );
    let echoed = text(&resp).to_ascii_lowercase();
    assert!(echoed.contains("x-kept: 2"), "{echoed}");
    assert!(
        !echoed.contains("proxy-authorization") && !echoed.contains("x-hop"),
        "{echoed}"
    );
    assert!(echoed.contains("get /headers http/1.1"), "{echoed}");
    assert_eq!(origin.connections(), 1);
    proxy.finish();
}

#[test]
fn finish_closes_open_tunnels_and_keeps_their_records() {
    let silent = Silent::start();
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", silent.port)], &[], no_limits()),
        &[],
    );
    let mut stream = std::net::TcpStream::connect(proxy.http).unwrap();
    stream
        .write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", silent.port).as_bytes())
        .unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    assert!(text(&buf[..n]).starts_with("HTTP/1.1 200"));
    stream.write_all(b"some bytes").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let records = proxy.finish();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].bytes_sent, 10);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        stream.read(&mut buf).unwrap_or(0),
        0,
        "the tunnel is closed"
    );
}

#[test]
fn connections_beyond_the_cap_are_closed() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], no_limits()),
        &[],
    );
    let held: Vec<std::net::TcpStream> = (0..bunker_proxy::MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(proxy.http).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // One more, on either listener, is closed without an answer.
    let mut extra = std::net::TcpStream::connect(proxy.socks).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = extra.write_all(&[5, 1, 0]);
    let mut buf = [0u8; 2];
    assert!(
        matches!(extra.read(&mut buf), Ok(0) | Err(_)),
        "the extra connection was served"
    );
    // On the HTTP listener it is told why first (nothing sent, so no reset loses the answer).
    let mut extra = std::net::TcpStream::connect(proxy.http).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("128 connections"),
        "{answer:?}"
    );
    // Once the program lets go, the proxy serves again.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let out = curl(&["-x", &proxy.url(), &url]);
    assert_eq!(
        text(&out.stdout),
        "hello from origin",
        "{}",
        text(&out.stderr)
    );
    proxy.finish();
}

/// A request head longer than MAX_HEAD_BYTES is refused with 431 once that much has arrived,
/// not buffered further; one within it goes through.
#[test]
fn a_request_head_past_the_bound_is_refused_with_431() {
    let origin = Origin::start();
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], no_limits()),
        &[],
    );
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let ask = |pad: usize| {
        let mut s = std::net::TcpStream::connect(proxy.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            origin.port,
            "a".repeat(pad)
        );
        // The proxy may answer and close before it has read everything.
        let _ = s.write_all(head.as_bytes());
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let small = ask(bunker_proxy::MAX_HEAD_BYTES / 2);
    assert!(small.starts_with("HTTP/1.1 200 "), "{small:?}");
    let huge = ask(bunker_proxy::MAX_HEAD_BYTES * 6);
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge:?}");
    proxy.finish();
}

/// A server whose response head is longer than MAX_HEAD_BYTES gets no more of the proxy's
/// memory than a program's would: the program gets a 502.
#[test]
fn a_response_head_past_the_bound_is_a_502() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in server.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let pad = if buf.starts_with(b"GET /huge") {
                bunker_proxy::MAX_HEAD_BYTES * 4
            } else {
                16
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Pad: {}\r\nContent-Length: 2\r\n\r\nok",
                "a".repeat(pad)
            );
            let _ = stream.write_all(head.as_bytes());
        }
    });
    let mut proxy = Proxy::start(
        policy(&[&format!("127.0.0.1:{port}")], &[], no_limits()),
        &[],
    );
    let code = |path: &str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        text(
            &curl(&[
                "-x",
                &proxy.url(),
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ])
            .stdout,
        )
    };
    assert_eq!(code("/small"), "200");
    assert_eq!(code("/huge"), "502");
    proxy.finish();
}

#[test]
fn decisions_past_the_record_cap_are_refused_and_counted() {
    let origin = Origin::start();
    let mut proxy = Proxy::start_with_record_cap(
        policy(&[&format!("127.0.0.1:{}", origin.port)], &[], no_limits()),
        &[],
        3,
    );
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let codes: Vec<String> = (0..5)
        .map(|_| {
            text(
                &curl(&[
                    "-x",
                    &proxy.url(),
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ])
                .stdout,
            )
        })
        .collect();
    assert_eq!(codes, ["200", "200", "200", "429", "429"]);
    assert_eq!(origin.connections(), 3);
    let records = proxy.finish();
    assert_eq!(records.len(), 4, "{records:#?}");
    let last = &records[3];
    assert_eq!(last.limit.as_deref(), Some("max_decisions"));
    assert!(last.rule.contains("2 more requests refused"), "{last:?}");
}

#[test]
fn the_record_names_the_address_actually_connected_to() {
    let origin = Origin::start();
    // 127.0.0.2 is loopback too, but nothing listens there: the proxy falls back to the next
    // checked address, and never to one it did not check.
    let mut proxy = Proxy::start(
        policy(
            &["two.test", &format!("127.0.0.0/8:{}", origin.port)],
            &[],
            no_limits(),
        ),
        &[("two.test", "127.0.0.2"), ("two.test", "127.0.0.1")],
    );
    let out = curl(&[
        "-x",
        &proxy.url(),
        &format!("http://two.test:{}/hello", origin.port),
    ]);
    assert_eq!(
        text(&out.stdout),
        "hello from origin",
        "{}",
        text(&out.stderr)
    );
    let records = proxy.finish();
    assert_eq!(
        records[0].address.as_deref(),
        Some("127.0.0.1"),
        "{records:?}"
    );
}
