//! Decisions, byte counters and the run-wide limits they are checked against.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bunker_policy::Policy;
use serde::Serialize;

use crate::tasks::Tasks;

/// One decision of the proxy, as it goes into the run's result (`http.requests`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    /// `connect`, `http` (forwarded), or `socks5`.
    pub kind: String,
    pub host: String,
    pub port: u16,
    /// The address connected to (absent when denied before resolution).
    pub address: Option<String>,
    pub allowed: bool,
    /// The rule that decided, e.g. `allow.net[0] (*.example.com)` or
    /// `http.block_private_ips (127.0.0.1 is loopback)`.
    pub rule: String,
    /// Bytes from the program towards the server (request head and body, or tunnel bytes).
    pub bytes_sent: u64,
    /// Bytes from the server towards the program.
    pub bytes_received: u64,
    pub duration_ms: f64,
    /// Set when a limit ended the request (`max_requests`, `max_response_bytes`, ...).
    pub limit: Option<String>,
}

impl From<RequestRecord> for bunker_api::HttpRecord {
    fn from(r: RequestRecord) -> bunker_api::HttpRecord {
        bunker_api::HttpRecord {
            kind: r.kind,
            host: r.host,
            port: r.port,
            address: r.address,
            allowed: r.allowed,
            rule: r.rule,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            duration_ms: r.duration_ms,
            limit: r.limit,
        }
    }
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From the program to the server.
    Up,
    /// From the server to the program.
    Down,
}

/// A limit that ended a request; the string is the policy key, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bunker: http.{0} exceeded")]
pub(crate) struct LimitHit(pub &'static str);

/// State shared by every connection of one run.
pub(crate) struct Shared {
    pub policy: Arc<Policy>,
    /// Pinned names (normalized) and their addresses, consulted before DNS.
    pub pins: Vec<(String, IpAddr)>,
    pub records: Arc<Mutex<Vec<RequestRecord>>>,
    requests: AtomicU64,
    total_bytes: AtomicU64,
    /// Most decisions kept; requests past it are refused and only counted in `overflow`, so a
    /// program cannot grow the supervisor's memory without bound.
    max_records: usize,
    pub overflow: AtomicU64,
    on_decision: Option<crate::DecisionHook>,
    /// Every task serving this run, so that stopping the run stops them all.
    pub tasks: Tasks,
}

impl Shared {
    pub fn new(
        policy: Arc<Policy>,
        pins: Vec<(String, IpAddr)>,
        records: Arc<Mutex<Vec<RequestRecord>>>,
        max_records: usize,
        on_decision: Option<crate::DecisionHook>,
    ) -> Shared {
        Shared {
            policy,
            pins,
            records,
            requests: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            max_records,
            overflow: AtomicU64::new(0),
            on_decision,
            tasks: Tasks::new(),
        }
    }

    /// Whether the record list is full (further requests are refused).
    pub fn saturated(&self) -> bool {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= self.max_records
    }

    /// Appends a decision and returns the live entry that keeps its counters until dropped.
    pub fn record(self: &Arc<Self>, record: RequestRecord) -> Arc<Entry> {
        let limit = record.limit.clone();
        if let Some(hook) = &self.on_decision {
            hook(&record);
        }
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let index = records.len();
        if index >= self.max_records {
            // Counted, not kept: the entry's final figures go nowhere.
            self.overflow.fetch_add(1, Ordering::Relaxed);
        } else {
            records.push(record);
        }
        Arc::new(Entry {
            shared: Arc::clone(self),
            index,
            start: Instant::now(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            limit: Mutex::new(limit),
        })
    }

    /// Counts one more request against `http.max_requests` and refuses when the run has used up
    /// its requests or its total bytes.
    pub fn take_request(&self) -> Result<(), LimitHit> {
        let http = &self.policy.http;
        if let Some(max) = http.max_total_bytes {
            if self.total_bytes.load(Ordering::Relaxed) >= max {
                return Err(LimitHit("max_total_bytes"));
            }
        }
        let used = self.requests.fetch_add(1, Ordering::Relaxed);
        match http.max_requests {
            Some(max) if used >= max => Err(LimitHit("max_requests")),
            _ => Ok(()),
        }
    }
}

/// A recorded request in flight: its byte counters, and the limit that ended it. The final
/// figures are written into the record when the last reference is dropped — also when the proxy
/// is stopped while the request is still running.
pub(crate) struct Entry {
    shared: Arc<Shared>,
    index: usize,
    start: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    limit: Mutex<Option<String>>,
}

impl Entry {
    /// The counter of one direction, its per-request limit and that limit's policy key.
    fn direction_limit(&self, direction: Direction) -> (&AtomicU64, Option<u64>, &'static str) {
        let http = &self.shared.policy.http;
        match direction {
            Direction::Up => (&self.sent, http.max_request_bytes, "max_request_bytes"),
            Direction::Down => (
                &self.received,
                http.max_response_bytes,
                "max_response_bytes",
            ),
        }
    }

    /// Accounts `n` more bytes in one direction, or refuses them when they would exceed the
    /// request's or the run's limits (the caller then cuts the connection).
    pub fn account(&self, direction: Direction, n: u64) -> Result<(), LimitHit> {
        let http = &self.shared.policy.http;
        let (counter, max, name) = self.direction_limit(direction);
        let result = (|| {
            if let Some(max) = max {
                if counter.load(Ordering::Relaxed) + n > max {
                    return Err(LimitHit(name));
                }
            }
            let total = self.shared.total_bytes.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(max) = http.max_total_bytes {
                if total > max {
                    return Err(LimitHit("max_total_bytes"));
                }
            }
            counter.fetch_add(n, Ordering::Relaxed);
            Ok(())
        })();
        if let Err(hit) = result {
            self.set_limit(hit.0);
        }
        result
    }

    /// How many more bytes may flow in this direction before a limit is crossed, and the name
    /// of that limit (`u64::MAX` when none applies). Relays move at most this much, so exactly
    /// the allowed bytes get through before the cut.
    pub fn allowance(&self, direction: Direction) -> (u64, &'static str) {
        let http = &self.shared.policy.http;
        let (counter, max, name) = self.direction_limit(direction);
        let own = max.map_or(u64::MAX, |m| {
            m.saturating_sub(counter.load(Ordering::Relaxed))
        });
        let total = http.max_total_bytes.map_or(u64::MAX, |m| {
            m.saturating_sub(self.shared.total_bytes.load(Ordering::Relaxed))
        });
        if total < own {
            (total, "max_total_bytes")
        } else {
            (own, name)
        }
    }

    /// Records the address actually connected to (a name may resolve to several).
    pub fn set_address(&self, ip: IpAddr) {
        let mut records = self
            .shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = records.get_mut(self.index) {
            record.address = Some(ip.to_string());
        }
    }

    /// Notes the limit that ended this request (the first one wins).
    pub fn set_limit(&self, limit: &'static str) {
        let mut slot = self.limit.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert_with(|| limit.to_string());
    }

    /// Milliseconds since the decision.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let limit = self
            .limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut records = self
            .shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = records.get_mut(self.index) {
            record.bytes_sent = self.sent.load(Ordering::Relaxed);
            record.bytes_received = self.received.load(Ordering::Relaxed);
            record.duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
            record.limit = limit;
        }
    }
}
