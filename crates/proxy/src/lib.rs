//! The egress proxy: HTTP forward, HTTPS CONNECT and SOCKS5, served by the supervisor on listening
//! sockets created inside the sandbox's network namespace.
//!
//! Every request goes through one decision (the `decide` module): the target is parsed (every IPv4
//! spelling and IPv6 form reduced to one address, [`addr`]), matched against `allow.net` /
//! `deny.net`, resolved once, and every resolved address is checked against the special-purpose
//! ranges and `deny.net` CIDRs. The proxy then connects only to an address it checked. Limits from
//! the policy's `http` section are enforced while the bytes stream; nothing is buffered whole.
#![forbid(unsafe_code)]

pub mod addr;
mod decide;
mod http;
mod record;
mod socks;
pub mod socks5;
pub mod target;
mod tunnel;

use std::io;
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bunker_policy::Policy;
use tokio::sync::{oneshot, Semaphore};

pub use crate::http::MAX_HEAD_BYTES;
pub use crate::record::RequestRecord;
use crate::record::Shared;

/// What the proxy enforces.
#[derive(Clone)]
pub struct ProxyConfig {
    pub policy: Arc<Policy>,
    /// Pinned names and their addresses (like curl's `--resolve`), consulted before DNS. Their
    /// addresses are checked like any resolved address.
    pub resolve: Vec<(String, IpAddr)>,
    /// Called on the proxy's thread with each decision as it is made (before any byte flows:
    /// the record's counters are still zero). It must not block.
    pub on_decision: Option<DecisionHook>,
}

/// See [`ProxyConfig::on_decision`].
pub type DecisionHook = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("policy", &self.policy)
            .field("resolve", &self.resolve)
            .field("on_decision", &self.on_decision.is_some())
            .finish()
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("egress proxy: preparing the {which} listener: {source}")]
    Listener {
        which: &'static str,
        source: io::Error,
    },
    #[error("egress proxy: starting its runtime: {0}")]
    Runtime(io::Error),
    #[error("egress proxy: starting its thread: {0}")]
    Thread(io::Error),
    #[error("egress proxy: pinned name {0:?} is not a valid host name")]
    PinnedName(String),
}

/// A running proxy. Dropping it stops the proxy too (the records are then lost).
pub struct ProxyHandle {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// Starts serving `http` (HTTP forward + CONNECT) and `socks` (SOCKS5) on a thread of its own,
/// with a single-threaded tokio runtime; returns at once.
pub fn start(
    config: ProxyConfig,
    http: TcpListener,
    socks: TcpListener,
) -> Result<ProxyHandle, ProxyError> {
    start_with_record_cap(config, http, socks, MAX_RECORDS)
}

/// Decisions kept per run by [`start`]. Past it, requests are refused (HTTP 429, SOCKS5 0x02)
/// and counted in one final record, so the supervisor's memory stays bounded.
pub const MAX_RECORDS: usize = 100_000;

/// [`start`] with another cap on the decisions kept (see [`MAX_RECORDS`]).
pub fn start_with_record_cap(
    config: ProxyConfig,
    http: TcpListener,
    socks: TcpListener,
    max_records: usize,
) -> Result<ProxyHandle, ProxyError> {
    let mut pins = Vec::with_capacity(config.resolve.len());
    for (name, ip) in config.resolve {
        match addr::parse_host(&name) {
            Ok(addr::HostSpec::Name(normalized)) => pins.push((normalized, ip)),
            _ => return Err(ProxyError::PinnedName(name)),
        }
    }
    for (which, listener) in [("HTTP", &http), ("SOCKS5", &socks)] {
        listener
            .set_nonblocking(true)
            .map_err(|source| ProxyError::Listener { which, source })?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(ProxyError::Runtime)?;
    let records = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new(Shared::new(
        config.policy,
        pins,
        Arc::clone(&records),
        max_records,
        config.on_decision,
    ));
    let handle_shared = Arc::clone(&shared);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));

    // The listeners become tokio listeners inside the runtime (they need its reactor).
    let (http, socks) = {
        let _guard = runtime.enter();
        let http =
            tokio::net::TcpListener::from_std(http).map_err(|source| ProxyError::Listener {
                which: "HTTP",
                source,
            })?;
        let socks =
            tokio::net::TcpListener::from_std(socks).map_err(|source| ProxyError::Listener {
                which: "SOCKS5",
                source,
            })?;
        (http, socks)
    };
    let thread = std::thread::Builder::new()
        .name("bunker-proxy".to_string())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(Arc::clone(&shared), http, Kind::Http, Arc::clone(&slots)) => {}
                    _ = accept_loop(shared, socks, Kind::Socks, slots) => {}
                }
            });
            // Dropping the runtime drops every connection task, which closes the connections
            // and writes the final counters of requests still in flight into their records.
            drop(runtime);
        })
        .map_err(ProxyError::Thread)?;
    Ok(ProxyHandle {
        shutdown: Some(shutdown),
        thread: Some(thread),
        shared: handle_shared,
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Http,
    Socks,
}

/// Connections the sandbox may hold open at once, both listeners together. Each costs the
/// supervisor up to six descriptors (two sockets, two pipes) and up to twice
/// [`MAX_HEAD_BYTES`] of buffers, so an unbounded number would let the sandbox exhaust the
/// supervisor's descriptors and memory; past the cap, a new HTTP connection gets a 503 and is
/// closed, a new SOCKS5 one is closed at once.
pub const MAX_CONNECTIONS: usize = 128;

/// What a connection past [`MAX_CONNECTIONS`] on the HTTP listener is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    Content-Type: text/plain\r\nConnection: close\r\nContent-Length: 76\r\n\r\n\
    bunker: refused: 128 connections to the egress proxy are open at once (max)\n";

async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    kind: Kind,
    slots: Arc<Semaphore>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    if matches!(kind, Kind::Http) {
                        // Best effort and never waiting: the refusal fits any socket buffer.
                        let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                    }
                    drop(stream);
                    continue;
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    match kind {
                        Kind::Http => http::serve_connection(shared, stream).await,
                        Kind::Socks => socks::serve_connection(shared, stream).await,
                    }
                    drop(slot);
                });
            }
            // Out of descriptors or a connection reset before accept: wait a little, go on.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

impl ProxyHandle {
    /// The decisions so far (requests in flight show the figures of their last update).
    pub fn records(&self) -> Vec<RequestRecord> {
        self.shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops serving, closes every connection and returns every decision, in order. When the
    /// run made more than the cap of decisions, one last record counts the refused rest.
    pub fn finish(mut self) -> Vec<RequestRecord> {
        self.stop();
        let mut records = std::mem::take(
            &mut *self
                .shared
                .records
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let overflow = self.shared.overflow.load(Ordering::Relaxed);
        if overflow > 0 {
            records.push(RequestRecord {
                kind: "http".to_string(),
                host: "*".to_string(),
                port: 0,
                address: None,
                allowed: false,
                rule: format!(
                    "bunker: {overflow} more requests refused and not recorded one by one \
                     (more than {} decisions in this run)",
                    records.len()
                ),
                bytes_sent: 0,
                bytes_received: 0,
                duration_ms: 0.0,
                limit: Some("max_decisions".to_string()),
            });
        }
        records
    }

    fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_too_many_connections_refusal_is_a_whole_response_naming_the_cap() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(
            body.contains(&format!("{MAX_CONNECTIONS} connections")),
            "{body}"
        );
    }
}
