//! Several proxies on one multi-thread runtime, as the daemon serves every sandbox's proxy:
//! they serve at once, each keeps its own records, and finishing one stops it alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bunker_policy::HttpLimits;
use bunker_proxy::{ProxyConfig, ProxyHandle, RequestRecord};
use support::{policy, socks5_request, Origin};

const BODY: usize = 4_000_000;

struct Listeners {
    http: SocketAddr,
    socks: SocketAddr,
}

fn start(runtime: &tokio::runtime::Runtime, origin: &Origin) -> (ProxyHandle, Listeners) {
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let socks = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = Listeners {
        http: http.local_addr().unwrap(),
        socks: socks.local_addr().unwrap(),
    };
    let config = ProxyConfig {
        policy: Arc::new(policy(
            &[&format!("127.0.0.1:{}", origin.port)],
            &[],
            HttpLimits::default(),
        )),
        resolve: Vec::new(),
        on_decision: None,
    };
    let handle = bunker_proxy::start_on(runtime.handle(), config, http, socks).unwrap();
    (handle, addrs)
}

/// Downloads `/bytes/BODY` from the origin over an open tunnel; returns the body's length.
fn download(mut tunnel: TcpStream, origin: &Origin) -> usize {
    tunnel
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        tunnel,
        "GET /bytes/{BODY} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        origin.port
    )
    .unwrap();
    let mut response = Vec::new();
    tunnel.read_to_end(&mut response).unwrap();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &response[..head_end]
    );
    response.len() - head_end - 4
}

fn through_connect(proxy: SocketAddr, origin: &Origin) -> usize {
    let mut stream = TcpStream::connect(proxy).unwrap();
    write!(
        stream,
        "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
        origin.port
    )
    .unwrap();
    // Byte by byte up to the head's end: nothing of the tunnel is read here.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    download(stream, origin)
}

fn through_socks5(proxy: SocketAddr, origin: &Origin) -> usize {
    let [hi, lo] = origin.port.to_be_bytes();
    let (code, stream) = socks5_request(proxy, &[5, 1, 0, 1, 127, 0, 0, 1, hi, lo]);
    assert_eq!(code, 0, "SOCKS5 reply");
    download(stream, origin)
}

/// The kinds of a proxy's records, sorted, each with all the body's bytes received.
fn kinds(records: &[RequestRecord]) -> Vec<&str> {
    for r in records {
        assert!(r.allowed, "{r:?}");
        assert!(
            r.bytes_received as usize > BODY,
            "final counts are in the record: {r:?}"
        );
    }
    let mut kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds
}

#[test]
fn two_proxies_on_one_runtime_serve_at_once_and_finish_apart() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = Arc::new(Origin::start());
    let (first, first_at) = start(&runtime, &origin);
    let (second, second_at) = start(&runtime, &origin);

    // CONNECT and SOCKS5 through both listener pairs, all four downloads at once.
    let paths = [
        (first_at.http, true),
        (first_at.socks, false),
        (second_at.http, true),
        (second_at.socks, false),
    ];
    let barrier = Arc::new(Barrier::new(paths.len()));
    let clients: Vec<_> = paths
        .into_iter()
        .map(|(proxy, connect)| {
            let (origin, barrier) = (Arc::clone(&origin), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                if connect {
                    through_connect(proxy, &origin)
                } else {
                    through_socks5(proxy, &origin)
                }
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), BODY);
    }

    // Finished from a thread that is not the runtime's (as the CLI's supervisor does).
    let records = first.finish();
    assert_eq!(kinds(&records), ["connect", "socks5"], "{records:?}");
    for listener in [first_at.http, first_at.socks] {
        let refused = TcpStream::connect(listener).map(|_| ()).unwrap_err();
        assert_eq!(
            refused.kind(),
            ErrorKind::ConnectionRefused,
            "{listener} is closed"
        );
    }

    // The other proxy on the same runtime still serves.
    assert_eq!(through_socks5(second_at.socks, &origin), BODY);
    assert_eq!(through_connect(second_at.http, &origin), BODY);

    // Finished from async code on the proxy's own runtime (as a daemon does).
    let records = runtime
        .block_on(runtime.spawn(second.finish_async()))
        .unwrap();
    assert_eq!(
        kinds(&records),
        ["connect", "connect", "socks5", "socks5"],
        "{records:?}"
    );
}
