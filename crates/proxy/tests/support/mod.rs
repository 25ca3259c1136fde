//! Test servers on host loopback, a proxy started with a policy built in the test, and clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::Duration;

use bunker_policy::{HttpLimits, Policy};
use bunker_proxy::{ProxyConfig, ProxyHandle, RequestRecord};

/// A policy with these `allow.net` / `deny.net` rules (loaded like a policy file) and HTTP limits.
pub fn policy(allow: &[&str], deny: &[&str], http: HttpLimits) -> Policy {
    let doc = serde_json::json!({"allow": {"net": allow}, "deny": {"net": deny}});
    let mut policy =
        bunker_policy::load::load_str(&doc.to_string(), Path::new("/"), "test policy").unwrap();
    policy.http = http;
    policy
}

/// The one runtime every test's proxy runs on, as a daemon serves every sandbox's proxy on one
/// runtime: the tests of a binary that run at once share it.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

/// A running proxy on host loopback.
pub struct Proxy {
    pub handle: Option<ProxyHandle>,
    pub http: SocketAddr,
    pub socks: SocketAddr,
}

impl Proxy {
    pub fn start(policy: Policy, pins: &[(&str, &str)]) -> Proxy {
        Proxy::start_with_record_cap(policy, pins, bunker_proxy::MAX_RECORDS)
    }

    pub fn start_with_record_cap(policy: Policy, pins: &[(&str, &str)], cap: usize) -> Proxy {
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let socks = TcpListener::bind("127.0.0.1:0").unwrap();
        let (http_addr, socks_addr) = (http.local_addr().unwrap(), socks.local_addr().unwrap());
        let config = ProxyConfig {
            policy: Arc::new(policy),
            resolve: pins
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
                .collect(),
            on_decision: None,
        };
        let handle =
            bunker_proxy::start_on_with_record_cap(RUNTIME.handle(), config, http, socks, cap)
                .unwrap();
        Proxy {
            handle: Some(handle),
            http: http_addr,
            socks: socks_addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn finish(&mut self) -> Vec<RequestRecord> {
        self.handle.take().unwrap().finish()
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 (one thread per connection, one request per
/// connection). Paths: `/hello`, `/bytes/N` (N bytes, streamed), `/redirect?URL` (302),
/// `/headers` (echoes the request head), anything else 404. It counts connections.
pub struct Origin {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let _ = serve_one(stream);
                });
            }
        });
        Origin { port, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve_one(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let respond =
        |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| -> std::io::Result<()> {
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                body.len()
            )?;
            stream.write_all(body)
        };
    if path == "/hello" {
        respond(
            &mut stream,
            "200 OK",
            "Content-Type: text/plain\r\n",
            b"hello from origin",
        )?;
    } else if path == "/headers" {
        respond(&mut stream, "200 OK", "", head.as_bytes())?;
    } else if path == "/upload" {
        respond(
            &mut stream,
            "200 OK",
            "",
            format!("got {} bytes", body.len()).as_bytes(),
        )?;
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let total: usize = n.parse().unwrap_or(0);
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        )?;
        let chunk = vec![b'x'; 256 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n])?;
            left -= n;
        }
    } else if let Some(to) = path.strip_prefix("/redirect?") {
        respond(
            &mut stream,
            "302 Found",
            &format!("Location: {to}\r\n"),
            b"",
        )?;
    } else {
        respond(&mut stream, "404 Not Found", "", b"not found")?;
    }
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// A server that accepts connections and never answers; they are held open.
pub struct Silent {
    pub port: u16,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Silent { port }
    }
}

/// Runs curl with a time limit; returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "--noproxy", ""])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends raw bytes to the proxy and reads until it closes (or 10 s pass).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // A response to a single request without a body ends here.
                if out.windows(4).any(|w| w == b"\r\n\r\n")
                    && text(&out).to_ascii_lowercase().contains("content-length")
                {
                    let s = String::from_utf8_lossy(&out).into_owned();
                    if let Some((head, body)) = s.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

/// The status code of a raw HTTP response.
pub fn status(response: &[u8]) -> u16 {
    text(response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A SOCKS5 exchange: greeting, then a request; returns the reply code and the open stream.
pub fn socks5_request(addr: SocketAddr, request: &[u8]) -> (u8, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&[5, 1, 0]).unwrap();
    let mut method = [0u8; 2];
    stream.read_exact(&mut method).unwrap();
    assert_eq!(method, [5, 0]);
    stream.write_all(request).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    (reply[1], stream)
}

pub fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Whether a program is installed.
pub fn have(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

/// A test CA and a server certificate for `tls.test` and 127.0.0.1, made with the openssl CLI.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn create() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                text(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=bunker test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=tls.test",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:tls.test,IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ]);
        TestPki { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// An HTTPS server (python's http.server wrapped in TLS) answering "tls ok".
pub struct TlsOrigin {
    pub port: u16,
    child: Child,
}

const TLS_SERVER: &str = r#"
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"tls ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl TlsOrigin {
    pub fn start(pki: &TestPki) -> TlsOrigin {
        let d = pki.dir.path();
        let mut child = Command::new("python3")
            .args(["-c", TLS_SERVER])
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TlsOrigin {
            port: line.trim().parse().unwrap(),
            child,
        }
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds the one record for a host and port.
pub fn record_for<'a>(records: &'a [RequestRecord], host: &str, port: u16) -> &'a RequestRecord {
    let found: Vec<_> = records
        .iter()
        .filter(|r| r.host == host && r.port == port)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one record for {host}:{port} in {records:#?}"
    );
    found[0]
}
