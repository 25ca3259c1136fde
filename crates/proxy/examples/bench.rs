//! Benchmark of the egress proxy against a direct connection, on host loopback, in one run:
//! 100 MB through the forward path, the CONNECT path and SOCKS5 (downloaded with curl), and the
//! latency of small requests over one keep-alive connection. Run by scripts/bench-proxy.sh.
//!
//! Two baselines bound what any relay process can reach here: a bare splice relay (two threads,
//! no policy), and a bare in-kernel relay (the two sockets joined in a BPF sockmap by
//! bunker_sys::bpf::SocketRelay, so no relay thread touches the bytes; needs root, else the line
//! says why it was not run). On the 2-core development VM the splice relay lands near 0.2-0.4x
//! direct and the sockmap relay near 0.3-0.6x: the second TCP hop over loopback and the kernel's
//! relay worker cost more than the copies a userspace relay makes.
//!
//!   cargo run --release -p bunker-proxy --example bench -- [MEGABYTES] [REQUESTS] [ROUNDS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let megabytes: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let requests: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let bytes = megabytes * 1_000_000;

    let origin = start_origin();
    let doc = format!(r#"{{"allow": {{"net": ["127.0.0.1:{}"]}}}}"#, origin.port());
    let policy = bunker_policy::load::load_str(&doc, std::path::Path::new("/"), "bench").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let socks = TcpListener::bind("127.0.0.1:0").unwrap();
    let (proxy, socks_addr) = (http.local_addr().unwrap(), socks.local_addr().unwrap());
    let config = bunker_proxy::ProxyConfig {
        policy: Arc::new(policy),
        resolve: Vec::new(),
        on_decision: None,
    };
    // The runtime the CLI gives the proxy of its one sandbox: one worker thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bunker-proxy")
        .enable_all()
        .build()
        .unwrap();
    let handle = bunker_proxy::start_on(runtime.handle(), config, http, socks).unwrap();

    let url = format!("http://{origin}/bytes/{bytes}");
    // The floor for any proxy process on this machine: a bare TCP relay, two blocking threads
    // splicing through pipes, no policy and no HTTP. Its ratio to direct shows what the extra
    // loopback hop itself costs here, which no proxy can avoid.
    let relay = start_bare_relay(origin);
    let relay_url = format!("http://{relay}/bytes/{bytes}");
    // The same relay with the bytes moved inside the kernel (BPF sockmap), when bpf(2) is allowed.
    let kernel_relay = start_sockmap_relay(origin);
    let kernel_relay_url = kernel_relay
        .as_ref()
        .map(|a| format!("http://{a}/bytes/{bytes}"));
    let proxy_url = format!("http://{proxy}");
    let socks_arg = socks_addr.to_string();
    let paths: [(&str, Vec<&str>); 4] = [
        ("direct", vec![]),
        ("forward (http://)", vec!["-x", &proxy_url]),
        ("CONNECT tunnel", vec!["-p", "-x", &proxy_url]),
        ("SOCKS5", vec!["--socks5", &socks_arg]),
    ];
    println!("throughput: {megabytes} MB over loopback with curl, median of {rounds} (MB/s)");
    let mut direct = 0.0;
    // Rounds interleave the paths so that background load on the machine hits them alike.
    let mut speeds: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut proxy_cpu: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut bare_relay = Vec::new();
    let mut sockmap_relay = Vec::new();
    for _ in 0..rounds {
        for (i, (_, extra)) in paths.iter().enumerate() {
            let cpu_before = proxy_cpu_ms();
            speeds[i].push(download(&url, extra, bytes));
            proxy_cpu[i].push(proxy_cpu_ms() - cpu_before);
        }
        bare_relay.push(download(&relay_url, &[], bytes));
        if let Ok(url) = &kernel_relay_url {
            sockmap_relay.push(download(url, &[], bytes));
        }
    }
    let relay_speed = median(&mut bare_relay);
    for (i, (name, _)) in paths.iter().enumerate() {
        let m = median(&mut speeds[i]);
        if i == 0 {
            direct = m;
        }
        let cpu = median(&mut proxy_cpu[i]);
        println!(
            "  {name:<20} {m:>8.0} MB/s  {:>5.2}x direct  {:>5.2}x bare relay   proxy CPU {cpu:>5.1} ms",
            m / direct,
            m / relay_speed
        );
    }
    println!(
        "  {:<20} {relay_speed:>8.0} MB/s  {:>5.2}x direct  (two splice threads, no policy)",
        "bare relay",
        relay_speed / direct
    );
    match &kernel_relay {
        Ok(_) => {
            let speed = median(&mut sockmap_relay);
            println!(
                "  {:<20} {speed:>8.0} MB/s  {:>5.2}x direct  (BPF sockmap, bytes stay in the kernel)",
                "bare sockmap relay",
                speed / direct
            );
        }
        Err(e) => println!("  bare sockmap relay   not run: {e}"),
    }

    println!("latency: {requests} small GETs over one keep-alive connection (ms per request)");
    let mut lat_direct = Vec::new();
    let mut lat_proxy = Vec::new();
    // Alternate blocks of 100 so both paths see the same conditions.
    let block = 100.min(requests);
    let mut direct_conn = TcpStream::connect(origin).unwrap();
    let mut proxy_conn = TcpStream::connect(proxy).unwrap();
    direct_conn.set_nodelay(true).unwrap();
    proxy_conn.set_nodelay(true).unwrap();
    let direct_req = format!("GET /small HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let proxy_req = format!("GET http://{origin}/small HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let mut direct_reader = BufReader::new(direct_conn.try_clone().unwrap());
    let mut proxy_reader = BufReader::new(proxy_conn.try_clone().unwrap());
    while lat_direct.len() < requests {
        for _ in 0..block {
            lat_direct.push(timed(&mut direct_conn, &mut direct_reader, &direct_req));
        }
        for _ in 0..block {
            lat_proxy.push(timed(&mut proxy_conn, &mut proxy_reader, &proxy_req));
        }
    }
    let (d50, d90) = (
        percentile(&mut lat_direct, 0.5),
        percentile(&mut lat_direct, 0.9),
    );
    let (p50, p90) = (
        percentile(&mut lat_proxy, 0.5),
        percentile(&mut lat_proxy, 0.9),
    );
    println!("  {:<20} median {d50:.3}  p90 {d90:.3}", "direct");
    println!(
        "  {:<20} median {p50:.3}  p90 {p90:.3}",
        "forward (http://)"
    );
    println!("  added median latency: {:.3} ms", p50 - d50);

    let records = handle.finish();
    assert_eq!(
        records.len(),
        3 * rounds + requests,
        "every proxied request is recorded"
    );
    assert!(records.iter().all(|r| r.allowed));
}

/// A plain TCP relay to `origin`: per connection, one blocking thread per direction moving
/// bytes with splice(2) through a 1 MiB pipe.
fn start_bare_relay(origin: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = TcpStream::connect(origin).unwrap();
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            thread::spawn(move || splice_all(&client, &upstream));
            thread::spawn(move || splice_all(&u2, &c2));
        }
    });
    addr
}

/// A plain TCP relay to `origin` whose bytes never leave the kernel: each pair of sockets is
/// joined in a BPF sockmap; a thread per connection only waits for the client to hang up.
/// poll(2)'s "peer shut its writing side" (nix does not name it).
const POLLRDHUP: i16 = 0x2000;

fn start_sockmap_relay(origin: SocketAddr) -> Result<SocketAddr, bunker_sys::SysError> {
    use std::os::fd::AsFd;
    let relay = Arc::new(bunker_sys::bpf::SocketRelay::new(64)?);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (n, client) in listener.incoming().flatten().enumerate() {
            let upstream = TcpStream::connect(origin).unwrap();
            // Big send buffers: when a destination's send buffer is full, the kernel's relay
            // worker retries a jiffy later instead of on write space, which at default sizes
            // (autotuned from 16 KB) costs several times the throughput.
            for sock in [&client, &upstream] {
                socket2::SockRef::from(sock)
                    .set_send_buffer_size(4 << 20)
                    .unwrap();
            }
            let slot = (n as u32 * 2) % relay.slots();
            let joined = relay
                .join(client.as_fd(), slot, upstream.as_fd(), slot + 1)
                .unwrap();
            let relay = Arc::clone(&relay);
            thread::spawn(move || {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut fds = [PollFd::new(
                    client.as_fd(),
                    PollFlags::from_bits_retain(POLLRDHUP),
                )];
                while poll(&mut fds, PollTimeout::NONE).unwrap() == 0 {}
                relay.part(&joined).unwrap();
                drop(upstream);
            });
        }
    });
    Ok(addr)
}

fn splice_all(from: &TcpStream, to: &TcpStream) {
    use nix::fcntl::{fcntl, splice, FcntlArg, SpliceFFlags};
    let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
    let _ = fcntl(&pipe_w, FcntlArg::F_SETPIPE_SZ(1 << 20));
    loop {
        let n = match splice(
            from,
            None,
            &pipe_w,
            None,
            1 << 20,
            SpliceFFlags::SPLICE_F_MOVE,
        ) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut left = n;
        while left > 0 {
            match splice(&pipe_r, None, to, None, left, SpliceFFlags::SPLICE_F_MOVE) {
                Ok(0) | Err(_) => return,
                Ok(m) => left -= m,
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// CPU time the proxy's thread has used, in ms (from schedstat, nanosecond resolution). Unlike
/// throughput, this hardly depends on what else the machine is doing.
fn proxy_cpu_ms() -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "bunker-proxy" {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let ns: f64 = schedstat
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        total += ns / 1e6;
    }
    total
}

/// Downloads `url` with curl (extra args select the proxy path); MB/s.
fn download(url: &str, extra: &[&str], bytes: u64) -> f64 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{time_total}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split_whitespace();
    let size: u64 = parts.next().unwrap().parse().unwrap();
    let secs: f64 = parts.next().unwrap().parse().unwrap();
    assert_eq!(size, bytes, "curl {extra:?} got a short body");
    size as f64 / secs / 1e6
}

/// One request on a keep-alive connection; milliseconds until the whole response is read.
fn timed(conn: &mut TcpStream, reader: &mut BufReader<TcpStream>, request: &str) -> f64 {
    let start = Instant::now();
    conn.write_all(request.as_bytes()).unwrap();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "connection closed"
        );
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    start.elapsed().as_secs_f64() * 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// An HTTP/1.1 origin with keep-alive: `/bytes/N` streams N bytes, `/small` answers "ok".
fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let chunk = vec![b'x'; 256 * 1024];
    loop {
        let mut path = None;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if path.is_none() {
                path = line.split_whitespace().nth(1).map(str::to_string);
            }
            if line == "\r\n" {
                break;
            }
        }
        let path = path.unwrap_or_default();
        let result = if let Some(n) = path.strip_prefix("/bytes/") {
            let mut left: usize = n.parse().unwrap_or(0);
            let mut r = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {left}\r\n\r\n");
            while left > 0 && r.is_ok() {
                let n = left.min(chunk.len());
                r = stream.write_all(&chunk[..n]);
                left -= n;
            }
            r
        } else {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        };
        if result.is_err() {
            return;
        }
    }
}
