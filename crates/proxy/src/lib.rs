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
mod tasks;
mod tunnel;

use std::io;
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bunker_policy::Policy;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

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
    /// Called on a thread of the proxy's runtime with each decision as it is made (before any
    /// byte flows: the record's counters are still zero). It must not block.
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
    #[error("egress proxy: pinned name {0:?} is not a valid host name")]
    PinnedName(String),
}

/// A running proxy: its tasks on the runtime it was started on. Dropping it stops the proxy
/// without waiting (the records are then lost); [`ProxyHandle::finish`] and
/// [`ProxyHandle::finish_async`] stop it and return the records.
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

/// Starts serving `http` (HTTP forward + CONNECT) and `socks` (SOCKS5) as tasks on `runtime`;
/// returns at once. Any number of proxies may share one runtime: each one's tasks, limits and
/// records are its own. The runtime needs its I/O and time drivers, and must be driven (a
/// multi-thread runtime's workers, or a thread in `block_on` of a current-thread one) for as
/// long as the proxy serves.
pub fn start_on(
    runtime: &Handle,
    config: ProxyConfig,
    http: TcpListener,
    socks: TcpListener,
) -> Result<ProxyHandle, ProxyError> {
    start_on_with_record_cap(runtime, config, http, socks, MAX_RECORDS)
}

/// Decisions kept per run by [`start_on`]. Past it, requests are refused (HTTP 429, SOCKS5
/// 0x02) and counted in one final record, so the supervisor's memory stays bounded.
pub const MAX_RECORDS: usize = 100_000;

/// [`start_on`] with another cap on the decisions kept (see [`MAX_RECORDS`]).
pub fn start_on_with_record_cap(
    runtime: &Handle,
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
    let shared = Arc::new(Shared::new(
        config.policy,
        pins,
        Arc::new(Mutex::new(Vec::new())),
        max_records,
        config.on_decision,
    ));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));

    // The listeners are registered with the runtime's reactor.
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
    for (listener, kind) in [(http, Kind::Http), (socks, Kind::Socks)] {
        let accepting = accept_loop(Arc::clone(&shared), listener, kind, Arc::clone(&slots));
        runtime.spawn(shared.tasks.track(accepting));
    }
    Ok(ProxyHandle { shared })
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
                let serving = Arc::clone(&shared);
                tokio::spawn(shared.tasks.track(async move {
                    match kind {
                        Kind::Http => http::serve_connection(serving, stream).await,
                        Kind::Socks => socks::serve_connection(serving, stream).await,
                    }
                    drop(slot);
                }));
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
    ///
    /// Blocks the calling thread until every task of this proxy has ended, which needs the
    /// runtime to run them: call it from a thread that is not one of the runtime's (the CLI's
    /// supervisor thread). Async code uses [`ProxyHandle::finish_async`].
    pub fn finish(self) -> Vec<RequestRecord> {
        self.shared.tasks.stop();
        self.shared.tasks.wait();
        self.take_records()
    }

    /// [`ProxyHandle::finish`] for async code on any runtime (the proxy's own included): waits
    /// for the proxy's tasks to end without blocking the thread.
    pub async fn finish_async(self) -> Vec<RequestRecord> {
        self.shared.tasks.stop();
        self.shared.tasks.wait_async().await;
        self.take_records()
    }

    fn take_records(&self) -> Vec<RequestRecord> {
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
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shared.tasks.stop();
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
